"""``xlmr-embed`` (``xlmr embed``): texts, one per line, to a ``.npy`` file of sentence embeddings.

    xlmr-embed texts.txt -o embeddings.npy --model path/to/multilingual-e5-base --prompt-name passage
    cat queries.txt | xlmr-embed - -o queries.npy --model e5 --backend flax --prompt-name query

Line i of the input (empty lines included; ``\\n`` or ``\\r\\n`` endings, UTF-8) is row i of the
(n, dim) array. The output is written atomically (a temporary file in the same directory, then
renamed): a reader never sees half an array. A progress bar on stderr (``--quiet``: none), then one
summary line on stdout: texts, tokens, seconds, texts/s.

Exit status 0 on success; 1 with a one-line ``error: ...`` on stderr for bad input (missing model
or input, an unsupported module, an unknown prompt name, a missing backend extra); 2 for bad
arguments; 130 when interrupted.

With ``--ray``, INPUT is Parquet/JSONL files (a file, a directory or a quoted glob) and ``-o`` a
directory: a resumable Ray Data job (:mod:`xlmr.ray_jobs`) writes one Parquet file of ids and
embeddings per shard of each input file; a rerun skips the files already complete.

Mounting: ``add_arguments(parser)`` fills an argparse parser (e.g. the ``embed`` subcommand of a
single ``xlmr`` command) and ``run(args)`` executes it; ``main(argv)`` is the ``xlmr-embed`` script.
Nothing here imports a deep-learning framework until ``run`` picks the backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from . import ray_jobs
from ._cli import OneLineParser, parse_or_status, report_error

BACKENDS = ("torch", "tf", "flax")
_ENCODERS = {"torch": ("xlmr_torch", "SentenceEncoder"), "tf": ("xlmr_tf", "TFSentenceEncoder"),
             "flax": ("xlmr_flax", "FlaxSentenceEncoder")}  # fmt: skip
_FRAMEWORK = {"torch": "torch", "tf": "tensorflow", "flax": "jax"}
_EXTRA = {"torch": "torch", "tf": "tf", "flax": "flax"}


class EmbedError(Exception):
    """A problem the user can fix; printed as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``xlmr embed`` arguments, on ``parser``."""
    from ._sentence import PRECISIONS

    parser.add_argument("input", metavar="INPUT", nargs="?", default="-",
                        help="text file, one text per line (UTF-8); '-' or nothing: stdin; with --ray Parquet/JSONL files")  # fmt: skip
    parser.add_argument(
        "-o", "--output", required=True, help="the .npy file to write (n, dim); with --ray a directory"
    )
    parser.add_argument("--model", required=True,
                        help="sentence-transformers directory, or a plain HF XLM-R directory (mean pooling); or "
                        "a Hugging Face Hub repo id of either (org/name, org/name@revision)")  # fmt: skip
    parser.add_argument("--backend", choices=BACKENDS,
                        help="framework to run on (default: the first installed of torch, flax, tf)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sentence-transformers' batch size: a batch holds at most batch-size x "
                        "max_seq_length tokens (default 32)")  # fmt: skip
    parser.add_argument("--prompt-name", help="a prompt of the model's config (e.g. query, passage)")
    parser.add_argument("--prompt", help="a prompt text prepended to every line (instead of --prompt-name)")
    parser.add_argument("--normalize", action="store_true", help="unit-length embeddings")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="quantize as sentence-transformers does (default float32)")  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    ray_jobs.add_arguments(parser)
    return parser


def default_backend() -> str:
    """The first backend whose framework is installed: torch, flax, tf."""
    for name in ("torch", "flax", "tf"):
        if importlib.util.find_spec(_FRAMEWORK[name]) is not None:
            return name
    raise EmbedError("no backend installed: pip install 'xlmr[torch]' (or [tf], [flax])")


def read_texts(source: str) -> list[str]:
    """Lines of ``source`` ('-': stdin) without their line endings."""
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise EmbedError(f"no such input file: {source}")
        data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise EmbedError(f"{source}: not UTF-8 text ({err})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _encoder_class(backend: str):
    if importlib.util.find_spec(_FRAMEWORK[backend]) is None:
        raise EmbedError(
            f"backend {backend!r} needs {_FRAMEWORK[backend]}: pip install 'xlmr[{_EXTRA[backend]}]'"
        )
    if backend == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if "keras" not in sys.modules:
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    module, name = _ENCODERS[backend]
    return getattr(importlib.import_module(module), name)


def save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` to ``path`` atomically (temporary file beside it, fsync, rename)."""
    import numpy as np

    from ._fileio import atomic_write

    path = Path(path)
    if path.is_dir():
        raise EmbedError(f"output {path} is a directory")
    if not path.parent.is_dir():
        raise EmbedError(f"output directory {path.parent} does not exist")
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def run(args: argparse.Namespace) -> int:
    """Execute parsed ``xlmr embed`` arguments; returns the exit status (errors print one line)."""
    if getattr(args, "ray", False):
        return run_ray(args)
    try:
        overwrite = bool(getattr(args, "overwrite", False))
        ray_jobs.job_arguments(argparse.Namespace(**{**vars(args), "overwrite": False}))  # --ray-only flags
        if args.batch_size <= 0:
            raise EmbedError(f"--batch-size must be positive, got {args.batch_size}")
        from ._hub import is_hub_name

        if not Path(args.model).is_dir() and not is_hub_name(args.model):
            raise EmbedError(f"no such model directory: {args.model}")
        if Path(args.output).is_file() and not overwrite:
            raise EmbedError(f"output {args.output} exists; pass --overwrite to replace it")
        texts = read_texts(args.input)
        backend = args.backend or default_backend()
        encoder = _encoder_class(backend).from_pretrained(args.model)
        embeddings = encoder.encode(
            texts,
            batch_size=args.batch_size,
            prompt_name=args.prompt_name,
            prompt=args.prompt,
            normalize_embeddings=args.normalize,
            precision=args.precision,
            show_progress_bar=not args.quiet and len(texts) > 0,
        )
        save_npy(args.output, embeddings)
    except KeyboardInterrupt:
        print("error: interrupted; the output was not written", file=sys.stderr)
        return 130
    except (EmbedError, OSError, ValueError, TypeError, ImportError) as err:
        return report_error(err)
    stats = encoder.last_stats
    print(
        f"embedded {stats.texts:,} texts ({stats.tokens:,} tokens) in {stats.seconds:.2f} s, "
        f"{stats.texts_per_second:,.1f} texts/s, {backend} -> {args.output} "
        f"{tuple(embeddings.shape)} {embeddings.dtype}"
    )
    return 0


