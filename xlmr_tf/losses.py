"""The tensor arithmetic of the loss spec (:mod:`xlmr.losses`) in TensorFlow.

:mod:`xlmr.losses` decides what each head computes (ignore index, reduction, the all-ignored
policy, problem types, span clamping, the causal shift); this module only computes it, through
:func:`head_loss`, in float32 whatever the compute dtype (mixed precision).

Under tracing a target outside ``[0, num_classes)`` (other than the ignore index) makes the loss
NaN: XLA drops graph asserts, and a NaN loss is never silent (eager calls raise before, through
:func:`xlmr.losses.check_labels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head
from xlmr.losses import IGNORE_INDEX, loss_spec, problem_type, span_ignored_index


def cross_entropy(logits: tf.Tensor, labels: Any, ignore_index: int | tf.Tensor = IGNORE_INDEX) -> tf.Tensor:
    """Mean cross entropy over the targets that are not ``ignore_index``, in float32.

    ``sum / max(count, 1)``: a batch whose targets are all ignored has loss 0 and a zero gradient.
    A target outside ``[0, num_classes)`` makes the loss NaN.

    Args:
        logits: (..., num_classes) scores.
        labels: (...) integer targets.
        ignore_index: Targets equal to this do not count.
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    logits = tf.reshape(logits, (-1, num_classes))
    labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
    keep = tf.not_equal(labels, ignore_index)
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    safe = tf.where(tf.logical_and(keep, valid), labels, tf.zeros_like(labels))
    per_target = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    weights = tf.cast(keep, tf.float32)
    loss = tf.reduce_sum(per_target * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
    out_of_range = tf.reduce_any(tf.logical_and(keep, tf.logical_not(valid)))
    return tf.where(out_of_range, tf.constant(float("nan"), tf.float32), loss)


def head_loss(head: Head, config: XLMRobertaConfig, predictions: Any, labels: Mapping[str, Any]) -> tf.Tensor:
    """The loss of ``head`` (:data:`xlmr.losses.LOSS_SPECS`) as a float32 scalar.

    Args:
        head: The head whose loss is computed.
        config: The model configuration (``problem_type`` is inferred and written back when None).
        predictions: The logits, or the ``(start_logits, end_logits)`` pair of a span head.
        labels: The head's label arguments (``loss_spec(head).label_args``) -> targets.
    """
    spec = loss_spec(head)
    if spec.kind == "span":
        start_logits, end_logits = predictions
        ignored = span_ignored_index(tf.shape(start_logits)[1])

        def targets(name: str) -> tf.Tensor:
            positions = tf.cast(tf.convert_to_tensor(labels[name]), tf.int32)
            if positions.shape.rank is not None and positions.shape.rank > 1:
                positions = tf.squeeze(positions, axis=-1)
            return tf.clip_by_value(positions, 0, ignored)

        start_name, end_name = spec.label_args
        start = cross_entropy(start_logits, targets(start_name), ignore_index=ignored)
        end = cross_entropy(end_logits, targets(end_name), ignore_index=ignored)
        return (start + end) / 2.0

    target = tf.convert_to_tensor(labels[spec.label_args[0]])
    logits = predictions
    if spec.kind == "sequence_classification":
        kind = problem_type(config, np.dtype(target.dtype.as_numpy_dtype).kind)
        logits = tf.cast(logits, tf.float32)
        if kind == "regression":
            target = tf.cast(target, tf.float32)
            if config.num_labels == 1:
                logits, target = tf.reshape(logits, (-1,)), tf.reshape(target, (-1,))
            return tf.reduce_mean(tf.square(logits - target))
        if kind == "multi_label_classification":
            target = tf.cast(target, tf.float32)
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))
    if spec.shift:
        logits, target = logits[:, :-1], target[:, 1:]
    return cross_entropy(logits, target)
