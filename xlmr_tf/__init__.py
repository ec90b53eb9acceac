"""XLM-RoBERTa for TensorFlow: Keras 3 models (``KERAS_BACKEND=tensorflow``) with HF's ``TFXLMRoberta*`` API.

Example:
    >>> import os
    >>> os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # before keras is imported
    'tensorflow'
    >>> from xlmr_tf import TFXLMRobertaForSequenceClassification
"""

import os as _os

if "keras" not in __import__("sys").modules:
    _os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from .modeling import (  # noqa: E402
    TFBaseModelOutputWithPoolingAndCrossAttentions,
    TFCausalLMOutputWithCrossAttentions,
    TFMaskedLMOutput,
    TFMultipleChoiceModelOutput,
    TFQuestionAnsweringModelOutput,
    TFSequenceClassifierOutput,
    TFTokenClassifierOutput,
    TFXLMRobertaForCausalLM,
    TFXLMRobertaForMaskedLM,
    TFXLMRobertaForMultipleChoice,
    TFXLMRobertaForQuestionAnswering,
    TFXLMRobertaForSequenceClassification,
    TFXLMRobertaForTokenClassification,
    TFXLMRobertaModel,
    TFXLMRobertaPreTrainedModel,
)
from .training import compiled_forward, export_saved_model  # noqa: E402

__all__ = [
    "TFXLMRobertaPreTrainedModel",
    "TFXLMRobertaModel",
    "TFXLMRobertaForCausalLM",
    "TFXLMRobertaForMaskedLM",
    "TFXLMRobertaForSequenceClassification",
    "TFXLMRobertaForMultipleChoice",
    "TFXLMRobertaForTokenClassification",
    "TFXLMRobertaForQuestionAnswering",
]

# Also importable: the TF-named output classes (subclasses of xlmr.outputs'), export_saved_model,
# compiled_forward.
_ = (
    TFBaseModelOutputWithPoolingAndCrossAttentions,
    TFCausalLMOutputWithCrossAttentions,
    TFMaskedLMOutput,
    TFMultipleChoiceModelOutput,
    TFQuestionAnsweringModelOutput,
    TFSequenceClassifierOutput,
    TFTokenClassifierOutput,
    compiled_forward,
    export_saved_model,
)
