"""Keras glue: ``compile``/``fit``/``evaluate``/``predict`` with the model's own loss, SavedModel export,
and an XLA-compiled forward.

Training as HF's TF models do it:

- ``model.compile(optimizer)`` (no loss): the model's own loss is trained. Labels come in the input dict
  (``labels``, or ``start_positions`` / ``end_positions``), or as ``y`` which is moved into the inputs.
- ``model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))``: the Keras
  loss is applied to the head's prediction fields (``xlmr.heads.Head.prediction``: the logits,
  ``(start_logits, end_logits)`` for QA, ``last_hidden_state`` for the bare model) against ``y``;
  metrics see the same tensors.
- ``predict`` returns a plain dict of the output fields.

Ignored targets with a Keras loss: integer ``y`` equal to -100 (``xlmr.losses.IGNORE_INDEX``) --
padding in token classification, the empty slots of packed sequence classification -- is
ignored by Keras losses and metrics too. Such targets are replaced by class 0 and masked out
through the Keras mask of the prediction (what Keras does for masked sequences), so a loss with
Keras' default reduction (``"sum_over_batch_size"``) is the mean over the targets that count, as
the model's own loss (0 when none counts), and metrics (``metrics`` and ``weighted_metrics``)
count only those targets; a ``sample_weight`` of yours is combined with the mask.

Packed batches (``segment_ids``): sequence classification takes ``labels`` in (batch, seq) slots
(slot ``[b, k - 1]`` = sequence ``k`` of row ``b``, -100 in empty slots) and returns logits in the
same slots; token classification takes labels in the packed layout, -100 on padding. Both compile
styles then train on the same loss and gradients as the padded batch; ``predict`` returns the
slots (pair them with your ``segment_ids`` to map them back to sequences).

Out-of-range ids and labels under ``jit_compile=True`` (XLA drops graph asserts): ``fit``,
``evaluate`` and ``predict`` check each batch with graph asserts outside the XLA-compiled step
(a ``tf.errors.InvalidArgumentError`` before the step runs). :func:`compiled_forward` and any
``tf.function(jit_compile=True)`` of your own poison instead: the outputs of a row holding an
out-of-range id are NaN, and so is a loss over an out-of-range label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

try:  # Keras' mask of a tensor, which its losses and metrics honour (as for masked sequences)
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - older Keras 3 releases: the attribute itself

    def _set_keras_mask(x: Any, mask: Any) -> None:
        x._keras_mask = mask


from xlmr.distributed import ADAM_EPS, ProcessEnv, TrainingResult, TrainingRun, local_batch
from xlmr.losses import IGNORE_INDEX, loss_spec
from xlmr.protocols import PretrainedModel

_TIMEOUT_S = 300  # a process that waits longer than this for the others fails


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def _mask_ignored_targets(y: Any, prediction: Any) -> Any:
    """Integer targets equal to IGNORE_INDEX: masked out of Keras losses and metrics (see the module
    docstring) through the Keras mask of ``prediction``; returns ``y`` with them set to class 0."""
    if not tf.is_tensor(y) or not y.dtype.is_integer or not tf.is_tensor(prediction):
        return y
    keep = tf.not_equal(y, tf.cast(IGNORE_INDEX, y.dtype))
    _set_keras_mask(prediction, keep)
    return tf.where(keep, y, tf.zeros_like(y))


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` spanning several worker processes."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


def _rank1_logs(strategy: tf.distribute.Strategy, logs: Any) -> Any:
    """Keras 3 reduces a step's logs across workers with ``strategy.reduce("MEAN", v, axis=0)``,
    which fails on scalars: under several workers each scalar log becomes shape (1,), so the reduction
    is the mean over all replicas, as Keras takes it over the replicas of one process."""
    if not _multi_worker(strategy):
        return logs
    return tf.nest.map_structure(
        lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v, logs
    )


def _replica_parts(strategy: tf.distribute.Strategy, batch: Any) -> list[Any]:
    """``batch`` once per replica: the local parts of its distributed values (itself when none is)."""
    leaves = tf.nest.flatten(batch)
    parts = [
        strategy.experimental_local_results(v) if isinstance(v, tf.distribute.DistributedValues) else None
        for v in leaves
    ]
    count = max((len(p) for p in parts if p is not None), default=0)
    if not count:
        return [batch]
    return [
        tf.nest.pack_sequence_as(batch, [v if p is None else p[i] for v, p in zip(leaves, parts)])
        for i in range(count)
    ]


class TFTrainingMixin:
    """``compile`` / ``train_step`` / ``compute_loss`` overrides shared by the xlmr Keras models."""

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, *args: Any, **kwargs: Any) -> None:
        """As ``keras.Model.compile``; with ``loss=None`` the model's own (HF) loss is used."""
        self._xlmr_own_loss = loss is None
        super().compile(optimizer, loss, *args, **kwargs)

    def compile_from_config(self, config: Any) -> None:
        """Recompile after ``keras.models.load_model`` (Keras skips models that override ``compile``)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # -- data --------------------------------------------------------------------------------
    def _label_args(self) -> tuple[str, ...]:
        return loss_spec(self.head).label_args if self.head.loss is not None else ()

    def _prepare_batch(self, data: Any) -> tuple[Any, Any, Any]:
        """Move ``y`` into the inputs (as ``labels`` ...) when the model's own loss is trained."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if getattr(self, "_xlmr_own_loss", False) and y is not None and self._label_args():
            names = self._label_args()
            x = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
            if not any(name in x for name in names):
                if isinstance(y, Mapping):
                    x.update({k: v for k, v in y.items() if k in names})
                elif len(names) == 1:
                    x[names[0]] = y
                elif isinstance(y, list | tuple) and len(y) == len(names):
                    x.update(zip(names, y))
                else:
                    raise ValueError(
                        f"cannot map y onto the label arguments {names}; pass them in the input dict"
                    )
        return x, y, sample_weight

    def _labels_from_inputs(self, x: Any) -> Any:
        names = self._label_args()
        if not isinstance(x, Mapping) or not names or not all(n in x for n in names):
            return None
        return x[names[0]] if len(names) == 1 else tuple(x[n] for n in names)

    def train_step(self, data: Any) -> Any:
        return _rank1_logs(self.distribute_strategy, super().train_step(self._prepare_batch(data)))

    def test_step(self, data: Any) -> Any:
        return _rank1_logs(self.distribute_strategy, super().test_step(self._prepare_batch(data)))

    def predict_step(self, data: Any) -> Any:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self(x, training=False)
        return dict(out) if isinstance(out, Mapping) else out

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Keras (TensorFlow backend) builds the model, metrics and loss from one batch here. Under
        tf.distribute it averages the replicas' parts (``reduce("MEAN")``), which turns integer ids
        into float64 ones that the input checker refuses; the first replica's part is used instead."""
        if iterator is not None and getattr(self, "_distribute_strategy", None) is not None:
            strategy = self.distribute_strategy
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -- checks outside XLA ----------------------------------------------------------------------
    def _autoconvert_optionals(self, step_func: Callable) -> Callable:
        """Keras (TensorFlow backend) wraps its compiled one-batch step here, for fit, evaluate and
        predict. Under ``jit_compile`` the step is XLA, which drops graph asserts: the wrapper
        checks the batch's ids and labels with graph asserts before the step runs."""
        step = super()._autoconvert_optionals(step_func)
        if self.run_eagerly or not self.jit_compile:
            return step  # graphs without XLA keep the model's own asserts

        def checked_step(data: Any) -> Any:
            with tf.control_dependencies(self._batch_asserts(data)):
                return step(data)

        return checked_step

    def _batch_asserts(self, data: Any) -> list[tf.Operation]:
        """Graph asserts on the ids and labels of one batch (each replica's part of a distributed one)."""
        data = tf.nest.map_structure(lambda v: None if isinstance(v, tf.experimental.Optional) else v, data)
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
        y = None if isinstance(y, Mapping | list | tuple) else y  # several targets: span positions, clamped
        asserts = []
        for x_part, y_part in _replica_parts(self.distribute_strategy, (x, y)):
            asserts += self._value_asserts(x_part, y_part)
        return asserts

    # -- loss and metrics ----------------------------------------------------------------------
    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        """The model's own loss (``compile`` without a loss), else the Keras loss on the prediction fields."""
        if not getattr(self, "_xlmr_own_loss", False):
            prediction = self._prediction(y_pred)
            y = _mask_ignored_targets(y, prediction)
            return super().compute_loss(x, y, prediction, sample_weight, training=training)
        if not isinstance(y_pred, Mapping) or y_pred.get("loss") is None:
            raise ValueError(
                f"compile() was given no loss, so {type(self).__name__} trains its own loss, which needs "
                f"{' and '.join(self._label_args()) or 'labels'} in the input dict (or as y); "
                "otherwise pass loss=... to compile()"
            )
        loss = tf.reduce_mean(tf.cast(y_pred["loss"], tf.float32))
        for extra in self.losses:
            loss = loss + tf.reduce_sum(tf.cast(extra, tf.float32))
        replicas = _num_replicas()
        if replicas > 1:  # gradients are summed over replicas, as keras.losses.Loss scales them
            loss = loss / replicas
        return loss

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        """Keras metrics on the prediction fields; targets equal to -100 do not count."""
        if y is None:
            y = self._labels_from_inputs(x)
        if y is None:
            return self.get_metrics_result()
        prediction = self._prediction(y_pred)
        y = _mask_ignored_targets(y, prediction)
        return super().compute_metrics(x, y, prediction, sample_weight)


