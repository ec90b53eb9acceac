"""XLM-RoBERTa tokenizers: slow (sentencepiece) and fast (tokenizers), one shared base.

Both follow HF transformers 4.57's calling conventions and outputs (``XLMRobertaTokenizer`` and
``XLMRobertaTokenizerFast``): the fairseq id layout (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
SentencePiece piece i at i + 1, ``<mask>`` last), ``<s> A </s>`` / ``<s> A </s></s> B </s>``,
padding / truncation / overflow, and HF's directory layout for save / load. The slow class follows HF's
slow tokenizer (python truncation, one overflow window per example), the fast class HF's fast one
(truncation and padding in ``tokenizers``, all overflow windows, offsets, ``word_ids()``); its offsets
are HF's except where HF's point at the wrong characters (repaired in ``_offsets.py``).

Only numpy, sentencepiece and tokenizers are imported here; ``return_tensors="pt"/"tf"/"jax"`` imports
the framework when asked.

Modules, in dependency order: ``batch_encoding`` (the call's output), ``special_tokens``,
``serialization`` (save / load), ``training``, ``base`` (what the two classes share), ``slow``, ``fast``;
private helpers ``_spm`` (SentencePiece model files, the fast pipeline), ``_offsets`` (repaired offsets)
and ``_text_inputs`` (checks of the text arguments).
"""

from tokenizers import AddedToken as AddedToken

from ._text_inputs import InvalidTextInputError as InvalidTextInputError
from .base import LARGE_INTEGER as LARGE_INTEGER
from .base import PADDING_STRATEGIES as PADDING_STRATEGIES
from .base import TRUNCATION_STRATEGIES as TRUNCATION_STRATEGIES
from .base import VERY_LARGE_INTEGER as VERY_LARGE_INTEGER
from .base import InvalidTokenIdError as InvalidTokenIdError
from .batch_encoding import TENSOR_TYPES as TENSOR_TYPES
from .batch_encoding import BatchEncoding as BatchEncoding
from .fast import XLMRobertaTokenizerFast as XLMRobertaTokenizerFast
from .serialization import ADDED_TOKENS_FILE as ADDED_TOKENS_FILE
from .serialization import SPECIAL_TOKENS_MAP_FILE as SPECIAL_TOKENS_MAP_FILE
from .serialization import TOKENIZER_CONFIG_FILE as TOKENIZER_CONFIG_FILE
from .serialization import TOKENIZER_FILE as TOKENIZER_FILE
from .serialization import VOCAB_FILE as VOCAB_FILE
from .slow import XLMRobertaTokenizer as XLMRobertaTokenizer
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES as SPECIAL_TOKENS_ATTRIBUTES

__all__ = ["AddedToken", "BatchEncoding", "XLMRobertaTokenizer", "XLMRobertaTokenizerFast"]
