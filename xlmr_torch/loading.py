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
    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: reinterpret the bits
        return torch.from_numpy(array.view(np.uint16).astype(np.int16)).view(torch.bfloat16)
    if array.dtype.kind != "f":
        raise W.WeightMismatchError(f"weight {key} has dtype {array.dtype}, expected a float array")
    return torch.from_numpy(np.ascontiguousarray(array))


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

    The model is built on the meta device and materialised empty, so no random init is spent on
    weights the checkpoint provides; only ``report.newly_initialized`` weights get HF's init. With
    ``torch_dtype`` the empty model already has that dtype and each checkpoint tensor is cast once,
    as it is copied in (no float32 copy of the whole model first).
    """
    resolved = _hub.resolve_model(path, "pytorch", **_hub.pop_hub_kwargs(config_overrides))
    path = resolved.path
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {path}")
    config, report = conversion.load_pretrained(path, cls.head, root=resolved.root, **config_overrides)
    dtype = _resolve_dtype(torch_dtype, config)
    with torch.device("meta"):
        model = cls(config)
    if dtype is not None:
        model.to(dtype)  # still on the meta device: nothing is allocated or copied
    model.to_empty(device="cpu")
    model.tie_weights()  # to_empty() makes a new Parameter per module: tie again
    load_canonical_state_dict(model, report.state_dict, allow_missing=tuple(report.newly_initialized))
    # Weights the checkpoint lacks (another head's checkpoint): HF's init, module by module.
    modules = {key.rpartition(".")[0] for key in report.newly_initialized}
    for name in sorted(modules):
        model._init_weights(model.get_submodule(name))
    model.tie_weights()
    return _hub.record_name(model.eval(), resolved.name_or_path)


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
