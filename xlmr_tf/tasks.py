"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
Each forward is one ``tf.function`` (graph mode, shapes generalised after the first retrace), so
batches may take any shape.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from xlmr.pipelines._fill_mask import last_layer_prunable

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


def _hidden_at(backbone: Any, feed: Mapping[str, tf.Tensor], where: tf.Tensor) -> tf.Tensor:
    """The last layer's output at tokens ``where`` (n, 2) = (row, column) only, (n, hidden).

    Every layer but the last runs on the whole batch (its keys and values are needed). The last
    layer computes keys and values for every token and everything else -- the query, attention,
    output projection and feed-forward -- at the picked tokens only: the rest of its output is
    never read by the masked-LM head.
    """
    from .modeling import additive_mask, attention_keep_mask

    input_ids, segment_ids = feed["input_ids"], feed.get("segment_ids")
    hidden = backbone.embeddings(input_ids=input_ids, segment_ids=segment_ids, training=False)
    batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    keep = attention_keep_mask(feed.get("attention_mask"), segment_ids, seq, 0, False)
    layers = backbone.encoder.layer
    for layer in layers[:-1]:
        hidden = layer(hidden, attention_mask=keep, training=False)[0]
    last = layers[-1]
    attention = last.attention.self_attention
    rows = where[:, 0]
    picked = tf.gather_nd(hidden, where)  # (n, hidden)
    n = tf.shape(picked)[0]
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    query = tf.reshape(attention.query(picked), (n, heads, 1, head_dim))
    key = tf.gather(
        attention.transpose_for_scores(attention.key(hidden), batch), rows
    )  # (n, heads, seq, dim)
    value = tf.gather(attention.transpose_for_scores(attention.value(hidden), batch), rows)
    scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32) / math.sqrt(
        head_dim
    )  # (n, h, 1, seq)
    if keep is not None:  # (batch or 1, 1, seq or 1, seq) -> each picked query's row of it
        keep = keep[:, 0]
        keep_rows = rows if keep.shape[0] != 1 else tf.zeros_like(rows)
        keep_cols = where[:, 1] if keep.shape[1] != 1 else tf.zeros_like(rows)
        keep = tf.gather_nd(keep, tf.stack([keep_rows, keep_cols], axis=-1))  # (n, seq)
        scores = scores + additive_mask(keep[:, None, None, :], tf.float32)
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), query.dtype)
    context = tf.reshape(tf.matmul(probs, value), (n, attention.all_head_size))
    attended = last.attention.dense_output(context, picked, training=False)
    return last.bert_output(last.intermediate(attended), attended, training=False)  # (n, hidden)


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch but its last layer only at the picked tokens (where the
    model allows, see :func:`_hidden_at`); the LM head (the vocabulary projection, most of the
    cost of a masked-LM forward) runs on the picked hidden states alone. An attention mask
    without padding is left out.
    """
    backbone = _backbone(model)
    prune = last_layer_prunable(model.config)

    @tf.function(reduce_retracing=True)
    def call(feed, where):
        if prune:
            picked = _hidden_at(backbone, feed, where)[None]  # (1, n, hidden)
        else:
            hidden = backbone(**feed, training=False)["last_hidden_state"]
            picked = tf.gather_nd(hidden, where)[None]  # (1, n, hidden)
        embedding = backbone.embeddings.word_embeddings.embeddings
        return model.lm_head(picked, embedding)[0]  # (n, vocab)

    def run(inputs: Inputs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        inputs = dict(inputs)
        if "attention_mask" in inputs and np.all(inputs["attention_mask"]):
            del inputs["attention_mask"]
        where = tf.constant(np.stack([rows, cols], axis=-1).astype(np.int32))
        return _numpy(call(_feed(inputs), where))

    return run
