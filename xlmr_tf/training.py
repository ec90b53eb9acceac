"""Keras glue: ``compile``/``fit``/``evaluate``/``predict`` with the model's own loss, SavedModel export,
and an XLA-compiled forward.

Training as HF's TF models do it:

- ``model.compile(optimizer)`` (no loss): the model's own loss is trained. Labels come in the input dict
  (``labels``, or ``start_positions`` / ``end_positions``), or as ``y`` which is moved into the inputs.
- ``model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))``: the Keras
  loss is applied to the logits (``(start_logits, end_logits)`` for QA, ``last_hidden_state`` for the bare
  model) against ``y``; metrics see the same tensors.
- ``predict`` returns a plain dict of the output fields.

Compiled inference: ``predict`` (``compile(jit_compile=True)`` makes it XLA) or :func:`compiled_forward`,
which is ``tf.function(jit_compile=True)`` over the model call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


class TFTrainingMixin:
    """``compile`` / ``train_step`` / ``compute_loss`` overrides shared by the xlmr Keras models."""

    def compile(self, optimizer="rmsprop", loss=None, *args: Any, **kwargs: Any) -> None:
        """As ``keras.Model.compile``; with ``loss=None`` the model's own (HF) loss is used."""
        self._xlmr_own_loss = loss is None
        super().compile(optimizer, loss, *args, **kwargs)

    def compile_from_config(self, config) -> None:
        """Recompile after ``keras.models.load_model`` (Keras skips models that override ``compile``)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # -- data --------------------------------------------------------------------------------
    def _label_args(self) -> tuple[str, ...]:
        return self.head.label_args

    def _prepare_batch(self, data):
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

    def _labels_from_inputs(self, x):
        names = self._label_args()
        if not isinstance(x, Mapping) or not names or not all(n in x for n in names):
            return None
        return x[names[0]] if len(names) == 1 else tuple(x[n] for n in names)

    def train_step(self, data):
        return super().train_step(self._prepare_batch(data))

    def test_step(self, data):
        return super().test_step(self._prepare_batch(data))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self(x, training=False)
        return dict(out) if isinstance(out, Mapping) else out

    # -- loss and metrics ----------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not getattr(self, "_xlmr_own_loss", False):
            return super().compute_loss(x, y, self._prediction(y_pred), sample_weight, training=training)
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

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None:
            y = self._labels_from_inputs(x)
        if y is None:
            return self.get_metrics_result()
        return super().compute_metrics(x, y, self._prediction(y_pred), sample_weight)


def _signature_rank(model) -> int:
    return 3 if model.head.name == "multiple_choice" else 2


def export_saved_model(model, export_dir: str | os.PathLike, int_dtype: str = "int32") -> str:
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
    shape = (None,) * _signature_rank(model)
    spec = [
        tf.TensorSpec(shape, int_dtype, name="input_ids"),
        tf.TensorSpec(shape, int_dtype, name="attention_mask"),
    ]

    def serve(input_ids, attention_mask):
        out = (
            model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                training=False,
                return_dict=True,
                use_cache=False,
            )
            if "use_cache" in model._arg_names
            else model(input_ids=input_ids, attention_mask=attention_mask, training=False, return_dict=True)
        )
        return {k: v for k, v in out.items() if tf.is_tensor(v)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=spec)
    archive.write_out(export_dir, verbose=False)
    return export_dir


def compiled_forward(model, jit_compile: bool = True):
    """``tf.function(jit_compile=True)`` over the model call; returns a dict of the output fields.

    Example:
        >>> forward = compiled_forward(model)  # doctest: +SKIP
        >>> out = forward({"input_ids": ids, "attention_mask": mask})  # doctest: +SKIP
        >>> out["logits"]  # doctest: +SKIP
    """
    model.build_model()

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def forward(inputs):
        out = model(inputs, training=False)
        return dict(out) if isinstance(out, Mapping) else out

    return forward
