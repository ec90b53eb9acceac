"""Finding, reading and writing weight files; the glue every backend's loading goes through."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr._fileio import StagedDirectory, contained_path
from xlmr.config import CONFIG_NAME, XLMRobertaConfig
from xlmr.heads import Head, get_head, head_from_architectures

from . import h5_io, msgpack_io, safetensors_io, torch_io
from .common import CheckpointError, LazyStateDict, LazyTensor, Staged, as_lazy, digest, np_dtype

logger = logging.getLogger("xlmr")

# format name -> (single file, sharded index), in the order from_pretrained prefers them.
FORMATS: dict[str, tuple[str, str]] = {
    "safetensors": ("model.safetensors", "model.safetensors.index.json"),
    "pytorch": ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    "tf": ("tf_model.h5", "tf_model.h5.index.json"),
    "flax": ("flax_model.msgpack", "flax_model.msgpack.index.json"),
}

#: Every spelling ``save_pretrained(format=...)`` and ``xlmr-convert --to`` accept -> the format.
FORMAT_ALIASES: dict[str, str] = {
    **{fmt: fmt for fmt in FORMATS},
    "pt": "pytorch",
    "torch": "pytorch",
    "bin": "pytorch",
    "h5": "tf",
    "tensorflow": "tf",
    "keras": "tf",
    "msgpack": "flax",
    "jax": "flax",
}


def resolve_format(name: str) -> str:
    """The weight format that ``name`` (a format or one of :data:`FORMAT_ALIASES`) names."""
    try:
        return FORMAT_ALIASES[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown format {name!r}; expected one of {', '.join(FORMATS)} "
            f"(or an alias: {', '.join(a for a in FORMAT_ALIASES if a not in FORMATS)})"
        ) from None


__all__ = ["CheckpointError", "FORMATS", "FORMAT_ALIASES", "resolve_format", "find_weight_file", "format_of", "open_raw",
           "open_state_dict", "read_state_dict", "write_state_dict", "stage_state_dict", "head_of", "check_fits",
           "load_pretrained", "save_pretrained", "verify_staged", "weight_file_format"]  # fmt: skip


def find_weight_file(directory: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Path:
    """The weight file (or shard index) of an HF-layout directory, safetensors first.

    A file found in ``directory`` must resolve inside it (or inside ``root``): a symlink pointing
    out of the checkpoint is refused (:class:`~xlmr._fileio.UnsafePathError`). A path naming a
    file is returned as is: the caller chose it.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {directory}")
    if directory.is_file():
        return directory
    for single, index in FORMATS.values():
        for name in (single, index):
            if (directory / name).is_file():
                return contained_path(directory, name, what="weight file", root=root)
    names = ", ".join(n for pair in FORMATS.values() for n in pair)
    raise FileNotFoundError(f"{directory} holds no weight file (looked for {names})")


def format_of(path: str | os.PathLike) -> str:
    name = Path(path).name
    for fmt, (single, index) in FORMATS.items():
        if name in (single, index):
            return fmt
    suffixes = {
        ".safetensors": "safetensors",
        ".bin": "pytorch",
        ".pt": "pytorch",
        ".h5": "tf",
        ".msgpack": "flax",
    }
    stem = name.removesuffix(".index.json")
    for suffix, fmt in suffixes.items():
        if stem.endswith(suffix):
            return fmt
    raise CheckpointError(
        f"{path}: not a known weight file (.safetensors, .bin, .h5, .msgpack or a shard index)"
    )


