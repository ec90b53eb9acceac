"""``xlmr-convert SRC DST --to {safetensors,pytorch,tf,flax,onnx}``: convert an XLM-R checkpoint between formats.

Exit status 0 on success (one summary line on stdout); 1 with a one-line ``error: ...`` on
stderr for bad input (missing or unreadable source, weights that do not fit the config, an
existing destination without ``--force``); 2 for bad arguments; 130 when interrupted (Ctrl-C),
143 when terminated (SIGTERM). Interrupted or terminated, the destination is left as it was
and the temporary files are removed; killed outright (SIGKILL), it is still the old or the new
checkpoint, and the next run removes the temporary directory left beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from xlmr._cli import OneLineParser, parse_or_status, report_error
from xlmr._fileio import Terminated
from xlmr.heads import HEAD_NAMES

from .common import DTYPES
from .convert import convert
from .io import FORMAT_ALIASES, FORMATS


def _format(name: str) -> str:
    """``--to`` takes a format or one of its aliases (``h5``, ``msgpack``, ``pt``...)."""
    return FORMAT_ALIASES.get(name.lower(), name)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="xlmr-convert",
        description="Convert an HF-layout XLM-RoBERTa checkpoint between safetensors, PyTorch, TF (h5) and "
        "Flax (msgpack) weight files. DST receives the weight file, config.json and SRC's tokenizer files.",
    )
    parser.add_argument(
        "src",
        metavar="SRC",
        help="checkpoint directory, a weight file (config.json beside it), or a Hugging Face Hub repo id "
        "(org/name, org/name@revision)",
    )
    parser.add_argument("dst", metavar="DST", help="output directory")
    parser.add_argument(
        "--to",
        required=True,
        type=_format,
        choices=(*FORMATS, "onnx"),
        help="weight format to write; onnx: ONNX graphs for ONNX Runtime (needs xlmr[torch,onnx])",
    )
    parser.add_argument("--dtype", choices=DTYPES, help="cast the weights (exact numpy / ml_dtypes casts)")
    parser.add_argument(
        "--allow-overflow",
        action="store_true",
        help="with --dtype float16: write values beyond its range as inf (default: refuse, naming the tensor)",
    )
    parser.add_argument("--config", help="config.json to use when SRC is a weight file without one beside it")
    parser.add_argument("--max-shard-size", help="write HF shards + index above this size, e.g. 2GB")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the weight files DST holds (of any format: stale ones go)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    onnx = parser.add_argument_group("ONNX (--to onnx; every graph written is checked with ONNX Runtime)")
    onnx.add_argument(
        "--optimize",
        action="store_true",
        help="also write model_optimized.onnx (ONNX Runtime's transformer optimizer), checked within 1e-4",
    )
    onnx.add_argument(
        "--quantize",
        choices=("int8",),
        help="also write model_quantized.onnx (dynamic int8 quantization), checked: cosine >= 0.99 to float32",
    )
    onnx.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    onnx.add_argument(
        "--head",
        choices=HEAD_NAMES,
        help="export this head instead of the checkpoint's own (base: the bare encoder, e.g. for embeddings)",
    )
    hub = parser.add_argument_group(
        "Hugging Face Hub (SRC = org/name or org/name@revision; HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, "
        "HF_TOKEN honoured)"
    )
    hub.add_argument("--revision", help="branch, tag or commit of the Hub repo (default: main)")
    hub.add_argument("--subfolder", help="folder of the Hub repo holding the checkpoint")
    hub.add_argument("--cache-dir", help="Hub cache directory (default: HF_HUB_CACHE, else $HF_HOME/hub)")
    hub.add_argument(
        "--token", help="Hub token for a private or gated repo (default: HF_TOKEN / the saved login)"
    )
    hub.add_argument("--local-files-only", action="store_true", help="never download: use the Hub cache only")
    hub.add_argument("--force-download", action="store_true", help="download again even if cached")
    return parser


def _hub_kwargs(args: argparse.Namespace) -> dict:
    """The Hub options given on the command line, as ``from_pretrained``'s keyword arguments."""
    names = ("revision", "subfolder", "cache_dir", "token", "local_files_only", "force_download")
    return {name: getattr(args, name) for name in names if getattr(args, name)}


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def start(total: int, tensors: int):
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"{tensors} tensors", leave=False)
        return bar.update

    return start


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`Terminated` while converting (main thread only), so clean-ups run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    onnx_only = [flag for flag, value in (("--optimize", args.optimize), ("--quantize", args.quantize),
                                          ("--opset", args.opset), ("--head", args.head)) if value]  # fmt: skip
    if args.to != "onnx" and onnx_only:
        print(f"error: {onnx_only[0]} needs --to onnx (see xlmr-convert --help)", file=sys.stderr)
        return 2
    if args.to == "onnx" and (args.dtype or args.max_shard_size or args.config):
        print("error: --dtype, --max-shard-size and --config do not apply to --to onnx", file=sys.stderr)
        return 2
    try:
        with _sigterm_raises():
            if args.to == "onnx":
                from .onnx_export import export_onnx

                summary = export_onnx(
                    args.src,
                    args.dst,
                    optimize=args.optimize,
                    quantize=args.quantize,
                    force=args.force,
                    opset=args.opset,
                    head=args.head,
                    **_hub_kwargs(args),
                )
            else:
                summary = convert(
                    args.src,
                    args.dst,
                    args.to,
                    dtype=args.dtype,
                    force=args.force,
                    config=args.config,
                    max_shard_size=args.max_shard_size,
                    progress=_progress(args.quiet),
                    allow_overflow=args.allow_overflow,
                    **_hub_kwargs(args),
                )
    except KeyboardInterrupt:
        print("error: interrupted; no file was replaced", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated; no file was replaced", file=sys.stderr)
        return 143
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        return report_error(err)
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
