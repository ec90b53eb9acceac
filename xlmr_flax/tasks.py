"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
Each forward is one ``jax.jit`` function, compiled once per input shape: the planner gives it
batches in a few bucketed shapes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xlmr.pipelines._fill_mask import last_layer_prunable

# Whether batches should come in a few fixed shapes (compiled backends) or any shape.
STATIC_SHAPES = True

Inputs = Mapping[str, np.ndarray]


def prepare(model: Any) -> Any:
    """The model in inference mode (the calls below pass ``train=False`` / ``deterministic=True``)."""
    return model


def accepts_segment_ids(model: Any) -> bool:
    """Whether the model's forward takes packed rows (``segment_ids``)."""
    return "segment_ids" in inspect.signature(model.__call__).parameters


def _feed(inputs: Inputs) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.int32) for k, v in inputs.items()}


def _numpy(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x), np.float32)


def head_forward(model: Any, fields: Sequence[str]) -> Callable[[Inputs], dict[str, np.ndarray]]:
    """``inputs -> {field: array}``: the head's output ``fields`` (``logits``, ``start_logits``...)."""
    fields = tuple(fields)

    @jax.jit
    def call(params, feed):
        out = model(**feed, params=params, train=False, return_dict=True)
        return {name: out[name] for name in fields}

    def run(inputs: Inputs) -> dict[str, np.ndarray]:
        return {name: _numpy(value) for name, value in call(model.params, _feed(inputs)).items()}

    return run


def _backbone(module: Any, head_prefix: str) -> Any:
    """The bare backbone module of a (bound) head module; the module itself for the base model."""
    return getattr(module, head_prefix) if head_prefix else module


def _hidden(module: Any, prefix: str, feed: Mapping[str, jax.Array]) -> jax.Array:
    feed = dict(feed)
    input_ids = feed.pop("input_ids")
    return _backbone(module, prefix)(input_ids, deterministic=True, **feed).last_hidden_state


def backbone_forward(model: Any) -> Callable[[Inputs], np.ndarray]:
    """``inputs -> last_hidden_state`` (batch, seq, hidden) of the model's backbone (any head)."""
    prefix = model.head.prefix

    @jax.jit
    def call(params, feed):
        return model.module.apply({"params": params}, feed, method=lambda m, f: _hidden(m, prefix, f))

    return lambda inputs: _numpy(call(model.params, _feed(inputs)))


def _hidden_at(backbone: Any, feed: Mapping[str, jax.Array], rows: jax.Array, cols: jax.Array) -> jax.Array:
    """The last layer's output at tokens ``[rows[i], cols[i]]`` only, (n, hidden) (``backbone`` bound).

    Every layer but the last runs on the whole batch (its keys and values are needed). The last
    layer computes keys and values for every token and everything else -- the query, attention,
    output projection and feed-forward -- at the picked tokens only: the rest of its output is
    never read by the masked-LM head.
    """
    from .modeling import additive_mask, attention_keep_mask

    config = backbone.config
    input_ids, segment_ids, mask = feed["input_ids"], feed.get("segment_ids"), feed.get("attention_mask")
    hidden = backbone.embeddings(input_ids, attention_mask=mask, deterministic=True, segment_ids=segment_ids)
    layers = backbone.encoder.layer.layers
    for layer in layers[:-1]:
        hidden = layer(hidden, mask, None, None, None, False, True, False, segment_ids)[0]
    last = layers[-1]
    attention = last.attention.self
    picked = hidden[rows, cols]  # (n, hidden)
    n, heads, head_dim = picked.shape[0], config.num_attention_heads, config.head_dim
    query = attention.query(picked).reshape(n, heads, head_dim)
    key = attention._split_heads(attention.key(hidden))[rows]  # (n, seq, heads, head_dim)
    value = attention._split_heads(attention.value(hidden))[rows]
    scores = jnp.einsum("nhd,nkhd->nhk", query, key).astype(jnp.float32) * (1.0 / math.sqrt(head_dim))
    keep = attention_keep_mask(mask, segment_ids, input_ids.shape[1], 0, False)
    if keep is not None:  # (batch or 1, 1, seq or 1, seq) -> each picked query's row of it
        keep = keep[:, 0]
        zero = jnp.zeros_like(rows)
        keep = keep[rows if keep.shape[0] > 1 else zero, cols if keep.shape[1] > 1 else zero]  # (n, seq)
        scores = scores + additive_mask(keep[:, None, :], scores.dtype)
    probs = jax.nn.softmax(scores, axis=-1).astype(query.dtype)
    context = jnp.einsum("nhk,nkhd->nhd", probs, value).reshape(n, config.hidden_size)
    attended = last.attention.output(context, picked, deterministic=True)
    return last.output(last.intermediate(attended), attended, deterministic=True)  # (n, hidden)


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch but its last layer only at the picked tokens (where the
    model allows, see :func:`_hidden_at`); the LM head (the vocabulary projection, most of the
    cost of a masked-LM forward) runs on the picked hidden states alone.
    """
    prefix, tied = model.head.prefix, model.config.tie_word_embeddings
    prune = last_layer_prunable(model.config)

    def logits_at(module, feed, rows, cols):
        backbone = _backbone(module, prefix)
        if prune:
            picked = _hidden_at(backbone, feed, rows, cols)[None]  # (1, n, hidden)
        else:
            picked = _hidden(module, prefix, feed)[rows, cols][None]  # (1, n, hidden)
        shared = backbone.variables["params"]["embeddings"]["word_embeddings"]["embedding"] if tied else None
        return module.lm_head(picked, shared_embedding=shared)[0]  # (n, vocab)

    @jax.jit
    def call(params, feed, rows, cols):
        return model.module.apply({"params": params}, feed, rows, cols, method=logits_at)

    def run(inputs: Inputs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return _numpy(
            call(model.params, _feed(inputs), jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32))
        )

    return run
