"""The head losses in JAX: only the tensor arithmetic of :mod:`xlmr.losses`, which decides the rest.

What each head's loss is (ignore index, reduction, all-ignored batches, problem types, span
clamping, the causal shift, packed rows) is specified once, in :mod:`xlmr.losses`;
:func:`head_loss` computes it. HF's Flax classes take no labels, and neither do ours: compute a
loss from the outputs with :func:`loss_fn` (labels checked first with
:func:`xlmr.losses.check_labels`), or run the model and the loss together with
:func:`compute_loss` (what the train step in ``training.py`` differentiates).

Under ``jax.jit`` label values cannot be checked on the host: a class id outside
``[0, num_classes)`` that is not ignored makes the loss NaN (:func:`cross_entropy`), never a
finite number. :func:`xlmr_flax.training.make_train_step` checks them and raises.
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
from xlmr.inputs import INPUT_NAMES, ArrayInfo
from xlmr.losses import IGNORE_INDEX, check_labels, loss_spec, problem_type, span_ignored_index

from .modeling import array_info

#: Model call arguments (everything else in a batch is a label or ignored).
MODEL_INPUTS = tuple(name for name in INPUT_NAMES if name != "inputs_embeds")


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """Mean softmax cross entropy over the labels that are not ``ignore_index`` (float32).

    The sum over counted targets divided by ``max(count, 1)``: 0.0 with a zero gradient when every
    target is ignored. A target outside ``[0, num_classes)`` that is not ignored makes the result
    NaN (what ``jax.jit`` gives instead of an error).

    Args:
        logits: (..., num_classes) scores (upcast to float32).
        labels: (...) integer class ids.
        ignore_index: Label value that contributes nothing.
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    valid = labels != ignore_index
    out_of_range = valid & ((labels < 0) | (labels >= logits.shape[-1]))
    safe = jnp.where(valid & ~out_of_range, labels, 0).astype(jnp.int32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    total = jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    return jnp.where(jnp.any(out_of_range), jnp.nan, total)


def head_loss(head: Head, config: XLMRobertaConfig, predictions: Any, labels: Mapping[str, Any]) -> jax.Array:
    """The scalar loss of ``head`` as :data:`xlmr.losses.LOSS_SPECS` defines it (float32).

    Args:
        head: The head; its loss spec (:func:`xlmr.losses.loss_spec`) decides the definition.
        config: The model configuration (``num_labels``, ``problem_type``; an inferred problem
            type is written back, :func:`xlmr.losses.problem_type`).
        predictions: The logits, or the ``(start_logits, end_logits)`` pair for spans.
        labels: The head's label arguments (``loss_spec(head).label_args``) -> arrays.
    """
    spec = loss_spec(head)
    if spec.kind == "span":
        start_logits, end_logits = predictions
        ignored = span_ignored_index(start_logits.shape[-1])
        start, end = (jnp.clip(jnp.asarray(labels[n]).reshape(-1), 0, ignored) for n in spec.label_args)
        return (cross_entropy(start_logits, start, ignored) + cross_entropy(end_logits, end, ignored)) / 2
    logits, targets = predictions, jnp.asarray(labels[spec.label_args[0]])
    if spec.shift:
        return cross_entropy(logits[:, :-1], targets[:, 1:])
    if spec.label_rank is not None:  # class ids per token or per example
        return cross_entropy(logits, targets)
    # Sequence classification: the problem type decides.
    kind = problem_type(config, np.dtype(targets.dtype).kind)
    if kind == "single_label_classification":
        # Padded: (batch, num_labels) against (batch,); packed slots: (batch, seq, ...) against (batch, seq).
        return cross_entropy(logits.reshape(-1, config.num_labels), targets.reshape(-1))
    logits, targets = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    if kind == "regression":
        if config.num_labels == 1:
            logits, targets = logits.reshape(-1), targets.reshape(-1)
        return jnp.mean(jnp.square(logits - targets))
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _check(head: Head, config: XLMRobertaConfig, predictions: Any, labels: Mapping[str, Any]) -> None:
    """:func:`xlmr.losses.check_labels` against the predictions' geometry (packed slots flattened)."""
    spec = loss_spec(head)
    missing = [name for name in spec.label_args if labels.get(name) is None]
    if len(missing) == len(spec.label_args):
        raise ValueError(
            f"the {head.name} loss needs {' and '.join(spec.label_args)}; {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing"
        )
    infos = {name: array_info(value) for name, value in labels.items()}
    shape = tuple((predictions[0] if spec.kind == "span" else predictions).shape)
    packed = head.per_sequence and spec.label_rank is None and len(shape) == 3  # logits in (batch, seq) slots
    check_labels(
        head,
        config,
        infos,
        batch=shape[0],
        seq=shape[1] if spec.label_rank == 2 or packed else None,
        num_choices=shape[1] if head.input_rank == 3 else None,
        segment_ids=ArrayInfo(shape[:2], "i") if packed else None,
    )


def loss_fn(head: Head | str, outputs: Any, batch: Mapping, config: XLMRobertaConfig) -> jax.Array:
    """The scalar loss of ``head`` for model ``outputs`` and the labels in ``batch``, labels checked first.

    Args:
        head: Head (or its name / class name); its loss spec decides the definition.
        outputs: The model's outputs (an output object or a dict with the head's
            ``head.prediction`` fields: ``logits``, or ``start_logits`` and ``end_logits``).
        batch: Mapping holding the head's label arguments (``labels``, or ``start_positions``
            and ``end_positions``); anything else in it is ignored.
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
    spec = loss_spec(head)
    fields = tuple(_get(outputs, name) for name in head.prediction)
    predictions = fields if len(fields) > 1 else fields[0]
    labels = {name: batch.get(name) for name in spec.label_args}
    _check(head, config, predictions, labels)
    return head_loss(head, config, predictions, labels)


def split_batch(batch: Mapping) -> tuple[dict, dict]:
    """``(model inputs, the rest)`` of a batch dict.

    Args:
        batch: Model inputs (:data:`MODEL_INPUTS`) plus labels or anything else.
    """
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS and v is not None}
    rest = {k: v for k, v in batch.items() if k not in MODEL_INPUTS}
    return inputs, rest


def compute_loss(
    model: Any,
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
    inputs, rest = split_batch(batch)
    outputs = model(
        **inputs, params=params, dropout_rng=dropout_rng, train=train, return_dict=True, **call_kwargs
    )
    loss = loss_fn(model.head, outputs, rest, model.config)
    outputs["loss"] = loss
    return loss, outputs
