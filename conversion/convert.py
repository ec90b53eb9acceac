"""Convert an HF-layout checkpoint directory from one weight format to another, checked and atomic.

The source is opened lazily and written tensor by tensor, so a conversion holds about one
checkpoint's worth of memory at most (``pytorch_model.bin``, which torch writes in one go) and
usually a single tensor. The new files are written under temporary names, re-read and
compared with what was meant to be written (keys, shapes, dtypes, bytes) and only then
moved into place; ``config.json`` and the tokenizer files follow.
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

import numpy as np

from xlmr import weights as W
from xlmr.config import CONFIG_NAME, XLMRobertaConfig

from . import io
from .common import DTYPES, CheckpointError, LazyStateDict, Staged, digest, np_dtype, temp_path

logger = logging.getLogger("xlmr")

TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


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
    src: str | os.PathLike, config: str | os.PathLike | None = None
) -> tuple[Path, XLMRobertaConfig]:
    """The weight file of ``src`` (a directory or a file) and its config."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"no such file or directory: {src}")
    weight_file = io.find_weight_file(src)
    io.format_of(weight_file)
    config_path = Path(config) if config else (src if src.is_dir() else src.parent) / CONFIG_NAME
    if not config_path.exists():
        raise FileNotFoundError(f"no {CONFIG_NAME} beside {weight_file} (pass --config PATH)")
    return weight_file, XLMRobertaConfig.from_pretrained(config_path)


def existing_weight_files(directory: Path, fmt: str) -> list[Path]:
    single, index = io.FORMATS[fmt]
    return [directory / n for n in (single, index) if (directory / n).exists()]


def check_weights(tensors: LazyStateDict, config: XLMRobertaConfig, source: str):
    """Head, checked tensors (misfits raise, naming key and both shapes) of ``tensors`` for ``config``."""
    head = io.head_of(config, tensors)
    for key, t in tensors.items():
        if t.dtype.kind != "f" and t.dtype.name != "bfloat16":
            raise W.WeightMismatchError(f"{source}: weight {key} has dtype {t.dtype}, expected float")
    report = W.prepare_state_dict(tensors, config, head, source=source)
    return head, report


def verify(staged: Staged, config: XLMRobertaConfig, head) -> None:
    """Re-read what ``staged`` wrote and compare it with its manifest; raise naming the first difference."""
    opener = {"safetensors": io.safetensors_io, "pytorch": io.torch_io, "tf": io.h5_io,
              "flax": io.msgpack_io}[staged.format].open_files  # fmt: skip
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
            if digest(t.load()) != expected:
                raise CheckpointError(f"{where}: {key} reads back with different values")


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = temp_path(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


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
) -> Summary:
    """Convert the checkpoint at ``src`` into format ``to`` in directory ``dst``.

    Args:
        src: HF-layout directory, or a weight file (``config.json`` beside it or given as ``config``).
        dst: Directory receiving the weight file(s), ``config.json`` and the tokenizer files of ``src``.
        to: ``"safetensors"``, ``"pytorch"``, ``"tf"`` or ``"flax"``.
        dtype: Cast every weight to ``"float32"``, ``"float16"`` or ``"bfloat16"`` (exact numpy casts).
        force: Overwrite an existing weight file of that format in ``dst``.
        max_shard_size: Write HF shards plus an index when the weights exceed this (``"2GB"``...).
        progress: ``progress(total_bytes, tensors)`` returning a per-tensor callback ``update(nbytes)``.
        check: Re-read the written files and compare them before moving them into place.

    Example:
        >>> from conversion.convert import convert
        >>> convert("xlmr-base", "xlmr-base-tf", "tf").line()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if to not in io.FORMATS:
        raise ValueError(f"unknown format {to!r}; expected one of {', '.join(io.FORMATS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    weight_file, cfg = resolve_source(src, config)
    src_dir = Path(src) if Path(src).is_dir() else Path(src).parent
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"destination {dst} is a file, not a directory")
    existing = existing_weight_files(dst, to) if dst.exists() else []
    if existing and not force:
        raise FileExistsError(f"{existing[0]} already exists; pass --force to overwrite it")

    with io.open_state_dict(weight_file, cfg) as tensors:
        head, report = check_weights(tensors, cfg, str(weight_file))
        cast = np_dtype(dtype) if dtype else None
        count = len(report.state_dict)
        total = sum(t.size * (cast or t.dtype).itemsize for t in report.state_dict.values())
        parameters = int(sum(np.prod(t.shape, dtype=np.int64) for t in report.state_dict.values()))
        update = progress(total, count) if progress else None
        dst.mkdir(parents=True, exist_ok=True)
        staged = io.stage_state_dict(report.state_dict, cfg, head, dst, to, dtype=cast,
                                     max_shard_size=max_shard_size, progress=update)  # fmt: skip
        del report
        tensors.clear()  # let go of the source (memory maps of a .bin) before reading the new files
    gc.collect()
    try:
        if check:
            verify(staged, cfg, head)
        nbytes = staged.nbytes
        written = {final for _, final in staged.files}
        target = staged.commit()
    except BaseException:
        staged.abort()
        raise
    io.remove_stale(dst, to, keep=written)
    out_cfg = cfg.copy(architectures=[head.torch_class], **({"torch_dtype": dtype} if dtype else {}))
    out_cfg.save_pretrained(dst)
    if src_dir.resolve() != dst.resolve():
        for name in TOKENIZER_FILES:
            if (src_dir / name).is_file():
                _copy_atomic(src_dir / name, dst / name)
    return Summary(
        source=weight_file,
        target=target,
        fmt=to,
        head=head.name,
        tensors=count,
        parameters=parameters,
        nbytes=nbytes,
        seconds=time.perf_counter() - start,
        dtype=dtype,
    )
