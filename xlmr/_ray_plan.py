"""Planning a Ray job on the driver, without Ray: input files, shards, output names, resuming.

Part of :mod:`xlmr.ray_jobs` (which re-exports these names): what decides which rows go to which
output file, whether a previous run's output file is complete, and whether an output directory
holds a job with the same settings. Reads Parquet footers with pyarrow when asked, never Ray.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_ROWS_PER_FILE = 10_000
MANIFEST = "_xlmr_job.json"
_SHARD_KEY = b"xlmr.shard"


class JobError(ValueError):
    """A problem with a job's inputs or settings, named in one line."""


# -- planning: input files, shards, output names (driver side, no Ray) -----------------------------
@dataclasses.dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one input file and the output file they go to."""

    source: str  # the input file (absolute)
    name: str  # the file relative to the inputs' common folder: ids and output names use it
    kind: str  # "parquet" or "jsonl"
    index: int
    start: int
    stop: int
    output: str  # the output file (absolute)
    ids: bool  # the file has the id column (else ids are generated)
    offset: int = 0  # jsonl: byte range and line number of the shard's first record
    end: int = 0
    line: int = 1

    def key(self) -> dict[str, Any]:
        """What an output file records of its shard, to be recognised as complete."""
        return {"source": self.name, "index": self.index, "start": self.start, "stop": self.stop}


def input_files(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The Parquet / JSON Lines files that ``inputs`` (paths, directories, globs) name, sorted, unique."""
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items:
        raise JobError("no inputs given")
    found: dict[Path, None] = {}
    for item in items:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not matches:
                raise JobError(f"input directory {text} holds no {'/'.join(SUFFIXES)} files")
        elif path.exists():
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise JobError(f"no input files match {text}")
        else:
            raise JobError(f"no such input file: {text}")
        for match in matches:
            if match.suffix not in SUFFIXES:
                raise JobError(
                    f"input {match}: unsupported file type {match.suffix or '(none)'!r}; "
                    f"expected {', '.join(SUFFIXES)}"
                )
            found[match.resolve()] = None
    return sorted(found)


def _check_column(path: Path, columns: Sequence[str], column: str, what: str) -> None:
    if column not in columns:
        raise JobError(
            f"{path}: no {what} column {column!r} (columns: {', '.join(map(repr, columns)) or 'none'})"
        )


def _scan_parquet(
    path: Path, rows_per_file: int, text_column: str, id_column: str | None, extra: Sequence[str]
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise JobError(f"{path}: not a readable Parquet file ({err})") from None
    names = schema.names
    for column, what in ((text_column, "text"), *((c, "question") for c in extra)):
        _check_column(path, names, column, what)
        type_ = schema.field(column).type
        if not (
            pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)
        ):
            raise JobError(f"{path}: {what} column {column!r} holds {type_}, not strings")
    if id_column is not None:
        _check_column(path, names, id_column, "id")
        has_ids = True
    else:
        has_ids = "id" in names
    rows = metadata.num_rows
    starts = range(0, max(rows, 1), rows_per_file)  # an empty file is one empty shard
    return has_ids, [(start, min(start + rows_per_file, rows), 0, 0, 1) for start in starts]


def _scan_jsonl(
    path: Path, rows_per_file: int, text_column: str, id_column: str | None, extra: Sequence[str]
):
    starts: list[tuple[int, int]] = []  # (byte offset, line number) of each shard's first record
    records = 0
    has_ids = False
    try:
        with open(path, "rb") as f:
            position = 0
            for line_number, raw in enumerate(f, 1):
                if raw.strip():
                    if records == 0:
                        first = _json_record(raw, path, line_number)
                        for column, what in ((text_column, "text"), *((c, "question") for c in extra)):
                            _check_column(path, list(first), column, what)
                        if id_column is not None:
                            _check_column(path, list(first), id_column, "id")
                        has_ids = (id_column or "id") in first
                    if records % rows_per_file == 0:
                        starts.append((position, line_number))
                    records += 1
                position += len(raw)
    except OSError as err:
        raise JobError(f"{path}: cannot read ({err.strerror or err})") from None
    if not starts:
        return has_ids, [(0, 0, 0, position, 1)]
    ends = [offset for offset, _ in starts[1:]] + [position]
    return has_ids, [
        (i * rows_per_file, min((i + 1) * rows_per_file, records), offset, end, line)
        for i, ((offset, line), end) in enumerate(zip(starts, ends))
    ]


