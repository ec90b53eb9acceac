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

With a trainable LoRA adapter attached (``model.add_adapter(...)``, see :mod:`xlmr_flax.adapters`)
the step trains the adapter alone: pass ``model.adapter_params`` (and ``optimizer.init`` of it) as
``params``; the base parameters are read from ``model.params`` and never change::

    adapter, opt_state = model.adapter_params, optimizer.init(model.adapter_params)
    adapter, opt_state, loss = step(adapter, opt_state, batch, rng)

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

Packed batches (``segment_ids``, see ``FlaxXLMRobertaModel.__call__``) train sequence and token
classification as they are: labels in the (batch, seq) slots / the packed layout, -100 elsewhere;
loss and gradients equal those of the padded batch of the same sequences.

Out-of-range values are never silent, per path:

- the train steps (``check=True``, the default): *checked*. The values that only a concrete
  array shows -- token ids, token types, position ids, packed sequence lengths, class labels --
  are checked inside the compiled step with ``jax.experimental.checkify``; after the step the
  first failed check raises ``checkify.JaxRuntimeError`` (a ``ValueError``) with the text the
  eager checker (:mod:`xlmr.inputs`, :mod:`xlmr.losses`) gives, and the caller's parameters are
  not replaced (with ``donate=True`` the donated buffers are gone all the same). Reading the
  error waits for the step to finish;
- ``check=False``, and your own ``jax.jit`` of the model or of :func:`xlmr_flax.losses.loss_fn`:
  *poisoned*. Rows holding an out-of-range id come out NaN, an out-of-range label makes the loss
  NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import checkify, multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xlmr.config import XLMRobertaConfig
from xlmr.distributed import ADAM_EPS, ProcessEnv, TrainingResult, TrainingRun, local_batch
from xlmr.inputs import max_sequence_length
from xlmr.losses import IGNORE_INDEX, loss_spec, num_classes, problem_type
from xlmr.protocols import PretrainedModel

from .adapters import combine
from .losses import compute_loss
from .modeling import create_position_ids_from_input_ids

BATCH_AXIS = "batch"

TrainStep = Callable[[Any, Any, Mapping, Any], tuple[Any, Any, jax.Array]]


def decay_mask(params: Mapping) -> Any:
    """Weight-decay mask as in HF's Flax examples: no decay for biases and LayerNorm scales.

    Args:
        params: A parameter tree.
    """

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


# -- checks inside the compiled step ------------------------------------------------------------
def _check_range(name: str, values: jax.Array, high: int, what: str, noun: str = "") -> None:
    """checkify twin of the eager range check of :mod:`xlmr.inputs` (same text)."""
    low, top = jnp.min(values), jnp.max(values)
    text = f"{name} holds {noun}{{bad}}, outside [0, {what}={high})"
    if noun:
        text += " (largest {top}, smallest {low})"
    checkify.check((low >= 0) & (top < high), text, bad=jnp.where(top >= high, top, low), top=top, low=low)


def _check_classes(name: str, labels: jax.Array, n: int) -> None:
    """checkify twin of :func:`xlmr.losses.check_labels`' class-id check (same text)."""
    flat = jnp.ravel(labels)
    bad = (flat != IGNORE_INDEX) & ((flat < 0) | (flat >= n))
    checkify.check(
        ~jnp.any(bad),
        f"{name} contain {{bad}}, outside [0, {n}) (use {IGNORE_INDEX} to ignore a position)",
        bad=flat[jnp.argmax(bad)],
    )


def _check_packed_lengths(config: XLMRobertaConfig, input_ids: jax.Array, segment_ids: jax.Array) -> None:
    """checkify twin of the eager check that every packed sequence fits the position table."""
    count = create_position_ids_from_input_ids(input_ids, config.pad_token_id, 0, segment_ids)
    count = jnp.ravel(count - config.pad_token_id)  # tokens into each sequence so far
    where = jnp.argmax(count)  # the last token of the first longest sequence
    limit = max_sequence_length(config)
    checkify.check(
        count[where] <= limit,
        "segment_ids row {row} packs sequence {k} of {n} tokens, longer than "
        f"max_position_embeddings - padding_idx - 1 = {limit}",
        row=where // input_ids.shape[-1],
        k=jnp.ravel(segment_ids)[where],
        n=count[where],
    )


