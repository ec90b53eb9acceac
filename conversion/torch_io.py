"""``pytorch_model.bin`` (and its sharded index) <-> canonical state dict. Needs torch.

Checkpoints are untrusted: they are read with ``torch.load(weights_only=True)``, which refuses
to unpickle code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from xlmr import weights as W


def _torch(path: Path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading or writing {path.name} needs PyTorch (pip install 'xlmr[torch]'); "
            "or convert it once with `xlmr-convert SRC DST --to safetensors`"
        ) from None
    return torch


def read(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.name.endswith(".index.json"):
        weight_map = json.loads(path.read_text())["weight_map"]
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            out.update(read(path.parent / shard))
        return out
    torch = _torch(path)
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch weight file ({type(err).__name__}: {err})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    out = {}
    for key, tensor in sd.items():
        if not hasattr(tensor, "detach"):
            raise ValueError(f"{path}: entry {key!r} is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().cpu()
        out[key] = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return out


def write(state_dict, config, head, target: Path) -> None:
    torch = _torch(target)
    full = W.untie(state_dict, config, head)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in full.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        torch.save(tensors, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
