"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
Each forward is one ``tf.function`` (graph mode, shapes generalised after the first retrace), so
batches may take any shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

# Whether batches should come in a few fixed shapes (compiled backends) or any shape.
STATIC_SHAPES = False

Inputs = Mapping[str, np.ndarray]


def prepare(model: Any) -> Any:
    """The model in inference mode (Keras layers run with ``training=False`` below)."""
    return model


def accepts_segment_ids(model: Any) -> bool:
    """Whether the model's forward takes packed rows (``segment_ids``)."""
    return "segment_ids" in inspect.signature(model.call).parameters


def _feed(inputs: Inputs) -> dict[str, tf.Tensor]:
    return {k: tf.constant(np.asarray(v, np.int32)) for k, v in inputs.items()}


def _numpy(x: tf.Tensor) -> np.ndarray:
    return np.asarray(tf.cast(x, tf.float32))


def head_forward(model: Any, fields: Sequence[str]) -> Callable[[Inputs], dict[str, np.ndarray]]:
    """``inputs -> {field: array}``: the head's output ``fields`` (``logits``, ``start_logits``...)."""
    fields = tuple(fields)

    @tf.function(reduce_retracing=True)
    def call(feed):
        out = model(**feed, training=False, return_dict=True)
        return {name: out[name] for name in fields}

    def run(inputs: Inputs) -> dict[str, np.ndarray]:
        return {name: _numpy(value) for name, value in call(_feed(inputs)).items()}

    return run


def _backbone(model: Any) -> Any:
    """The bare backbone of a head model (the main layer of the base model)."""
    return getattr(model, model.head.prefix) if model.head.prefix else model.roberta


def backbone_forward(model: Any) -> Callable[[Inputs], np.ndarray]:
    """``inputs -> last_hidden_state`` (batch, seq, hidden) of the model's backbone (any head)."""
    backbone = _backbone(model)

    @tf.function(reduce_retracing=True)
    def call(feed):
        return backbone(**feed, training=False)["last_hidden_state"]

    return lambda inputs: _numpy(call(_feed(inputs)))


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch; the LM head (the vocabulary projection, most of the cost
    of a masked-LM forward) only on the gathered hidden states.
    """
    backbone = _backbone(model)

    @tf.function(reduce_retracing=True)
    def call(feed, where):
        hidden = backbone(**feed, training=False)["last_hidden_state"]
        picked = tf.gather_nd(hidden, where)[None]  # (1, n, hidden)
        embedding = backbone.embeddings.word_embeddings.embeddings
        return model.lm_head(picked, embedding)[0]  # (n, vocab)

    def run(inputs: Inputs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        where = tf.constant(np.stack([rows, cols], axis=-1).astype(np.int32))
        return _numpy(call(_feed(inputs), where))

    return run
