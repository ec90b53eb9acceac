"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
Each forward is one ``jax.jit`` function, compiled once per input shape: the planner gives it
batches in a few bucketed shapes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch; the LM head (the vocabulary projection, most of the cost
    of a masked-LM forward) only on the gathered hidden states.
    """
    prefix, tied = model.head.prefix, model.config.tie_word_embeddings

    def logits_at(module, feed, rows, cols):
        hidden = _hidden(module, prefix, feed)
        picked = hidden[rows, cols][None]  # (1, n, hidden)
        backbone = _backbone(module, prefix)
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
