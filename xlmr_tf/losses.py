"""The head losses, as HF's PyTorch classes define them (see ``xlmr.heads.LOSSES``), in TensorFlow.

Every loss is computed in float32 whatever the compute dtype (mixed precision), returns a
scalar and reduces like ``torch.nn`` (mean over the targets that are not ignored).
"""

from __future__ import annotations

import tensorflow as tf

from xlmr.config import XLMRobertaConfig

IGNORE_INDEX = -100


def cross_entropy(logits, labels, ignore_index: int = IGNORE_INDEX):
    """``torch.nn.CrossEntropyLoss(ignore_index=...)``: mean over the targets != ignore_index.

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
    safe = tf.where(keep, labels, tf.zeros_like(labels))
    per_target = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    weights = tf.cast(keep, tf.float32)
    return tf.reduce_sum(per_target * weights) / tf.reduce_sum(weights)


def causal_lm_loss(labels, logits):
    """Next-token prediction: logits[:, :-1] against labels[:, 1:], -100 ignored."""
    return cross_entropy(logits[:, :-1], labels[:, 1:])


def masked_lm_loss(labels, logits):
    """Cross entropy over all positions, -100 ignored."""
    return cross_entropy(logits, labels)


def token_classification_loss(labels, logits):
    """Cross entropy over all tokens, -100 ignored."""
    return cross_entropy(logits, labels)


def multiple_choice_loss(labels, logits):
    """Cross entropy over the choices; logits are (batch, num_choices)."""
    return cross_entropy(logits, labels)


def problem_type(config: XLMRobertaConfig, labels) -> str:
    """``config.problem_type``, or HF's inference when it is None (without writing it into the config)."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if tf.as_dtype(labels.dtype).is_integer:
        return "single_label_classification"
    return "multi_label_classification"


def sequence_classification_loss(labels, logits, config: XLMRobertaConfig):
    """MSE (regression), cross entropy (single label) or BCE with logits (multi label), as HF picks them."""
    labels = tf.convert_to_tensor(labels)
    logits = tf.cast(logits, tf.float32)
    kind = problem_type(config, labels)
    if kind == "regression":
        labels = tf.cast(labels, tf.float32)
        if config.num_labels == 1:
            logits, labels = tf.squeeze(logits), tf.squeeze(labels)
        return tf.reduce_mean(tf.square(logits - labels))
    if kind == "single_label_classification":
        return cross_entropy(logits, labels)
    labels = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def span_loss(start_positions, end_positions, start_logits, end_logits):
    """(CE(start) + CE(end)) / 2 with positions clamped to [0, seq_len] and seq_len ignored."""
    seq_len = tf.shape(start_logits)[1]

    def prepare(positions):
        positions = tf.cast(tf.convert_to_tensor(positions), tf.int32)
        if positions.shape.rank is not None and positions.shape.rank > 1:
            positions = tf.squeeze(positions, axis=-1)
        return tf.clip_by_value(positions, 0, seq_len)

    start = cross_entropy(start_logits, prepare(start_positions), ignore_index=seq_len)
    end = cross_entropy(end_logits, prepare(end_positions), ignore_index=seq_len)
    return (start + end) / 2.0
