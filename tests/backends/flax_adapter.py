"""Adapter of the Flax backend for tests/test_matrix.py (see tests/backends/__init__.py)."""

from __future__ import annotations

import copy

import numpy as np

from tests.reference import canonical_state_dict, head_config, hf_torch_model
from xlmr import HEADS

NAME = "flax"
FRAMEWORK = "jax"

# Call arguments of the PyTorch reference that the Flax call has no use for.
_DROPPED_KWARGS = ("use_cache",)


def build(head: str, config):
    return flax_class(head)(config, input_shape=input_shape(head))


def load(model, state_dict):
    model.load_canonical_state_dict(state_dict)
    return model


def _numpy(obj):
    if isinstance(obj, dict):
        return {k: _numpy(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, tuple | list):
        return tuple(_numpy(v) for v in obj)
    return np.asarray(obj)


def _run(model, params, inputs, kwargs):
    """Call ``model`` with numpy ``inputs``; the loss from its outputs when labels are in them."""
    from xlmr_flax.losses import loss_fn, split_batch

    model_inputs, labels = split_batch(inputs)
    outputs = model(**model_inputs, **kwargs, params=params, return_dict=True)
    result = dict(outputs)
    if labels and model.head.loss is not None:
        result["loss"] = loss_fn(model.head, outputs, labels, model.config)
    return result


def forward(model, inputs, **kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k not in _DROPPED_KWARGS}
    return _numpy(_run(model, None, inputs, kwargs))


def forward_compiled(model, inputs, **kwargs):
    """``forward`` through ``jax.jit`` (params and inputs traced; call flags static)."""
    import jax

    kwargs = {k: v for k, v in kwargs.items() if k not in _DROPPED_KWARGS}
    run = jax.jit(lambda params, feed: _run(model, params, feed, kwargs))
    return _numpy(run(model.params, inputs))


# -- helpers shared by tests/test_flax*.py ----------------------------------------------------------
_CACHE: dict = {}


def flax_class(head: str):
    import xlmr_flax

    return getattr(xlmr_flax, HEADS[head].flax_class)


def input_shape(head: str) -> tuple[int, ...]:
    return (1, 1, 1) if head == "multiple_choice" else (1, 1)


def reference(head: str, **overrides):
    """``(config, HF PyTorch model, canonical state dict)`` for ``head``, built once per process."""
    key = (head, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        config = head_config(head, **overrides)
        model = hf_torch_model(head, config)
        _CACHE[key] = (config, model, canonical_state_dict(model, config, head))
    return _CACHE[key]


def ours(head: str, **overrides):
    """Our Flax model of ``head`` holding the reference's weights, plus the config and state dict."""
    config, pt_model, state_dict = reference(head, **overrides)
    # A copy: the loss writes an inferred problem type back into the model's config, and the
    # reference's config is shared by every model built from it in this process.
    model = flax_class(head)(copy.deepcopy(config), input_shape=input_shape(head))
    model.load_canonical_state_dict(state_dict)
    return model, model.config, pt_model, state_dict


def loss_and_grads(model, inputs):
    """``(loss, {parameter path: gradient})`` of the head's loss on numpy ``inputs``, as numpy."""
    import jax

    from xlmr.weights import flatten_tree
    from xlmr_flax.losses import compute_loss

    loss, grads = jax.value_and_grad(lambda p: compute_loss(model, inputs, params=p)[0])(model.params)
    return float(loss), {"/".join(k): np.asarray(v) for k, v in flatten_tree(grads).items()}
