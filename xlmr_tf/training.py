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
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

try:  # Keras' mask of a tensor, which its losses and metrics honour (as for masked sequences)
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - older Keras 3 releases: the attribute itself

    def _set_keras_mask(x: Any, mask: Any) -> None:
        x._keras_mask = mask


from xlmr.losses import IGNORE_INDEX, loss_spec
from xlmr.protocols import PretrainedModel


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
        return super().train_step(self._prepare_batch(data))

    def test_step(self, data: Any) -> Any:
        return super().test_step(self._prepare_batch(data))

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