def export_saved_model(
    model: PretrainedModel, export_dir: str | os.PathLike, int_dtype: str = "int32"
) -> str:
    """Write a SavedModel whose ``serving_default`` signature takes ``input_ids`` and ``attention_mask``.

    Both inputs are ``int_dtype`` (int32 by default, as HF's TF serving signatures; pass "int64" for
    int64 callers) of shape (batch, seq) -- (batch, num_choices, seq) for multiple choice. The signature
    returns the head's tensor outputs by field name (``logits``, ``start_logits``/``end_logits``,
    ``last_hidden_state``/``pooler_output``).

    Args:
        model: A built xlmr_tf model.
        export_dir: Target directory (must not exist yet).
        int_dtype: "int32" or "int64".

    Example:
        >>> import tensorflow as tf
        >>> export_saved_model(model, "/tmp/xlmr_serving")  # doctest: +SKIP
        >>> serve = tf.saved_model.load("/tmp/xlmr_serving").signatures["serving_default"]  # doctest: +SKIP
    """
    if int_dtype not in ("int32", "int64"):
        raise ValueError(f"int_dtype must be 'int32' or 'int64', got {int_dtype!r}")
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise FileExistsError(f"{export_dir} exists and is not empty; refusing to overwrite it")
    model.build_model()
    shape = (None,) * model.head.input_rank
    spec = [
        tf.TensorSpec(shape, int_dtype, name="input_ids"),
        tf.TensorSpec(shape, int_dtype, name="attention_mask"),
    ]
    no_cache = {"use_cache": False} if model.head.decodes else {}

    def serve(input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, training=False, return_dict=True, **no_cache
        )
        return {k: v for k, v in out.items() if tf.is_tensor(v)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=spec)
    archive.write_out(export_dir, verbose=False)
    return export_dir