def open_raw(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> LazyStateDict:
    """Open a weight file (or shard index, or a directory's weight file) lazily, canonical names, ties kept.

    Nothing but headers is read: shapes and dtypes are declared, data is read on ``load()``.
    Shards an index names, and a directory's weight file, must resolve inside the checkpoint
    directory (or ``root``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such weight file: {path}")
    if path.is_dir():
        path = find_weight_file(path, root=root)
    fmt = format_of(path)
    opener = _OPENERS.get(fmt)
    if opener is None:
        raise CheckpointError(f"{path}: reading {fmt} files is not supported")
    lazy = opener(path, root=root)
    out = LazyStateDict(W.canonicalize(lazy), closers=[lazy.close])
    out.metadata = dict(lazy.metadata, format=fmt, path=str(path))
    return out


def open_state_dict(
    path: str | os.PathLike, config: XLMRobertaConfig | None = None, *, root: str | os.PathLike | None = None
) -> LazyStateDict:
    """Open any of the four weight files (or a shard index) lazily, with canonical names.

    Values are :class:`~conversion.common.LazyTensor` (shape and dtype known, data read on
    ``load()``); close the result (or use it as a context manager) when done. Tied aliases that
    a file stores (``lm_head.decoder.*`` in ``pytorch_model.bin``) are dropped: by ``config``'s
    ties when given, else where they equal their source. (:func:`load_pretrained` checks every
    declared shape against the config before reading anything; this function trusts them.)
    """
    out = open_raw(path, root=root)
    try:
        resolved = _resolve_ties(dict(out), config)
    except BaseException:
        out.close()
        raise
    dict.clear(out)
    out.update(resolved)
    return out


def _resolve_ties(state_dict: dict, config: XLMRobertaConfig | None) -> dict:
    if config is not None:
        return W.resolve_ties(state_dict, config, head_of(config, state_dict))
    # No config: every possible tie of an LM head, dropped only where the alias equals its source.
    possible = W.tied_aliases(XLMRobertaConfig(tie_word_embeddings=True), "masked_lm")
    for alias, source in possible.items():
        a, s = state_dict.get(alias), state_dict.get(source)
        if a is not None and s is not None and a.shape == s.shape and np.array_equal(a, s):
            del state_dict[alias]
    return state_dict


def read_state_dict(path: str | os.PathLike, config: XLMRobertaConfig | None = None) -> dict[str, np.ndarray]:
    """Read any of the four weight files (or a shard index) into a canonical numpy dict.

    Names are canonical whatever the file's framework (TF / Flax names, layouts and legacy
    ``gamma`` / ``beta`` spellings are converted), tied aliases dropped (by ``config`` when
    given); dtypes are the file's.
    """
    with open_state_dict(path, config) as lazy:
        return lazy.load_all()


def head_of(config: XLMRobertaConfig, state_dict: Mapping | None = None) -> Head:
    """The head a checkpoint holds: from ``config.architectures``, else guessed from its keys."""
    head = head_from_architectures(config.architectures)
    if head is None and state_dict is not None:
        head = W.infer_head(state_dict)
    if head is None:
        raise ValueError(
            "cannot tell the model head: config.json has no known 'architectures' and no weights given"
        )
    return head


def stage_state_dict(
    state_dict: Mapping,
    config: XLMRobertaConfig,
    head: Head | str,
    directory: str | os.PathLike,
    fmt: str = "safetensors",
    *,
    dtype: str | np.dtype | None = None,
    max_shard_size: int | str | None = None,
    progress=None,
    allow_overflow: bool = False,
    source: str = "",
) -> Staged:
    """Write ``fmt``'s file(s) under temporary names in ``directory``; ``.commit()`` puts them in place.

    Casting to a narrower ``dtype`` (float16) is refused for a tensor holding finite values
    beyond the new type's range -- they would become ``inf`` -- unless ``allow_overflow``.
    """
    head = get_head(head) if isinstance(head, str) else head
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {tuple(FORMATS)}")
    writer = _STAGERS[fmt]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = np_dtype(dtype) if dtype is not None else None
    if dtype is not None and not allow_overflow:
        state_dict = {k: range_checked(as_lazy(v), k, dtype, source) for k, v in state_dict.items()}
    return writer(state_dict, config, head, directory / FORMATS[fmt][0], dtype=dtype,
                  max_shard_size=max_shard_size, progress=progress)  # fmt: skip


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _float_max(dtype: np.dtype) -> float:
    if dtype.name == "bfloat16":
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).max)
    return float(np.finfo(dtype).max)


def range_checked(tensor: LazyTensor, key: str, dtype: np.dtype, source: str = "") -> LazyTensor:
    """``tensor``, whose ``load()`` raises if a finite value lies beyond ``dtype``'s range."""
    if not (_is_float(dtype) and _is_float(tensor.dtype)):
        return tensor
    limit = _float_max(dtype)
    if _float_max(tensor.dtype) <= limit:  # every value fits: nothing to check
        return tensor

    def load() -> np.ndarray:
        array = tensor.load()
        if array.size:
            top = max(float(array.max()), -float(array.min()))  # no temporary array
            if not np.isfinite(top):  # inf or NaN in the source: look at the finite values only
                finite = np.abs(array[np.isfinite(array)].astype(np.float64))
                top = float(finite.max()) if finite.size else 0.0
            if top > limit:
                where = f"{source}: " if source else ""
                raise CheckpointError(
                    f"{where}{key}: values up to {top:.6g} are beyond the {dtype.name} range (max {limit:.6g}) "
                    f"and would be written as inf; pass --allow-overflow (allow_overflow=True) to write them anyway"
                )
        return array

    return LazyTensor(tensor.shape, tensor.dtype, load, tensor.native)


