"""``flax_model.msgpack`` (and its sharded index) <-> canonical state dict, with msgpack only (no JAX).

HF's Flax classes save ``flax.serialization.to_bytes(params)``: the params tree as nested msgpack
maps (keys sorted at every level, as jax's tree utilities leave them), each array an msgpack
extension of type 1 holding ``msgpack((shape, dtype name, raw C-order bytes))``; arrays above
2**30 bytes are split into a ``{"__msgpack_chunked_array__": True, "shape", "chunks"}`` map.
Shards are ``flax_model-00001-of-00002.msgpack`` with ``flax_model.msgpack.index.json``.

Reading walks the msgpack structure over a memory map, noting where each array's bytes are,
and reads an array only when it is needed; writing emits the same bytes flax would, one
array at a time. Names follow xlmr.weights' Flax rules (kernel / scale, bias / embedding);
older files spelling layer norms ``gamma`` / ``beta`` read too.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import msgpack
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
    byte_view,
    cast,
    index_json,
    np_dtype,
    plan_shards,
    read_checkpoint,
    shard_name,
    staging,
)

SINGLE, INDEX = "flax_model.msgpack", "flax_model.msgpack.index.json"
EXT_NDARRAY, EXT_NPSCALAR = 1, 3  # flax.serialization._MsgpackExtType
MAX_CHUNK_SIZE = 2**30  # flax.serialization.MAX_CHUNK_SIZE
_CHUNKED = "__msgpack_chunked_array__"
MAX_DEPTH = 64  # a params tree is about 8 levels deep; this bounds the walker's recursion
# The dtype names an array record may carry (flax writes ``dtype.name``); never "object" and friends.
_DTYPE_NAMES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
                "uint8", "uint16", "uint32", "uint64", "bool")  # fmt: skip


# -- reading: a small msgpack walker that leaves array bytes where they are ----------------------------
class _Span:
    """Bytes ``[offset, offset + length)`` of the file (a msgpack bin or ext payload)."""

    __slots__ = ("offset", "length", "code")

    def __init__(self, offset: int, length: int, code: int = -1):
        self.offset, self.length, self.code = offset, length, code


_FIXED = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
          0xD2: ">i", 0xD3: ">q"}  # fmt: skip


class _Walker:
    def __init__(self, buf, where: str):
        self.buf, self.n, self.where = buf, len(buf), where
        self.depth = 0

    def _need(self, pos: int, k: int) -> int:
        if pos + k > self.n:
            raise CheckpointError(
                f"{self.where}: msgpack data is truncated (needs byte {pos + k}, has {self.n})"
            )
        return pos + k

    def _uint(self, pos: int, size: int) -> int:
        end = self._need(pos, size)
        return int.from_bytes(self.buf[pos:end], "big")

    def value(self, pos: int):
        """``(value, end)``: maps -> dict, arrays -> list, bin/ext -> _Span, scalars -> Python values."""
        b = self.buf[self._need(pos, 1) - 1]
        pos += 1
        if b <= 0x7F:
            return b, pos
        if b >= 0xE0:
            return b - 0x100, pos
        if 0x80 <= b <= 0x8F:
            return self._map(pos, b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return self._array(pos, b & 0x0F)
        if 0xA0 <= b <= 0xBF:
            return self._str(pos, b & 0x1F)
        if b in (0xC0, 0xC2, 0xC3):
            return {0xC0: None, 0xC2: False, 0xC3: True}[b], pos
        if b in (0xC4, 0xC5, 0xC6):
            size = 1 << (b - 0xC4)
            length = self._uint(pos, size)
            start = pos + size
            return _Span(start, length), self._need(start, length)
        if b in (0xC7, 0xC8, 0xC9):
            size = 1 << (b - 0xC7)
            length = self._uint(pos, size)
            code = self._uint(pos + size, 1)
            start = pos + size + 1
            return _Span(start, length, code), self._need(start, length)
        if b in _FIXED:
            size = struct.calcsize(_FIXED[b])
            end = self._need(pos, size)
            return struct.unpack(_FIXED[b], self.buf[pos:end])[0], end
        if 0xD4 <= b <= 0xD8:
            length = 1 << (b - 0xD4)
            code = self._uint(pos, 1)
            return _Span(pos + 1, length, code), self._need(pos + 1, length)
        if b in (0xD9, 0xDA, 0xDB):
            size = 1 << (b - 0xD9)
            return self._str(pos + size, self._uint(pos, size))
        if b in (0xDC, 0xDD):
            size = 2 << (b - 0xDC)
            return self._array(pos + size, self._uint(pos, size))
        if b in (0xDE, 0xDF):
            size = 2 << (b - 0xDE)
            return self._map(pos + size, self._uint(pos, size))
        raise CheckpointError(f"{self.where}: corrupt msgpack data (byte 0x{b:02x} at offset {pos - 1})")

    def _str(self, pos: int, length: int):
        end = self._need(pos, length)
        try:
            return bytes(self.buf[pos:end]).decode("utf8"), end
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.where}: corrupt msgpack string at offset {pos}") from None

    def _enter(self, pos: int, n: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CheckpointError(
                f"{self.where}: msgpack data nested more than {MAX_DEPTH} levels deep (offset {pos}): "
                "not a Flax params file"
            )
        if n > self.n - pos:  # every item takes at least one byte
            raise CheckpointError(
                f"{self.where}: msgpack data is truncated (a container of {n} items at {pos})"
            )

    def _array(self, pos: int, n: int):
        self._enter(pos, n)
        out = []
        for _ in range(n):
            item, pos = self.value(pos)
            out.append(item)
        self.depth -= 1
        return out, pos

    def _map(self, pos: int, n: int):
        self._enter(pos, 2 * n)
        out = {}
        for _ in range(n):
            at = pos
            key, pos = self.value(pos)
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise CheckpointError(
                    f"{self.where}: msgpack map key at offset {at} is a {type(key).__name__}, not a name"
                )
            if str(key) in out:
                raise CheckpointError(f"{self.where}: msgpack map repeats the key {key!r} (offset {at})")
            out[str(key)], pos = self.value(pos)
        self.depth -= 1
        return out, pos


def _shape(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {value!r}"[:300])
    return tuple(value)


def _array_dtype(name, where: str) -> np.dtype:
    """The dtype an array record names: numeric types only (an object dtype would read pointers)."""
    if isinstance(name, _Span):
        raise CheckpointError(f"{where}: dtype name must be a string, got binary data")
    if not isinstance(name, str) or name not in _DTYPE_NAMES:
        raise CheckpointError(
            f"{where}: unsupported array dtype {name!r} (expected one of {', '.join(_DTYPE_NAMES)})"[:300]
        )
    return np_dtype(name)


def _ndarray(walker: _Walker, span: _Span, f: MappedFile, where: str) -> LazyTensor:
    """The flax ndarray extension at ``span``: ``(shape, dtype name, bytes)``; data read on load."""
    parsed, end = walker.value(span.offset)
    ok = isinstance(parsed, list) and len(parsed) == 3 and isinstance(parsed[2], _Span)
    if not ok or end != span.offset + span.length:
        raise CheckpointError(f"{where}: corrupt array record (expected [shape, dtype name, bytes])")
    shape, name, data = parsed
    shape = _shape(shape, where)
    dtype = _array_dtype(name, where)
    if data.code != -1:
        raise CheckpointError(f"{where}: array bytes must be msgpack bin, got an extension")
    if data.length != math.prod(shape) * dtype.itemsize:
        raise CheckpointError(f"{where}: {data.length} bytes do not fit shape {list(shape)} {dtype}")
    return LazyTensor.stored(f, data.offset, shape, dtype, native=where)


def _chunked(walker: _Walker, node: dict, f, where: str) -> LazyTensor:
    """flax's ``{"__msgpack_chunked_array__": True, "shape": {"0": d0, ...}, "chunks": {"0": a0, ...}}``."""
    if set(node) != {_CHUNKED, "shape", "chunks"}:
        raise CheckpointError(
            f"{where}: chunked array needs exactly 'shape' and 'chunks', got {sorted(node)}"
        )

    def numbered(value, what):
        if not isinstance(value, dict) or sorted(value) != sorted(str(i) for i in range(len(value))):
            raise CheckpointError(f"{where}: chunked array {what} must be a map keyed 0..n-1")
        return [value[str(i)] for i in range(len(value))]

    shape = _shape(numbered(node["shape"], "shape"), where)
    chunks = []
    for i, chunk in enumerate(numbered(node["chunks"], "chunks")):
        if not (isinstance(chunk, _Span) and chunk.code == EXT_NDARRAY):
            raise CheckpointError(f"{where}: chunk {i} of a chunked array is not an array")
        chunks.append(_ndarray(walker, chunk, f, f"{where} (chunk {i})"))
    if not chunks:
        raise CheckpointError(f"{where}: chunked array has no chunks")
    dtypes = {c.dtype for c in chunks}
    if len(dtypes) != 1 or any(len(c.shape) != 1 for c in chunks):
        raise CheckpointError(f"{where}: chunks of a chunked array must be flat and of one dtype")
    if sum(c.size for c in chunks) != math.prod(shape):
        raise CheckpointError(
            f"{where}: chunked array declares shape {list(shape)} ({math.prod(shape)} values) but its chunks "
            f"hold {sum(c.size for c in chunks)}"
        )
    return LazyTensor(shape, chunks[0].dtype,
                      lambda: np.concatenate([c.load() for c in chunks]).reshape(shape), native=where)  # fmt: skip


