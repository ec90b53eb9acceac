"""from_pretrained / save_pretrained glue over :mod:`conversion`, and canonical weights in and out.

A variable's Keras path, minus the model scope, split at ``/`` and ``.``, is its canonical key
under :func:`xlmr.weights.from_backend_path` (``tf`` leaves); the bare model's ``roberta.``
prefix is dropped, as its canonical keys have none. The tied LM decoder has no variable of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import conversion
from conversion.common import ALIGN, np_dtype
from xlmr import _hub
from xlmr import weights as W
from xlmr.protocols import PretrainedModel, PretrainedModelClass

logger = logging.getLogger("xlmr")

_SKIP = ("seed_generator",)  # Dropout RNG state: not a weight


def _top_modules(model: PretrainedModel) -> set[str]:
    return {"roberta", *model.head.head_modules}


def variable_map(model: PretrainedModel) -> dict[str, tuple[Any, bool]]:
    """``{canonical key: (keras variable, transposed)}`` for every weight of ``model``."""
    model.build_model()
    tops = _top_modules(model)
    out: dict[str, tuple[Any, bool]] = {}
    for variable in model.weights:
        segments = variable.path.split("/")
        if any(s in variable.path for s in _SKIP):
            continue
        start = next((i for i, s in enumerate(segments) if s.split(".")[0] in tops), None)
        if start is None:
            raise RuntimeError(f"variable {variable.path} lies outside the model's layers {sorted(tops)}")
        parts = [p for s in segments[start:] for p in s.split(".")]
        key, transpose = W.from_backend_path(parts, "tf")
        if not model.head.prefix and key.startswith(W.BACKBONE_PREFIX + "."):
            key = key[len(W.BACKBONE_PREFIX) + 1 :]
        if key in out:
            raise RuntimeError(f"two variables map to {key}: {out[key][0].path} and {variable.path}")
        out[key] = (variable, transpose)
    return out


def canonical_state_dict(model: PretrainedModel) -> dict[str, np.ndarray]:
    """The model's weights as canonical numpy arrays (PyTorch layouts, no tied aliases), in canonical order."""
    vmap = variable_map(model)
    expected = W.expected_shapes(model.config, model.head, model.roberta.add_pooling_layer)
    if set(vmap) != set(expected):
        raise RuntimeError(
            f"weight names do not match the canonical ones: extra {sorted(set(vmap) - set(expected))}, "
            f"missing {sorted(set(expected) - set(vmap))}"
        )
    out = {}
    for key in expected:
        variable, transpose = vmap[key]
        value = np.asarray(variable.numpy(), dtype=np.float32)
        out[key] = np.ascontiguousarray(value.T) if transpose else value
    return out


def assign_state_dict(model: PretrainedModel, state_dict: Mapping[str, np.ndarray]) -> None:
    """Assign already-checked canonical arrays (keys a subset of the model's) to the variables."""
    vmap = variable_map(model)
    unknown = [k for k in state_dict if k not in vmap]
    if unknown:
        raise W.WeightMismatchError(
            f"weights not in {type(model).__name__}: {', '.join(sorted(unknown)[:10])}"
        )
    for key, value in state_dict.items():
        variable, transpose = vmap[key]
        value = np.asarray(value)
        if transpose:
            value = value.T
        if tuple(value.shape) != tuple(variable.shape):
            raise W.WeightMismatchError(
                f"{key}: checkpoint shape {tuple(value.shape)} does not fit variable {variable.path} "
                f"{tuple(variable.shape)}"
            )
        variable.assign(value.astype(np.dtype(variable.dtype)))


def load_canonical_state_dict(
    model: PretrainedModel, state_dict: Mapping[str, np.ndarray], source: str = "state dict"
) -> PretrainedModel:
    """Check ``state_dict`` with :func:`xlmr.weights.prepare_state_dict` and assign it; returns the model."""
    report = W.prepare_state_dict(state_dict, model.config, model.head, source=source)
    model.build_model()
    assign_state_dict(model, report.state_dict)
    return model


def from_pretrained(
    cls: PretrainedModelClass, path: str | os.PathLike, *, dtype: Any = None, **config_overrides: Any
) -> PretrainedModel:
    """``cls`` built from an HF-layout directory (config.json and any of the four weight files) or a
    Hub repo (:func:`xlmr._hub.resolve_model`: HF's Hub keyword arguments are taken from
    ``config_overrides``; safetensors first, then ``tf_model.h5``).

    Every variable is created once, with its final value (:func:`build_from_checkpoint`): no
    random initializer runs for a weight the checkpoint provides. ``dtype`` is a Keras dtype
    policy for the whole model (``"bfloat16"``: bfloat16 variables, each checkpoint tensor cast
    as it is read). ``pytorch_model.bin`` needs torch; without it the error says so and suggests
    ``xlmr-convert``. Head weights the checkpoint lacks are newly initialised (and logged), as in HF.
    """
    name = config_overrides.pop("name", None)
    resolved = _hub.resolve_model(path, "tf", **_hub.pop_hub_kwargs(config_overrides))
    config, report = conversion.load_pretrained(
        resolved.path, cls.head, root=resolved.root, lazy=True, **config_overrides
    )
    with report.state_dict as tensors, _dtype_policy(dtype):
        model = cls(config, name=name) if name else cls(config)
        build_from_checkpoint(model, tensors)
    return _hub.record_name(model, resolved.name_or_path)


