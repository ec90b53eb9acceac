"""Convert an HF-layout checkpoint directory from one weight format to another, checked and atomic.

The source is opened lazily and written tensor by tensor, so a conversion holds about one
checkpoint's worth of memory at most (``pytorch_model.bin``, which torch writes in one go) and
usually a single tensor. The source is untrusted: its files must lie inside its directory,
its headers are validated, and the config is checked against the declared shapes before any
tensor is read. The new checkpoint (weights, ``config.json``, tokenizer files) is built in a
temporary directory beside the destination, re-read and compared with what was meant to be
written (keys, shapes, dtypes, bytes), and swapped in as a whole.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlmr import _hub
from xlmr._fileio import StagedDirectory, contained_path
from xlmr.config import CONFIG_NAME, XLMRobertaConfig

from . import io
from .common import DTYPES, LazyStateDict, Staged, np_dtype

logger = logging.getLogger("xlmr")

TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def copy_tokenizer_files(src_dir: Path, dest: Path, root: str | os.PathLike | None = None) -> list[str]:
    """Copy the tokenizer files ``src_dir`` holds into ``dest``; returns their names.

    Args:
        src_dir: The source checkpoint directory (each name must resolve inside it, or ``root``).
        dest: The directory being written.
        root: Widens the allowed tree (:func:`xlmr._fileio.contained_path`).
    """
    copied = []
    for name in TOKENIZER_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(contained_path(src_dir, name, what="tokenizer file", root=root), dest / name)
            copied.append(name)
    return copied


@dataclass
class Summary:
    """What a conversion did."""

    source: Path
    target: Path
    fmt: str
    head: str
    tensors: int
    parameters: int
    nbytes: int
    seconds: float
    dtype: str | None = None

    def line(self) -> str:
        cast = f", cast to {self.dtype}" if self.dtype else ""
        return (
            f"converted {self.source} -> {self.target} ({self.fmt}, {self.head}{cast}): {self.tensors} tensors, "
            f"{self.parameters:,} parameters, {self.nbytes:,} bytes, {self.seconds:.1f} s"
        )


def resolve_source(
    src: str | os.PathLike, config: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None
) -> tuple[Path, XLMRobertaConfig]:
    """The weight file of ``src`` (a directory or a file) and its config."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"no such file or directory: {src}")
    weight_file = io.find_weight_file(src, root=root)
    io.format_of(weight_file)
    if config:
        config_path = Path(config)
    else:
        src_dir = src if src.is_dir() else src.parent
        config_path = src_dir / CONFIG_NAME
        if config_path.exists():
            config_path = contained_path(src_dir, CONFIG_NAME, what="config", root=root)
    if not config_path.exists():
        raise FileNotFoundError(f"no {CONFIG_NAME} beside {weight_file} (pass --config PATH)")
    return weight_file, XLMRobertaConfig.from_pretrained(config_path)


def existing_weight_files(directory: Path, fmt: str | None = None) -> list[Path]:
    """Weight files (single, index or shard) in ``directory``: of format ``fmt``, or of any format."""
    return sorted(
        p for p in directory.iterdir() if (found := io.weight_file_format(p.name)) and fmt in (None, found)
    )


def check_weights(tensors: LazyStateDict, config: XLMRobertaConfig, source: str):
    """Head, checked tensors (misfits raise, naming key and both shapes) of ``tensors`` for ``config``.

    Only declared shapes and dtypes are looked at: nothing is read.
    """
    head = io.head_of(config, tensors)
    return head, io.check_fits(tensors, config, head, source)


