"""The head losses in JAX/optax, as HF's PyTorch classes define them (``xlmr.heads.LOSSES``).

HF's Flax classes take no labels, and neither do ours: compute a loss from the outputs with
:func:`loss_fn`, or run the model and the loss together with :func:`compute_loss` (what the
train step in ``training.py`` differentiates).

Definitions (all means over the counted elements, computed in float32):

- ``causal_lm``: cross entropy of ``logits[:, :-1]`` against ``labels[:, 1:]``, ignoring -100.
- ``masked_lm`` / ``token_classification``: cross entropy over all positions, ignoring -100.
- ``sequence_classification``: by ``config.problem_type``; when None, ``num_labels == 1`` ->
  regression (MSE), integer labels -> single-label (cross entropy), else multi-label (BCE with logits).
- ``multiple_choice``: cross entropy over the choices.
- ``span``: ``(CE(start) + CE(end)) / 2``, positions clamped to ``[0, seq_len]``, ``seq_len`` ignored.

One difference from PyTorch: a batch in which every label is ignored has loss 0 (PyTorch gives NaN),
so that a train step never turns the parameters into NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head, get_head

IGNORE_INDEX = -100

#: Model call arguments (everything else in a batch is a label or ignored).
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "head_mask",
    "encoder_hidden_states",
    "encoder_attention_mask",
)


def _check_class_labels(labels: Any, num_classes: int, ignore_index: int, name: str) -> None:
    """On concrete labels, refuse class ids outside [0, num_classes) that are not ignored."""
    if isinstance(labels, jax.core.Tracer):
        return
    lab = np.asarray(labels)
    bad = lab[(lab != ignore_index) & ((lab < 0) | (lab >= num_classes))]
    if bad.size:
        raise ValueError(
            f"{name} contain {int(bad.flat[0])}, outside [0, {num_classes}) (use {ignore_index} to ignore a position)"
        )


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """Mean softmax cross entropy over the labels that are not ``ignore_index``.

    Args:
        logits: (..., num_classes) scores (upcast to float32).
        labels: (...) integer class ids.
        ignore_index: Label value that contributes nothing.
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    valid = labels != ignore_index
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    count = jnp.sum(valid)
    return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.maximum(count, 1).astype(jnp.float32)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error (float32)."""
    return jnp.mean(jnp.square(jnp.asarray(predictions, jnp.float32) - jnp.asarray(targets, jnp.float32)))


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean binary cross entropy on logits (PyTorch's ``BCEWithLogitsLoss``)."""
    logits = jnp.asarray(logits, jnp.float32)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(targets, jnp.float32)))


def problem_type(config: XLMRobertaConfig, labels: Any) -> str:
    """The sequence-classification problem type: the config's, or inferred from the labels as HF does."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        return "single_label_classification"
    return "multi_label_classification"


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _labels(batch: Mapping, name: str, head: Head) -> Any:
    value = batch.get(name)
    if value is None:
        raise ValueError(
            f"the {head.name} loss needs {' and '.join(head.label_args)} in the batch; {name} is missing"
        )
    return value


def loss_fn(head: Head | str, outputs: Any, batch: Mapping, config: XLMRobertaConfig) -> jax.Array:
    """The scalar loss of ``head`` for model ``outputs`` and the labels in ``batch``.

    Args:
        head: Head (or its name / class name); its ``loss`` kind decides the definition.
        outputs: The model's outputs (an output object or a dict with ``logits`` /
            ``start_logits`` and ``end_logits``).
        batch: Mapping holding the head's ``label_args`` (``labels``, or
            ``start_positions`` and ``end_positions``).
        config: The model configuration (``num_labels``, ``problem_type``, ``vocab_size``).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax.losses import loss_fn
        >>> logits = np.zeros((1, 2, 4), np.float32)
        >>> round(float(loss_fn("token_classification", {"logits": logits},
        ...                     {"labels": np.array([[1, -100]])}, XLMRobertaConfig(num_labels=4))), 4)
        1.3863
    """
    head = get_head(head) if isinstance(head, str) else head
    kind = head.loss
    if kind is None:
        raise ValueError(f"the {head.name} head has no loss")
    if kind == "span":
        start_logits, end_logits = _get(outputs, "start_logits"), _get(outputs, "end_logits")
        start, end = _labels(batch, "start_positions", head), _labels(batch, "end_positions", head)
        start, end = jnp.asarray(start), jnp.asarray(end)
        if start.ndim > 1:
            start = start.squeeze(-1)
        if end.ndim > 1:
            end = end.squeeze(-1)
        ignored = start_logits.shape[1]
        start = jnp.clip(start, 0, ignored)
        end = jnp.clip(end, 0, ignored)
        return (cross_entropy(start_logits, start, ignored) + cross_entropy(end_logits, end, ignored)) / 2

    logits = _get(outputs, "logits")
    labels = _labels(batch, "labels", head)
    if kind == "causal_lm":
        _check_class_labels(labels, logits.shape[-1], IGNORE_INDEX, "labels")
        labels = jnp.asarray(labels)
        return cross_entropy(logits[:, :-1], labels[:, 1:])
    if kind in ("masked_lm", "token_classification", "multiple_choice"):
        _check_class_labels(labels, logits.shape[-1], IGNORE_INDEX, "labels")
        return cross_entropy(logits, labels)
    if kind == "sequence_classification":
        ptype = problem_type(config, labels)
        labels = jnp.asarray(labels)
        if ptype == "regression":
            if config.num_labels == 1:
                return mse(jnp.squeeze(logits), jnp.squeeze(labels))
            return mse(logits, labels)
        if ptype == "single_label_classification":
            _check_class_labels(labels, config.num_labels, IGNORE_INDEX, "labels")
            return cross_entropy(logits.reshape(-1, config.num_labels), labels.reshape(-1))
        return bce_with_logits(logits, labels)
    raise ValueError(f"unknown loss kind {kind!r}")


def split_batch(batch: Mapping) -> tuple[dict, dict]:
    """``(model inputs, the rest)`` of a batch dict."""
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS and v is not None}
    rest = {k: v for k, v in batch.items() if k not in MODEL_INPUTS}
    return inputs, rest


def compute_loss(
    model,
    batch: Mapping,
    params: Mapping | None = None,
    dropout_rng: jax.Array | None = None,
    train: bool = False,
    **call_kwargs: Any,
) -> tuple[jax.Array, Any]:
    """Run ``model`` on ``batch`` and return ``(loss, outputs)``; ``outputs.loss`` is set too.

    Args:
        model: A Flax XLM-R model (its ``head`` decides the loss).
        batch: Model inputs plus the head's labels.
        params: Parameters to differentiate (default ``model.params``).
        dropout_rng: PRNG key for dropout (with ``train=True``).
        train: Apply dropout.
        **call_kwargs: Extra call arguments (``output_hidden_states``...).
    """
    inputs, labels = split_batch(batch)
    outputs = model(
        **inputs, params=params, dropout_rng=dropout_rng, train=train, return_dict=True, **call_kwargs
    )
    loss = loss_fn(model.head, outputs, labels, model.config)
    outputs["loss"] = loss
    return loss, outputs
