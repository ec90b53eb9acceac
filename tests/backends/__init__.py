"""One tiny adapter per backend, so tests/ is written once and run for every backend.

An adapter module defines:

    NAME: str                                    # "torch" / "tf" / "flax"
    FRAMEWORK: str                               # module that must import ("torch", "tensorflow", "jax")
    build(head: str, config) -> model            # our class for the head, in inference mode
    load(model, state_dict) -> model            # canonical numpy state dict into the model
    forward(model, inputs, **kwargs) -> dict     # call with numpy inputs; output fields as numpy

``kwargs`` are call arguments such as ``output_hidden_states=True``; outputs are a dict of the
non-None fields, tuples of arrays kept as tuples.
"""

from __future__ import annotations

import importlib

import pytest

BACKENDS = ("torch", "tf", "flax")
_FRAMEWORK = {"torch": "torch", "tf": "tensorflow", "flax": "flax"}


def get_adapter(name: str):
    """Import the adapter of backend ``name``; skip explicitly when its framework is not installed."""
    pytest.importorskip(_FRAMEWORK[name], reason=f"the {name} extra is not installed")
    return importlib.import_module(f"tests.backends.{name}_adapter")