def write_state_dict(
    state_dict: Mapping[str, np.ndarray],
    config: XLMRobertaConfig,
    head: Head | str,
    directory: str | os.PathLike,
    fmt: str = "safetensors",
    *,
    dtype: str | np.dtype | None = None,
    max_shard_size: int | str | None = None,
) -> Path:
    """Write a canonical state dict as ``fmt``'s weight file in ``directory`` (atomically).

    Returns the file readers open: the weight file, or the shard index when ``max_shard_size``
    splits it. Stale files of the same format (a single file replaced by shards, or the
    other way round) are removed afterwards.
    """
    staged = stage_state_dict(
        state_dict, config, head, directory, fmt, dtype=dtype, max_shard_size=max_shard_size
    )
    written = {final for _, final in staged.files}
    target = staged.commit()
    remove_stale(Path(directory), fmt, keep=written)
    return target


def remove_stale(directory: Path, fmt: str, keep: set[Path]) -> None:
    """Delete ``fmt`` weight files in ``directory`` that a new write did not produce (as HF does)."""
    single, index = FORMATS[fmt]
    stem, _, ext = single.rpartition(".")
    for path in directory.iterdir():
        name = path.name
        ours = name in (single, index) or (
            name.startswith(stem + "-") and name.endswith("." + ext) and "-of-" in name
        )
        if ours and path.is_file() and path not in keep:
            path.unlink()


def check_fits(tensors: Mapping, config: XLMRobertaConfig, head: Head, source: str) -> W.LoadReport:
    """``prepare_state_dict`` on declared shapes: float dtypes, layer count and shapes before any read."""
    for key, t in tensors.items():
        if t.dtype.kind != "f" and t.dtype.name != "bfloat16":
            raise W.WeightMismatchError(f"{source}: weight {key} has dtype {t.dtype}, expected float")
    return W.prepare_state_dict(tensors, config, head, source=source)


def load_pretrained(
    path: str | os.PathLike,
    head: Head | str,
    *,
    root: str | os.PathLike | None = None,
    lazy: bool = False,
    **config_overrides,
) -> tuple[XLMRobertaConfig, W.LoadReport]:
    """Config and checked canonical weights of an HF-layout directory, ready for ``head``.

    ``path`` is a directory holding ``config.json`` and a weight file. The result's
    ``state_dict`` has exactly the keys of ``head``'s model that the checkpoint provides, in
    the model's order; ``newly_initialized`` lists the head weights the model must initialise
    itself.

    With ``lazy`` nothing but headers has been read when this returns: ``state_dict`` is a
    :class:`~conversion.common.LazyStateDict` of :class:`~conversion.common.LazyTensor` that keeps
    the weight files open -- the caller reads each tensor (:meth:`LazyTensor.materialize`, which
    can map the file instead of copying it), drops it, and closes the dict (a context manager)
    at the end. Without ``lazy`` every tensor is read into a numpy array here.

    The checkpoint is untrusted: every file it names must resolve inside ``path`` (``root``
    widens that for layouts whose files are symlinks by design, such as the Hugging Face
    cache); headers are validated; the config's sizes are compared with the checkpoint's keys
    and declared shapes before any tensor is read, so nothing proportional to a bogus size is
    ever allocated.
    """
    head = get_head(head) if isinstance(head, str) else head
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint directory: {path}")
    directory = path if path.is_dir() else path.parent
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}")
    config_file = contained_path(directory, CONFIG_NAME, what="config", root=root)
    config = XLMRobertaConfig.from_pretrained(config_file, **config_overrides)
    weight_file = find_weight_file(path, root=root)
    with open_raw(weight_file, root=root) as tensors:
        report = check_fits(tensors, config, head, str(weight_file))
        if lazy:
            report.state_dict = tensors.hand_over(report.state_dict)
        else:
            report.state_dict = {k: _owned(v.load()) for k, v in report.state_dict.items()}
    return config, report


def _owned(array: np.ndarray) -> np.ndarray:
    """``array``, copied only if it is a view (of a memory-mapped file) that must outlive the file."""
    return array if array.flags.owndata else np.array(array)