def compiled_forward(model: PretrainedModel, jit_compile: bool = True) -> Callable[[Any], Any]:
    """``tf.function(jit_compile=True)`` over the model call; returns a dict of the output fields.

    Out-of-range ids are not raised here (XLA drops graph asserts): the outputs of a row that
    holds one are NaN, and a loss over an out-of-range label is NaN. Float ids are a TypeError.

    Example:
        >>> forward = compiled_forward(model)  # doctest: +SKIP
        >>> out = forward({"input_ids": ids, "attention_mask": mask})  # doctest: +SKIP
        >>> out["logits"]  # doctest: +SKIP
    """
    model.build_model()

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def forward(inputs: Any) -> Any:
        out = model(inputs, training=False)
        return dict(out) if isinstance(out, Mapping) else out

    return forward


# -- across processes: tf.distribute ----------------------------------------------------------------
_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}


def init_distributed(env: ProcessEnv) -> tf.distribute.Strategy:
    """Join the job ``env`` describes: a ``MultiWorkerMirroredStrategy`` over its TF cluster.

    One CPU replica per worker process, ring all-reduce over gRPC. The cluster comes from ``env``
    (read from ``TF_CONFIG`` and checked by :func:`xlmr.distributed.process_env`), so TF sees the
    checked values. For one process, the default strategy. A second call with the same ``env``
    returns the strategy already made (a process joins one cluster).

    Args:
        env: This process's place in the job.
    """
    if not env.distributed:
        return tf.distribute.get_strategy()
    key = (tuple(env.workers), env.task_type, env.rank)
    if key not in _STRATEGIES:
        if _STRATEGIES:
            raise RuntimeError("this process already joined another TF cluster")
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(env.tf_cluster()),
            task_type=env.task_type,
            task_id=env.task_index(),
            rpc_layer="grpc",
        )
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=_TIMEOUT_S,
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
        if strategy.num_replicas_in_sync != env.world_size:
            raise RuntimeError(
                f"the strategy has {strategy.num_replicas_in_sync} replicas for {env.world_size} worker "
                "processes: each worker must see one device (hide accelerators, e.g. CUDA_VISIBLE_DEVICES='')"
            )
        _STRATEGIES[key] = strategy
    return _STRATEGIES[key]


