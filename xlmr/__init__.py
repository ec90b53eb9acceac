"""xlmr: the framework-neutral core of XLM-RoBERTa for PyTorch, TensorFlow (Keras 3) and Flax/JAX.

Holds the config, the tokenizers, the canonical weight names and the head table. Imports
numpy, sentencepiece and tokenizers only -- never a deep-learning framework.
"""

from ._version import __version__ as __version__
from .config import XLMRobertaConfig as XLMRobertaConfig
from .heads import HEAD_NAMES as HEAD_NAMES
from .heads import HEADS as HEADS
from .heads import Head as Head
from .heads import get_head as get_head

__all__ = [
    "HEADS",
    "HEAD_NAMES",
    "Head",
    "XLMRobertaConfig",
    "XLMRobertaTokenizer",
    "XLMRobertaTokenizerFast",
    "get_head",
    "pipeline",
]


def __getattr__(name: str):
    # The tokenizers load sentencepiece / tokenizers on first use, not on `import xlmr`.
    if name in ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast"):
        from . import tokenization

        return getattr(tokenization, name)
    if name == "pipeline":  # numpy-only, but not loaded on `import xlmr`
        from .pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'xlmr' has no attribute {name!r}")
