"""Corpus-scale inference on Ray: sentence embeddings and task pipelines as resumable Ray Data jobs.

::

    from xlmr import ray_jobs

    result = ray_jobs.embed("corpus/*.parquet", "embeddings/", model="path/to/e5", backend="flax")
    result = ray_jobs.run_task("text-classification", "corpus/", "labels/", model="path/to/ckpt")

The same jobs from the command line: ``xlmr embed INPUT -o DIR --model M --ray`` and
``xlmr run TASK --model M --ray --input INPUT -o DIR``.

Inputs: Parquet (``.parquet``) and JSON Lines (``.jsonl``, ``.ndjson``: one JSON object per
non-blank line) files, given as paths, directories (their files of those kinds) or globs. Each
row has a text column (``text_column``) and may have an id column (``id_column``; by default
``id`` where a file has one); rows without ids get ``"<file>:<row>"`` (the file relative to the
inputs' common folder, the row counted from 0 among the file's records).

Work: every input file is cut into shards of ``rows_per_file`` rows; a Ray Data job maps the
shards over a pool of model actors (``map_batches``, one shard per call): each actor loads the
sentence encoder or the pipeline once (any backend) and, per shard, reads its rows, runs the
model and writes one Parquet file: the ids and the results (``embedding``: a fixed-size list per
row, float32 or the quantized type; ``result``: the task's JSON output per row, as ``xlmr run``
prints it). Output names are deterministic: ``<output_dir>/<file's folder>/<file's stem>-<shard
index:05d>.parquet``.

Resuming: each output file is written under a temporary name and renamed into place, and carries
its shard (source file, row range) in its Parquet metadata; a rerun of the same job skips every
output file whose footer says it is complete, removes the temporaries of killed writers and
runs the rest, so a job killed at any point completes on rerun with every input row written
exactly once. The job's settings are kept in ``<output_dir>/_xlmr_job.json``; a rerun with
other settings is refused unless ``overwrite=True``, which rewrites every output file (and removes
the previous job's other output files).

Ray is imported when a job starts, never on ``import xlmr``; ``pip install "xlmr[ray]"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._ray_plan import (
    _SHARD_KEY,
    DEFAULT_ROWS_PER_FILE,
    MANIFEST,
    SUFFIXES,  # noqa: F401 -- re-exported: the planning half of this module's API
    JobError,
    Shard,
    _check_manifest,
    _json_record,
    _remove_other_outputs,
    _remove_temporaries,
    input_files,  # noqa: F401
    is_complete,
    plan,
)

_ENCODERS = {"torch": "SentenceEncoder", "tf": "TFSentenceEncoder", "flax": "FlaxSentenceEncoder"}
# int8/uint8 take their buckets from the embeddings encoded together: a shard's would differ from
# the corpus's. Ray jobs write float32 (or the per-value binary types) and leave calibration to the user.
_RAY_PRECISIONS = ("float32", "binary", "ubinary")


@dataclasses.dataclass
class JobResult:
    """What a job did.

    Attributes:
        output_dir: The output directory.
        outputs: Every output file of the job (complete after a successful run), in input order.
        files_written: Output files this run wrote.
        files_skipped: Output files already complete (a previous run's), left as they were.
        rows_written: Input rows this run processed.
        seconds: Wall time of this run.
    """

    output_dir: Path
    outputs: list[Path]
    files_written: int = 0
    files_skipped: int = 0
    rows_written: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0


# -- workers: one per actor, one shard per call ----------------------------------------------------
class _ShardWorker:
    """Loads the model once; per shard: read the rows, run the model, write the Parquet file atomically."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.text_column = job["text_column"]
        self.id_column = job["id_column"] or "id"
        self.question_column = job.get("question_column")
        self.overwrite = job["overwrite"]
        # Ray Data keeps a worker's exception as text only; errors travel back as data instead,
        # and the driver raises the first one with its type and message (see _execute).
        self.error: tuple[str, str] | None = None
        try:
            self.load()
        except Exception as err:
            self.error = _describe(err)

    def load(self) -> None:
        """Load the model (once per actor)."""
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done: dict[str, list] = {"output": [], "rows": [], "written": [], "error_type": [], "error": []}
        for item in batch["shard"]:
            shard = Shard(**json.loads(str(item)))
            written, error = False, self.error
            if error is None:
                try:
                    written = self.overwrite or not is_complete(shard)  # a retried call may find it done
                    if written:
                        self._write(shard)
                except Exception as err:
                    written, error = False, _describe(err)
            done["output"].append(shard.output)
            done["rows"].append(shard.stop - shard.start if written else 0)
            done["written"].append(written)
            done["error_type"].append(error[0] if error else "")
            done["error"].append(error[1] if error else "")
        return {k: np.asarray(v) for k, v in done.items()}

    def _read(self, shard: Shard) -> tuple[list, list[str], list[str] | None]:
        """(ids, texts, questions) of the shard's rows."""
        roles = {self.text_column: "text"}
        if self.question_column:
            roles[self.question_column] = "question"
        texts = list(roles)
        if shard.ids:
            roles[self.id_column] = "id"
        if shard.kind == "parquet":
            values = _read_parquet_rows(shard, list(roles))
        else:
            values = _read_jsonl_rows(shard, roles)
        for column in texts:
            for row, value in enumerate(values[column]):
                if not isinstance(value, str):
                    raise JobError(
                        f"{shard.source}: row {shard.start + row}: {roles[column]} column {column!r} holds "
                        f"{type(value).__name__ if value is not None else 'null'}, not a string"
                    )
        if shard.ids:
            ids = values[self.id_column]
            if any(v is None for v in ids):
                row = next(i for i, v in enumerate(ids) if v is None)
                raise JobError(
                    f"{shard.source}: row {shard.start + row}: id column {self.id_column!r} is null"
                )
        else:
            ids = [f"{shard.name}:{row}" for row in range(shard.start, shard.stop)]
        questions = values[self.question_column] if self.question_column else None
        return ids, values[self.text_column], questions

    def _write(self, shard: Shard) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ._fileio import atomic_write

        ids, texts, questions = self._read(shard)
        results = self.compute(texts, questions)
        try:
            id_array = pa.array(ids)
        except (pa.ArrowException, OverflowError) as err:
            raise JobError(
                f"{shard.source}: ids of rows {shard.start}-{shard.stop} mix types ({err})"
            ) from None
        table = pa.table({self.id_column: id_array, **results})
        table = table.replace_schema_metadata({_SHARD_KEY: json.dumps(shard.key()).encode()})
        output = Path(shard.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, lambda f: pq.write_table(table, f))

    def compute(self, texts: list[str], questions: list[str] | None) -> dict[str, Any]:
        raise NotImplementedError


def _read_parquet_rows(shard: Shard, columns: list[str]) -> dict[str, list]:
    import pyarrow.parquet as pq

    f = pq.ParquetFile(shard.source)
    groups, first, seen = [], None, 0
    for g in range(f.metadata.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        if seen + n > shard.start and seen < shard.stop:
            groups.append(g)
            first = seen if first is None else first
        seen += n
    if not groups:
        return {c: [] for c in columns}
    table = f.read_row_groups(groups, columns=columns).slice(shard.start - first, shard.stop - shard.start)
    if table.num_rows != shard.stop - shard.start:
        raise JobError(f"{shard.source}: expected rows {shard.start}-{shard.stop}, the file changed since")
    return {c: table.column(c).to_pylist() for c in columns}


def _read_jsonl_rows(shard: Shard, roles: dict[str, str]) -> dict[str, list]:
    columns = list(roles)
    with open(shard.source, "rb") as f:
        f.seek(shard.offset)
        data = f.read(shard.end - shard.offset)
    values: dict[str, list] = {c: [] for c in columns}
    for line_number, raw in enumerate(data.split(b"\n"), shard.line):
        if not raw.strip():
            continue
        record = _json_record(raw, shard.source, line_number)
        for column in columns:
            if column not in record:
                raise JobError(f"{shard.source}:{line_number}: no {roles[column]} column {column!r}")
            values[column].append(record[column])
    if len(values[columns[0]]) != shard.stop - shard.start:
        raise JobError(f"{shard.source}: expected rows {shard.start}-{shard.stop}, the file changed since")
    return values


class _EmbedWorker(_ShardWorker):
    """A sentence encoder of the job's backend; ``embedding`` column."""

    def load(self) -> None:
        from .pipelines._model import import_backend

        job = self.job
        if job["backend"] == "tf":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        package = import_backend(job["backend"])
        self.encoder = getattr(package, _ENCODERS[job["backend"]]).from_pretrained(job["model"])
        self.options = job["options"]

    def compute(self, texts: list[str], questions: list[str] | None) -> dict[str, Any]:
        import pyarrow as pa

        embeddings = np.asarray(self.encoder.encode(texts, show_progress_bar=False, **self.options))
        precision = self.options["precision"]
        if not texts and precision != "float32":  # encode leaves no texts unquantized: (0, dim) float32
            dtype = np.uint8 if precision == "ubinary" else np.int8
            embeddings = np.zeros((0, (embeddings.shape[1] + 7) // 8), dtype)
        flat = pa.array(np.ascontiguousarray(embeddings).reshape(-1))
        return {"embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])}


class _TaskWorker(_ShardWorker):
    """A task pipeline of the job's backend; ``result`` column (JSON text per row)."""

    def load(self) -> None:
        from .pipelines import pipeline

        job = self.job
        self.task = job["task"]
        self.pipe = pipeline(
            self.task,
            job["model"],
            backend=job["backend"],
            tokenizer=job["tokenizer"],
            **{**job["pipeline_options"], "progress": False},
        )
        self.call_options = job["call_options"]
        self.question = job.get("question")

    def compute(self, texts: list[str], questions: list[str] | None) -> dict[str, Any]:
        import pyarrow as pa

        if self.task == "question-answering":
            asked = questions if questions is not None else [self.question] * len(texts)
            items: list[Any] = [{"question": q, "context": c} for q, c in zip(asked, texts)]
        else:
            items = texts
        if len(items) == 1:  # a one-item list gives that item's result for some tasks (HF's rule)
            results = [self.pipe(items[0], **self.call_options)]
        else:
            results = self.pipe(items, **self.call_options) if items else []
        encoded = [json.dumps(r, ensure_ascii=False, default=_jsonable) for r in results]
        return {"result": pa.array(encoded, pa.string())}


def _jsonable(value: Any):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- running on Ray -------------------------------------------------------------------------------
def import_ray():
    """``ray`` with Ray Data, or a one-line error saying how to install it."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f'Ray jobs need Ray Data: pip install "xlmr[ray]" ({err})') from None
    return ray


# Errors a worker reports come back as these types (others as RuntimeError), with their message.
_ERROR_TYPES: dict[str, type[Exception]] = {
    t.__name__: t
    for t in (
        JobError,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        FileNotFoundError,
        ImportError,
        RuntimeError,
    )
}


def _describe(err: Exception) -> tuple[str, str]:
    import logging

    logging.getLogger("xlmr").debug("ray job worker error", exc_info=err)
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return type(err).__name__, " ".join(str(message).split()) or type(err).__name__


def _raise_error(kind: str, message: str) -> None:
    raise _ERROR_TYPES.get(kind, RuntimeError)(message)


def _run(
    worker: type[_ShardWorker],
    job: dict[str, Any],
    shards: list[Shard],
    output_dir: Path,
    *,
    num_actors: int | None,
    cpus_per_actor: float,
    gpus_per_actor: float,
    address: str | None,
    progress: bool,
) -> JobResult:
    started = time.perf_counter()
    overwrite = job["overwrite"]
    if num_actors is not None and (not isinstance(num_actors, int) or num_actors <= 0):
        raise JobError(f"num_actors must be a positive integer, got {num_actors!r}")
    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise JobError(
            f"cpus_per_actor must be > 0 and gpus_per_actor >= 0, got {cpus_per_actor}, {gpus_per_actor}"
        )
    if (job["id_column"] or "id") in ("embedding", "result"):
        raise JobError(f"id_column {job['id_column']!r} is the name of a result column; rename it")
    ray = import_ray()  # before anything is written
    settings = {k: v for k, v in job.items() if k not in ("overwrite", "backend")}
    _check_manifest(output_dir, settings, overwrite)
    _remove_temporaries(shards)
    if overwrite:
        _remove_other_outputs(output_dir, shards)
    pending = shards if overwrite else [s for s in shards if not is_complete(s)]
    result = JobResult(output_dir, [Path(s.output) for s in shards], files_skipped=len(shards) - len(pending))
    if pending:
        rows = _execute(
            ray, worker, job, pending, num_actors, cpus_per_actor, gpus_per_actor, address, progress
        )
        result.files_written = sum(bool(r["written"]) for r in rows)
        result.files_skipped += len(rows) - result.files_written
        result.rows_written = sum(int(r["rows"]) for r in rows)
    result.seconds = time.perf_counter() - started
    return result


def _execute(
    ray, worker, job, pending, num_actors, cpus_per_actor, gpus_per_actor, address, progress
) -> list:
    """The Ray Data job over ``pending`` shards: one row per shard (output, rows, written, error)."""
    import logging

    init = not ray.is_initialized()
    if init:
        ray.init(address=address, log_to_driver=progress)
    context = ray.data.DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    saved = context.enable_progress_bars, data_logger.level
    context.enable_progress_bars = progress
    if not progress:
        data_logger.setLevel(logging.WARNING)  # no "Starting execution of Dataset..." lines
    rows: list = []
    try:
        if num_actors is None:
            cpus = ray.cluster_resources().get("CPU", 1)
            num_actors = max(1, int(cpus // cpus_per_actor))
        items = [{"shard": json.dumps(dataclasses.asdict(s))} for s in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            worker,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(num_actors, len(pending))),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor or None,
        )
        iterator = iter(dataset.iter_rows())
        try:
            for row in iterator:  # streaming: stops the job at the first error
                if row["error_type"]:
                    _raise_error(str(row["error_type"]), str(row["error"]))
                rows.append(row)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # shuts the executor and its actors down now, not when collected
    finally:
        context.enable_progress_bars, level = saved
        data_logger.setLevel(level)
        if init:
            ray.shutdown()
    return rows


def embed(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    model: str | os.PathLike,
    backend: str = "torch",
    text_column: str = "text",
    id_column: str | None = None,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    num_actors: int | None = None,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    batch_size: int = 32,
    prompt_name: str | None = None,
    prompt: str | None = None,
    normalize_embeddings: bool = False,
    precision: str = "float32",
    truncate_dim: int | None = None,
) -> JobResult:
    """Embed the texts of Parquet / JSON Lines files with a sentence encoder, as a Ray Data job.

    Each output file holds the id column and ``embedding`` (a fixed-size list per row: float32, or
    int8/uint8 bytes for ``binary``/``ubinary``), equal to ``SentenceEncoder.encode`` of the same
    texts with the same options (within float32 rounding: 1e-5).

    Args:
        inputs: Files, directories or globs of ``.parquet`` / ``.jsonl`` files.
        output_dir: Where the Parquet files go (created; see the module docstring for names).
        model: A sentence-transformers directory or a plain HF XLM-R directory (readable on every
            node), or a Hub repo id of either (each actor loads it from its node's HF cache).
        backend: ``"torch"``, ``"tf"`` or ``"flax"``: the encoder each actor runs.
        text_column: The column of texts.
        id_column: The column of ids; None: ``id`` where a file has it, else generated ids.
        rows_per_file: Rows per shard, so per output file and per actor call.
        num_actors: Model actors; None: the cluster's CPUs / ``cpus_per_actor``.
        cpus_per_actor: CPUs reserved per actor (Ray also sets its thread count from it).
        gpus_per_actor: GPUs per actor (e.g. 1, or 0.5 to share one between two).
        address: Ray cluster to connect to when Ray is not initialized (``ray.init(address)``;
            None: a running local cluster, else a new one). A cluster started here is shut down after.
        overwrite: Redo every output file, and accept settings different from the previous run's.
        progress: Ray Data's progress bars and the workers' logs.
        batch_size, prompt_name, prompt, normalize_embeddings, precision, truncate_dim: as in
            ``SentenceEncoder.encode``; ``precision`` float32, binary or ubinary (int8/uint8 buckets
            would depend on the shard: quantize the float32 output with ``quantize_embeddings``).

    Example:
        >>> from xlmr import ray_jobs
        >>> result = ray_jobs.embed("corpus/*.parquet", "emb/", model="e5", num_actors=4)  # doctest: +SKIP
        >>> result.files_written, result.rows_per_second  # doctest: +SKIP
    """
    from .pipelines._model import check_backend

    check_backend(backend)
    if precision not in _RAY_PRECISIONS:
        raise JobError(
            f"precision {precision!r} is not available in a Ray job (its buckets would depend on the shard); "
            f"choose from {', '.join(_RAY_PRECISIONS)} and quantize afterwards with calibration embeddings"
        )
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise JobError(f"batch_size must be a positive integer, got {batch_size!r}")
    from ._hub import is_hub_name

    local = Path(model).expanduser()
    if not local.is_dir() and not is_hub_name(model):
        raise JobError(f"no such model directory: {model}")
    options = {
        "batch_size": batch_size,
        "prompt_name": prompt_name,
        "prompt": prompt,
        "normalize_embeddings": normalize_embeddings,
        "precision": precision,
        "truncate_dim": truncate_dim,
    }
    shards = plan(
        inputs, output_dir, text_column=text_column, id_column=id_column, rows_per_file=rows_per_file
    )
    job = {
        "kind": "embed",
        "model": str(local.resolve()) if local.is_dir() else str(model),
        "backend": backend,
        "text_column": text_column,
        "id_column": id_column,
        "rows_per_file": rows_per_file,
        "options": options,
        "overwrite": overwrite,
    }
    return _run(
        _EmbedWorker,
        job,
        shards,
        Path(output_dir).expanduser().resolve(),
        num_actors=num_actors,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        address=address,
        progress=progress,
    )


def _pipeline_option_names() -> tuple[str, ...]:
    """The options a pipeline takes at construction (batching, packing, progress); the rest are per call."""
    import inspect

    from .pipelines import Pipeline

    params = inspect.signature(Pipeline.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def run_task(
    task: str,
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    model: str | os.PathLike,
    backend: str = "torch",
    tokenizer: str | os.PathLike | None = None,
    question: str | None = None,
    question_column: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    num_actors: int | None = None,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **options: Any,
) -> JobResult:
    """Run a task pipeline over the texts of Parquet / JSON Lines files, as a Ray Data job.

    Each output file holds the id column and ``result``: per row, the JSON text of what
    ``xlmr.pipeline(task, model, ...)(text)`` returns (what ``xlmr run`` prints for that input).

    Args:
        task: A task of :func:`xlmr.pipeline` (``fill-mask``, ``text-classification``, ``ner``...).
        inputs, output_dir, text_column, id_column, rows_per_file, num_actors, cpus_per_actor,
            gpus_per_actor, address, overwrite, progress: as in :func:`embed`.
        model: A checkpoint directory or Hub repo id, readable from every node.
        backend: ``"torch"``, ``"tf"`` or ``"flax"``.
        tokenizer: Tokenizer directory or Hub repo id (default: the model's).
        question: question-answering: the question asked of every row (the text is the context).
        question_column: question-answering: the column holding each row's question.
        **options: The pipeline's options (``batch_size``, ``max_batch_tokens``, ``packed``) and the
            task's (``top_k``, ``aggregation_strategy``...).
    """
    from .pipelines._factory import task_class
    from .pipelines._model import check_backend

    name = task_class(task).task  # an unknown task lists the known ones
    check_backend(backend)
    if name == "question-answering":
        if (question is None) == (question_column is None):
            raise JobError("question-answering needs exactly one of question= and question_column=")
    elif question is not None or question_column is not None:
        raise JobError("question / question_column are for question-answering only")
    construction = set(_pipeline_option_names()) - {"progress"}
    options.pop("progress", None)
    shards = plan(
        inputs,
        output_dir,
        text_column=text_column,
        id_column=id_column,
        rows_per_file=rows_per_file,
        extra_columns=[question_column] if question_column else [],
    )
    local = Path(model).expanduser()
    job = {
        "kind": "task",
        "task": name,
        "model": str(local.resolve()) if local.exists() else str(model),
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "backend": backend,
        "text_column": text_column,
        "id_column": id_column,
        "question": question,
        "question_column": question_column,
        "rows_per_file": rows_per_file,
        "pipeline_options": {k: v for k, v in options.items() if k in construction},
        "call_options": {k: v for k, v in options.items() if k not in construction},
        "overwrite": overwrite,
    }
    try:
        json.dumps(job)
    except TypeError as err:
        raise JobError(f"job options must be JSON values (they are recorded in {MANIFEST}): {err}") from None
    return _run(
        _TaskWorker,
        job,
        shards,
        Path(output_dir).expanduser().resolve(),
        num_actors=num_actors,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        address=address,
        progress=progress,
    )


# -- the command-line flags (``xlmr embed --ray``, ``xlmr run --ray``) ------------------------------
_RAY_FLAGS = {
    "ray_address": "--ray-address",
    "text_column": "--text-column",
    "id_column": "--id-column",
    "num_actors": "--num-actors",
    "rows_per_file": "--rows-per-file",
    "cpus_per_actor": "--cpus-per-actor",
    "gpus_per_actor": "--gpus-per-actor",
    "overwrite": "--overwrite",
    "question_column": "--question-column",
}


def add_arguments(parser: argparse.ArgumentParser, *, output: bool = False, question: bool = False) -> None:
    """The ``--ray`` flags, on ``parser`` (``output``: add ``-o/--output``; ``question``: ``--question-column``)."""
    group = parser.add_argument_group(
        "corpus-scale on Ray (pip install 'xlmr[ray]')",
        "With --ray the input is Parquet/JSONL files (a file, a directory or a quoted glob) and the output a "
        "directory of Parquet files (ids + results); a rerun skips the files already complete.",
    )
    group.add_argument("--ray", action="store_true", help="run as a resumable Ray Data job")
    if output:
        group.add_argument("-o", "--output", metavar="DIR", help="--ray: the output directory")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="Ray cluster (ray start --head prints it; default: a running local one, else a new one)")  # fmt: skip
    group.add_argument("--text-column", metavar="NAME", help="column of texts (default text)")
    group.add_argument(
        "--id-column", metavar="NAME", help="column of ids (default: id where present, else FILE:ROW)"
    )
    if question:
        group.add_argument(
            "--question-column", metavar="NAME", help="question-answering: column of questions"
        )
    group.add_argument(
        "--num-actors", type=int, metavar="N", help="model actors (default: cluster CPUs / --cpus-per-actor)"
    )
    group.add_argument("--rows-per-file", type=int, metavar="N",
                       help=f"rows per output file (and per actor call; default {DEFAULT_ROWS_PER_FILE:,})")  # fmt: skip
    group.add_argument("--cpus-per-actor", type=float, metavar="N", help="CPUs per actor (default 1)")
    group.add_argument("--gpus-per-actor", type=float, metavar="N", help="GPUs per actor (default 0)")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (with --ray: redo every output file, whatever a previous run did)",
    )


def job_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The job keyword arguments of parsed ``--ray`` flags; a flag given without ``--ray`` is an error."""
    if not getattr(args, "ray", False):
        used = [flag for key, flag in _RAY_FLAGS.items() if getattr(args, key, None) not in (None, False)]
        if used:
            raise JobError(f"{', '.join(used)} only apply with --ray")
        return {}
    kwargs = {
        "address": args.ray_address,
        "text_column": args.text_column or "text",
        "id_column": args.id_column,
        "num_actors": args.num_actors,
        "rows_per_file": DEFAULT_ROWS_PER_FILE if args.rows_per_file is None else args.rows_per_file,
        "cpus_per_actor": 1 if args.cpus_per_actor is None else args.cpus_per_actor,
        "gpus_per_actor": 0 if args.gpus_per_actor is None else args.gpus_per_actor,
        "overwrite": args.overwrite,
    }
    if getattr(args, "question_column", None) is not None:
        kwargs["question_column"] = args.question_column
    return kwargs


def summary(what: str, result: JobResult) -> str:
    """The one line a command prints after a job."""
    return (
        f"{what} {result.rows_written:,} texts in {result.seconds:.2f} s "
        f"({result.rows_per_second:,.1f} texts/s): {result.files_written} files written, "
        f"{result.files_skipped} already complete -> {result.output_dir}"
    )