def _leaves(walker: _Walker, node, f, where: str):
    """Replace extension spans with LazyTensors and chunked-array maps with one LazyTensor."""
    if isinstance(node, dict):
        if _CHUNKED in node:
            if node[_CHUNKED] is not True:
                raise CheckpointError(f"{where}: {_CHUNKED} must be true")
            return _chunked(walker, node, f, where)
        return {k: _leaves(walker, v, f, f"{where}/{k}" if where else k) for k, v in node.items()}
    if isinstance(node, _Span) and node.code in (EXT_NDARRAY, EXT_NPSCALAR):
        return _ndarray(walker, node, f, where)
    raise CheckpointError(f"{where}: unexpected msgpack value {type(node).__name__} in a Flax params tree")


def open_files(paths: list[Path]) -> LazyStateDict:
    out = LazyStateDict()
    for path in paths:
        if Path(path).stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a Flax msgpack file")
        f = MappedFile(path)
        out.add_closer(f.close)
        with mmap.mmap(f.file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            walker = _Walker(buf, str(path))
            tree, end = walker.value(0)
            if end != len(buf):
                raise CheckpointError(f"{path}: corrupt msgpack file ({len(buf) - end} trailing bytes)")
            if not isinstance(tree, dict):
                raise CheckpointError(f"{path}: not a Flax params file (top level is not a map)")
            if set(tree) == {"params"}:
                tree = tree["params"]
            try:
                tree = _leaves(walker, tree, f, "")
            except CheckpointError as err:
                raise CheckpointError(f"{path}: {err}") from None
        for path_parts, lazy in W.flatten_tree(tree).items():
            lazy.native = "/".join(path_parts)
            try:
                key, transpose = W.from_backend_path(path_parts, "flax")
            except (KeyError, IndexError) as err:
                raise CheckpointError(f"{path}: {lazy.native} does not map onto XLM-R ({err})") from None
            out[key] = lazy.transposed() if transpose else lazy
    return out


def open_checkpoint(path: Path, root=None) -> LazyStateDict:
    return common.open_checkpoint(path, open_files, root=root)


def read(path: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(open_checkpoint, path)


# -- writing: the bytes flax.serialization.msgpack_serialize produces, one array at a time --------------
def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n) if n < 2**16 else b"\xdf" + struct.pack(">I", n)


def _ext_header(length: int, code: int) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if length in fixed:
        return bytes([fixed[length], code])
    if length < 2**8:
        return bytes([0xC7, length, code])
    if length < 2**16:
        return b"\xc8" + struct.pack(">H", length) + bytes([code])
    return b"\xc9" + struct.pack(">I", length) + bytes([code])


def _bin_header(length: int) -> bytes:
    if length < 2**8:
        return bytes([0xC4, length])
    return b"\xc5" + struct.pack(">H", length) if length < 2**16 else b"\xc6" + struct.pack(">I", length)


def _write_array(f, array: np.ndarray) -> None:
    """One ndarray extension, as flax's ``_ndarray_to_bytes`` + ``msgpack.ExtType(1, ...)``."""
    inner = b"\x93" + msgpack.packb(list(array.shape)) + msgpack.packb(array.dtype.name, use_bin_type=True)
    inner += _bin_header(array.nbytes)
    f.write(_ext_header(len(inner) + array.nbytes, EXT_NDARRAY))
    f.write(inner)
    f.write(byte_view(array))


def _write_leaf(f, array: np.ndarray) -> None:
    if array.nbytes <= MAX_CHUNK_SIZE:
        _write_array(f, array)
        return
    flat = array.reshape(-1)
    step = max(1, int(MAX_CHUNK_SIZE / array.dtype.itemsize))
    chunks = [flat[i : i + step] for i in range(0, flat.size, step)]
    f.write(_map_header(3) + msgpack.packb(_CHUNKED) + msgpack.packb(True))
    f.write(msgpack.packb("shape") + msgpack.packb({str(i): d for i, d in enumerate(array.shape)}))
    f.write(msgpack.packb("chunks") + _map_header(len(chunks)))
    for i, chunk in enumerate(chunks):
        f.write(msgpack.packb(str(i)))
        _write_array(f, chunk)


def _write_tree(f, tree: Mapping, emit: Callable[[object, str], None]) -> None:
    f.write(_map_header(len(tree)))
    for name in sorted(tree):
        f.write(msgpack.packb(name))
        if isinstance(tree[name], Mapping):
            _write_tree(f, tree[name], emit)
        else:
            emit(f, tree[name])


def stage(state_dict: Mapping, config: XLMRobertaConfig, head: Head, target: Path, *, dtype=None,
          max_shard_size=None, progress=None) -> Staged:  # fmt: skip
    target = Path(target)
    tensors = {k: as_lazy(v) for k, v in W.resolve_ties(state_dict, config, head).items()}
    paths = {k: W.to_backend_path(k, "flax") for k in tensors}  # key -> (path, transpose)
    by_path = {paths[k][0]: k for k in tensors}
    order = [by_path[p] for p in sorted(by_path)]  # the sorted tree, walked depth first

    def body(staged: Staged) -> None:
        total = 0

        def emit(f, key: str) -> None:
            nonlocal total
            array = cast(tensors[key].load(), dtype)
            staged.record(key, array)
            if paths[key][1]:
                array = np.ascontiguousarray(array.T)
            _write_leaf(f, array)
            total += array.nbytes
            if progress:
                progress(array.nbytes)

        shards = [order]
        if max_shard_size:
            shards = plan_shards(((k, tensors[k].size * (dtype or tensors[k].dtype).itemsize) for k in order),
                                 max_shard_size)  # fmt: skip
        weight_map = {}
        for i, block in enumerate(shards):
            name = shard_name(SINGLE, i, len(shards)) if len(shards) > 1 else target.name
            with common.writable(staged.add(target.parent / name)) as f:
                _write_tree(f, W.unflatten_tree({paths[k][0]: k for k in block}), emit)
            weight_map.update({"/".join(paths[k][0]): name for k in block})
        if len(shards) > 1:
            staged.target = target.parent / INDEX
            staged.add(staged.target).write_text(index_json(weight_map, total))

    return staging(target, "flax", body)


def write(state_dict, config, head, target: Path, **kwargs) -> Path:
    return stage(state_dict, config, head, target, **kwargs).commit()
