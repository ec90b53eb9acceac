"""from_pretrained / save_pretrained for the PyTorch models, on top of conversion/ and xlmr.weights.

Weights move as canonical numpy state dicts: the torch module paths *are* the canonical keys
(``xlmr.weights.to_backend_path(key, "torch")`` is the identity), so loading is a key-for-key
copy plus re-tying the LM decoder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import conversion
from conversion.common import np_dtype
from xlmr import _hub
from xlmr import weights as W
from xlmr.config import XLMRobertaConfig
from xlmr.protocols import PretrainedModel, PretrainedModelClass

logger = logging.getLogger("xlmr")

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def _resolve_dtype(torch_dtype: torch.dtype | str | None, config: XLMRobertaConfig) -> torch.dtype | None:
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    name = str(torch_dtype)
    if name == "auto":
        name = str(config.torch_dtype or "float32")
    name = name.removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(
            f"torch_dtype must be a torch dtype, one of {tuple(_DTYPES)} or 'auto', got {torch_dtype!r}"
        )
    return _DTYPES[name]


def _to_tensor(key: str, value: Any) -> torch.Tensor:
    array = np.asarray(value)
    if array.dtype.name != "bfloat16" and array.dtype.kind != "f":
        raise W.WeightMismatchError(f"weight {key} has dtype {array.dtype}, expected a float array")
    return _as_torch(np.ascontiguousarray(array))


def _as_torch(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory (ml_dtypes' bfloat16 reinterpreted bit for bit)."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _read(tensor: Any, dtype: torch.dtype) -> torch.Tensor:
    """One checkpoint tensor as a torch tensor of ``dtype`` (a view of the file where possible).

    Casts go through torch's own (round to nearest even, as numpy's, and faster). A float file
    into bfloat16 moves the bits as int16, so numpy needs no bfloat16 type: importing ml_dtypes
    for it would cost most of a second.
    """
    if dtype == torch.bfloat16 and tensor.dtype.name != "bfloat16" and tensor.base is None:
        carrier = tensor.materialize(dtype=np.int16, align=2, convert=_cast_to(torch.bfloat16))
        return torch.from_numpy(carrier).view(torch.bfloat16)
    array = tensor.materialize(dtype=_numpy_dtype(dtype), align=dtype.itemsize, convert=_cast_to(dtype))
    return _as_torch(array)


def _cast_to(dtype: torch.dtype):
    def convert(out: np.ndarray, block: np.ndarray) -> None:
        target = torch.from_numpy(out)
        target = target.view(dtype) if target.dtype != dtype else target
        target.copy_(_as_torch(np.ascontiguousarray(block)))

    return convert


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return np_dtype(str(dtype).removeprefix("torch."))


def canonical_state_dict(model: PretrainedModel) -> dict[str, np.ndarray]:
    """``{canonical key: numpy array}``: each weight once (tied aliases resolved), float32 for bfloat16."""
    out = {}
    for key, param in model.named_parameters():  # named_parameters() yields a tied Parameter once
        tensor = param.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        out[key] = tensor.numpy().copy()
    return W.resolve_ties(out, model.config, model.head)


def load_canonical_state_dict(
    model: PretrainedModel, state_dict: Mapping[str, Any], *, allow_missing: tuple[str, ...] = ()
) -> None:
    """Copy a canonical numpy state dict into ``model``; keys and shapes must match exactly.

    Tied aliases in ``state_dict`` are resolved first. ``allow_missing`` names model weights the
    dict may lack (they keep their current values). Raises :class:`xlmr.weights.WeightMismatchError`
    naming any missing, unexpected or misshapen key.
    """
    state_dict = W.resolve_ties(dict(state_dict), model.config, model.head)
    params = dict(model.named_parameters())
    unexpected = sorted(set(state_dict) - set(params))
    missing = sorted(set(params) - set(state_dict) - set(allow_missing))
    misshapen = [
        f"{k}: given {tuple(np.shape(v))} vs model {tuple(params[k].shape)}"
        for k, v in state_dict.items()
        if k in params and tuple(np.shape(v)) != tuple(params[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    if misshapen:
        problems.append("misshapen " + "; ".join(misshapen))
    if problems:
        raise W.WeightMismatchError(
            f"state dict does not fit {type(model).__name__}: " + " | ".join(problems)
        )
    with torch.no_grad():
        for key, value in state_dict.items():
            params[key].copy_(_to_tensor(key, value))
    model.tie_weights()


def from_pretrained(
    cls: PretrainedModelClass,
    path: str | os.PathLike,
    *,
    torch_dtype: torch.dtype | str | None = None,
    **config_overrides: Any,
) -> PretrainedModel:
    """Build ``cls`` from an HF-layout directory or Hub repo; see ``XLMRobertaPreTrainedModel.from_pretrained``.

    A Hub name is resolved by :func:`xlmr._hub.resolve_model` (HF's Hub keyword arguments are
    taken from ``config_overrides``): config.json and one weight format, safetensors first, then
    ``pytorch_model.bin``.

    The model is built on the meta device: no memory and no random init is spent on weights the
    checkpoint provides. Each checkpoint tensor then becomes its parameter, one at a time
    (:func:`fill_from_checkpoint`): without a cast, a view of the memory-mapped file (pages are
    read when used, as HF's loader does); with ``torch_dtype`` (or for a stored transpose) one new
    array of the final dtype, read block by block. Only ``report.newly_initialized`` weights get
    memory of their own and HF's init.
    """
    resolved = _hub.resolve_model(path, "pytorch", **_hub.pop_hub_kwargs(config_overrides))
    path = resolved.path
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {path}")
    config, report = conversion.load_pretrained(
        path, cls.head, root=resolved.root, lazy=True, **config_overrides
    )
    with report.state_dict as tensors:
        dtype = _resolve_dtype(torch_dtype, config)
        with torch.device("meta"), _NoInit():
            model = cls(config)
        if dtype is not None:
            model.to(dtype)  # still on the meta device: nothing is allocated or copied
        fill_from_checkpoint(model, tensors, report.newly_initialized)
    return _hub.record_name(model.eval(), resolved.name_or_path)


class _NoInit(torch.overrides.TorchFunctionMode):
    """Inside (this thread only): the in-place initialisers do nothing (``meta_only``: on meta tensors).

    For building on the meta device, where they have no data to fill anyway: module
    constructors and ``post_init`` call them all the same, and the first random one on the
    meta device costs seconds (torch imports its compiler stack for it).
    """

    def __init__(self, meta_only: bool = False):
        super().__init__()
        self.meta_only = meta_only

    OPS = frozenset({"normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                     "xavier_uniform_", "xavier_normal_", "orthogonal_", "fill_", "zero_", "ones_", "zeros_",
                     "constant_"})  # fmt: skip

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.OPS:
            tensor = args[0] if args else kwargs.get("tensor")
            if not self.meta_only or getattr(tensor, "is_meta", False):
                return tensor
        return func(*args, **kwargs)


def fill_from_checkpoint(
    model: PretrainedModel, tensors: Mapping[str, Any], newly_initialized: list[str]
) -> None:
    """Give every parameter of a meta-device ``model`` its data, tensor by tensor.

    ``tensors`` maps canonical keys to :class:`conversion.common.LazyTensor` (already checked by
    :func:`conversion.load_pretrained`); each is read as it is put in place and dropped from the
    dict (a mutable mapping) right after. Keys in ``newly_initialized`` get fresh memory and HF's
    ``_init_weights`` for their module -- the init runs for exactly those weights: the
    module's other parameters are still on the meta device then, where it does nothing. A
    parameter left on the meta device is an error naming it.
    """
    owners: dict[str, torch.nn.Module] = {}
    for key in newly_initialized:
        module_name, _, name = key.rpartition(".")
        module = model.get_submodule(module_name)
        param = module._parameters[name]
        module._parameters[name] = torch.nn.Parameter(
            torch.empty(param.shape, dtype=param.dtype, device="cpu"), requires_grad=param.requires_grad
        )
        owners[module_name] = module
    with _NoInit(meta_only=True):  # a module's weights from the checkpoint are still meta here
        for module in owners.values():
            model._init_weights(module)
    for key in list(tensors):
        tensor = tensors.pop(key) if isinstance(tensors, dict) else tensors[key]
        module_name, _, name = key.rpartition(".")
        module = model.get_submodule(module_name)
        param = module._parameters.get(name)
        if param is None:
            raise W.WeightMismatchError(f"checkpoint weight {key} is no parameter of {type(model).__name__}")
        if tuple(tensor.shape) != tuple(param.shape):
            raise W.WeightMismatchError(
                f"{key}: checkpoint shape {tuple(tensor.shape)} does not fit the model's {tuple(param.shape)}"
            )
        module._parameters[name] = torch.nn.Parameter(
            _read(tensor, param.dtype), requires_grad=param.requires_grad
        )
        del tensor
    model.tie_weights()
    left = [n for n, p in (*model.named_parameters(), *model.named_buffers()) if p.is_meta]
    if left:
        raise W.WeightMismatchError(
            f"{type(model).__name__}: weights neither in the checkpoint nor initialised: {', '.join(left[:10])}"
        )


def save_pretrained(
    model: PretrainedModel,
    save_directory: str | os.PathLike,
    *,
    safe_serialization: bool = True,
    format: str | None = None,
) -> Path:
    """``config.json`` plus the weight file (``format`` one of safetensors/pytorch/tf/flax). Returns the file."""
    fmt = format or ("safetensors" if safe_serialization else "pytorch")
    return conversion.save_pretrained(
        canonical_state_dict(model), model.config, model.head, save_directory, fmt
    )
