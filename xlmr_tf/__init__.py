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

from xlmr.config import XLMRobertaConfig as XLMRobertaConfig  # noqa: E402

from .modeling import TFXLMRobertaForCausalLM as TFXLMRobertaForCausalLM  # noqa: E402
from .modeling import TFXLMRobertaForMaskedLM as TFXLMRobertaForMaskedLM  # noqa: E402
from .modeling import TFXLMRobertaForMultipleChoice as TFXLMRobertaForMultipleChoice  # noqa: E402
from .modeling import TFXLMRobertaForQuestionAnswering as TFXLMRobertaForQuestionAnswering  # noqa: E402
from .modeling import TFXLMRobertaForSequenceClassification as TFXLMRobertaForSequenceClassification  # noqa: E402
from .modeling import TFXLMRobertaForTokenClassification as TFXLMRobertaForTokenClassification  # noqa: E402
from .modeling import TFXLMRobertaModel as TFXLMRobertaModel  # noqa: E402
from .modeling import TFXLMRobertaPreTrainedModel as TFXLMRobertaPreTrainedModel  # noqa: E402
from .sentence import TFSentenceEncoder as TFSentenceEncoder  # noqa: E402

__all__ = [
    "XLMRobertaConfig",
    "TFXLMRobertaPreTrainedModel",
    "TFXLMRobertaModel",
    "TFXLMRobertaForCausalLM",
    "TFXLMRobertaForMaskedLM",
    "TFXLMRobertaForSequenceClassification",
    "TFXLMRobertaForMultipleChoice",
    "TFXLMRobertaForTokenClassification",
    "TFXLMRobertaForQuestionAnswering",
    "TFSentenceEncoder",
]

# Also importable from xlmr_tf: the TF-named output classes (subclasses of xlmr.outputs') and the
# serving / XLA helpers of xlmr_tf.training.
from .modeling import (
    TFBaseModelOutputWithPoolingAndCrossAttentions as TFBaseModelOutputWithPoolingAndCrossAttentions,  # noqa: E402,E501
)
from .modeling import TFCausalLMOutputWithCrossAttentions as TFCausalLMOutputWithCrossAttentions  # noqa: E402
from .modeling import TFMaskedLMOutput as TFMaskedLMOutput  # noqa: E402
from .modeling import TFMultipleChoiceModelOutput as TFMultipleChoiceModelOutput  # noqa: E402
from .modeling import TFQuestionAnsweringModelOutput as TFQuestionAnsweringModelOutput  # noqa: E402
from .modeling import TFSequenceClassifierOutput as TFSequenceClassifierOutput  # noqa: E402
from .modeling import TFTokenClassifierOutput as TFTokenClassifierOutput  # noqa: E402
from .training import compiled_forward as compiled_forward  # noqa: E402
from .training import export_saved_model as export_saved_model  # noqa: E402
