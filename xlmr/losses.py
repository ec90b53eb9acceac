"""The loss specification of the seven heads, framework-neutral: what each backend computes.

Each backend's ``losses.py`` holds only the tensor arithmetic of this spec, through one function
with the same name and signature in all three, ``head_loss(head, config, predictions, labels)``.
This module decides everything else, once:

- **Ignore index.** Class targets equal to :data:`IGNORE_INDEX` (-100) contribute nothing.
- **Reduction.** Every cross entropy is the mean over the targets that are not ignored, computed
  in float32 whatever the compute dtype.
- **All-ignored batches** (:data:`ALL_IGNORED_LOSS`): a batch in which every target is ignored has
  loss 0.0 and a zero gradient -- the sum of the per-target losses divided by
  ``max(count, 1)``. HF's PyTorch and TF classes give NaN there (0/0), which poisons every
  parameter at the next optimizer step; a batch made only of padding or of unlabelled tokens is
  ordinary in token classification and packed training, so it must not end a run.
- **Problem type** of sequence classification (:func:`problem_type`): the config's, else
  inferred as HF does -- ``num_labels == 1`` regression (MSE), integer labels single-label
  (cross entropy), anything else multi-label (BCE with logits). The inferred type is written
  back into ``config.problem_type`` (:data:`WRITE_BACK_PROBLEM_TYPE`), in all three backends,
  as HF's PyTorch classes do, so a saved fine-tuned model records what it was trained for.
- **Spans** (:func:`span_ignored_index`): start/end positions are clamped to ``[0, seq_len]``
  and the position ``seq_len`` (outside the sequence) is ignored: ``(CE(start) + CE(end)) / 2``.
- **Causal LM**: ``logits[:, :-1]`` against ``labels[:, 1:]`` (the shift happens inside).
- **Packed rows** (``segment_ids``): per-sequence heads give one logits row per sequence and
  take one label per sequence; per-token heads take labels in the packed layout (padding -100).
  Either way the loss is the same mean as over the padded batch of the same sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import XLMRobertaConfig
from .heads import HEADS, Head
from .inputs import ArrayInfo

IGNORE_INDEX = -100

#: The loss of a batch whose targets are all ignored (with a zero gradient).
ALL_IGNORED_LOSS = 0.0

#: Whether an inferred ``problem_type`` is stored on the config (HF PyTorch's behaviour).
WRITE_BACK_PROBLEM_TYPE = True

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass(frozen=True)
class LossSpec:
    """What one loss kind computes.

    Attributes:
        kind: The loss kind (``Head.loss``).
        label_args: Call arguments that carry the targets, in order.
        shift: Compare ``logits[:, :-1]`` with ``labels[:, 1:]`` (causal LM).
        class_axis: Name of the config field giving the number of classes of a cross entropy
            (``vocab_size``, ``num_labels``), or None when the logits' last axis gives it.
        label_rank: Rank of the labels relative to ``input_ids`` of rank 2 (2: per token, 1: per
            sequence), or None when the problem type decides it.
    """

    kind: str
    label_args: tuple[str, ...]
    shift: bool = False
    class_axis: str | None = None
    label_rank: int | None = None


LOSS_SPECS: dict[str, LossSpec] = {
    "causal_lm": LossSpec("causal_lm", ("labels",), shift=True, class_axis="vocab_size", label_rank=2),
    "masked_lm": LossSpec("masked_lm", ("labels",), class_axis="vocab_size", label_rank=2),
    "sequence_classification": LossSpec("sequence_classification", ("labels",), class_axis="num_labels"),
    "multiple_choice": LossSpec("multiple_choice", ("labels",), label_rank=1),
    "token_classification": LossSpec(
        "token_classification", ("labels",), class_axis="num_labels", label_rank=2
    ),
    "span": LossSpec("span", ("start_positions", "end_positions"), label_rank=1),
}


def loss_spec(head: Head | str) -> LossSpec:
    """The :class:`LossSpec` of ``head`` (a :class:`Head` or its name); ValueError when it has no loss."""
    head = HEADS[head] if isinstance(head, str) else head
    if head.loss is None:
        raise ValueError(f"the {head.name} head has no loss")
    return LOSS_SPECS[head.loss]


def problem_type(config: XLMRobertaConfig, labels_kind: str, *, write_back: bool = True) -> str:
    """The sequence-classification problem type for labels of numpy dtype kind ``labels_kind``.

    Args:
        config: The model configuration; its ``problem_type`` wins when set.
        labels_kind: ``np.dtype(...).kind`` of the labels (``"i"``, ``"u"``, ``"f"``, ``"b"``).
        write_back: Store an inferred type on ``config`` (:data:`WRITE_BACK_PROBLEM_TYPE`).
    """
    if config.problem_type is not None:
        if config.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"config.problem_type={config.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}"
            )
        return config.problem_type
    if config.num_labels == 1:
        inferred = "regression"
    elif labels_kind in "iu":
        inferred = "single_label_classification"
    else:
        inferred = "multi_label_classification"
    if write_back and WRITE_BACK_PROBLEM_TYPE:
        config.problem_type = inferred
    return inferred


def span_ignored_index(seq_len: int) -> int:
    """Span positions are clamped to ``[0, seq_len]``; the clamped value ``seq_len`` is ignored."""
    return seq_len


def num_classes(spec: LossSpec, config: XLMRobertaConfig, logits_shape: tuple[int | None, ...]) -> int | None:
    """Number of classes a cross entropy of ``spec`` ranges over (None when unknown)."""
    if spec.class_axis is not None:
        return int(getattr(config, spec.class_axis))
    return logits_shape[-1] if logits_shape else None


def check_labels(
    head: Head | str,
    config: XLMRobertaConfig,
    labels: Mapping[str, Any],
    *,
    batch: int | None,
    seq: int | None,
    num_choices: int | None = None,
    segment_ids: Any = None,
) -> None:
    """Refuse labels that cannot be this head's targets, with one set of error texts.

    ``labels`` maps each of the head's ``label_args`` to an :class:`xlmr.inputs.ArrayInfo`
    (shape, dtype kind and, when concrete, values). Checks shapes against the inputs and, where
    values are concrete, class ids against ``[0, num_classes)`` (``IGNORE_INDEX`` allowed).

    Args:
        head: The head (or its name).
        config: The model configuration.
        labels: ``{label arg: ArrayInfo}``; a missing arg is an error naming it.
        batch: Rows of the (flattened for multiple choice: original) batch, None when unknown.
        seq: Sequence length of the inputs, None when unknown.
        num_choices: Choices per example (multiple choice).
        segment_ids: ``ArrayInfo`` of the call's ``segment_ids`` (packed rows), or None. Then
            per-sequence heads take single-label class ids in (batch, seq) *slots* (slot
            ``[b, k - 1]`` = sequence ``k``, ``IGNORE_INDEX`` in the slots past a row's last
            sequence), per-token heads labels in the packed layout, and span heads refuse.
    """
    head = HEADS[head] if isinstance(head, str) else head
    spec = loss_spec(head)
    present = [name for name in spec.label_args if labels.get(name) is not None]
    if present and len(present) != len(spec.label_args):
        missing = [n for n in spec.label_args if n not in present]
        raise ValueError(
            f"the {head.name} loss needs {' and '.join(spec.label_args)}; {', '.join(missing)} is missing"
        )
    if segment_ids is not None and present:
        if head.per_sequence:
            labels = {name: _slot_labels(head, config, name, labels[name], batch, seq, segment_ids)
                      for name in present}  # fmt: skip
            batch = None
        elif spec.label_rank == 1:
            raise ValueError(
                f"the {head.name} loss does not take packed rows (segment_ids): "
                f"its {' and '.join(spec.label_args)} index whole rows"
            )
    rows = batch
    for name in spec.label_args:
        info = labels.get(name)
        if info is None:
            continue
        shape = info.shape
        if spec.kind == "sequence_classification":
            ptype = problem_type(config, info.kind, write_back=False)
            if ptype == "single_label_classification":
                _expect_shape(name, shape, ((rows,), (rows, 1)), head)
                _expect_integer(name, info, head)
                _check_classes(name, info, config.num_labels)
            elif ptype == "multi_label_classification":
                _expect_shape(name, shape, ((rows, config.num_labels),), head)
            else:
                allowed = ((rows,), (rows, 1)) if config.num_labels == 1 else ((rows, config.num_labels),)
                _expect_shape(name, shape, allowed, head)
            continue
        _expect_integer(name, info, head)
        if spec.label_rank == 2:
            _expect_shape(name, shape, ((rows, seq),), head)
        else:
            _expect_shape(name, shape, ((rows,), (rows, 1)), head)
        if spec.kind == "span":
            continue  # positions are clamped, never out of range
        n = num_choices if spec.kind == "multiple_choice" else num_classes(spec, config, ())
        if n is not None:
            _check_classes(name, info, n)


def _slot_labels(head: Head, config: XLMRobertaConfig, name: str, info: Any, batch, seq, segment_ids) -> Any:
    """Packed per-sequence labels: one class id per (batch, seq) slot -> a flat (batch * seq,) view."""
    ptype = problem_type(config, info.kind, write_back=False)
    if ptype != "single_label_classification":
        raise ValueError(
            f"packed rows (segment_ids) take single-label classification only (one class id per "
            f"sequence slot); this call is {ptype} (config.problem_type, num_labels or float labels)"
        )
    want = (batch, seq)
    if len(info.shape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(info.shape, want)
    ):
        raise ValueError(
            f"{name} has shape {tuple(info.shape)}; with segment_ids the {head.name} head expects one "
            f"label per sequence slot, shape (batch, seq) = {want}, {IGNORE_INDEX} in the slots past each "
            "row's last sequence"
        )
    values = info.values
    if values is not None:
        values = np.asarray(values)
        seg = segment_ids.values
        if seg is not None:
            empty = np.asarray(seg).max(axis=-1, keepdims=True) <= np.arange(np.shape(seg)[-1])
            stray = values[empty & (values != IGNORE_INDEX)]
            if stray.size:
                raise ValueError(
                    f"{name} holds {int(stray[0])} in a slot past its row's last packed sequence; "
                    f"empty slots take {IGNORE_INDEX}"
                )
        values = values.reshape(-1)
    size = None if None in info.shape else info.shape[0] * info.shape[1]
    return ArrayInfo((size,), info.kind, values)


def _expect_shape(name: str, shape: tuple, allowed: tuple[tuple, ...], head: Head) -> None:
    def fits(want: tuple) -> bool:
        return len(shape) == len(want) and all(
            w is None or s is None or s == w for s, w in zip(shape, want, strict=True)
        )

    if not any(fits(want) for want in allowed):
        wanted = " or ".join(str(tuple("?" if d is None else d for d in want)) for want in allowed)
        raise ValueError(f"{name} has shape {tuple(shape)}; the {head.name} head expects {wanted}")


def _expect_integer(name: str, info: Any, head: Head) -> None:
    if info.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class ids for the {head.name} loss, got dtype kind {info.kind!r}"
        )


def _check_classes(name: str, info: Any, n: int) -> None:
    values = info.values
    if values is None or not np.size(values):
        return
    values = np.asarray(values)
    bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= n))]
    if bad.size:
        raise ValueError(
            f"{name} contain {int(bad.flat[0])}, outside [0, {n}) (use {IGNORE_INDEX} to ignore a position)"
        )