def _check_values(model: PretrainedModel, batch: Mapping) -> None:
    """Check, inside the compiled step, the values that :mod:`xlmr.inputs` and
    :mod:`xlmr.losses` check eagerly (token ids, token types, positions, packed lengths, labels)."""
    config, head = model.config, model.head
    ids = jnp.asarray(batch["input_ids"])
    _check_range("input_ids", ids, config.vocab_size, "vocab_size", noun="token id ")
    if batch.get("token_type_ids") is not None:
        types = jnp.asarray(batch["token_type_ids"])
        _check_range("token_type_ids", types, config.type_vocab_size, "type_vocab_size")
    if config.position_embedding_type == "absolute":
        if batch.get("position_ids") is not None:
            positions = jnp.asarray(batch["position_ids"])
            _check_range("position_ids", positions, config.max_position_embeddings, "max_position_embeddings")
        elif batch.get("segment_ids") is not None:
            _check_packed_lengths(config, ids, jnp.asarray(batch["segment_ids"]))
    spec = loss_spec(head)
    for name in spec.label_args:
        if batch.get(name) is None:
            continue  # the loss names what is missing
        labels = jnp.asarray(batch[name])
        if spec.kind == "span" or (
            spec.label_rank is None
            and problem_type(config, np.dtype(labels.dtype).kind, write_back=False)
            != "single_label_classification"
        ):
            continue  # clamped positions, float targets: no range
        _check_classes(name, labels, num_classes(spec, config, ids.shape[:2]))


# -- the train steps ---------------------------------------------------------------------------
def _step_fn(model: PretrainedModel, optimizer: optax.GradientTransformation, check: bool) -> Callable:
    def train_step(params, opt_state, batch, dropout_rng, frozen=None):
        if check:
            _check_values(model, batch)

        def loss_of(p):
            # With an adapter (frozen: the base params), p is the adapter tree alone: only it is
            # differentiated and updated, the base is read and never changes.
            full = p if frozen is None else combine(frozen, p)
            loss, _ = compute_loss(
                model, batch, params=full, dropout_rng=dropout_rng, train=dropout_rng is not None
            )
            return loss

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


class _CheckedStep:
    """A jitted train step: runs it (with the frozen base params when an adapter is trained), then
    raises its first failed check (``checkify``-ed steps).

    Attributes of the jitted function (``lower``, ``_cache_size``...) are reachable through it.
    """

    def __init__(
        self, jitted: Callable, checked: bool = True, frozen: Callable[[], Any] | None = None
    ) -> None:
        self._jitted = jitted
        self._checked = checked
        self._frozen = frozen

    def __call__(
        self, params: Any, opt_state: Any, batch: Mapping, dropout_rng: Any
    ) -> tuple[Any, Any, jax.Array]:
        extra = () if self._frozen is None else (self._frozen(),)
        out = self._jitted(params, opt_state, batch, dropout_rng, *extra)
        if not self._checked:
            return out
        error, result = out
        error.throw()
        return result

    def __getattr__(self, name: str) -> Any:
        if name == "_jitted":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._jitted, name)


def _compile(
    model: PretrainedModel,
    optimizer: optax.GradientTransformation,
    check: bool,
    donate: bool,
    **jit_kwargs: Any,
) -> TrainStep:
    step = _step_fn(model, optimizer, check)
    donate_argnums = (0, 1) if donate else ()
    adapter = model._trained_adapter() if hasattr(model, "_trained_adapter") else None
    frozen = None
    if adapter is not None:  # train the adapter tree; the base params come as a fifth argument
        frozen = lambda: model.params  # noqa: E731 -- read at every call: the model's current base
        if "in_shardings" in jit_kwargs:
            jit_kwargs["in_shardings"] = (*jit_kwargs["in_shardings"], jit_kwargs["in_shardings"][0])
    if not check:
        jitted = jax.jit(step, donate_argnums=donate_argnums, **jit_kwargs)
        return jitted if frozen is None else _CheckedStep(jitted, checked=False, frozen=frozen)
    if "out_shardings" in jit_kwargs:  # the error comes first, replicated like the rest
        jit_kwargs["out_shardings"] = (jit_kwargs["in_shardings"][0], jit_kwargs["out_shardings"])
    checked = checkify.checkify(step, errors=checkify.user_checks)
    return _CheckedStep(jax.jit(checked, donate_argnums=donate_argnums, **jit_kwargs), frozen=frozen)


