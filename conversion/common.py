"""What every weight-file module shares: lazy tensors, dtypes, shard plans, staged (atomic) writes.

A reader opens a file and returns a :class:`LazyStateDict`: canonical key -> :class:`LazyTensor`
whose shape and dtype are known without reading the data. A writer *stages* its files under
temporary names that no reader picks up (``.model.safetensors.<random>.tmp``), returns a
:class:`Staged` with a manifest (key, shape, dtype, digest of the bytes written), and only
:meth:`Staged.commit` moves them into place with ``os.replace`` -- shards first, the index last.
"""

from __future__ import annotations

import json
import os
import re
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
class LazyTensor:
    """A tensor of a weight file: shape and dtype now, data on :meth:`load` (canonical layout).

    ``np.asarray(lazy)`` loads it, so xlmr.weights helpers that compare values work unchanged.
    """

    __slots__ = ("shape", "dtype", "_load", "native")

    def __init__(self, shape, dtype, load: Callable[[], np.ndarray], native: str = ""):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self._load = load
        self.native = native  # the name in the file

    @classmethod
    def of(cls, array: np.ndarray) -> LazyTensor:
        array = np.asarray(array)
        return cls(array.shape, array.dtype, lambda: array)

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
        return LazyTensor(
            self.shape[::-1], self.dtype, lambda: np.ascontiguousarray(self.load().T), self.native
        )

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
