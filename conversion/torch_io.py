"""``pytorch_model.bin`` (and its sharded index) <-> canonical state dict. Needs torch.

Checkpoints are untrusted: they are read with ``torch.load(weights_only=True)``, which refuses
to unpickle code, memory-mapped where the file allows it so tensors are read when used.
Files are written as HF's ``save_pretrained(safe_serialization=False)`` writes them: tied
aliases included (sharing one storage, so stored once), shards named
``pytorch_model-00001-of-00002.bin`` with ``pytorch_model.bin.index.json``.
"""

from __future__ import annotations

import pickle
import re
import struct
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head

from . import common
from .common import (
    CheckpointError,
    LazyStateDict,
    LazyTensor,
    MappedFile,
    Staged,
    as_lazy,
    bfloat16,
    cast,
    head_keys_in_order,
    index_json,
    plan_shards,
    read_checkpoint,
    shard_name,
    staging,
)

SINGLE, INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def _torch(path: Path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading or writing {Path(path).name} needs PyTorch (pip install 'xlmr[torch]'); "
            "or convert it once with `xlmr-convert SRC DST --to safetensors`"
        ) from None
    return torch


def _to_numpy(tensor) -> np.ndarray:
    torch = _torch(Path(SINGLE))
    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(bfloat16())
    return t.numpy()


def _from_numpy(array: np.ndarray):
    torch = _torch(Path(SINGLE))
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _load(torch, path: Path) -> dict:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a PyTorch weight file")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"PK":  # torch's zip format: the central directory at the end must be intact
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise CheckpointError(f"{path}: truncated or corrupt PyTorch zip archive ({err})") from None
    elif magic != b"\x80\x02":  # nor a legacy (pickle protocol 2) torch file
        raise CheckpointError(
            f"{path}: not a PyTorch weight file (neither a zip archive nor a legacy torch pickle)"
        )
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err):
                raise
            # Legacy (pre-zip) files cannot be memory-mapped.
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- torch raises many types for a bad file
        if isinstance(err, pickle.UnpicklingError):
            raise CheckpointError(
                f"{path}: torch.load(weights_only=True) refused it: corrupt, or it holds pickled objects other "
                "than tensors (checkpoints are untrusted, so that is not retried unsafely)"
            ) from None
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch weight file ({type(err).__name__}: {msg})"
        ) from None


_DATA_RECORD = re.compile(r"^[^/]+/data/\d+$")


def _storage_offsets(path: Path, storages: dict[int, int]) -> dict[int, int]:
    """Where each storage's bytes lie in the file (data pointer -> offset); {} where that is not certain.

    ``torch.load(mmap=True)`` maps the zip file once: a storage is its ``archive/data/N`` record,
    stored uncompressed. Records and storages, each sorted by position, must pair up one to one
    with equal sizes and a constant distance (the map's base); otherwise nothing is claimed.
    """
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
            infos = archive.infolist()
            order = next((archive.read(i) for i in infos if i.filename.endswith("/byteorder")), b"little")
            data = [i for i in infos if _DATA_RECORD.match(i.filename) and i.file_size]
            if order.decode(errors="replace") != sys.byteorder or any(i.compress_type for i in data):
                return {}
            records = []
            for info in data:
                f.seek(info.header_offset)
                head = f.read(30)
                if len(head) != 30 or head[:4] != b"PK\x03\x04":
                    return {}
                name_len, extra_len = struct.unpack("<HH", head[26:30])
                records.append((info.header_offset + 30 + name_len + extra_len, info.file_size))
    except (OSError, zipfile.BadZipFile, ValueError, struct.error):
        return {}
    records.sort()
    pointers = sorted(storages.items())
    if not records or len(records) != len(pointers):
        return {}
    base = pointers[0][0] - records[0][0]
    if any(n != size or ptr - offset != base for (ptr, n), (offset, size) in zip(pointers, records)):
        return {}
    return {ptr: offset for (ptr, _), (offset, _) in zip(pointers, records)}