def make_train_step(
    model: PretrainedModel, optimizer: optax.GradientTransformation, donate: bool = False, check: bool = True
) -> TrainStep:
    """A jitted ``(params, opt_state, batch, dropout_rng) -> (params, opt_state, loss)``.

    With a trainable LoRA adapter attached and enabled (``model.add_adapter(...)``, or
    ``load_adapter(..., is_trainable=True)``, see :mod:`xlmr_flax.adapters`), the step trains the
    adapter alone: ``params`` is the adapter tree (``model.adapter_params``: LoRA leaves and
    ``modules_to_save`` copies), ``opt_state = optimizer.init(model.adapter_params)``, and the
    frozen base is read from ``model.params`` at every call -- never differentiated, never
    updated, never held in the optimizer state.

    Args:
        model: A Flax XLM-R model; its head decides the loss (``xlmr_flax.losses``).
        optimizer: An optax transformation (e.g. :func:`create_optimizer`); ``opt_state =
            optimizer.init(params)``.
        donate: Donate the old params and optimizer state buffers (saves memory on accelerators).
        check: Check token ids, token types, positions and labels inside the step and raise on
            the first bad one (see the module docstring); ``False`` skips the checks and the wait
            for their result, and out-of-range values make the loss NaN instead.

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
    return _compile(model, optimizer, check, donate)


def make_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = BATCH_AXIS) -> Mesh:
    """A 1-D device mesh for data parallelism (all devices by default).

    Args:
        devices: The devices (default ``jax.devices()``).
        axis_name: Name of the mesh axis.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.array(devices), (axis_name,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of ``tree`` on all devices of ``mesh`` (replicated).

    Args:
        tree: A pytree of arrays (params, optimizer state).
        mesh: The device mesh.
    """
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: Mapping, mesh: Mesh, axis_name: str = BATCH_AXIS) -> dict:
    """Split every array of ``batch`` along its first (batch) axis across the mesh's devices.

    Args:
        batch: Dict of arrays (inputs, ``segment_ids``, labels).
        mesh: The device mesh.
        axis_name: The mesh axis to split over.

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
    model: PretrainedModel,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    axis_name: str = BATCH_AXIS,
    donate: bool = False,
    check: bool = True,
) -> TrainStep:
    """The train step of :func:`make_train_step`, jitted for data parallelism over ``mesh``.

    Params, optimizer state and the dropout key are replicated; the batch is sharded along
    ``axis_name`` (use :func:`shard_batch`); the returned params, state and loss are replicated.

    Args:
        model: A Flax XLM-R model.
        optimizer: An optax transformation.
        mesh: The device mesh (:func:`make_mesh`).
        axis_name: The mesh axis the batch is split over.
        donate: Donate the old params and optimizer state buffers.
        check: As in :func:`make_train_step`.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    data = NamedSharding(mesh, PartitionSpec(axis_name))
    return _compile(
        model,
        optimizer,
        check,
        donate,
        in_shardings=(replicated, replicated, data, replicated),
        out_shardings=(replicated, replicated, replicated),
    )


def shard_local_batch(batch: Mapping, mesh: Mesh, axis_name: str = BATCH_AXIS) -> dict:
    """Global arrays over ``mesh`` from this process's rows of a batch (several processes, one job).

    Every process passes its own contiguous block of the global batch, in process order
    (:func:`xlmr.distributed.local_batch`); the result is the global batch, sharded along
    ``axis_name`` so each device holds its part of the local rows. With one process this is
    :func:`shard_batch`.

    Args:
        batch: Dict of this process's arrays (inputs, labels).
        mesh: The device mesh across the processes (:func:`init_distributed`).
        axis_name: The mesh axis to split over.

    Raises:
        ValueError: naming the array whose local rows this process's devices cannot split evenly.
    """
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    processes = mesh.shape[axis_name] // len(local)
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    out = {}
    for key, value in batch.items():
        if value is None:
            continue
        value = np.asarray(value)
        size = value.shape[0] if value.ndim else None
        if size is None or size % len(local):
            raise ValueError(
                f"batch[{key!r}] has {size} local rows, which this process's {len(local)} devices "
                "cannot split evenly"
            )
        out[key] = jax.make_array_from_process_local_data(
            sharding, value, (size * processes, *value.shape[1:])
        )
    return out


# -- across processes: jax.distributed -----------------------------------------------------------
_TIMEOUT_S = 300  # a process that waits longer than this for the others fails


def init_distributed(env: ProcessEnv) -> Mesh:
    """Join the job ``env`` describes (``jax.distributed.initialize``, gloo CPU collectives); returns
    a 1-D data-parallel mesh over every device of every process, in process order.

    Must run before JAX computes anything in this process; a second call returns the mesh again.
    For one process, the mesh of its own devices.

    Args:
        env: This process's place in the job (:func:`xlmr.distributed.process_env`).
    """
    if env.distributed and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            env.coordinator, env.world_size, env.rank, initialization_timeout=_TIMEOUT_S
        )
    if (jax.process_index(), jax.process_count()) != (env.rank, env.world_size):
        raise RuntimeError(
            f"JAX runs process {jax.process_index()} of {jax.process_count()}, the environment says "
            f"{env.rank} of {env.world_size}"
        )
    return make_mesh(sorted(jax.devices(), key=lambda d: (d.process_index, d.id)))


def _optimizer(run: TrainingRun) -> optax.GradientTransformation:
    if run.optimizer == "adam":
        return optax.adam(run.learning_rate, eps=ADAM_EPS)
    return optax.sgd(run.learning_rate)


def train_distributed(model_class: type, run: TrainingRun, env: ProcessEnv) -> TrainingResult:
    """Train ``run`` as process ``env.rank`` of ``env.world_size``; process 0 saves.

    :func:`make_data_parallel_train_step` over :func:`init_distributed`'s global mesh: parameters
    and optimizer state replicated on every device of every process, the batch sharded -- each
    process contributes its rows of every global batch (:func:`xlmr.distributed.local_batch`,
    :func:`shard_local_batch`). The step is one computation over the global batch (XLA inserts
    the all-reduce of the gradients), so its loss is the global batch's loss. Process 0 writes
    the trained parameters with ``save_pretrained``.

    Args:
        model_class: The xlmr_flax class to train (e.g. ``FlaxXLMRobertaForSequenceClassification``).
        run: The model directory, the global batches, optimizer and output (same on every rank).
        env: This process's place in the job.
    """
    mesh = init_distributed(env)
    model = model_class.from_pretrained(run.model, seed=run.seed, **run.config_overrides())
    optimizer = _optimizer(run)
    step = make_data_parallel_train_step(model, optimizer, mesh)
    params, opt_state = replicate((model.params, optimizer.init(model.params)), mesh)
    key = jax.random.PRNGKey(run.seed)
    losses, times = [], []
    for i, batch in enumerate(run.batches):
        start = time.perf_counter()
        data = shard_local_batch(local_batch(batch, env), mesh)
        params, opt_state, loss = step(params, opt_state, data, replicate(jax.random.fold_in(key, i), mesh))
        losses.append(float(loss.addressable_data(0)))
        times.append(time.perf_counter() - start)
    saved = None
    if env.is_chief and run.output is not None:
        host = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)
        model.save_pretrained(run.output, params=host, format=run.save_format)
        saved = str(run.output)
    if env.distributed:
        multihost_utils.sync_global_devices("xlmr train_distributed done")  # the checkpoint is complete
    return TrainingResult(
        losses=losses, saved=saved, rank=env.rank, world_size=env.world_size, step_seconds=times
    )
