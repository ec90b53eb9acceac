"""Finding, reading and writing weight files; the glue every backend's loading goes through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr.config import CONFIG_NAME, XLMRobertaConfig
from xlmr.heads import Head, get_head

from . import safetensors_io, torch_io

# format name -> (single file, sharded index), in the order from_pretrained prefers them.
FORMATS: dict[str, tuple[str, str]] = {
    "safetensors": ("model.safetensors", "model.safetensors.index.json"),
    "pytorch": ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    "tf": ("tf_model.h5", "tf_model.h5.index.json"),
    "flax": ("flax_model.msgpack", "flax_model.msgpack.index.json"),
}


class CheckpointError(ValueError):
    """A weight file that cannot be read: names the file and what is wrong with it."""


def find_weight_file(directory: str | os.PathLike) -> Path:
    """The weight file (or shard index) of an HF-layout directory, safetensors first."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {directory}")
    if directory.is_file():
        return directory
    for single, index in FORMATS.values():
        for name in (single, index):
            if (directory / name).is_file():
                return directory / name
    names = ", ".join(n for pair in FORMATS.values() for n in pair)
    raise FileNotFoundError(f"{directory} holds no weight file (looked for {names})")


def format_of(path: str | os.PathLike) -> str:
    name = Path(path).name
    for fmt, (single, index) in FORMATS.items():
        if name in (single, index):
            return fmt
    suffixes = {".safetensors": "safetensors", ".bin": "pytorch", ".pt": "pytorch", ".h5": "tf", ".msgpack": "flax"}
    stem = name.removesuffix(".index.json")
    for suffix, fmt in suffixes.items():
        if stem.endswith(suffix):
            return fmt
    raise CheckpointError(f"{path}: not a known weight file (.safetensors, .bin, .h5, .msgpack or a shard index)")


def read_state_dict(path: str | os.PathLike, config: XLMRobertaConfig | None = None) -> dict[str, np.ndarray]:
    """Read any of the four weight files (or a shard index) into canonical names.

    ``config`` lets readers whose files do not say which head they hold (none, today) decide it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such weight file: {path}")
    fmt = format_of(path)
    reader = _READERS.get(fmt)
    if reader is None:
        raise CheckpointError(f"{path}: reading {fmt} files is not supported yet")
    return W.canonicalize(reader(path))


def write_state_dict(
    state_dict: Mapping[str, np.ndarray],
    config: XLMRobertaConfig,
    head: Head | str,
    directory: str | os.PathLike,
    fmt: str = "safetensors",
) -> Path:
    """Write a canonical state dict as ``fmt``'s weight file in ``directory`` (atomically)."""
    head = get_head(head) if isinstance(head, str) else head
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {tuple(FORMATS)}")
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"writing {fmt} files is not supported yet")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / FORMATS[fmt][0]
    writer(dict(state_dict), config, head, target)
    return target


def load_pretrained(
    path: str | os.PathLike, head: Head | str, **config_overrides
) -> tuple[XLMRobertaConfig, W.LoadReport]:
    """Config and checked canonical weights of an HF-layout directory, ready for ``head``.

    ``path`` is a directory holding ``config.json`` and a weight file. The result's
    ``state_dict`` has exactly the keys of ``head``'s model that the checkpoint provides;
    ``newly_initialized`` lists the head weights the model must initialise itself.
    """
    head = get_head(head) if isinstance(head, str) else head
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {path}")
    directory = path if path.is_dir() else path.parent
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}")
    config = XLMRobertaConfig.from_pretrained(directory, **config_overrides)
    weight_file = find_weight_file(path)
    state_dict = read_state_dict(weight_file, config)
    W.dtype_check(state_dict, str(weight_file))
    return config, W.prepare_state_dict(state_dict, config, head, source=str(weight_file))


def save_pretrained(
    state_dict: Mapping[str, np.ndarray],
    config: XLMRobertaConfig,
    head: Head | str,
    directory: str | os.PathLike,
    fmt: str = "safetensors",
) -> Path:
    """``config.json`` (with ``architectures``) and the weight file, as HF's save_pretrained writes them."""
    head = get_head(head) if isinstance(head, str) else head
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory, {directory} is a file")
    directory.mkdir(parents=True, exist_ok=True)
    config = config.copy(architectures=[head.torch_class])
    target = write_state_dict(state_dict, config, head, directory, fmt)
    config.save_pretrained(directory)
    return target


_READERS = {"safetensors": safetensors_io.read, "pytorch": torch_io.read}
_WRITERS = {"safetensors": safetensors_io.write, "pytorch": torch_io.write}