def open_files(paths: list[Path]) -> LazyStateDict:
    """Open ``pytorch_model.bin`` files lazily.

    Tensors whose bytes are found in the zip archive (:func:`_storage_offsets`) are read from the
    file like safetensors ones (``pread``, or a private map of our own), leaving torch's map
    untouched; others (legacy files, views of a larger storage) are read through torch.
    """
    out = LazyStateDict()
    for path in paths:
        torch = _torch(path)
        sd = _load(torch, path)
        if not isinstance(sd, dict):
            raise CheckpointError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
        for key, tensor in sd.items():
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{path}: entry {key!r} is a {type(tensor).__name__}, not a tensor")
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in sd.values()}
        offsets = _storage_offsets(path, {p: n for p, n in storages.items() if n})
        mapped = None
        if offsets:
            mapped = MappedFile(path)
            out.add_closer(mapped.close)
        for key, tensor in sd.items():
            dtype = (
                bfloat16()
                if tensor.dtype == torch.bfloat16
                else torch.empty(0, dtype=tensor.dtype).numpy().dtype
            )
            # Names sharing one storage (HF's tied LM decoder) share bytes: known without reading them.
            pointer = tensor.untyped_storage().data_ptr()
            identity = (pointer, tensor.storage_offset(), tuple(tensor.stride()))
            if mapped is not None and pointer in offsets and tensor.is_contiguous():
                offset = offsets[pointer] + tensor.storage_offset() * tensor.element_size()
                lazy = LazyTensor.stored(mapped, offset, tuple(tensor.shape), dtype, native=key)
                lazy.identity = identity
            else:
                lazy = LazyTensor(
                    tuple(tensor.shape), dtype, lambda t=tensor: _to_numpy(t), native=key, identity=identity
                )
            out[key] = lazy
    return out


def open_checkpoint(path: Path, root=None) -> LazyStateDict:
    return common.open_checkpoint(path, open_files, stored_names=set, root=root)


def read(path: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(open_checkpoint, path)


def stage(state_dict: Mapping, config: XLMRobertaConfig, head: Head, target: Path, *, dtype=None,
          max_shard_size=None, progress=None) -> Staged:  # fmt: skip
    """Write like HF: tied aliases present and sharing their source's storage."""
    torch = _torch(target)
    target = Path(target)
    tensors = {k: as_lazy(v) for k, v in W.resolve_ties(state_dict, config, head).items()}
    order = head_keys_in_order(tensors, config, head)
    aliases = {s: a for a, s in W.tied_aliases(config, head).items() if s in tensors}

    def body(staged: Staged) -> None:
        sizes = [(k, tensors[k].size * (dtype or tensors[k].dtype).itemsize) for k in order]
        shards = plan_shards(sizes, max_shard_size) if max_shard_size else [order]
        weight_map, total = {}, 0
        name = target.name
        for i, keys in enumerate(shards):
            block = {}
            for key in keys:
                array = cast(tensors[key].load(), dtype)
                staged.record(key, array)
                block[key] = _from_numpy(array)
                if key in aliases:
                    block[aliases[key]] = block[key]  # one storage, as tied parameters are
                if progress:
                    progress(array.nbytes)
                total += array.nbytes
            if len(shards) > 1:
                name = shard_name(SINGLE, i, len(shards))
            with common.writable(staged.add(target.parent / name)) as f:
                torch.save(block, f)
            weight_map.update(dict.fromkeys(block, name))
            del block
        if len(shards) > 1:
            staged.target = target.parent / INDEX
            staged.add(staged.target).write_text(
                index_json(weight_map, total, sum(t.size for t in tensors.values()))
            )

    return staging(target, "pytorch", body)


def write(state_dict, config, head, target: Path, **kwargs) -> Path:
    return stage(state_dict, config, head, target, **kwargs).commit()
