"""Training throughput on 1 and 2 processes of this machine, each framework on its own engine.

    python -m bench.bench_distributed [--quick]

The command of the README's "Distributed training" section (``python -m xlmr.distributed``), a
sequence classifier of 4 layers, hidden 256 (``--quick``: 2 layers, hidden 64), global batch 16 x 64
tokens (``--quick``: 8 x 16), SGD, float32 on CPU:

- torch: one process (no wrapper) / ``torchrun --nproc_per_node 2`` with DDP and with FSDP2 (gloo);
- tf: one process (default strategy) / two ``MultiWorkerMirroredStrategy`` workers, Keras ``fit``;
- flax: one process / two ``jax.distributed`` processes, one CPU device each, a global mesh.

samples/s = global batch / the median wall time of a step on rank 0 (the first steps, which
compile, are left out). Each process gets cores / processes threads (``OMP_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``; two JAX processes keep XLA's default pool, see ``_threads``), so one
process has the machine and two share it: on a 2-core machine the 2-process number shows the
engine's overhead, not a speed-up. One process on one thread is measured too: each of the two
processes has that much of the machine. Not part of ``run_all``: each of the 10 runs starts its
framework in fresh processes (minutes in all).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import shapes

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(shapes.TINY, vocab_size=8000, hidden_size=256, num_hidden_layers=4, intermediate_size=1024)
WARMUP = 2


def _setup(directory: Path, quick: bool) -> tuple[int, int]:
    import conversion
    from xlmr import XLMRobertaConfig
    from xlmr import weights as W

    config = XLMRobertaConfig(**(shapes.TINY if quick else SMALL), num_labels=2)
    rng = np.random.default_rng(0)
    state = {
        k: (0.02 * rng.standard_normal(s) + (k.endswith("LayerNorm.weight"))).astype(np.float32)
        for k, s in W.expected_shapes(config, "sequence_classification").items()
    }
    conversion.save_pretrained(state, config, "sequence_classification", directory / "model")
    batch, seq = (8, 16) if quick else (16, 64)
    with open(directory / "data.jsonl", "w", encoding="utf-8") as f:
        for _ in range(4 * batch):
            ids = [0, *rng.integers(3, config.vocab_size, seq - 2).tolist(), 2]
            f.write(json.dumps({"input_ids": ids, "label": ids[1] % 2}) + "\n")
    return batch, seq


def _threads(n: int, nproc: int) -> dict[str, str]:
    """``n`` compute threads per process. JAX: one thread only for one process -- XLA's one-thread
    setting slows its gloo collectives tenfold (about 180 ms a step against 17 ms at --quick size),
    so two JAX processes keep XLA's default thread pool."""
    xla = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if n == 1 and nproc == 1 else ""
    return {"OMP_NUM_THREADS": str(n), "TF_NUM_INTRAOP_THREADS": str(n), "XLA_FLAGS": xla}


def _measure(
    directory: Path, backend: str, nproc: int, batch: int, steps: int, parallel: str = "ddp", threads: int = 0
) -> float:
    """samples/s of ``nproc`` processes with ``threads`` threads each (0: cores / nproc)."""
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    report = directory / f"report-{backend}-{parallel}-{nproc}-{threads}"
    args = [
        "-m",
        "xlmr.distributed",
        "--backend",
        backend,
        "--model",
        str(directory / "model"),
        "--data",
        str(directory / "data.jsonl"),
        "--batch-size",
        str(batch),
        "--steps",
        str(steps),
        "--lr",
        "0.01",
        "--parallel",
        parallel,
        "--report-dir",
        str(report),
    ]
    if nproc == 1:
        command = [sys.executable, *args]
    elif backend == "torch":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *args]
    else:
        command = [sys.executable, *args, "--nproc-per-node", str(nproc), "--timeout", "900"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **_threads(threads, nproc)}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode:
        raise RuntimeError(f"{backend} x{nproc} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    times = json.loads((report / "rank0.json").read_text())["step_seconds"][WARMUP:]
    return batch / float(np.median(times))  # the median step: robust to other jobs' bursts


def run(quick: bool = False) -> list[dict]:
    """Rows for ``bench.run_all``: ``xlmr`` = 2 processes, ``hf`` = 1 process (samples/s), ratio 2 / 1."""
    steps = WARMUP + (4 if quick else 20)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        batch, seq = _setup(directory, quick)
        shape = f"{'2 layers, hidden 64' if quick else '4 layers, hidden 256'}, {batch}x{seq}"
        for backend, parallel, engine in (
            ("torch", "ddp", "torchrun, DDP (gloo)"),
            ("torch", "fsdp", "torchrun, FSDP2 fully_shard (gloo)"),
            ("tf", "ddp", "MultiWorkerMirroredStrategy, Keras fit"),
            ("flax", "ddp", "jax.distributed, global mesh (gloo)"),
        ):
            if not rows or rows[-1]["backend"] != backend:
                one = _measure(directory, backend, 1, batch, steps)
                one_thread = _measure(directory, backend, 1, batch, steps, threads=1)
            two = _measure(directory, backend, 2, batch, steps, parallel)
            rows.append(
                dict(
                    benchmark=f"SGD training, {shape}, 2 processes ({engine}) vs 1",
                    backend=backend,
                    xlmr=two,
                    hf=one,
                    unit="samples/s",
                    ratio=two / one,
                    notes=f"xlmr column: 2 processes; HF column: 1 process of xlmr (no HF involved); "
                    f"1 process on 1 thread: {one_thread:.4g}",
                    engine=engine,
                    one_thread=one_thread,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    cores = os.cpu_count()
    print(
        f"| backend | engine (2 processes) | 1 process, {cores} threads | 1 process, 1 thread "
        f"| 2 processes, {max(1, (cores or 1) // 2)} thread(s) each | 2 / 1 |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['engine']} | {r['hf']:.1f} | {r['one_thread']:.1f} | {r['xlmr']:.1f} "
            f"| {r['ratio']:.2f} |"
        )
    print(f"\nsamples/s, median step; load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
