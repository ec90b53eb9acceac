"""Finding, reading and writing weight files; the glue every backend's loading goes through."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr.config import CONFIG_NAME, XLMRobertaConfig
from xlmr.heads import Head, get_head, head_from_architectures

from . import h5_io, msgpack_io, safetensors_io, torch_io
from .common import CheckpointError, LazyStateDict, Staged, np_dtype

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


__all__ = ["CheckpointError", "FORMATS", "FORMAT_ALIASES", "resolve_format", "find_weight_file", "format_of", "open_state_dict", "read_state_dict",
           "write_state_dict", "stage_state_dict", "head_of", "load_pretrained", "save_pretrained"]  # fmt: skip


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


def open_state_dict(path: str | os.PathLike, config: XLMRobertaConfig | None = None) -> LazyStateDict:
    """Open any of the four weight files (or a shard index) lazily, with canonical names.

    Values are :class:`~conversion.common.LazyTensor` (shape and dtype known, data read on
    ``load()``); close the result (or use it as a context manager) when done. Tied aliases that
    a file stores (``lm_head.decoder.*`` in ``pytorch_model.bin``) are dropped: by ``config``'s
    ties when given, else where they equal their source.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such weight file: {path}")
    if path.is_dir():
        path = find_weight_file(path)
    fmt = format_of(path)
    opener = _OPENERS.get(fmt)
    if opener is None:
        raise CheckpointError(f"{path}: reading {fmt} files is not supported")
    lazy = opener(path)
    out = LazyStateDict(_resolve_ties(W.canonicalize(lazy), config), closers=[lazy.close])
    out.metadata = dict(lazy.metadata, format=fmt, path=str(path))
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
) -> Staged:
    """Write ``fmt``'s file(s) under temporary names in ``directory``; ``.commit()`` puts them in place."""
    head = get_head(head) if isinstance(head, str) else head
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {tuple(FORMATS)}")
    writer = _STAGERS[fmt]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = np_dtype(dtype) if dtype is not None else None
    return writer(state_dict, config, head, directory / FORMATS[fmt][0], dtype=dtype,
                  max_shard_size=max_shard_size, progress=progress)  # fmt: skip


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
    fmt = resolve_format(fmt)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory, {directory} is a file")
    directory.mkdir(parents=True, exist_ok=True)
    config = config.copy(architectures=[head.torch_class])
    target = write_state_dict(state_dict, config, head, directory, fmt)
    config.save_pretrained(directory)
    return target


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