def run_ray(args: argparse.Namespace) -> int:
    """``xlmr embed --ray``: Parquet/JSONL files in, a directory of Parquet files (ids, embeddings) out."""
    try:
        if args.input == "-":
            raise EmbedError(
                "--ray reads Parquet/JSONL files: give INPUT (a file, a directory or a quoted glob)"
            )
        backend = args.backend or default_backend()
        result = ray_jobs.embed(
            args.input,
            args.output,
            model=args.model,
            backend=backend,
            batch_size=args.batch_size,
            prompt_name=args.prompt_name,
            prompt=args.prompt,
            normalize_embeddings=args.normalize,
            precision=args.precision,
            progress=not args.quiet,
            **ray_jobs.job_arguments(args),
        )
    except KeyboardInterrupt:
        print("error: interrupted; the files already written are complete, rerun to finish", file=sys.stderr)
        return 130
    except (EmbedError, OSError, ValueError, TypeError, ImportError) as err:
        return report_error(err)
    print(ray_jobs.summary(f"embedded ({backend})", result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="xlmr-embed",
        description="Embed texts (one per line) with an XLM-R sentence encoder into a .npy file.",
    )
    return add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = parse_or_status(build_parser(), argv)
    return args if isinstance(args, int) else run(args)


if __name__ == "__main__":
    sys.exit(main())
