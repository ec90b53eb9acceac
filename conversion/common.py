"""What every weight-file module shares: lazy tensors, dtypes, shard plans, staged (atomic) writes.

A reader opens a file and returns a :class:`LazyStateDict`: canonical key -> :class:`LazyTensor`
whose shape and dtype are known without reading the data. A writer *stages* its files under
temporary names that no reader picks up (``.model.safetensors.<random>.tmp``), returns a
:class:`Staged` with a manifest (key, shape, dtype, digest of the bytes written), and only
:meth:`Staged.commit` moves them into place with ``os.replace`` -- shards first, the index last.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr._fileio import UnsafePathError, contained_path, temp_path
from xlmr.config import MAX_JSON_DEPTH, XLMRobertaConfig, json_depth
from xlmr.heads import Head


class CheckpointError(ValueError):
    """A weight file that cannot be read or written: names the file and what is wrong with it."""


# -- dtypes ----------------------------------------------------------------------------------------
DTYPES = ("float32", "float16", "bfloat16")


def bfloat16() -> np.dtype:
    """numpy's bfloat16 (from ml_dtypes, which jax and tensorflow install)."""
    try:
        import ml_dtypes
    except ImportError:
        raise CheckpointError(
            "bfloat16 weights need the ml_dtypes package (pip install ml_dtypes); "
            "or convert the checkpoint to float32 / float16 where it was written"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def np_dtype(name: str | np.dtype) -> np.dtype:
    """A numpy dtype from a name (``"bfloat16"`` included)."""
    if isinstance(name, np.dtype):
        return name
    if not isinstance(name, str | bytes):  # a scalar type: np.float32, jnp.bfloat16...
        return np.dtype(name)
    name = name.decode() if isinstance(name, bytes) else str(name)
    if name == "bfloat16":
        return bfloat16()
    return np.dtype(name)


def cast(array: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    """Exact numpy / ml_dtypes cast (round to nearest even), C-contiguous."""
    if dtype is not None and array.dtype != dtype:
        with np.errstate(over="ignore"):  # values beyond the range were refused or allowed upstream
            array = array.astype(dtype)
    return np.ascontiguousarray(array)


def byte_view(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array without copying (works for bfloat16 too)."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def digest(array: np.ndarray) -> str:
    """Checksum of an array's bytes (CRC-32 and length: ~2 GB/s, enough to catch a bad write)."""
    view = byte_view(array)
    return f"{zlib.crc32(view):08x}:{view.nbytes}"


# -- lazy tensors ------------------------------------------------------------------------------------
#: Byte alignment that TensorFlow and XLA need to use a host buffer without copying it.
ALIGN = 64
#: At most this many bytes of a tensor are read at a time when it must be cast or transposed.
BLOCK_BYTES = 16 * 2**20
_TILE = 128  # transposes go tile by tile (128 x 128 fits the L2 cache): ~30x faster than a.T.copy()


_MAPPED_ALLOC = 2**20  # arrays from this size up get pages of their own (see aligned_empty)


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts at a multiple of ``align`` bytes.

    From 1 MiB up the memory is a private anonymous map of its own (page-aligned, given back
    to the system as soon as the array goes), as framework allocators do; not numpy's
    allocator, which asks for transparent huge pages on such sizes -- where the kernel
    compacts memory to find them on first touch, filling a fresh gigabyte then takes
    seconds instead of a fraction of one.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes >= _MAPPED_ALLOC and align <= mmap.PAGESIZE:
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        raw = mmap.mmap(-1, nbytes, flags=flags) if flags else mmap.mmap(-1, nbytes)
        return np.frombuffer(raw, np.uint8, count=nbytes).view(dtype).reshape(shape)
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)


_SCRATCH = threading.local()


def _scratch(shape, dtype, reused: bool = False) -> np.ndarray:
    """A reusable buffer (one per thread) for blocks on their way to a cast or transpose (at most
    BLOCK_BYTES), or, ``reused``, for whole tensors ``materialize(reuse=True)`` hands out (a second one)."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    name = "reused" if reused else "buffer"
    buffer = getattr(_SCRATCH, name, None)
    if buffer is None or buffer.size < nbytes:
        buffer = aligned_empty((max(nbytes, BLOCK_BYTES),), np.uint8)
        setattr(_SCRATCH, name, buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray, align: int) -> bool:
    return array.ctypes.data % max(align, 1) == 0


def transpose_into(out: np.ndarray, block: np.ndarray, start: int) -> None:
    """``out[:, start:start + len(block)] = block.T`` (cast to ``out.dtype``), tile by tile."""
    rows, cols = block.shape
    for r in range(0, rows, _TILE):
        r_end = min(r + _TILE, rows)
        for c in range(0, cols, _TILE):
            c_end = min(c + _TILE, cols)
            out[c:c_end, start + r : start + r_end] = block[r:r_end, c:c_end].T


def _pread_into(f, buf: np.ndarray, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(f.fileno(), [buf], offset)
    f.seek(offset)  # pragma: no cover -- systems without preadv
    return f.readinto(buf) or 0


class MappedFile:
    """A weight file open for reading: ``read`` copies bytes out, ``view`` maps them.

    The map is private (``MAP_PRIVATE``, copy-on-write): an array viewing it may be written to
    (an optimiser updating a weight in place) without the file ever changing. It is made on the
    first ``view`` and lives as long as any array viewing it, after :meth:`close` too. Like any
    memory-mapped loader (HF's safetensors path included), the weights then read the file's
    pages when used: replacing the file (as every writer in this package does, by rename) is
    safe; truncating it in place while a model uses it is not.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = open(path, "rb")  # noqa: SIM115 -- closed by close()
        self._map: mmap.mmap | None = None

    def read(self, offset: int, shape, dtype: np.dtype, where: str) -> np.ndarray:
        return read_exact(self.file, offset, shape, dtype, where)

    def read_into(self, offset: int, out: np.ndarray, where: str) -> np.ndarray:
        """Fill the C-contiguous ``out`` with the bytes at ``offset`` (no intermediate buffer)."""
        buf = out.reshape(-1).view(np.uint8)
        got = 0
        while got < buf.size:  # short reads go on where they stopped
            more = _pread_into(self.file, buf[got:], offset + got)
            if more == 0:
                break
            got += more
        if got != buf.size:
            raise CheckpointError(
                f"{where}: file is truncated (wanted {buf.size} bytes at {offset}, got {got})"
            )
        return out

    def view(self, offset: int, shape, dtype: np.dtype) -> np.ndarray:
        count = math.prod(shape)
        if count == 0:
            return np.empty(shape, dtype)
        if self._map is None:
            self._map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_COPY)
        return np.frombuffer(self._map, dtype, count=count, offset=offset).reshape(shape)

    def close(self) -> None:
        self.file.close()
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # arrays still view it: it goes when the last of them does
                pass
            self._map = None


class LazyTensor:
    """A tensor of a weight file: shape and dtype now, data on :meth:`load` (canonical layout).

    ``np.asarray(lazy)`` loads it, so xlmr.weights helpers that compare values work unchanged.
    ``span`` -- ``(MappedFile, offset)`` -- says that the data are stored raw (C order, native
    byte order) at ``offset`` of that file, so :meth:`materialize` may map them instead of
    reading; ``base`` marks a tensor that is the transpose of another (:meth:`transposed`).
    """

    __slots__ = ("shape", "dtype", "_load", "native", "span", "base", "identity")

    def __init__(self, shape, dtype, load: Callable[[], np.ndarray], native: str = "", *, span=None,
                 identity=None):  # fmt: skip
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self._load = load
        self.native = native  # the name in the file
        self.span: tuple[MappedFile, int] | None = span
        self.base: LazyTensor | None = None
        self.identity = identity  # equal identities: the same bytes (a file's storage shared by two names)

    @classmethod
    def of(cls, array: np.ndarray) -> LazyTensor:
        array = np.asarray(array)
        return cls(array.shape, array.dtype, lambda: array)

    @classmethod
    def stored(cls, mapped: MappedFile, offset: int, shape, dtype, native: str = "") -> LazyTensor:
        """A tensor stored raw at ``offset`` of ``mapped`` (read with ``pread``, or mapped)."""
        shape = tuple(int(d) for d in shape)
        where = f"{mapped.path}: {native}"
        return cls(shape, dtype, lambda: mapped.read(offset, shape, np.dtype(dtype), where), native,
                   span=(mapped, offset), identity=(id(mapped), offset))  # fmt: skip

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def load(self) -> np.ndarray:
        array = self._load()
        if tuple(array.shape) != self.shape:
            raise CheckpointError(f"{self.native}: data of shape {array.shape}, header says {self.shape}")
        return array

    def transposed(self) -> LazyTensor:
        """The 2-D transpose, loaded as a C-contiguous copy."""
        out = LazyTensor(
            self.shape[::-1], self.dtype, lambda: np.ascontiguousarray(self.load().T), self.native
        )
        out.base = self
        out.identity = None if self.identity is None else ("T", self.identity)
        return out

    def shares_data_with(self, other: object) -> bool:
        """True when ``other`` is known to hold the very same bytes (without reading either)."""
        return (
            isinstance(other, LazyTensor)
            and self.identity is not None
            and self.identity == other.identity
            and self.shape == other.shape
            and self.dtype == other.dtype
        )

    def materialize(
        self,
        *,
        transpose: bool = False,
        dtype=None,
        align: int = 1,
        copy: bool = False,
        convert: Callable[[np.ndarray, np.ndarray], object] | None = None,
        reuse: bool = False,
    ) -> np.ndarray:
        """The data as one C-contiguous array, made with as little memory and copying as possible.

        In the canonical layout, or with ``transpose`` its 2-D transpose (a tensor that is itself
        a transpose returns its source's stored layout, untouched); cast to ``dtype`` (exact
        numpy / ml_dtypes casts); the data address a multiple of ``align`` bytes.

        Without ``copy`` the result may be the file's bytes themselves -- a private
        copy-on-write memory map (:class:`MappedFile`) or the array a reader already made (a
        memory-mapped ``pytorch_model.bin`` tensor) -- when no transpose or cast is needed and the
        alignment holds. Otherwise it is one new array, filled block by block: at most
        :data:`BLOCK_BYTES` of the source are read (``pread``, so the file's pages stay out of
        the process) and held at a time, and nothing else of this size is allocated.
        ``convert(out_block, block)`` replaces numpy's assignment for a cast without transpose
        (a framework's own, faster cast).

        ``reuse`` is for a caller that hands the data on at once to a framework's own copy (its
        transpose): bytes that need no cast or transpose are then read from the file into this
        thread's reusable buffer -- valid until the next ``materialize(reuse=True)`` on the thread
        -- instead of a new array, and never mapped, so neither the file's pages nor an array of
        this size stay in the process.
        """
        if self.base is not None:
            return self.base.materialize(
                transpose=not transpose, dtype=dtype, align=align, copy=copy, convert=convert, reuse=reuse
            )
        dtype = self.dtype if dtype is None else np_dtype(dtype)
        if transpose and len(self.shape) != 2:
            raise ValueError(f"{self.native}: only 2-D tensors can be transposed, shape is {self.shape}")
        plain = not transpose and dtype == self.dtype
        source: np.ndarray | None = None
        if self.span is not None:
            mapped, offset = self.span
            if plain and not copy and not reuse:
                view = mapped.view(offset, self.shape, self.dtype)
                if is_aligned(view, align):
                    return view
        else:
            source = self.load()
            if plain and not copy and source.flags.c_contiguous and is_aligned(source, align):
                return source
        if reuse and plain and self.span is not None and align <= ALIGN:
            out = _scratch(self.shape, dtype, reused=True)
        else:
            out = aligned_empty(self.shape[::-1] if transpose else self.shape, dtype, align)
        if self.size == 0:
            return out
        if self.span is not None:
            mapped, offset = self.span
            where = f"{mapped.path}: {self.native}"
            if plain:  # only a copy (or alignment) was asked for: read straight into place
                return mapped.read_into(offset, out, where)
        if not self.shape:
            out[()] = source if source is not None else self.load()
            return out
        rows = self.shape[0]
        row_bytes = self.nbytes // rows
        step = max(1, BLOCK_BYTES // max(1, row_bytes))
        scratch = None if source is not None else _scratch((min(step, rows), *self.shape[1:]), self.dtype)
        with np.errstate(over="ignore"):  # float16 overflow becomes inf, as torch's .to() does
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                if source is not None:
                    block = source[start:stop]
                else:
                    block = mapped.read_into(offset + start * row_bytes, scratch[: stop - start], where)
                if transpose:
                    transpose_into(out, block, start)
                elif convert is not None and not plain:
                    convert(out[start:stop], block)
                else:
                    out[start:stop] = block
        return out

    def __array__(self, dtype=None, copy=None):
        array = self.load()
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"LazyTensor({self.native or '?'}, shape={self.shape}, dtype={self.dtype})"


def as_lazy(value) -> LazyTensor:
    return value if isinstance(value, LazyTensor) else LazyTensor.of(value)


class LazyStateDict(dict):
    """``{canonical key: LazyTensor}`` that keeps its files open until :meth:`close`."""

    def __init__(self, *args, closers: Iterable[Callable[[], None]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self._closers = list(closers)
        self.metadata: dict = {}

    def add_closer(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def hand_over(self, tensors: Mapping) -> LazyStateDict:
        """A new dict of ``tensors`` (some of this one's) that takes over the open files; this one keeps none."""
        out = LazyStateDict(tensors, closers=self._closers)
        out.metadata = dict(self.metadata)
        self._closers = []
        return out

    def load_all(self) -> dict[str, np.ndarray]:
        return {k: np.array(v.load()) for k, v in self.items()}

    def close(self) -> None:
        """Close the files and drop the tensors (and with them any memory map of the file)."""
        while self._closers:
            self._closers.pop()()
        self.clear()

    def __enter__(self) -> LazyStateDict:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_exact(f, offset: int, shape, dtype: np.dtype, where: str) -> np.ndarray:
    """``prod(shape)`` items of ``dtype`` at ``offset`` of an open binary file, into a new array."""
    array = np.empty(shape, dtype)
    buf = array.reshape(-1).view(np.uint8)
    f.seek(offset)
    got = f.readinto(buf) if buf.size else 0
    if got != buf.size:
        raise CheckpointError(f"{where}: file is truncated (wanted {buf.size} bytes at {offset}, got {got})")
    return array


# -- keys, heads, ties -----------------------------------------------------------------------------
def tf_model_name(head: Head) -> str:
    """Keras's default name for the TF class: ``TFXLMRobertaForMaskedLM`` -> ``tfxlm_roberta_for_masked_lm``."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", head.tf_class)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def head_keys_in_order(tensors: Mapping, config: XLMRobertaConfig, head: Head) -> list[str]:
    """The keys of ``tensors`` in module order (canonical order first, anything else after)."""
    order = {k: i for i, k in enumerate(W.expected_shapes(config, head))}
    return sorted(tensors, key=lambda k: (order.get(k, len(order)), k))


# -- sharding --------------------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_size(size: int | str) -> int:
    """``5000000``, ``"5MB"`` (10**6) or ``"5MiB"`` (2**20), as HF's ``convert_file_size_to_int``."""
    if isinstance(size, int):
        return size
    match = _SIZE.match(str(size))
    if not match:
        raise ValueError(f"max_shard_size {size!r}: expected bytes or a size such as '5GB' or '500MiB'")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").upper()])


def plan_shards(items: Iterable[tuple[str, int]], max_shard_size: int | str) -> list[list[str]]:
    """Split ``(name, nbytes)`` in order into blocks of at most ``max_shard_size`` bytes (HF's greedy rule).

    A tensor bigger than the limit gets a shard of its own; no shard is empty.
    """
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = 0
    for name, nbytes in items:
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def shard_name(single: str, index: int, count: int) -> str:
    """``model.safetensors`` -> ``model-00001-of-00003.safetensors`` (HF's shard names)."""
    stem, dot, ext = single.rpartition(".")
    return f"{stem}-{index + 1:05d}-of-{count:05d}{dot}{ext}"


def index_json(weight_map: Mapping[str, str], total_size: int, total_parameters: int | None = None) -> str:
    """A shard index as HF writes it (PyTorch-side indexes also carry ``total_parameters``)."""
    metadata: dict[str, int] = {"total_size": total_size}
    if total_parameters is not None:
        metadata["total_parameters"] = total_parameters
    index = {"metadata": metadata, "weight_map": dict(weight_map)}
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def read_json(path: Path, what: str) -> object:
    """Parsed JSON of a small checkpoint file; not UTF-8, not JSON or nested absurdly deep -> CheckpointError."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        obj = json.loads(text)
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not a valid {what}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not a valid {what}: not JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not a valid {what}: JSON nested too deeply") from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{path}: not a valid {what}: JSON nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return obj


def read_index(path: Path, root: str | os.PathLike | None = None) -> tuple[dict[str, str], list[Path]]:
    """``weight_map`` and the shard files of a ``*.index.json`` (checking that they exist).

    Every shard name must resolve inside the index's directory (or ``root``, see
    :func:`xlmr._fileio.contained_path`): ``../x`` and absolute names, and symlinks pointing out,
    are refused.
    """
    path = Path(path)
    index = read_json(path, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        found = "no JSON object" if not isinstance(index, dict) else f"weight_map is {weight_map!r}"[:80]
        raise CheckpointError(
            f"{path}: not a valid shard index (needs a non-empty 'weight_map' object; {found})"
        )
    for key, name in weight_map.items():
        if not isinstance(name, str):
            raise CheckpointError(
                f"{path}: weight_map[{key!r}] must be a shard file name (a string), got {type(name).__name__} {name!r}"
            )
    shards = []
    for name in dict.fromkeys(weight_map.values()):
        try:
            shard = contained_path(path.parent, name, what="shard", root=root)
        except UnsafePathError as err:
            raise UnsafePathError(f"{path}: {err}") from None
        if not shard.is_file():
            raise CheckpointError(f"{path}: shard {name} is missing")
        shards.append(shard)
    return weight_map, sorted(shards)


def open_checkpoint(
    path: Path,
    open_files: Callable[[list[Path]], LazyStateDict],
    stored_names: Callable[[LazyStateDict], set[str]] = lambda out: {t.native for t in out.values()},
    index_name: Callable[[str], str] = lambda name: name,
    root: str | os.PathLike | None = None,
) -> LazyStateDict:
    """Open one weight file, or every shard of a ``*.index.json``, lazily.

    For an index, each name its ``weight_map`` lists (as ``index_name`` spells it in the shards)
    must be among the shards' ``stored_names``; otherwise :class:`CheckpointError` names the first few.
    """
    path = Path(path)
    if not path.name.endswith(".index.json"):
        return open_files([path])
    weight_map, shards = read_index(path, root)
    out = open_files(shards)
    stored = stored_names(out)
    missing = sorted(n for n in weight_map if n not in stored and index_name(n) not in stored)
    if missing:
        out.close()
        raise CheckpointError(f"{path}: weights listed in the index are not in the shards: {missing[:5]}")
    return out


def read_checkpoint(open_one: Callable[[Path], LazyStateDict], path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint, loaded, with its files closed afterwards."""
    with open_one(path) as lazy:
        return lazy.load_all()


# -- staged writes -----------------------------------------------------------------------------------
@dataclass
class Staged:
    """Files written under temporary names; :meth:`commit` moves them into place (index last)."""

    target: Path  # the weight file or the shard index readers will open
    files: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary, final)
    manifest: dict[str, tuple[tuple[int, ...], np.dtype, str]] = field(default_factory=dict)
    format: str = ""

    def add(self, final: Path) -> Path:
        tmp = temp_path(final)
        self.files.append((tmp, final))
        return tmp

    def record(self, key: str, array: np.ndarray) -> None:
        """Remember what was written for ``key`` (canonical layout), for the check after writing."""
        self.manifest[key] = (tuple(array.shape), array.dtype, digest(array))

    @property
    def temp_files(self) -> list[Path]:
        return [tmp for tmp, _ in self.files]

    @property
    def nbytes(self) -> int:
        return sum(tmp.stat().st_size for tmp, _ in self.files if tmp.exists())

    def commit(self) -> Path:
        for tmp, final in self.files:
            os.replace(tmp, final)
        self.files = []
        return self.target

    def abort(self) -> None:
        for tmp, _ in self.files:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        self.files = []


def writable(path: Path):
    """Open ``path`` for writing (binary); every writer goes through here (tests simulate a full disk)."""
    return open(path, "wb")  # noqa: SIM115 -- the caller closes it


def staging(target: Path, fmt: str, body: Callable[[Staged], None]) -> Staged:
    """Run ``body`` on a new :class:`Staged`; on any failure (or Ctrl-C) remove what it wrote.

    A failed write (a full disk...) is an ``OSError`` naming the file being written, also where
    the writing library hid it (torch raises a RuntimeError whose context is the OSError).
    """
    staged = Staged(target=target, format=fmt)
    try:
        body(staged)
    except OSError as err:
        staged_name = str(staged.files[-1][1]) if staged.files else str(target)
        staged.abort()
        if err.filename is None:
            err.filename = staged_name
        raise
    except RuntimeError as err:
        staged_name = str(staged.files[-1][1]) if staged.files else str(target)
        staged.abort()
        cause = err.__cause__ or err.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, cause.strerror or str(cause), staged_name) from None
        raise
    except BaseException:
        staged.abort()
        raise
    return staged
