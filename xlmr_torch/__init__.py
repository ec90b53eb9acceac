"""XLM-RoBERTa for PyTorch: HF transformers v4's classes, configs and checkpoints.

Example:
    >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaModel
    >>> model = XLMRobertaModel(XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=37))

Imports torch only (never TensorFlow or JAX).
"""

from xlmr.config import XLMRobertaConfig as XLMRobertaConfig

from .modeling import XLMRobertaForCausalLM as XLMRobertaForCausalLM
from .modeling import XLMRobertaForMaskedLM as XLMRobertaForMaskedLM
from .modeling import XLMRobertaForMultipleChoice as XLMRobertaForMultipleChoice
from .modeling import XLMRobertaForQuestionAnswering as XLMRobertaForQuestionAnswering
from .modeling import XLMRobertaForSequenceClassification as XLMRobertaForSequenceClassification
from .modeling import XLMRobertaForTokenClassification as XLMRobertaForTokenClassification
from .modeling import XLMRobertaModel as XLMRobertaModel
from .modeling import XLMRobertaPreTrainedModel as XLMRobertaPreTrainedModel
from .sentence import SentenceEncoder as SentenceEncoder

__all__ = [
    "XLMRobertaConfig",
    "XLMRobertaPreTrainedModel",
    "XLMRobertaModel",
    "XLMRobertaForCausalLM",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
    "SentenceEncoder",
]
