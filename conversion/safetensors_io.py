"""``model.safetensors`` (and its sharded index) <-> canonical state dict, streamed tensor by tensor.

The format is small enough to read and write directly: an 8-byte little-endian header length, a
JSON header ``{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}}`` padded with
spaces to 8 bytes, then the raw little-endian data. Reading seeks to each tensor when it is
needed; writing puts the header first and then each tensor's bytes, so neither holds more than
one tensor.

The files are in the safetensors library's format and read by it unchanged, with one difference
from ``safetensors.numpy.save_file``'s bytes: the data are laid out for memory mapping. Every
tensor whose size is a multiple of 64 bytes (all of XLM-R's weight matrices, biases and norms)
starts at a 64-byte boundary of the file: the header is padded with spaces up to that boundary
(the library pads it to 8), those tensors come first and the few others (an odd-sized LM bias or
classifier) last. TensorFlow and XLA use a 64-byte-aligned host buffer as it is, so such a file
loads in every backend as the memory-mapped file itself, without a copy; in a file where the
tensors happen to sit elsewhere, as in most written by other tools, each is copied once.

Files written by HF's TF and Flax ``save_pretrained(safe_serialization=True)`` (metadata
``format`` ``"tf"`` / ``"flax"``) are read too: their names and layouts are converted back.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr.config import MAX_JSON_DEPTH, XLMRobertaConfig, json_depth
from xlmr.heads import Head

from . import common
from .common import (
    ALIGN,
    CheckpointError,
    LazyStateDict,
    LazyTensor,
    MappedFile,
    Staged,
    as_lazy,
    bfloat16,
    byte_view,
    cast,
    head_keys_in_order,
    index_json,
    plan_shards,
    read_checkpoint,
    shard_name,
    staging,
)

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
_MAX_HEADER = 100_000_000
_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}  # fmt: skip
_NAMES = {v: k for k, v in _CODES.items()}
# safetensors sorts tensors by dtype (its enum order, largest first), then by name; so does
# _write_file within each of its two groups (tensors of whole 64-byte blocks first, then the rest).
_RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
         "U64"]  # fmt: skip


def _dtype(code: str, where: str) -> np.dtype:
    if code not in _CODES:
        raise CheckpointError(f"{where}: unsupported safetensors dtype {code!r}")
    return bfloat16() if code == "BF16" else np.dtype(_CODES[code])


def _code(dtype: np.dtype) -> str:
    name = "bfloat16" if dtype.name == "bfloat16" else np.dtype(dtype).name
    if name not in _NAMES:
        raise CheckpointError(f"safetensors cannot store dtype {name}")
    return _NAMES[name]


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(path: Path, name: str, info) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """dtype, shape and data offsets of one header entry, each field checked as safetensors does."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: header entry must be an object, got {type(info).__name__}")
    for field in ("dtype", "shape", "data_offsets"):
        if field not in info:
            raise CheckpointError(f"{where}: header entry has no {field!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str):
        raise CheckpointError(f"{where}: dtype must be a string, got {code!r}")
    dtype = _dtype(code, where)
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}"[:300])
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise CheckpointError(
            f"{where}: data_offsets must be two non-negative integers, got {offsets!r}"[:300]
        )
    begin, end = offsets
    nbytes = math.prod(shape) * dtype.itemsize
    if end < begin or end - begin != nbytes:
        raise CheckpointError(
            f"{where}: data_offsets {begin}..{end} do not fit shape {shape} {code} ({nbytes} bytes)"
        )
    return dtype, tuple(shape), begin, end


def read_header(path: Path) -> tuple[dict, int]:
    """The parsed, validated JSON header and the offset where the data starts.

    Checked before any tensor is read, with the safetensors library's rules: the header is a
    UTF-8 JSON object of at most 100 MB; ``__metadata__`` maps strings to strings; every tensor
    has a known dtype, a shape of non-negative integers and ``data_offsets`` matching that shape;
    the tensors' byte ranges tile the data section exactly (no overlap, no gap) and it ends where
    the file ends. Errors name the file and the tensor or field. The library itself
    (``safe_open``, which reads no tensor data) then checks the file too, so anything it refuses
    is refused here as well.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(
                f"{path}: not a safetensors file or truncated (header length {n}, file {size} bytes)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors header ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt safetensors header (JSON nested too deeply)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    if json_depth(header) > MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{path}: corrupt safetensors header (JSON nested more than {MAX_JSON_DEPTH} deep)"
        )
    metadata = header.get("__metadata__")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise CheckpointError(
                f"{path}: __metadata__ must be an object of strings, got {type(metadata).__name__}"
            )
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise CheckpointError(f"{path}: __metadata__[{key!r}] must be a string, got {value!r}"[:300])
    start = 8 + n
    ranges = sorted(
        (begin, end, name)
        for name, info in header.items()
        if name != "__metadata__"
        for _, _, begin, end in [_check_entry(path, name, info)]
    )
    position, previous = 0, None
    for begin, end, name in ranges:
        if begin != position:
            what = f"overlaps {previous!r}" if begin < position else f"leaves a gap after {previous!r}"
            raise CheckpointError(
                f"{path}: tensor {name!r}: data_offsets {begin}..{end} {what} (expected to start at {position})"
            )
        position, previous = end, name
    if start + position > size:
        raise CheckpointError(
            f"{path}: file is truncated ({previous!r} ends at byte {start + position}, file has {size})"
        )
    if start + position < size:
        raise CheckpointError(
            f"{path}: {size - start - position} bytes after the last tensor: not a valid safetensors file"
        )
    _library_check(path)
    return header, start


def _library_check(path: Path) -> None:
    """The safetensors library's own validation (it maps the file and reads no tensor)."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover -- a core dependency
        return
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except Exception as err:  # noqa: BLE001 -- SafetensorError, or an OSError from mmap
        message = str(err).removeprefix("Error while deserializing header: ")
        raise CheckpointError(f"{path}: the safetensors library refuses it: {message}") from None