def _optimizer(run: TrainingRun) -> keras.optimizers.Optimizer:
    if run.optimizer == "adam":
        return keras.optimizers.Adam(run.learning_rate, epsilon=ADAM_EPS)
    return keras.optimizers.SGD(run.learning_rate)


class _StepTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._start)


def train_distributed(model_class: type, run: TrainingRun, env: ProcessEnv) -> TrainingResult:
    """Train ``run`` as process ``env.rank`` of ``env.world_size``; rank 0 (the chief) saves.

    The model is built under :func:`init_distributed`'s strategy and trained with Keras ``fit``
    (its own loss) on a tf.data pipeline sharded per worker: each worker's dataset holds its rows
    of every global batch (:func:`xlmr.distributed.local_batch`), one element a step, handed to
    ``strategy.distribute_datasets_from_function``. Gradients are summed over the replicas of the
    per-replica losses scaled by 1/replicas: the gradient of the global batch's mean loss. The
    loss of a step is the mean over replicas: the loss of the global batch. The chief writes the
    trained model with ``save_pretrained``.

    Args:
        model_class: The xlmr_tf class to train (e.g. ``TFXLMRobertaForSequenceClassification``).
        run: The model directory, the global batches, optimizer and output (same on every rank).
        env: This process's place in the job.
    """
    strategy = init_distributed(env)
    keras.utils.set_random_seed(run.seed)
    with strategy.scope():
        model = model_class.from_pretrained(run.model, **run.config_overrides())
        model.compile(_optimizer(run))
    parts = [local_batch(batch, env) for batch in run.batches]
    steps = {key: np.stack([part[key] for part in parts]) for key in parts[0]}

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        if (context.input_pipeline_id, context.num_input_pipelines) != (env.rank, env.world_size):
            raise RuntimeError(
                f"TF made this process input pipeline {context.input_pipeline_id} of "
                f"{context.num_input_pipelines}; the environment says rank {env.rank} of {env.world_size}"
            )
        return tf.data.Dataset.from_tensor_slices(steps)  # one element: this worker's rows of a step

    data = strategy.distribute_datasets_from_function(dataset_fn)
    timer = _StepTimes()
    history = model.fit(
        data, epochs=len(parts), steps_per_epoch=1, shuffle=False, verbose=0, callbacks=[timer]
    )
    saved = None
    if env.is_chief and run.output is not None:
        model.save_pretrained(run.output, format=run.save_format)
        saved = str(run.output)
    return TrainingResult(
        losses=[float(v) for v in history.history["loss"]],
        saved=saved,
        rank=env.rank,
        world_size=env.world_size,
        step_seconds=timer.times,
    )
