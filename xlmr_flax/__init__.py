"""Flax/JAX backend of xlmr: HF-compatible ``FlaxXLMRoberta...`` classes built from ``flax.linen`` modules.

Parameters are plain nested dicts in HF's ``flax_model.msgpack`` layout; outputs are xlmr's
output classes, registered as JAX pytrees so jitted functions can return them. ``losses``
holds the head losses (optax), ``training`` an optax train step and data-parallel helpers.
Importing this package imports neither torch nor tensorflow.

Example:
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr_flax import FlaxXLMRobertaForMaskedLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                           num_attention_heads=4, intermediate_size=37)
    >>> model = FlaxXLMRobertaForMaskedLM(config)
    >>> model([[0, 5, 6, 2]]).logits.shape
    (1, 4, 100)
"""

from xlmr.config import XLMRobertaConfig as XLMRobertaConfig

from .modeling import FlaxXLMRobertaForCausalLM as FlaxXLMRobertaForCausalLM
from .modeling import FlaxXLMRobertaForMaskedLM as FlaxXLMRobertaForMaskedLM
from .modeling import FlaxXLMRobertaForMultipleChoice as FlaxXLMRobertaForMultipleChoice
from .modeling import FlaxXLMRobertaForQuestionAnswering as FlaxXLMRobertaForQuestionAnswering
from .modeling import FlaxXLMRobertaForSequenceClassification as FlaxXLMRobertaForSequenceClassification
from .modeling import FlaxXLMRobertaForTokenClassification as FlaxXLMRobertaForTokenClassification
from .modeling import FlaxXLMRobertaModel as FlaxXLMRobertaModel
from .modeling import FlaxXLMRobertaPreTrainedModel as FlaxXLMRobertaPreTrainedModel
from .sentence import FlaxSentenceEncoder as FlaxSentenceEncoder

__all__ = [
    "XLMRobertaConfig",
    "FlaxXLMRobertaPreTrainedModel",
    "FlaxXLMRobertaModel",
    "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM",
    "FlaxXLMRobertaForSequenceClassification",
    "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForTokenClassification",
    "FlaxXLMRobertaForQuestionAnswering",
    "FlaxSentenceEncoder",
]
