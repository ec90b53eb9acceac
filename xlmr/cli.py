"""``xlmr``: the project's one command.

::

    xlmr run TASK --model DIR [--backend torch|tf|flax] [TEXT ...]   # task pipelines, JSON lines out
    xlmr convert SRC DST --to tf                                      # = xlmr-convert
    xlmr demo [--quick]                                               # = xlmr-demo
    xlmr embed ...                                                    # sentence embeddings

``xlmr run ... --ray --input FILES -o DIR`` runs the task as a resumable Ray Data job over Parquet/JSONL
files instead (:mod:`xlmr.ray_jobs`): one Parquet file of ids and JSON results per shard.

``xlmr run`` reads its inputs from the arguments, else from ``--input FILE`` (one per line), else
from stdin (one per line); it prints one JSON line per input, in input order. For
question answering, ``--question`` asks the same question of every input (each a context);
without it each input is a JSON object ``{"question": ..., "context": ...}``.

Exit status: 0 success; 1 a problem with the model or an input (one ``error:`` line on stderr);
2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any

from . import ray_jobs
from ._cli import OneLineParser

PROG = "xlmr"
BACKENDS = ("torch", "tf", "flax")

# Subcommands that are whole programs of their own: their argv is handed over untouched.
_DELEGATED: dict[str, tuple[str, str]] = {
    "convert": ("conversion.cli", "convert checkpoints between weight formats (= xlmr-convert)"),
    "demo": (
        "xlmr_demo.cli",
        "train, convert and cross-check a small model in three frameworks (= xlmr-demo)",
    ),
}
# `xlmr embed` is mounted from the sentence-embedding module, which defines
# `add_arguments(parser)` and `run(args) -> int`; an installation without it says so and exits 2.
EMBED_MODULE = "xlmr.cli_embed"


def _embed_module():
    try:
        return importlib.import_module(EMBED_MODULE)
    except ModuleNotFoundError as err:
        if err.name and EMBED_MODULE.startswith(err.name):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="XLM-RoBERTa for PyTorch, TensorFlow and Flax: task pipelines, checkpoint conversion, demo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    run = sub.add_parser("run", help="run a task pipeline over texts; JSON lines out", description=run_doc())
    add_run_arguments(run)
    run.set_defaults(func=run_task)
    for name, (_, help_) in _DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)
    embed = sub.add_parser("embed", help="sentence embeddings of texts to a .npy file")
    module = _embed_module()
    if module is not None:
        module.add_arguments(embed)
        embed.set_defaults(func=module.run)
    else:
        embed.set_defaults(func=_embed_missing)
    return parser


def run_doc() -> str:
    from .pipelines import SUPPORTED_TASKS, TASK_ALIASES

    tasks = ", ".join([*SUPPORTED_TASKS, *TASK_ALIASES])
    return (
        f"Run a task pipeline ({tasks}) of an xlmr checkpoint directory over texts; one JSON line per input."
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "task", metavar="TASK", help="fill-mask, text-classification, ner, question-answering..."
    )
    parser.add_argument(
        "texts", metavar="TEXT", nargs="*", help="inputs (default: --input, else stdin lines)"
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="HF-layout checkpoint directory, or a Hugging Face Hub repo id (org/name, org/name@revision)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="framework to run (default torch)"
    )
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="tokenizer directory or Hub repo id (default: the model's)"
    )
    parser.add_argument("--input", metavar="FILE", help="read inputs from FILE, one per line")
    parser.add_argument("--question", help="question-answering: ask this of every input (each a context)")
    parser.add_argument("--top-k", type=int, help="results per input (the task's top_k)")
    parser.add_argument("--aggregation-strategy", choices=("none", "simple", "first", "average", "max"),
                        help="token-classification: how tokens are grouped into entities")  # fmt: skip
    parser.add_argument("--batch-size", type=int, help="inputs per forward (default: by token budget)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other task option, VALUE as JSON (e.g. --option max_seq_len=256 --option targets='[\"x\"]')",
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: on long inputs at a terminal)")  # fmt: skip
    ray_jobs.add_arguments(parser, output=True, question=True)


def _options(args) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(_usage(f"--option takes KEY=VALUE, got {item!r}"))
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    if args.top_k is not None:
        options["top_k"] = args.top_k
    if args.aggregation_strategy is not None:
        options["aggregation_strategy"] = args.aggregation_strategy
    return options


def _usage(message: str) -> int:
    print(f"error: {message} (see {PROG} run --help)", file=sys.stderr)
    return 2


def _inputs(args) -> list[str]:
    if args.texts:
        return list(args.texts)
    if args.input:
        with open(args.input, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def run_task(args) -> int:
    from .pipelines import pipeline
    from .pipelines._factory import task_class

    try:
        task = task_class(args.task).task
    except KeyError as err:
        return _usage(err.args[0])
    options = _options(args)
    try:
        ray_kwargs = ray_jobs.job_arguments(args)
    except ray_jobs.JobError as err:
        return _usage(str(err))
    if args.ray:
        return _run_task_on_ray(args, task, options, ray_kwargs)
    if args.output is not None:
        return _usage("-o/--output is for --ray (without it results go to stdout)")
    texts = _inputs(args)
    if task == "question-answering":
        if args.question is not None:
            items: list[Any] = [{"question": args.question, "context": t} for t in texts]
        else:
            try:
                items = [json.loads(t) for t in texts]
            except json.JSONDecodeError:
                return _usage(
                    'question-answering needs --question, or inputs as JSON {"question": ..., "context": ...}'
                )
    elif args.question is not None:
        return _usage("--question is for question-answering only")
    else:
        items = texts
    if args.progress is not None:
        options["progress"] = args.progress
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    pipe = pipeline(task, args.model, backend=args.backend, tokenizer=args.tokenizer, **_call_free(options))
    results = pipe(items, **_call_only(options)) if items else []
    if len(items) == 1 and task in ("fill-mask", "question-answering"):
        results = [results]  # HF's rule: a one-item list gives that item's result
    for result in results:
        print(json.dumps(result, ensure_ascii=False, default=_jsonable))
    return 0


def _run_task_on_ray(args, task: str, options: dict[str, Any], ray_kwargs: dict[str, Any]) -> int:
    """``xlmr run --ray``: Parquet/JSONL files in, a directory of Parquet files (ids, JSON results) out."""
    if args.texts:
        return _usage("--ray reads --input files (a file, a directory or a quoted glob), not TEXT arguments")
    if not args.input or not args.output:
        return _usage("--ray needs --input (Parquet/JSONL files) and -o/--output (a directory)")
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    result = ray_jobs.run_task(
        task,
        args.input,
        args.output,
        model=args.model,
        backend=args.backend,
        tokenizer=args.tokenizer,
        question=args.question,
        progress=bool(args.progress),
        **ray_kwargs,
        **options,
    )
    print(ray_jobs.summary(f"{task} ({args.backend})", result))
    return 0


_PIPELINE_OPTIONS = ("batch_size", "max_batch_tokens", "packed", "progress")


def _call_free(options: dict) -> dict:
    return {k: v for k, v in options.items() if k in _PIPELINE_OPTIONS}


def _call_only(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in _PIPELINE_OPTIONS}


def _jsonable(value: Any):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _embed_missing(args) -> int:
    print(
        f"error: `{PROG} embed` needs the sentence-embedding module ({EMBED_MODULE}), which this installation lacks",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    parser = build_parser()
    try:
        if argv and argv[0] == "run":  # options and texts in any order
            run = OneLineParser(prog=f"{PROG} run", description=run_doc())
            add_run_arguments(run)
            args = run.parse_intermixed_args(argv[1:])
            args.command, args.func = "run", run_task
        else:
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    func: Callable[[Any], int] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {' '.join(str(message).split()) or type(err).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
