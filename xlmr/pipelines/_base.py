"""The pipeline base class: one model, one tokenizer, options fixed at construction or given per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._packing import DEFAULT_MAX_BATCH_TOKENS
from ._runner import Runner, check_batch_size


class Pipeline:
    """A task over an xlmr model of any backend: tokenizer -> one backend forward -> numpy post-processing.

    Options a task takes (``top_k``...) may be given to :func:`xlmr.pipeline` (defaults for every
    call) or to each call (for that call), as in HF transformers.

    Args:
        model: An xlmr model whose head fits the task.
        tokenizer: An xlmr tokenizer (the fast one for offsets).
        batch_size: Most inputs (or QA windows) per forward, as HF's ``batch_size``; None: as many
            as ``max_batch_tokens`` allows. Results never depend on it.
        max_batch_tokens: Token budget of one forward.
        packed: Packed rows (``segment_ids``) where the head and backend allow (None), always
            (True) or never (False).
        progress: Progress bar: True, False, or None for long lists on a terminal.
    """

    task: str = ""
    # Heads (xlmr.HEADS names) whose models can run the task; empty: any.
    heads: tuple[str, ...] = ()

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        packed: bool | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        self.runner = Runner(
            model, batch_size=batch_size, max_batch_tokens=max_batch_tokens, packed=packed, progress=progress
        )
        self.model = self.runner.model
        self.backend = self.runner.backend
        self.config = self.model.config
        self.tokenizer = tokenizer
        self._options = self._sanitize(**options)

    def _sanitize(self, **options: Any) -> dict[str, Any]:
        """Check a task's options; returns the ones given (HF's ``_sanitize_parameters``)."""
        if options:
            raise TypeError(f"{self.task} got unexpected options {sorted(options)}")
        return {}

    def _params(self, options: dict[str, Any]) -> dict[str, Any]:
        """Construction-time options overridden by this call's (``batch_size`` may be given per call)."""
        options = dict(options)
        batch_size = options.pop("batch_size", None)
        options.pop("num_workers", None)  # HF's data-loader workers: nothing to load here
        params = {**self._options, **self._sanitize(**options)}
        params["batch_size"] = check_batch_size(batch_size)
        return params

    @property
    def max_length(self) -> int:
        """Longest token sequence one forward takes: the model's positions and the tokenizer's limit."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        model = self.runner.max_length
        return model if not limit or limit <= 0 else min(int(limit), model)

    def check_lengths(self, sequences: Sequence[Sequence[int]], texts: Sequence[Any]) -> None:
        """A clear error for an input longer than the model takes (before any forward runs)."""
        for i, seq in enumerate(sequences):
            if len(seq) > self.runner.max_length:
                raise ValueError(
                    f"{self.task}: input {i} ({_preview(texts[i])}) is {len(seq)} tokens long, but the model "
                    f"takes at most {self.runner.max_length}; shorten it or pass truncation=True"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, backend={self.backend!r}, model={type(self.model).__name__})"


def as_list(inputs: Any, what: str, kind: type | tuple[type, ...] = str) -> tuple[list, bool]:
    """``(items, single)``: one input of ``kind`` becomes a one-item list."""
    if isinstance(inputs, kind):
        return [inputs], True
    if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
        items = list(inputs)
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise TypeError(f"{what}: item {i} must be {_kind_name(kind)}, got {type(item).__name__}")
        return items, False
    raise TypeError(f"{what}: expected {_kind_name(kind)} or a list of them, got {type(inputs).__name__}")


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", dict: "a dict"}.get(k, k.__name__) for k in kinds)


def _preview(text: Any, width: int = 40) -> str:
    text = repr(text)
    return text if len(text) <= width else text[: width - 4] + "...'"


def choice(value: Any, choices: Sequence[str], what: str) -> str:
    """A named option (a str or HF's enum, any case) as one of ``choices``; ValueError naming ``what``."""
    name = str(getattr(value, "value", value)).lower()
    if name not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return name


def softmax(x: np.ndarray) -> np.ndarray:
    """HF's numpy softmax over the last axis (same operations, same dtype)."""
    maxes = np.max(x, axis=-1, keepdims=True)
    shifted_exp = np.exp(x - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
