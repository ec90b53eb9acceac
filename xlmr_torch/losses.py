"""The head losses in PyTorch: only the tensor arithmetic of :mod:`xlmr.losses`.

:mod:`xlmr.losses` decides what each head computes (ignore index, reduction, the all-ignored
policy, problem types, span clamping); this module computes it. :func:`head_loss` is the one entry
point, with the same name and signature in the three backends. The model classes check the labels
(``xlmr.losses.check_labels``) before they call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head
from xlmr.losses import IGNORE_INDEX, loss_spec, problem_type, span_ignored_index


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross entropy over the targets that are not ``ignore_index``, in float32.

    ``logits`` (..., classes), ``labels`` (...). The sum over the kept targets is divided by
    ``max(count, 1)``: a batch whose targets are all ignored has loss 0 and a zero gradient
    (``xlmr.losses.ALL_IGNORED_LOSS``).
    """
    labels = labels.to(logits.device).reshape(-1)
    total = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels, ignore_index=ignore_index, reduction="sum"
    )
    count = (labels != ignore_index).sum().clamp(min=1)
    return total / count


def _kind(labels: torch.Tensor) -> str:
    """numpy's dtype kind of ``labels`` (what :func:`xlmr.losses.problem_type` reads)."""
    dtype = labels.dtype
    if dtype.is_floating_point or dtype.is_complex:
        return "f"
    if dtype == torch.bool:
        return "b"
    return "i" if dtype.is_signed else "u"


def _sequence_classification(
    config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    ptype = problem_type(config, _kind(labels))
    labels = labels.to(logits.device)
    if ptype == "single_label_classification":
        return cross_entropy(logits, labels)
    if ptype == "regression":
        logits, target = logits.float(), labels.float()
        if config.num_labels == 1:
            return F.mse_loss(logits.squeeze(), target.squeeze())
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def head_loss(
    head: Head, config: XLMRobertaConfig, predictions: Any, labels: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The loss of ``head`` as :mod:`xlmr.losses` specifies it, as a float32 scalar.

    Args:
        head: The head (its ``loss`` kind).
        config: The model configuration (``problem_type`` is inferred and written back here).
        predictions: The logits, or the ``(start_logits, end_logits)`` pair of a span head.
        labels: The head's label arguments (``loss_spec(head).label_args``) -> tensors.
    """
    spec = loss_spec(head)
    if spec.kind == "span":
        start_logits, end_logits = predictions  # (batch, seq) each
        ignored = span_ignored_index(start_logits.shape[1])
        start, end = (labels[name].reshape(-1).clamp(0, ignored) for name in spec.label_args)
        return (cross_entropy(start_logits, start, ignored) + cross_entropy(end_logits, end, ignored)) / 2
    (target,) = (labels[name] for name in spec.label_args)
    if spec.kind == "sequence_classification":
        return _sequence_classification(config, predictions, target)
    if spec.shift:
        predictions, target = predictions[:, :-1], target[:, 1:]
    return cross_entropy(predictions, target)
