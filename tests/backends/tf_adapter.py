"""TensorFlow (Keras 3) adapter for the backend-neutral tests (see tests/backends/__init__.py)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from xlmr import HEADS  # noqa: E402

NAME = "tf"
FRAMEWORK = "tensorflow"


def build(head: str, config):
    import xlmr_tf

    model = getattr(xlmr_tf, HEADS[head].tf_class)(config)
    return model.build_model()


def load(model, state_dict):
    return model.load_canonical_state_dict(state_dict)


def _to_numpy(obj):
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, tuple | list):
        return tuple(_to_numpy(v) for v in obj)
    return np.asarray(obj)


def forward(model, inputs, **kwargs) -> dict:
    out = model(**inputs, **kwargs, training=False, return_dict=True)
    return _to_numpy(dict(out))


def forward_compiled(model, inputs, **kwargs) -> dict:
    """``forward`` through ``tf.function(jit_compile=True)`` (XLA)."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def run(feed):
        return dict(model(**feed, **kwargs, training=False, return_dict=True))

    return _to_numpy(run({k: tf.constant(v) for k, v in inputs.items()}))


def loss_and_grads(model, inputs):
    """``(loss, {variable path: gradient})`` of the head's own loss on numpy ``inputs``, as numpy."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = model(**inputs, training=False, return_dict=True)
        loss = tf.reduce_mean(out["loss"])
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    return float(loss), {
        v.path: (np.zeros(v.shape, np.float32) if g is None else np.asarray(tf.convert_to_tensor(g)))
        for v, g in zip(variables, grads)
    }
