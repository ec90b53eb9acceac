"""Run every benchmark in bench/ and write one markdown table.

    python -m bench.run_all [--quick] [--out bench/results/RESULTS.md] [--only forward_torch,tf]

Each ``bench/bench_<topic>.py`` module defines ``run(quick=False) -> list[dict]`` with rows
``{benchmark, backend, xlmr, hf, unit, ratio, notes}``; for times, ratio = hf / xlmr (>= 1.0
means xlmr is at least as fast as HF transformers 4.57.6 in the same process, same weights).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

MODULES = (
    "forward_torch",
    "tf",
    "flax",
    "tokenizers",
    "conversion",
    "loading",
    "pipelines",
    "sentence",
    "onnx",
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def to_markdown(rows: list[dict]) -> str:
    head = (
        "| benchmark | backend | xlmr | HF 4.57.6 | unit | ratio | notes |\n|---|---|---|---|---|---|---|\n"
    )
    fmt = lambda x: f"{x:.4g}" if isinstance(x, float) else str(x)  # noqa: E731
    body = "".join(
        f"| {r['benchmark']} | {r['backend']} | {fmt(r['xlmr'])} | {fmt(r['hf'])} | {r['unit']} | "
        f"{fmt(r['ratio'])} | {r.get('notes', '')} |\n"
        for r in rows
    )
    return head + body


def run_one(name: str, quick: bool) -> list[dict]:
    """Each benchmark runs in its own process so frameworks and memory peaks do not mix."""
    code = (
        "import json, sys, importlib\n"
        f"rows = importlib.import_module('bench.bench_{name}').run(quick={quick})\n"
        "print('@@ROWS@@' + json.dumps(rows))\n"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("@@ROWS@@"):
            import json

            return json.loads(line[len("@@ROWS@@") :])
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    return [dict(benchmark=name, backend="-", xlmr="failed", hf="-", unit="-", ratio="-", notes="see log")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run in seconds")
    parser.add_argument("--out", default="bench/results/RESULTS.md")
    parser.add_argument("--only", default=",".join(MODULES))
    args = parser.parse_args(argv)
    rows: list[dict] = []
    for name in args.only.split(","):
        start = time.perf_counter()
        print(f"== bench_{name} ...", flush=True)
        try:
            importlib.util.find_spec(f"bench.bench_{name}")
            rows += run_one(name, args.quick)
        except Exception:  # noqa: BLE001 -- one failing benchmark must not hide the others
            traceback.print_exc()
        print(f"   done in {time.perf_counter() - start:.0f} s", flush=True)
    table = f"Measured on {machine()}{' (quick)' if args.quick else ''}.\n\n" + to_markdown(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
