"""``pipeline(task, model, ...)``: the task registry and the one entry point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import _hub
from ..heads import HEADS
from ._base import Pipeline
from ._feature_extraction import FeatureExtractionPipeline
from ._fill_mask import FillMaskPipeline
from ._model import (
    backend_of,
    check_backend,
    checkpoint_head,
    head_mismatch,
    load_model,
    load_tokenizer,
    resolve_source,
)
from ._question_answering import QuestionAnsweringPipeline
from ._sentence_embedding import SentenceEmbeddingPipeline
from ._text_classification import TextClassificationPipeline
from ._token_classification import TokenClassificationPipeline

SUPPORTED_TASKS: dict[str, type[Pipeline]] = {
    "feature-extraction": FeatureExtractionPipeline,
    "fill-mask": FillMaskPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "sentence-embedding": SentenceEmbeddingPipeline,
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
}
# HF's other names for the same tasks.
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

# The head a directory is loaded into for each task.
_LOAD_HEAD = {
    "feature-extraction": "base",
    "fill-mask": "masked_lm",
    "question-answering": "question_answering",
    "sentence-embedding": "base",
    "text-classification": "sequence_classification",
    "token-classification": "token_classification",
}


def task_class(task: str) -> type[Pipeline]:
    """The pipeline class of ``task`` (or of an alias); an unknown name lists the known ones."""
    name = TASK_ALIASES.get(task, task)
    if name not in SUPPORTED_TASKS:
        known = sorted(SUPPORTED_TASKS) + sorted(f"{a} (= {t})" for a, t in TASK_ALIASES.items())
        raise KeyError(f"unknown task {task!r}; available tasks: {', '.join(known)}")
    return SUPPORTED_TASKS[name]


def pipeline(
    task: str,
    model: str | os.PathLike | Any,
    *,
    backend: str | None = None,
    tokenizer: Any = None,
    **options: Any,
) -> Pipeline:
    """A task pipeline over an xlmr model, in any backend.

    Args:
        task: ``"fill-mask"``, ``"text-classification"`` (``"sentiment-analysis"``),
            ``"token-classification"`` (``"ner"``), ``"question-answering"``,
            ``"feature-extraction"`` or ``"sentence-embedding"``.
        model: An HF-layout checkpoint directory (any of the four weight files), a Hugging Face Hub
            repo id (``org/name``, ``org/name@revision``: config, tokenizer files and one weight
            format are fetched, see :mod:`xlmr._hub`), or an already built xlmr model of any backend.
            For ``sentence-embedding``: a sentence-transformers directory or repo id too, or a sentence
            encoder of any backend (see :class:`SentenceEmbeddingPipeline`).
        backend: ``"torch"`` (the default for a directory), ``"tf"`` or ``"flax"``; for a model
            object its own backend (naming another one is an error).
        tokenizer: An xlmr tokenizer, or a directory or Hub repo id holding one; by default the model's.
            Needed with a model object.
        **options: ``batch_size``, ``max_batch_tokens``, ``packed``, ``progress`` (see
            :class:`Pipeline`), HF's Hub arguments (``revision``, ``cache_dir``, ``local_files_only``,
            ``token``, ``subfolder``, ``force_download``) for a model or tokenizer named by repo id,
            and the task's own options (``top_k``...) as defaults for every call.

    Example:
        >>> import xlmr
        >>> fill = xlmr.pipeline("fill-mask", "path/to/xlm-roberta-base", backend="flax")  # doctest: +SKIP
        >>> fill("Paris is the <mask> of France.")[0]["token_str"]  # doctest: +SKIP
        'capital'
    """
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {type(task).__name__}")
    cls = task_class(task)
    name = cls.task
    hub = _hub.pop_hub_kwargs(options)
    if cls is SentenceEmbeddingPipeline:  # through the sentence encoder, which reads its own layout
        return cls.build(model, backend=backend, tokenizer=tokenizer, hub=hub, options=options)
    if isinstance(model, str | os.PathLike):
        backend = check_backend(backend or "torch")
        resolved = resolve_source(model, backend, hub, tokenizer=tokenizer is None)
        directory = resolved.directory if resolved is not None else Path(model).expanduser()
        if not (directory / "config.json").is_file():
            load_model(backend, HEADS[_LOAD_HEAD[name]], directory)  # raises the clear missing-file error
        problem = head_mismatch(
            name, cls.heads, checkpoint_head(directory), f"the checkpoint {str(directory)!r}"
        )
        if problem:
            raise ValueError(problem)
        repo = resolved.name_or_path if resolved is not None else ""
        tokenizer = load_tokenizer(tokenizer, directory, hub=hub, name=repo)
        model = load_model(backend, HEADS[_LOAD_HEAD[name]], directory, resolved=resolved)
    else:
        found = backend_of(model)
        if found is None:
            raise TypeError(
                f"model must be a checkpoint directory or an xlmr model (xlmr_torch, xlmr_tf, xlmr_flax), "
                f"got {type(model).__name__}"
            )
        if backend is not None and check_backend(backend) != found:
            raise ValueError(f"backend={backend!r}, but the model is an xlmr_{found} model")
        problem = head_mismatch(name, cls.heads, model.head, f"the model ({type(model).__name__})")
        if problem:
            raise ValueError(problem)
        tokenizer = load_tokenizer(tokenizer, None, hub=hub)
    return cls(model, tokenizer, **options)