def verify(staged: Staged, config: XLMRobertaConfig, head) -> None:
    """Re-read what ``staged`` wrote and compare it with its manifest; raise naming the first difference."""
    io.verify_staged(staged, config, head, data=True)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    dtype: str | None = None,
    force: bool = False,
    config: str | os.PathLike | None = None,
    max_shard_size: int | str | None = None,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    check: bool = True,
    allow_overflow: bool = False,
    root: str | os.PathLike | None = None,
    **hub: Any,
) -> Summary:
    """Convert the checkpoint at ``src`` into format ``to`` in directory ``dst``.

    ``dst`` is replaced as a whole (:class:`xlmr._fileio.StagedDirectory`): everything is written
    into a sibling temporary directory, re-read and checked, and swapped in with one rename, so
    ``dst`` is always either the old checkpoint or the complete new one. Files of ``dst`` that are
    not part of a checkpoint (a README, logs) are kept; its weight files of any format are
    removed (logged, and only with ``force``) so that no stale weights are left for
    ``from_pretrained`` to pick -- except, when converting in place (``src`` is ``dst``), the
    source's own files of other formats, which hold the same model. When ``src`` has tokenizer
    files they replace ``dst``'s.

    Args:
        src: HF-layout directory, or a weight file (``config.json`` beside it or given as ``config``).
        dst: Directory receiving the weight file(s), ``config.json`` and the tokenizer files of ``src``.
        to: ``"safetensors"``, ``"pytorch"``, ``"tf"`` or ``"flax"`` (ONNX graphs:
            :func:`conversion.onnx_export.export_onnx`, which builds on xlmr_torch).
        dtype: Cast every weight to ``"float32"``, ``"float16"`` or ``"bfloat16"`` (exact numpy casts).
        force: Replace the weight files ``dst`` already holds.
        max_shard_size: Write HF shards plus an index when the weights exceed this (``"2GB"``...).
        progress: ``progress(total_bytes, tensors)`` returning a per-tensor callback ``update(nbytes)``.
        check: Re-read the written files and compare them before moving them into place.
        allow_overflow: With ``dtype``, write values beyond its range as ``inf`` instead of refusing.
        root: Widen the tree the source's files may resolve into (see :func:`xlmr._fileio.contained_path`).
        **hub: HF's Hub arguments for a ``src`` that is a Hub repo id (``org/name[@revision]``):
            ``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``subfolder``,
            ``force_download``. Only config.json, the tokenizer files and one weight format
            (safetensors first) are fetched.

    Example:
        >>> from conversion.convert import convert
        >>> convert("xlmr-base", "xlmr-base-tf", "tf").line()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if to not in io.FORMATS:
        raise ValueError(f"unknown format {to!r}; expected one of {', '.join(io.FORMATS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    resolved = _hub.resolve_model(src, tokenizer=True, **hub)
    src, root = resolved.path, root if root is not None else resolved.root
    weight_file, cfg = resolve_source(src, config, root=root)
    src_dir = Path(src) if Path(src).is_dir() else Path(src).parent
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"destination {dst} is a file, not a directory")
    in_place = dst.is_dir() and src_dir.resolve() == dst.resolve()
    if dst.is_dir() and not force:
        same = existing_weight_files(dst, to)
        if same:
            raise FileExistsError(f"{same[0]} already exists; pass --force to overwrite it")
        other = [] if in_place else existing_weight_files(dst)
        if other:
            raise FileExistsError(
                f"{other[0]} ({io.weight_file_format(other[0].name)} weights) is in the destination and would be "
                "removed so that from_pretrained cannot load stale weights; pass --force to replace it"
            )

    with StagedDirectory(dst) as stage:
        with io.open_raw(weight_file, root=root) as tensors:
            head, report = check_weights(tensors, cfg, str(weight_file))
            cast = np_dtype(dtype) if dtype else None
            count = len(report.state_dict)
            total = sum(t.size * (cast or t.dtype).itemsize for t in report.state_dict.values())
            parameters = int(sum(np.prod(t.shape, dtype=np.int64) for t in report.state_dict.values()))
            update = progress(total, count) if progress else None
            staged = io.stage_state_dict(report.state_dict, cfg, head, stage.path, to, dtype=cast,
                                         max_shard_size=max_shard_size, progress=update,
                                         allow_overflow=allow_overflow, source=str(weight_file))  # fmt: skip
            del report
            tensors.clear()  # let go of the source (memory maps of a .bin) before reading the new files
        gc.collect()
        try:
            if check:
                verify(staged, cfg, head)
            nbytes = staged.nbytes
            name = staged.commit().name
        except BaseException:
            staged.abort()
            raise
        out_cfg = cfg.copy(architectures=[head.torch_class], **({"torch_dtype": dtype} if dtype else {}))
        out_cfg.save_pretrained(stage.path)
        tokenizer = [] if in_place else copy_tokenizer_files(src_dir, stage.path, root)

        def carry_over(entry: str) -> bool:
            fmt = io.weight_file_format(entry)
            if fmt is not None:
                return in_place and fmt != to  # the source itself, in another format: the same model
            return not (tokenizer and entry in TOKENIZER_FILES)  # a tokenizer set is replaced whole

        stage.commit(carry_over, on_drop=io._log_dropped(stage.destination, to))
    return Summary(
        source=weight_file,
        target=dst / name,
        fmt=to,
        head=head.name,
        tensors=count,
        parameters=parameters,
        nbytes=nbytes,
        seconds=time.perf_counter() - start,
        dtype=dtype,
    )