@contextlib.contextmanager
def _dtype_policy(dtype: Any) -> Iterator[None]:
    """Layers made inside take ``dtype`` as their Keras dtype policy (None: leave it; Keras keeps it per thread)."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class _CheckpointValue:
    """A Keras initializer returning one checkpoint tensor, read when Keras creates the variable."""

    def __init__(self, tensors: dict, key: str, transpose: bool):
        self.tensors, self.key, self.transpose = tensors, key, transpose

    def __call__(self, shape: Any, dtype: Any = None) -> tf.Tensor:
        tensor = self.tensors.pop(self.key)
        expected = tuple(tensor.shape[::-1] if self.transpose else tensor.shape)
        if expected != tuple(shape):
            raise W.WeightMismatchError(
                f"{self.key}: checkpoint shape {tensor.shape} does not fit the variable's {tuple(shape)}"
            )
        # A kernel stored in PyTorch's layout: TF's own (multi-threaded) transpose of the bytes as
        # stored, read into a reused buffer. One stored in TF's layout (tensor.base: tf_model.h5,
        # flax_model.msgpack) is used as it is.
        if self.transpose and tensor.base is None:
            return tf.transpose(_to_tf(tensor.materialize(dtype=np_dtype(dtype), align=ALIGN, reuse=True)))
        return _to_tf(tensor.materialize(transpose=self.transpose, dtype=np_dtype(dtype), align=ALIGN))


def _to_tf(array: np.ndarray) -> tf.Tensor:
    """A tensor sharing ``array``'s memory (DLPack; the array must be C-contiguous and 64-byte aligned)."""
    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 has no DLPack code: move the bits as uint16
        return tf.bitcast(tf.experimental.dlpack.from_dlpack(array.view(np.uint16).__dlpack__()), tf.bfloat16)
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


def build_from_checkpoint(model: PretrainedModel, tensors: dict) -> None:
    """Create ``model``'s variables, each initialised exactly once.

    Keras creates a variable's value at build time from its initializer. Here the layers are
    built inside a ``keras.StatelessScope``, where variables wait for their value; each
    variable the checkpoint provides gets an initializer returning that tensor (read then, one
    at a time, and dropped from ``tensors``: a view of the memory-mapped file where layout,
    dtype and alignment allow, else one new array), and the rest -- a newly added head -- keep
    their own (HF's truncated normal / zeros / ones). Leaving the scope initialises them all.
    """
    vmap: dict[str, tuple[Any, bool]] = {}
    try:
        with keras.StatelessScope():
            vmap = variable_map(model)
            unknown = sorted(k for k in tensors if k not in vmap)
            if unknown:
                raise W.WeightMismatchError(
                    f"weights not in {type(model).__name__}: {', '.join(unknown[:10])}"
                )
            for key, (variable, transpose) in vmap.items():
                if key not in tensors:
                    continue
                if getattr(variable, "_value", None) is not None or not hasattr(variable, "_initializer"):
                    raise RuntimeError(  # pragma: no cover -- a Keras without deferred variables
                        f"Keras created {variable.path} outside the stateless scope; cannot load it without a copy"
                    )
                variable._initializer = _CheckpointValue(tensors, key, transpose)
    except BaseException:
        _forget_uninitialized([v for v, _ in vmap.values()] or list(model.weights))
        raise


def _forget_uninitialized(variables: list) -> None:
    """After a failed build, take ``variables`` off Keras's list of variables awaiting their value."""
    from keras.src.backend.common import global_state

    ours = {id(v) for v in variables}
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    global_state.set_global_attribute("uninitialized_variables", [v for v in pending if id(v) not in ours])


def save_pretrained(
    model: PretrainedModel, save_directory: str | os.PathLike, format: str = "safetensors"
) -> Path:
    """``config.json`` + the weight file: ``model.safetensors`` (default), ``pytorch_model.bin``
    (``format="pytorch"``), ``tf_model.h5`` in HF's layout (``format="tf"``) or ``flax_model.msgpack``."""
    return conversion.save_pretrained(
        canonical_state_dict(model), model.config, model.head, save_directory, format
    )
