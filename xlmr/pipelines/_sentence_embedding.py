"""``sentence-embedding``: one vector per text through a sentence encoder, as ``SentenceTransformer.encode`` gives it.

HF transformers has no such task; the pipeline is a thin layer over the sentence encoders
(``xlmr_torch.SentenceEncoder``, ``xlmr_tf.TFSentenceEncoder``, ``xlmr_flax.FlaxSentenceEncoder``),
whose ``encode`` does the batching (length-sorted, packed rows), pooling, Dense, normalization and
quantization. Its output follows ``feature-extraction``'s convention: plain lists unless
``return_tensors=True``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._sentence import PRECISIONS, SentenceEncoderBase, plain_layout
from ._base import Pipeline, as_list
from ._model import backend_of, check_backend, head_mismatch, import_backend, load_tokenizer
from ._runner import check_batch_size

# The sentence encoder class of each backend (in xlmr_<backend>.sentence).
ENCODER_CLASSES = {"torch": "SentenceEncoder", "tf": "TFSentenceEncoder", "flax": "FlaxSentenceEncoder"}
# sentence-transformers' encode default, used when batch_size is None.
DEFAULT_BATCH_SIZE = 32


class SentenceEmbeddingPipeline(Pipeline):
    """Sentence embeddings of a sentence-transformers model (or a plain XLM-R model: mean pooling).

    Built by ``xlmr.pipeline("sentence-embedding", model, backend=...)`` where ``model`` is a
    sentence-transformers directory, a plain HF XLM-R directory, a Hub repo id of either (see
    ``SentenceEncoderBase.from_pretrained``), a sentence encoder of any backend, or an
    ``XLMRobertaModel`` of any backend with ``tokenizer=`` (mean pooling, as sentence-transformers
    makes a plain model).

    Options (at construction, as defaults, or per call), with ``encode``'s meanings:
    ``prompt_name``, ``prompt``, ``normalize_embeddings``, ``precision`` (float32, int8, uint8,
    binary, ubinary), ``truncate_dim``; ``return_tensors`` (numpy arrays instead of lists);
    ``batch_size`` (``encode``'s, default 32). Construction only: ``max_batch_tokens``,
    ``packed``, ``progress``.

    Returns per text a list of ``dim`` numbers (a string gives one such list, a list of strings a
    list of them); with ``return_tensors=True`` exactly what ``encoder.encode`` returns: a
    ``(dim,)`` array for a string, ``(n, dim)`` for a list.

    Example:
        >>> import xlmr
        >>> embed = xlmr.pipeline("sentence-embedding", "path/to/multilingual-e5-base")  # doctest: +SKIP
        >>> embed(["how do I bake bread?"], prompt_name="query", return_tensors=True).shape  # doctest: +SKIP
        (1, 768)
    """

    task = "sentence-embedding"
    heads = ("base",)  # a model object: its forward must give last_hidden_state

    def __init__(
        self,
        encoder: SentenceEncoderBase,
        tokenizer: Any = None,
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        packed: bool | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(encoder, SentenceEncoderBase):
            raise TypeError(f"expected a sentence encoder, got {type(encoder).__name__}")
        if tokenizer is not None and tokenizer is not encoder.tokenizer:
            raise ValueError("sentence-embedding runs the encoder's own tokenizer; do not pass tokenizer=")
        if packed is not None and bool(packed) != encoder.packed:
            raise ValueError(
                f"packed={packed!r}, but the encoder was built with packed={encoder.packed}; "
                "pass packed= when the pipeline loads the model"
            )
        if max_batch_tokens is not None and (
            isinstance(max_batch_tokens, bool)
            or not isinstance(max_batch_tokens, int)
            or max_batch_tokens < 1
        ):
            raise ValueError(f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}")
        self.encoder = encoder
        self.model = encoder.model
        self.backend = backend_of(encoder.model)
        self.config = encoder.config
        self.tokenizer = encoder.tokenizer
        self.batch_size = check_batch_size(batch_size)
        self.max_batch_tokens = max_batch_tokens
        self.progress = progress
        self._options = self._sanitize(**options)

    @property
    def max_length(self) -> int:
        """Longest tokenized text; longer ones are truncated (the encoder's ``max_seq_length``)."""
        return self.encoder.max_seq_length

    def _sanitize(
        self,
        prompt_name: str | None = None,
        prompt: str | None = None,
        normalize_embeddings: bool | None = None,
        precision: str | None = None,
        truncate_dim: int | None = None,
        return_tensors: bool | None = None,
        **rest: Any,
    ) -> dict[str, Any]:
        super()._sanitize(**rest)
        params: dict[str, Any] = {}
        if prompt_name is not None:
            if prompt_name not in self.encoder.prompts:
                raise ValueError(
                    f"prompt_name {prompt_name!r} is not one of this model's prompts: "
                    f"{', '.join(repr(p) for p in self.encoder.prompts) or 'none'}"
                )
            params["prompt_name"] = prompt_name
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
            params["prompt"] = prompt
        if normalize_embeddings is not None:
            params["normalize_embeddings"] = bool(normalize_embeddings)
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"precision {precision!r} is not supported; expected one of {PRECISIONS}")
            params["precision"] = precision
        if truncate_dim is not None:
            if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1:
                raise ValueError(f"truncate_dim must be a positive integer, got {truncate_dim!r}")
            params["truncate_dim"] = truncate_dim
        if return_tensors is not None:
            params["return_tensors"] = return_tensors
        return params

    def __call__(self, inputs: str | list[str], **options: Any):
        params = self._params(options)
        texts, single = as_list(inputs, self.task)
        embeddings = self.encoder.encode(
            texts,
            batch_size=params["batch_size"] or self.batch_size or DEFAULT_BATCH_SIZE,
            prompt_name=params.get("prompt_name"),
            prompt=params.get("prompt"),
            normalize_embeddings=params.get("normalize_embeddings", False),
            precision=params.get("precision", "float32"),
            truncate_dim=params.get("truncate_dim"),
            show_progress_bar=self.progress,
            max_batch_tokens=self.max_batch_tokens,
        )
        if params.get("return_tensors"):
            return embeddings[0] if single else embeddings
        rows = np.asarray(embeddings).tolist()
        return rows[0] if single else rows

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, backend={self.backend!r}, "
            f"encoder={type(self.encoder).__name__})"
        )

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model: str | os.PathLike | Any,
        *,
        backend: str | None,
        tokenizer: Any,
        hub: dict[str, Any],
        options: dict[str, Any],
    ) -> SentenceEmbeddingPipeline:
        """The pipeline over ``model``: a directory or Hub repo id (loaded into ``backend``'s encoder),
        a sentence encoder, or an ``XLMRobertaModel`` with ``tokenizer`` (mean pooling)."""
        if isinstance(model, str | os.PathLike):
            backend = check_backend(backend or "torch")
            if tokenizer is not None:
                raise ValueError("sentence-embedding loads the model's own tokenizer; do not pass tokenizer=")
            encoder_cls = getattr(import_backend(backend), ENCODER_CLASSES[backend])
            encoder = encoder_cls.from_pretrained(model, packed=options.pop("packed", None), **hub)
            return cls(encoder, **options)
        if isinstance(model, SentenceEncoderBase):
            found = backend_of(model.model)
            if backend is not None and check_backend(backend) != found:
                raise ValueError(f"backend={backend!r}, but the encoder is an xlmr_{found} encoder")
            if hub:
                raise TypeError(
                    f"Hub arguments {sorted(hub)} are for a model named by repo id, not an encoder"
                )
            return cls(model, tokenizer, **options)
        found = backend_of(model)
        if found is None:
            raise TypeError(
                "model must be a sentence-transformers or HF checkpoint directory, a Hub repo id, a sentence "
                f"encoder or an xlmr XLMRobertaModel, got {type(model).__name__}"
            )
        if backend is not None and check_backend(backend) != found:
            raise ValueError(f"backend={backend!r}, but the model is an xlmr_{found} model")
        problem = head_mismatch(cls.task, cls.heads, model.head, f"the model ({type(model).__name__})")
        if problem:
            raise ValueError(problem)
        tokenizer = load_tokenizer(tokenizer, None, hub=hub)
        layout = plain_layout(int(model.config.hidden_size))
        encoder_cls = getattr(import_backend(found), ENCODER_CLASSES[found])
        encoder = encoder_cls(model, tokenizer, layout, packed=options.pop("packed", None))
        encoder.name_or_path = getattr(model, "name_or_path", "")
        return cls(encoder, **options)
