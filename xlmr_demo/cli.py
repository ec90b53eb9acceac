"""``xlmr-demo``: train, convert and cross-check a small XLM-R language identifier in three frameworks.

Default run (offline, about 30 seconds on 2 CPU cores)::

    xlmr-demo                      # tokenizer -> Keras training -> torch/flax files -> 3 backends agree
    xlmr-demo --workdir out --keep # keep the checkpoints (out/tf, out/torch, out/flax)

Your own HF checkpoint directory (e.g. a downloaded ``xlm-roberta-base``)::

    xlmr-demo --model DIR --backend flax --fill-mask "Paris is the <mask> of France."
    xlmr-demo --model DIR --backend torch --classify "first text" "second text"

Exit codes: 0 success, 1 a check failed (backends disagree, accuracy below the floor),
2 a usage or environment problem (missing extra, missing directory...), printed as one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ._backends import BACKENDS, DemoError
from .console import fail, say
from .settings import ACCURACY_FLOOR as ACCURACY_FLOOR
from .settings import AGREEMENT_LIMIT, PROG, QUICK, Settings


# -- argument parsing -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "End-to-end XLM-R demo: trains a SentencePiece tokenizer and a small language identifier "
            "(12 languages) with Keras, converts it to PyTorch and Flax, and checks that all backends "
            "agree. With --model DIR, runs fill-mask or classification on your own HF checkpoint."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    demo = parser.add_argument_group("demo run")
    demo.add_argument(
        "--workdir",
        metavar="DIR",
        help="write everything here (a new or empty directory; "
        "kept afterwards). Default: a fresh temporary directory, removed at the end",
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    demo.add_argument("--epochs", type=int, help="training epochs (default 30; 1 with --quick)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quick", action="store_true", help="a very small run (seconds; for tests)")
    demo.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends to check: torch,tf,flax (default: all three)",
    )

    own = parser.add_argument_group("your own checkpoint")
    own.add_argument(
        "--model",
        metavar="DIR",
        help="an HF XLM-R checkpoint directory (config.json, a weight file, tokenizer files)",
    )
    own.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="framework to run it in (default torch)"
    )
    task = own.add_mutually_exclusive_group()
    task.add_argument("--fill-mask", metavar="TEXT", help="text containing <mask>; prints the top-k fillers")
    task.add_argument(
        "--classify", metavar="TEXT", nargs="+", help="texts to classify; prints label probabilities"
    )
    own.add_argument("--top-k", type=int, default=5, help="predictions to print (default 5)")
    return parser


def parse_backends(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise DemoError(
            f"--backends: unknown backend(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(BACKENDS)}"
        )
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xlmr-demo`` and ``python -m xlmr_demo``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.model is not None:
            if args.fill_mask is None and args.classify is None:
                raise DemoError("--model needs --fill-mask TEXT or --classify TEXT [TEXT ...]")
            if args.top_k < 1:
                raise DemoError(f"--top-k must be at least 1, got {args.top_k}")
            from .predict import run_own_model

            return run_own_model(args)
        if args.fill_mask is not None or args.classify is not None:
            raise DemoError("--fill-mask and --classify need --model DIR")
        return run_demo(args)
    except DemoError as err:
        return fail(str(err))
    except KeyboardInterrupt:
        return fail("interrupted")


# -- the demo -------------------------------------------------------------------------------------
def make_workdir(args) -> tuple[Path, bool]:
    """The working directory and whether to remove it at the end."""
    if args.workdir is None:
        return Path(tempfile.mkdtemp(prefix="xlmr-demo-")), not args.keep
    workdir = Path(args.workdir).expanduser().resolve()
    if workdir.exists() and not workdir.is_dir():
        raise DemoError(f"--workdir {workdir} is a file, not a directory")
    if workdir.exists() and any(workdir.iterdir()):
        raise DemoError(f"--workdir {workdir} is not empty; give a new or empty directory")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, False


def run_demo(args) -> int:
    # The limit is read here, at run time, so that a test can tighten cli.AGREEMENT_LIMIT.
    settings = Settings(**(QUICK if args.quick else {}), agreement_limit=AGREEMENT_LIMIT)
    if args.epochs is not None:
        if args.epochs < 1:
            raise DemoError(f"--epochs must be at least 1, got {args.epochs}")
        settings.epochs = args.epochs
    backends = parse_backends(args.backends)
    workdir, remove = make_workdir(args)
    # Framework caches that would land outside the workdir: Keras writes ~/.keras/keras.json when
    # imported, torch makes $TMPDIR/torchinductor_$USER when loading. Point them into the workdir.
    scoped = {"TORCHINDUCTOR_CACHE_DIR": workdir / ".cache" / "torchinductor"}
    if "keras" not in sys.modules:
        scoped["KERAS_HOME"] = workdir / ".keras"
    scoped = {k: str(v) for k, v in scoped.items() if k not in os.environ}
    os.environ.update(scoped)
    try:
        from .pipeline import Pipeline

        return Pipeline(settings, backends, workdir, seed=args.seed).run()
    finally:
        for key in scoped:  # do not leave paths into a soon-deleted directory behind
            os.environ.pop(key, None)
        if remove:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"\nFiles kept in {workdir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