def _json_record(raw: bytes, path: Path | str, line_number: int) -> dict:
    try:
        record = json.loads(raw)
    except ValueError as err:
        raise JobError(f"{path}:{line_number}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise JobError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
    return record


def plan(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    extra_columns: Sequence[str] = (),
) -> list[Shard]:
    """The shards of a job: every input file's rows in runs of ``rows_per_file``, with output names.

    Reads only what it needs to check the inputs: Parquet footers, and JSON Lines files once (to
    count records and find the byte offset of each shard). An empty file is one empty shard.
    """
    if not isinstance(rows_per_file, int) or rows_per_file <= 0:
        raise JobError(f"rows_per_file must be a positive integer, got {rows_per_file!r}")
    files = input_files(inputs)
    out = Path(output_dir).expanduser().resolve()
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    shards: list[Shard] = []
    outputs: dict[Path, Path] = {}
    for path in files:
        if path.is_relative_to(out):
            raise JobError(f"input {path} is inside the output directory {out}; write the output elsewhere")
        kind = SUFFIXES[path.suffix]
        scan = _scan_parquet if kind == "parquet" else _scan_jsonl
        has_ids, ranges = scan(path, rows_per_file, text_column, id_column, extra_columns)
        name = path.relative_to(root).as_posix()
        stem = path.relative_to(root).with_suffix("")
        for index, (start, stop, offset, end, line) in enumerate(ranges):
            output = out / f"{stem}-{index:05d}.parquet"
            if output in outputs:
                raise JobError(
                    f"inputs {outputs[output]} and {path} would both write {output}; rename one of them"
                )
            outputs[output] = path
            shards.append(
                Shard(str(path), name, kind, index, start, stop, str(output), has_ids, offset, end, line)
            )
    return shards


def is_complete(shard: Shard) -> bool:
    """Whether ``shard``'s output file is in place, readable and records exactly this shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(shard.output)
    except (OSError, pa.ArrowException):
        return False
    recorded = (metadata.metadata or {}).get(_SHARD_KEY)
    return (
        metadata.num_rows == shard.stop - shard.start
        and recorded is not None
        and json.loads(recorded) == shard.key()
    )


def _remove_temporaries(shards: Sequence[Shard]) -> None:
    """Delete the temporary files (``.<name>.<random>.tmp``) that killed writers left beside outputs."""
    names: dict[Path, set[str]] = {}
    for shard in shards:
        output = Path(shard.output)
        names.setdefault(output.parent, set()).add(output.name)
    for folder, wanted in names.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp"):
                target = name[1:-4].rpartition(".")[0]
                if target in wanted:
                    entry.unlink(missing_ok=True)


def _remove_other_outputs(output_dir: Path, shards: Sequence[Shard]) -> None:
    """overwrite: delete the output files of a previous job (Parquet files with a shard record) not planned now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    planned = {Path(s.output) for s in shards}
    for path in output_dir.rglob("*.parquet"):
        if path in planned:
            continue
        try:
            ours = _SHARD_KEY in (pq.read_metadata(path).metadata or {})
        except (OSError, pa.ArrowException):
            ours = False
        if ours:
            path.unlink()


def _check_manifest(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    from ._fileio import atomic_write_json

    path = output_dir / MANIFEST
    if path.is_file() and not overwrite:
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise JobError(
                f"{path}: unreadable job record ({err}); pass overwrite=True (--overwrite)"
            ) from None
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            details = "; ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise JobError(
                f"{output_dir} holds the outputs of a job with other settings ({details}); use another "
                "output directory, or overwrite=True (--overwrite) to redo every file"
            )
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, settings)
