"""Flax parameters <-> canonical state dicts, and from_pretrained / save_pretrained over ``conversion``.

A Flax parameter's path is the canonical key with the backend leaf rule applied
(``xlmr.weights.to_backend_path(key, "flax")``), dense kernels transposed. With tied word
embeddings HF's Flax checkpoints hold no ``lm_head/decoder/kernel`` (the head reads the
embedding matrix), and the LM bias is ``lm_head/bias``; canonical dicts are the same, so the
mapping needs no special case.

This module does not import ``modeling.py`` (which imports it): models are typed against
:mod:`xlmr.protocols`, plus the few Flax attributes used here (:class:`FlaxModel`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

import conversion
from conversion.common import ALIGN
from xlmr import _hub
from xlmr import weights as W
from xlmr.protocols import PretrainedModel, PretrainedModelClass

_READERS = min(2, os.cpu_count() or 1)  # threads reading tensors in params_from_checkpoint


class FlaxModel(PretrainedModel, Protocol):
    """What loading needs of a Flax model beyond :class:`xlmr.protocols.PretrainedModel`."""

    params: dict
    key: Any
    input_shape: tuple[int, ...]

    def init_weights(self, rng: Any, input_shape: tuple[int, ...], params: Mapping | None = None) -> dict:
        """Random parameters (only the missing leaves of ``params``, when given)."""
        ...


def params_to_state_dict(params: Mapping) -> dict[str, np.ndarray]:
    """Flax params tree -> canonical numpy state dict (PyTorch names and layouts, no tied aliases).

    Args:
        params: A parameter tree in HF's Flax layout.
    """
    flat = {path: np.asarray(value) for path, value in W.flatten_tree(params).items()}
    return W.from_backend(flat, "flax")


def state_dict_to_params(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Canonical numpy state dict -> Flax params tree (float32 ``jax.Array`` leaves).

    Args:
        state_dict: Canonical weights (HF PyTorch names and layouts).
    """
    flat = W.to_backend(state_dict, "flax")
    return W.unflatten_tree({path: jnp.asarray(np.asarray(v, dtype=np.float32)) for path, v in flat.items()})


def _fill_new(model: FlaxModel, loaded: dict, newly_initialized: list[str]) -> dict:
    """Add the head weights ``loaded`` lacks: the model's current ones, else its own init of just those."""
    if not newly_initialized:
        return loaded
    if model._params is None:
        return model.init_weights(model.key, model.input_shape, params=loaded)
    source_flat = W.flatten_tree(model._params)
    flat = W.flatten_tree(loaded)
    for key in newly_initialized:
        path, _ = W.to_backend_path(key, "flax")
        flat[path] = source_flat[path]
    return W.unflatten_tree(flat)


def load_canonical_state_dict(model: FlaxModel, state_dict: Mapping[str, np.ndarray]) -> W.LoadReport:
    """Check ``state_dict`` against the model's head (loudly) and load it into ``model.params``.

    Args:
        model: The Flax model to fill.
        state_dict: Canonical weights.
    """
    report = W.prepare_state_dict(
        {k: np.asarray(v) for k, v in state_dict.items()}, model.config, model.head, source="state dict"
    )
    W.dtype_check(report.state_dict, "state dict")
    model.params = _fill_new(model, state_dict_to_params(report.state_dict), report.newly_initialized)
    return report


