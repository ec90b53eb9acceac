"""Task pipelines over xlmr models of any backend: fill-mask, text and token classification, QA, features,
sentence embeddings.

``xlmr.pipeline(task, model, backend=..., **options)`` gives a callable with HF transformers
4.57's arguments, defaults and outputs. Pre- and post-processing live here (numpy); each
backend's ``tasks`` module runs only the forward. Lists of inputs are length-sorted (and packed
where the head and backend allow) by the planner of :mod:`xlmr._packing`.
"""

from ._base import Pipeline as Pipeline
from ._factory import SUPPORTED_TASKS as SUPPORTED_TASKS
from ._factory import TASK_ALIASES as TASK_ALIASES
from ._factory import pipeline as pipeline
from ._feature_extraction import FeatureExtractionPipeline as FeatureExtractionPipeline
from ._fill_mask import FillMaskPipeline as FillMaskPipeline
from ._question_answering import QuestionAnsweringPipeline as QuestionAnsweringPipeline
from ._sentence_embedding import SentenceEmbeddingPipeline as SentenceEmbeddingPipeline
from ._text_classification import TextClassificationPipeline as TextClassificationPipeline
from ._token_classification import TokenClassificationPipeline as TokenClassificationPipeline

__all__ = [
    "SUPPORTED_TASKS",
    "TASK_ALIASES",
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "SentenceEmbeddingPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "pipeline",
]
