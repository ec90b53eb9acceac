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
    Staged,
    as_lazy,
    byte_view,
    cast,
    index_json,
    np_dtype,
    plan_shards,
    read_checkpoint,
    read_exact,
    shard_name,
    staging,
)

SINGLE, INDEX = "flax_model.msgpack", "flax_model.msgpack.index.json"
EXT_NDARRAY, EXT_NPSCALAR = 1, 3  # flax.serialization._MsgpackExtType
MAX_CHUNK_SIZE = 2**30  # flax.serialization.MAX_CHUNK_SIZE
_CHUNKED = "__msgpack_chunked_array__"


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

    def _array(self, pos: int, n: int):
        out = []
        for _ in range(n):
            item, pos = self.value(pos)
            out.append(item)
        return out, pos

    def _map(self, pos: int, n: int):
        out = {}
        for _ in range(n):
            key, pos = self.value(pos)
            out[str(key)], pos = self.value(pos)
        return out, pos


def _ndarray(walker: _Walker, span: _Span, f, where: str) -> LazyTensor:
    """The flax ndarray extension at ``span``: ``(shape, dtype name, bytes)``; data read on load."""
    parsed, end = walker.value(span.offset)
    ok = isinstance(parsed, list) and len(parsed) == 3 and isinstance(parsed[2], _Span)
    if not ok or end != span.offset + span.length:
        raise CheckpointError(f"{where}: corrupt array record")
    shape, name, data = parsed
    dtype = np_dtype(name.decode() if isinstance(name, bytes) else str(name))
    if data.length != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise CheckpointError(f"{where}: {data.length} bytes do not fit shape {shape} {dtype}")
    return LazyTensor(
        shape, dtype, lambda: read_exact(f, data.offset, tuple(shape), dtype, where), native=where
    )


def _leaves(walker: _Walker, node, f, where: str):
    """Replace extension spans with LazyTensors and chunked-array maps with one LazyTensor."""
    if isinstance(node, dict):
        if node.get(_CHUNKED) is True:
            shape = tuple(node["shape"][str(i)] for i in range(len(node["shape"])))
            chunks = [_leaves(walker, node["chunks"][str(i)], f, where) for i in range(len(node["chunks"]))]
            return LazyTensor(shape, chunks[0].dtype,
                              lambda: np.concatenate([c.load() for c in chunks]).reshape(shape), native=where)  # fmt: skip
        return {k: _leaves(walker, v, f, f"{where}/{k}" if where else k) for k, v in node.items()}
    if isinstance(node, _Span) and node.code in (EXT_NDARRAY, EXT_NPSCALAR):
        return _ndarray(walker, node, f, where)
    raise CheckpointError(f"{where}: unexpected msgpack value {type(node).__name__} in a Flax params tree")


def open_files(paths: list[Path]) -> LazyStateDict:
    out = LazyStateDict()
    for path in paths:
        if Path(path).stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a Flax msgpack file")
        f = open(path, "rb")  # noqa: SIM115 -- closed by out.close()
        out.add_closer(f.close)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            walker = _Walker(buf, str(path))
            tree, end = walker.value(0)
            if end != len(buf):
                raise CheckpointError(f"{path}: corrupt msgpack file ({len(buf) - end} trailing bytes)")
            if not isinstance(tree, dict):
                raise CheckpointError(f"{path}: not a Flax params file (top level is not a map)")
            if set(tree) == {"params"}:
                tree = tree["params"]
            tree = _leaves(walker, tree, f, "")
        for path_parts, lazy in W.flatten_tree(tree).items():
            lazy.native = "/".join(path_parts)
            try:
                key, transpose = W.from_backend_path(path_parts, "flax")
            except (KeyError, IndexError) as err:
                raise CheckpointError(f"{path}: {lazy.native} does not map onto XLM-R ({err})") from None
            out[key] = lazy.transposed() if transpose else lazy
    return out


def open_checkpoint(path: Path) -> LazyStateDict:
    return common.open_checkpoint(path, open_files)


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
            with staged.add(target.parent / name).open("wb") as f:
                _write_tree(f, W.unflatten_tree({paths[k][0]: k for k in block}), emit)
            weight_map.update({"/".join(paths[k][0]): name for k in block})
        if len(shards) > 1:
            staged.target = target.parent / INDEX
            staged.add(staged.target).write_text(index_json(weight_map, total))

    return staging(target, "flax", body)


def write(state_dict, config, head, target: Path, **kwargs) -> Path:
    return stage(state_dict, config, head, target, **kwargs).commit()