def _native_to_canonical(name: str, fmt: str) -> tuple[str, bool]:
    if fmt == "tf":
        from .h5_io import tf_name_to_canonical

        return tf_name_to_canonical(name)
    if fmt == "flax":
        return W.from_backend_path(name.split("."), "flax")
    return name, False


def open_files(paths: list[Path]) -> LazyStateDict:
    """Lazily open safetensors files (the shards of one checkpoint)."""
    out = LazyStateDict()
    fmt = "pt"
    for path in paths:
        header, start = read_header(path)
        fmt = (header.get("__metadata__") or {}).get("format", "pt")
        mapped = MappedFile(path)
        out.add_closer(mapped.close)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _dtype(info["dtype"], str(path))
            shape, offset = tuple(info["shape"]), start + info["data_offsets"][0]
            key, transpose = _native_to_canonical(name, fmt)
            lazy = LazyTensor.stored(mapped, offset, shape, dtype, native=name)
            out[key] = lazy.transposed() if transpose else lazy
    out.metadata["format"] = fmt
    if fmt == "tf":
        from .h5_io import strip_base_prefix

        strip_base_prefix(out)
    return out


def open_checkpoint(path: Path, root=None) -> LazyStateDict:
    return common.open_checkpoint(path, open_files, root=root)


def read(path: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(open_checkpoint, path)


def _write_file(path: Path, tensors: Mapping[str, LazyTensor], order: list[str], dtype, staged: Staged,
                progress: Callable[[int], None] | None, metadata: dict) -> int:  # fmt: skip
    infos, offset = {}, 0
    codes = {k: _code(dtype or tensors[k].dtype) for k in order}
    sizes = {k: tensors[k].size * (dtype or tensors[k].dtype).itemsize for k in order}
    order = sorted(order, key=lambda k: (sizes[k] % ALIGN != 0, -_RANK.index(codes[k]), k))
    for key in order:
        infos[key] = {"dtype": codes[key], "shape": list(tensors[key].shape),
                      "data_offsets": [offset, offset + sizes[key]]}  # fmt: skip
        offset += sizes[key]
    header = json.dumps({"__metadata__": metadata, **infos}, separators=(",", ":")).encode()
    header += b" " * (-(8 + len(header)) % ALIGN)  # the data start on a 64-byte boundary
    with common.writable(path) as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for key in order:
            array = cast(tensors[key].load(), dtype)
            f.write(byte_view(array))
            staged.record(key, array)
            if progress:
                progress(array.nbytes)
            del array
    return offset


def stage(state_dict: Mapping, config: XLMRobertaConfig, head: Head, target: Path, *, dtype=None,
          max_shard_size=None, progress=None) -> Staged:  # fmt: skip
    """Write ``state_dict`` (tied aliases removed, as HF's safetensors files are) under temporary names."""
    tensors = {k: as_lazy(v) for k, v in W.resolve_ties(state_dict, config, head).items()}
    target = Path(target)
    order = head_keys_in_order(tensors, config, head)

    def body(staged: Staged) -> None:
        meta = {"format": "pt"}
        shards = plan_shards(((k, tensors[k].size * (dtype or tensors[k].dtype).itemsize) for k in order),
                             max_shard_size) if max_shard_size else [order]  # fmt: skip
        if len(shards) == 1:
            _write_file(staged.add(target), tensors, order, dtype, staged, progress, meta)
            return
        index_path = target.parent / INDEX
        staged.target = index_path
        weight_map, total = {}, 0
        for i, keys in enumerate(shards):
            name = shard_name(SINGLE, i, len(shards))
            total += _write_file(
                staged.add(target.parent / name), tensors, keys, dtype, staged, progress, meta
            )
            weight_map.update(dict.fromkeys(keys, name))
        staged.add(index_path).write_text(
            index_json(weight_map, total, total_parameters=sum(t.size for t in tensors.values()))
        )

    return staging(target, "safetensors", body)


def write(state_dict, config, head, target: Path, **kwargs) -> Path:
    return stage(state_dict, config, head, target, **kwargs).commit()
