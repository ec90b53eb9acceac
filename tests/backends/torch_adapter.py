"""The PyTorch backend behind the adapter protocol of tests/backends/__init__.py."""

from __future__ import annotations

import numpy as np
import torch

import xlmr_torch
from tests.reference import to_numpy_tree
from xlmr import HEADS

NAME = "torch"
FRAMEWORK = "torch"


def build(head: str, config):
    """Our class for ``head`` in eval mode (dropout off)."""
    return getattr(xlmr_torch, HEADS[head].torch_class)(config).eval()


def load(model, state_dict):
    """Copy a canonical numpy state dict in (exact keys)."""
    return model.load_canonical_state_dict(state_dict)


def _to_torch(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, tuple | list):
        return type(value)(_to_torch(v) for v in value)
    return value


def forward(model, inputs, **kwargs):
    """Call with numpy inputs (no grad); the non-None output fields as numpy."""
    feed = {k: _to_torch(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = model(**feed, **kwargs, return_dict=True)
    return to_numpy_tree(dict(out))


def forward_compiled(model, inputs, **kwargs):
    """``forward`` through ``torch.compile`` (inductor, static shapes; fullgraph not required).

    The compiled module is kept on the model, so calls with the same shapes compile once.
    """
    compiled = getattr(model, "_test_compiled", None)
    if compiled is None:
        compiled = torch.compile(model, dynamic=False)
        object.__setattr__(model, "_test_compiled", compiled)  # not a submodule: no parameter aliasing
    return forward(compiled, inputs, **kwargs)


def from_hf(hf_model, head: str, config):
    """Our model for ``head`` holding the weights of an HF PyTorch model (via the canonical dict)."""
    from tests.reference import canonical_state_dict

    return load(build(head, config), canonical_state_dict(hf_model, config, head))


def to_torch(inputs: dict) -> dict:
    """numpy inputs -> torch tensors (for calling models directly)."""
    return {k: _to_torch(v) for k, v in inputs.items()}


def loss_and_grads(model, inputs):
    """``(loss, {parameter name: gradient})`` of the head's own loss on numpy ``inputs``, as numpy."""
    model.zero_grad(set_to_none=True)
    out = model(**to_torch(inputs), return_dict=True)
    out.loss.backward()
    grads = {
        name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy()
        for name, p in model.named_parameters()
    }
    return float(out.loss.detach()), grads
