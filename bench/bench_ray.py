"""Sentence embeddings of a corpus: one process against a Ray Data job (``xlmr.ray_jobs.embed``).

    python -m bench.bench_ray [--texts 2000] [--layers 2] [--quick]

Not an HF comparison (bench.run_all does not run it): it shows what the Ray route costs and gives
on this machine. One plain HF directory (xlm-roberta-base width and vocabulary, ``--layers``
layers, random weights; mean pooling) and bench/corpus.py's texts (queries and log-normal
passages, truncated at 512 tokens) in 4 Parquet files. Rows, texts/s:

- ``SentenceEncoder.encode`` in this process (torch, all cores), the texts already in memory;
- ``ray_jobs.embed`` on a local cluster of all cores: 1 actor x all CPUs, and one actor per CPU.
  The time is the job's wall time: reading the Parquet files, starting the actors (importing
  torch, loading the model), encoding, writing the outputs; the cluster's own start is excluded
  (printed apart). ``rows_per_file`` = texts / 8, so each actor gets several shards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import corpus as C
from bench.shapes import TINY, XLMR_BASE


def _model(directory: Path, layers: int, quick: bool) -> Path:
    import torch

    from xlmr import XLMRobertaConfig
    from xlmr_torch import XLMRobertaModel

    torch.manual_seed(0)
    shape = dict(TINY if quick else XLMR_BASE, vocab_size=8002, num_hidden_layers=layers)
    model = XLMRobertaModel(XLMRobertaConfig(**shape)).eval()
    model.save_pretrained(directory)
    C.tokenizer().save_pretrained(str(directory))
    return directory


def run(texts: int = C.N_TEXTS, layers: int = 2, quick: bool = False) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from xlmr import ray_jobs
    from xlmr_torch import SentenceEncoder

    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="xlmr-bench-ray-"))
    rows = []
    try:
        model = _model(work / "model", layers, quick)
        corpus = C.make_texts(texts)
        data = work / "data"
        data.mkdir()
        quarter = -(-len(corpus) // 4)
        for i in range(4):
            part = corpus[i * quarter : (i + 1) * quarter]
            pq.write_table(pa.table({"text": part}), data / f"part-{i}.parquet")

        encoder = SentenceEncoder.from_pretrained(model)
        encoder.encode(corpus[:64])  # warm-up
        start = time.perf_counter()
        encoder.encode(corpus, batch_size=32)
        single = time.perf_counter() - start
        rows.append({"route": f"SentenceEncoder.encode, one process ({cpus} cores)", "seconds": single})

        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        try:
            for actors, per_actor in ((1, cpus), (cpus, 1)):
                out = work / f"out-{actors}"
                result = ray_jobs.embed(
                    data,
                    out,
                    model=model,
                    rows_per_file=max(1, len(corpus) // 8),
                    num_actors=actors,
                    cpus_per_actor=per_actor,
                )
                assert result.rows_written == len(corpus)
                rows.append(
                    {
                        "route": f"ray_jobs.embed, {actors} actor(s) x {per_actor} CPU(s)",
                        "seconds": result.seconds,
                    }
                )
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row["texts_per_second"] = len(corpus) / row["seconds"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=C.N_TEXTS)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny model, 200 texts")
    args = parser.parse_args(argv)
    texts = 200 if args.quick else args.texts
    rows = run(texts, args.layers, args.quick)
    print(f"| route ({texts:,} texts) | seconds | texts/s |\n|---|---|---|")
    for row in rows:
        print(f"| {row['route']} | {row['seconds']:.1f} | {row['texts_per_second']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
