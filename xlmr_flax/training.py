"""Training helpers for the Flax backend: an optax train step and data-parallel training.

The train step is one jitted function::

    step = make_train_step(model, optimizer)
    params, opt_state, loss = step(params, opt_state, batch, dropout_rng)

It runs the model on ``batch`` (inputs plus the head's labels) with dropout from
``dropout_rng`` (pass ``None`` for no dropout), differentiates the head's loss
(:func:`xlmr_flax.losses.compute_loss`) with ``jax.value_and_grad`` and applies the optax
update. Fold the step number into the key so that every step drops out differently::

    rng = jax.random.PRNGKey(0)
    for i, batch in enumerate(batches):
        params, opt_state, loss = step(params, opt_state, batch, jax.random.fold_in(rng, i))

Data parallelism uses ``jax.sharding``: a 1-D :class:`~jax.sharding.Mesh` over the devices
with axis ``"batch"``; parameters and optimizer state are replicated, every batch array is
split along its first axis, and XLA inserts the gradient all-reduce. The loss is the mean over
the global batch, so it equals the single-device loss::

    mesh = make_mesh()                      # all devices
    step = make_data_parallel_train_step(model, optimizer, mesh)
    params, opt_state = replicate((params, opt_state), mesh)
    params, opt_state, loss = step(params, opt_state, shard_batch(batch, mesh), rng)

On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing jax)
gives two devices to try this with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .losses import compute_loss

BATCH_AXIS = "batch"

TrainStep = Callable[[Any, Any, Mapping, Any], tuple[Any, Any, jax.Array]]


def decay_mask(params: Mapping) -> Any:
    """Weight-decay mask as in HF's Flax examples: no decay for biases and LayerNorm scales."""

    def visit(tree: Mapping, parent: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            if isinstance(value, Mapping):
                out[key] = visit(value, key)
            else:
                out[key] = not (key == "bias" or (key == "scale" and parent in ("LayerNorm", "layer_norm")))
        return out

    return visit(params)


def create_optimizer(
    learning_rate: float | optax.Schedule = 5e-5,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    max_grad_norm: float | None = None,
) -> optax.GradientTransformation:
    """``optax.adamw`` (PyTorch AdamW's defaults) with the usual decay mask, optionally clipping gradients.

    Args:
        learning_rate: A float or an optax schedule.
        weight_decay: Decoupled weight decay (not applied to biases and LayerNorm scales).
        b1, b2, eps: Adam's moments and epsilon.
        max_grad_norm: Clip the global gradient norm to this value first.
    """
    adamw = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
    if max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)


def _step_fn(model, optimizer: optax.GradientTransformation) -> TrainStep:
    def train_step(params, opt_state, batch, dropout_rng):
        def loss_of(p):
            loss, _ = compute_loss(
                model, batch, params=p, dropout_rng=dropout_rng, train=dropout_rng is not None
            )
            return loss

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def make_train_step(model, optimizer: optax.GradientTransformation, donate: bool = False) -> TrainStep:
    """A jitted ``(params, opt_state, batch, dropout_rng) -> (params, opt_state, loss)``.

    Args:
        model: A Flax XLM-R model; its head decides the loss (``xlmr_flax.losses``).
        optimizer: An optax transformation (e.g. :func:`create_optimizer`); ``opt_state =
            optimizer.init(params)``.
        donate: Donate the old params and optimizer state buffers (saves memory on accelerators).

    Example:
        >>> import jax, numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForSequenceClassification
        >>> from xlmr_flax.training import create_optimizer, make_train_step
        >>> model = FlaxXLMRobertaForSequenceClassification(XLMRobertaConfig(
        ...     vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20))
        >>> optimizer = create_optimizer(1e-3)
        >>> params, opt_state = model.params, optimizer.init(model.params)
        >>> batch = {"input_ids": np.array([[0, 5, 2]]), "labels": np.array([1])}
        >>> params, opt_state, loss = make_train_step(model, optimizer)(params, opt_state, batch,
        ...                                                              jax.random.PRNGKey(0))
    """
    return jax.jit(_step_fn(model, optimizer), donate_argnums=(0, 1) if donate else ())


def make_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = BATCH_AXIS) -> Mesh:
    """A 1-D device mesh for data parallelism (all devices by default)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.array(devices), (axis_name,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of ``tree`` on all devices of ``mesh`` (replicated)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: Mapping, mesh: Mesh, axis_name: str = BATCH_AXIS) -> dict:
    """Split every array of ``batch`` along its first (batch) axis across the mesh's devices.

    Raises:
        ValueError: naming the array whose batch size the device count does not divide.
    """
    n = mesh.shape[axis_name]
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    out = {}
    for key, value in batch.items():
        if value is None:
            continue
        size = np.shape(value)[0] if np.ndim(value) else None
        if size is None or size % n:
            raise ValueError(f"batch[{key!r}] has batch size {size}, which {n} devices cannot split evenly")
        out[key] = jax.device_put(jnp.asarray(value), sharding)
    return out


def make_data_parallel_train_step(
    model,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    axis_name: str = BATCH_AXIS,
    donate: bool = False,
) -> TrainStep:
    """The train step of :func:`make_train_step`, jitted for data parallelism over ``mesh``.

    Params, optimizer state and the dropout key are replicated; the batch is sharded along
    ``axis_name`` (use :func:`shard_batch`); the returned params, state and loss are replicated.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    data = NamedSharding(mesh, PartitionSpec(axis_name))
    return jax.jit(
        _step_fn(model, optimizer),
        in_shardings=(replicated, replicated, data, replicated),
        out_shardings=(replicated, replicated, replicated),
        donate_argnums=(0, 1) if donate else (),
    )