def from_pretrained(
    cls: PretrainedModelClass,
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    param_dtype: Any = None,
    **kwargs: Any,
) -> FlaxModel:
    """Build ``cls`` from an HF-layout directory (config.json + any of the four weight files).

    Args:
        cls: The Flax model class (its ``head`` decides which weights are expected).
        path: Checkpoint directory, or a Hub repo id (``org/name[@revision]``, resolved by
            :func:`xlmr._hub.resolve_model`: safetensors first, then ``flax_model.msgpack``).
        dtype: Computation dtype.
        param_dtype: Dtype of the parameters (None: float32, as HF), each tensor cast as it is read.
        **kwargs: ``seed``, ``input_shape``, ``gradient_checkpointing``; HF's Hub arguments (``revision``,
            ``cache_dir``, ``local_files_only``, ``token``, ``subfolder``, ``force_download``); anything
            else overrides config fields.
    """
    model_kwargs = {
        k: kwargs.pop(k) for k in ("seed", "input_shape", "gradient_checkpointing") if k in kwargs
    }
    resolved = _hub.resolve_model(path, "flax", **_hub.pop_hub_kwargs(kwargs))
    config, report = conversion.load_pretrained(
        resolved.path, cls.head, root=resolved.root, lazy=True, **kwargs
    )
    with report.state_dict as tensors:
        model = cls(config, dtype=dtype, _do_init=False, **model_kwargs)
        params = params_from_checkpoint(model, tensors, param_dtype)
    if report.newly_initialized:  # only those leaves are initialised, from the model's own init
        params = model.init_weights(model.key, model.input_shape, params=params)
        if param_dtype is not None:
            params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, param_dtype), params)
    model.params = params
    model.load_report = report
    return _hub.record_name(model, resolved.name_or_path)


def params_from_checkpoint(model: FlaxModel, tensors: dict, param_dtype: Any = None) -> dict:
    """The params tree of ``tensors`` (canonical key -> LazyTensor), read tensor by tensor.

    Every path and shape is checked against ``jax.eval_shape`` of the model's init
    (``model.params_shape_tree``) before any tensor's bytes are read. Each tensor is then read
    in the Flax layout and dtype (``param_dtype``, else the init's float32) and handed to JAX
    with ``jax.device_put(..., may_alias=True)``, and dropped from ``tensors``: on CPU a
    64-byte-aligned host array becomes the parameter's buffer as it is, so a float32 tensor
    stored in the Flax layout at an aligned offset is the memory-mapped file itself, and any
    other is exactly one copy (made block by block, in its final dtype and layout).
    """
    expected = W.flatten_tree(model.params_shape_tree)
    plan = {}
    problems = []
    for key, tensor in tensors.items():
        path, transpose = W.to_backend_path(key, "flax")
        shape = tuple(tensor.shape[::-1] if transpose else tensor.shape)
        if path not in expected:
            problems.append(f"{key} ({'/'.join(path)}): not a parameter of the model")
        elif tuple(expected[path].shape) != shape:
            problems.append(f"{key}: checkpoint {shape} vs model {tuple(expected[path].shape)}")
        else:
            plan[key] = (path, transpose, np.dtype(param_dtype or expected[path].dtype))
    if problems:
        raise W.WeightMismatchError(
            f"checkpoint does not fit {type(model).__name__} ({'; '.join(problems[:10])})"
        )

    def read(key: str) -> tuple[tuple[str, ...], jax.Array]:
        path, transpose, target = plan[key]
        tensor = tensors.pop(key)
        array = tensor.materialize(transpose=transpose, dtype=target, align=ALIGN)
        return path, jax.device_put(array, may_alias=True)

    # Two readers: a transposed or cast tensor is a copy made block by block in numpy, which
    # releases the GIL; one thread each keeps two cores busy. Largest tensors first.
    order = sorted(plan, key=lambda k: -tensors[k].nbytes)
    with ThreadPoolExecutor(max_workers=min(_READERS, max(1, len(order)))) as pool:
        flat = dict(pool.map(read, order))
    return W.unflatten_tree({plan[k][0]: flat[plan[k][0]] for k in plan})


def save_pretrained(
    model: FlaxModel,
    save_directory: str | os.PathLike,
    params: Mapping | None = None,
    format: str = "safetensors",
) -> Path:
    """Write ``config.json`` and the weights in ``format`` (safetensors, pytorch, flax or tf) as HF does.

    Args:
        model: The Flax model.
        save_directory: Destination directory.
        params: Parameters to write instead of ``model.params``.
        format: Weight file format (``conversion.FORMAT_ALIASES`` names accepted).
    """
    state_dict = params_to_state_dict(model.params if params is None else params)
    return conversion.save_pretrained(state_dict, model.config, model.head, save_directory, format)