def _log_dropped(directory: Path, fmt: str | None) -> Callable[[Path], None]:
    """``on_drop`` for :class:`~xlmr._fileio.StagedDirectory`: say which stale file goes, and why."""

    def on_drop(path: Path) -> None:
        other = weight_file_format(path.name)
        if other is not None and other != fmt:
            logger.warning(
                "removing %s from %s: %s weights left from an earlier save, which from_pretrained could "
                "load instead of the new %s weights",
                path.name,
                directory,
                other,
                fmt,
            )
        else:
            logger.info("removing %s from %s: replaced by the new checkpoint", path.name, directory)

    return on_drop


def weight_file_format(name: str) -> str | None:
    """The format whose weight file (single, index or shard) ``name`` is, or None."""
    for fmt, (single, index) in FORMATS.items():
        stem, _, ext = single.rpartition(".")
        if name in (single, index) or (
            name.startswith(stem + "-") and name.endswith("." + ext) and "-of-" in name
        ):
            return fmt
    return None


def verify_staged(staged: Staged, config: XLMRobertaConfig, head: Head, *, data: bool = True) -> None:
    """Re-read what ``staged`` wrote and compare it with its manifest; raise naming the first difference.

    Keys, shapes and dtypes always; with ``data`` the bytes too (a checksum per tensor).
    """
    opener = _MODULES[staged.format].open_files
    files = [tmp for tmp, final in staged.files if not final.name.endswith(".index.json")]
    with opener(files) as raw:
        back = W.resolve_ties(W.canonicalize(raw), config, head)
        where = f"written {staged.target.name}"
        if set(back) != set(staged.manifest):
            extra, missing = (
                sorted(set(back) - set(staged.manifest)),
                sorted(set(staged.manifest) - set(back)),
            )
            raise CheckpointError(f"{where}: keys differ (unexpected {extra[:5]}, missing {missing[:5]})")
        for key, (shape, dtype, expected) in staged.manifest.items():
            t = back[key]
            if t.shape != shape or t.dtype != dtype:
                raise CheckpointError(
                    f"{where}: {key} reads back as {t.shape} {t.dtype}, wrote {shape} {dtype}"
                )
            if data and digest(t.load()) != expected:
                raise CheckpointError(f"{where}: {key} reads back with different values")


def save_pretrained(
    state_dict: Mapping[str, np.ndarray],
    config: XLMRobertaConfig,
    head: Head | str,
    directory: str | os.PathLike,
    fmt: str = "safetensors",
) -> Path:
    """``config.json`` (with ``architectures``) and the weight file, as HF's save_pretrained writes them.

    The directory is replaced as a whole (:class:`xlmr._fileio.StagedDirectory`): readers see the
    old checkpoint or the complete new one, and a kill leaves one of the two. Weight files of
    any format the old directory held are not carried over (logged: ``from_pretrained`` must
    not pick a stale one); every other file in it (README, logs, tokenizer files, subfolders) is
    kept. Returns the path of the written weight file (or shard index).
    """
    head = get_head(head) if isinstance(head, str) else head
    fmt = resolve_format(fmt)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory, {directory} is a file")
    config = config.copy(architectures=[head.torch_class])
    with StagedDirectory(directory) as stage:
        staged = stage_state_dict(state_dict, config, head, stage.path, fmt)
        try:
            verify_staged(staged, config, head, data=False)
        except BaseException:
            staged.abort()
            raise
        name = staged.commit().name
        config.save_pretrained(stage.path)
        stage.commit(
            carry_over=lambda n: weight_file_format(n) is None, on_drop=_log_dropped(stage.destination, fmt)
        )
    return Path(directory) / name


# Dispatch tables: format -> eager reader (path -> {name: array}), writer (sd, config, head, target).
_READERS = {"safetensors": safetensors_io.read, "pytorch": torch_io.read, "tf": h5_io.read,
            "flax": msgpack_io.read}  # fmt: skip
_WRITERS = {"safetensors": safetensors_io.write, "pytorch": torch_io.write, "tf": h5_io.write,
            "flax": msgpack_io.write}  # fmt: skip
# The streaming forms the two tables are built on.
_OPENERS = {"safetensors": safetensors_io.open_checkpoint, "pytorch": torch_io.open_checkpoint,
            "tf": h5_io.open_checkpoint, "flax": msgpack_io.open_checkpoint}  # fmt: skip
_STAGERS = {"safetensors": safetensors_io.stage, "pytorch": torch_io.stage, "tf": h5_io.stage,
            "flax": msgpack_io.stage}  # fmt: skip
_MODULES = {"safetensors": safetensors_io, "pytorch": torch_io, "tf": h5_io, "flax": msgpack_io}
