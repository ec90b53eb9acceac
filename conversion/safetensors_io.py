"""``model.safetensors`` (and its sharded index) <-> canonical state dict."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file


def read(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if path.name.endswith(".index.json"):
        return _read_index(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None


def _read_index(path: Path) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a valid shard index ({err})") from None
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        out.update(read(path.parent / shard))
    return out


def write(state_dict, config, head, target: Path) -> None:
    tensors = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
