"""Sentence embeddings on the realistic corpus: xlmr's encoders against sentence-transformers and
against the HF-naive mean-pooling recipe, same weights, same process; and peak memory.

    python -m bench.bench_sentence [--quick] [--texts N] [--parts st,naive,memory] [--backends torch,tf,flax]

One sentence-transformers directory (Transformer + mean Pooling + Normalize, saved by
sentence-transformers itself; xlm-roberta-base shape with random weights, float32, max_seq_length
512) and bench/corpus.py's texts (1,000 one-sentence queries, 1,000 log-normal passages, in twelve
languages). Rows:

- ``st``: ``xlmr_torch.SentenceEncoder.encode`` vs ``SentenceTransformer.encode`` on the same
  directory, both ``batch_size=32``, in one process; max |diff| of the embeddings in the notes.
- ``naive``: each backend's encoder vs HF's class used as model cards show it -- HF's tokenizer,
  batches of 32 texts in corpus order padded to the longest, the model, mean pooling over the
  mask, L2 normalization. HF's TF class runs eagerly (its users' default, Keras 2), HF's Flax
  class under ``jax.jit`` (compiled per batch shape, as bench_packed does).

Times are the best of two passes over the texts, the two routes alternating (on a shared machine
the load drifts); the first pass includes XLA compiles on both sides and its ratio is in the notes.
- ``memory``: peak resident memory while encoding 100,000 short texts (queries) over the same
  for 1,000, each in a fresh process, the peak reset after loading the model (model: xlm-roberta-base width and vocabulary, 2 layers,
  so 100,000 texts finish in minutes on 2 cores; the (100,000 x 768) float32 result alone is
  307 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import corpus as C
from bench.shapes import TINY, XLMR_BASE

BACKENDS = ("torch", "tf", "flax")
PARTS = ("st", "naive", "memory")
BATCH = 32
ROOT = Path(__file__).resolve().parent.parent


def _config(quick: bool, layers: int | None = None) -> dict:
    config = dict(TINY if quick else XLMR_BASE, vocab_size=8002 if quick else XLMR_BASE["vocab_size"])
    if layers is not None:
        config["num_hidden_layers"] = layers
    return config


def prepare(directory: str, quick: bool, layers: int | None = None) -> str:
    """Write the sentence-transformers directory (random weights, seed 0) with sentence-transformers."""
    os.environ.setdefault("USE_TF", "0")  # this process needs no HF TF class
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    torch.manual_seed(0)
    hf_dir = Path(directory) / "hf"
    model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**_config(quick, layers))).eval()
    model.save_pretrained(hf_dir)
    C.tokenizer().save_pretrained(str(hf_dir))
    transformer = Transformer(str(hf_dir), max_seq_length=C.MAX_TOKENS)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    st_dir = Path(directory) / "st"
    SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu").save(str(st_dir))
    shutil.rmtree(hf_dir)
    return str(st_dir)


def _encoder(backend: str):
    if backend == "torch":
        from xlmr_torch import SentenceEncoder

        return SentenceEncoder
    if backend == "tf":
        from xlmr_tf import TFSentenceEncoder

        return TFSentenceEncoder
    from xlmr_flax import FlaxSentenceEncoder

    return FlaxSentenceEncoder


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _alternate(routes: dict, texts: list[str], rounds: int = 2) -> tuple[dict, dict]:
    """Time each route over ``texts`` ``rounds`` times, alternating which runs first (a shared
    machine's load drifts; alternation spreads it over both). ``({name: [seconds per round]},
    {name: first round's output})``; round 1 includes XLA compiles, later rounds do not."""
    times: dict = {name: [] for name in routes}
    outputs: dict = {}
    for r in range(rounds):
        for name in list(routes)[:: 1 if r % 2 == 0 else -1]:
            out, seconds = _timed(routes[name], texts)
            times[name].append(seconds)
            outputs.setdefault(name, out)
    return times, outputs


def _scale(quick: bool) -> str:
    return "tiny" if quick else "xlm-roberta-base shape"


# -- st: xlmr_torch.SentenceEncoder vs SentenceTransformer ----------------------------------------
def run_st(model_dir: str, quick: bool, n: int, rounds: int = 2) -> list[dict]:
    os.environ.setdefault("USE_TF", "0")
    import torch
    from sentence_transformers import SentenceTransformer

    from xlmr_torch import SentenceEncoder

    texts, ids = C.corpus(n)
    st = SentenceTransformer(model_dir, device="cpu")
    ours = SentenceEncoder.from_pretrained(model_dir)
    for model in (st, ours):  # warm-up: first-call allocations, thread pools
        model.encode(texts[:8], batch_size=BATCH)
    routes = {
        "st": lambda t: st.encode(t, batch_size=BATCH),
        "xlmr": lambda t: ours.encode(t, batch_size=BATCH),
    }
    times, outputs = _alternate(routes, texts, rounds)
    stats = ours.last_stats
    diff = float(np.max(np.abs(outputs["xlmr"] - outputs["st"])))
    st_time, our_time = min(times["st"]), min(times["xlmr"])
    return [
        {
            "benchmark": f"encode {n} corpus texts ({stats.tokens} tokens), {_scale(quick)}, fp32, "
            "batch_size=32: SentenceEncoder vs SentenceTransformer.encode",
            "backend": "torch",
            "xlmr": our_time,
            "hf": st_time,
            "unit": "s",
            "ratio": st_time / our_time,
            "notes": (
                f"sentence-transformers {__import__('sentence_transformers').__version__}, torch "
                f"{torch.__version__}; best of {rounds} alternating passes (st {_list(times['st'])}, xlmr "
                f"{_list(times['xlmr'])}); xlmr {'packed' if ours.packed else 'padded (sorted)'}, "
                f"{stats.batches} batches, {1 - stats.tokens / stats.slots:.0%} padding; max |diff| {diff:.1e}"
            ),
        }
    ]


def _list(times: list[float]) -> str:
    return "/".join(f"{t:.1f}" for t in times) + " s"


# -- naive: each backend vs the HF model-card recipe -----------------------------------------------
def _hf_naive(backend: str, model_dir: str):
    """``(encode(texts) -> (n, dim) array, note)``: HF's tokenizer and class, batches of 32 in order,
    padded to the longest, mean pooling over the mask, L2 normalization."""
    import transformers

    tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(model_dir)

    def batches(texts):
        for i in range(0, len(texts), BATCH):
            yield tokenizer(
                texts[i : i + BATCH],
                padding=True,
                truncation=True,
                max_length=C.MAX_TOKENS,
                return_tensors="np",
            )

    def finish(pooled: np.ndarray) -> np.ndarray:
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    if backend == "torch":
        import torch

        model = transformers.XLMRobertaModel.from_pretrained(model_dir).eval()

        @torch.no_grad()
        def encode(texts):
            out = []
            for enc in batches(texts):
                mask = torch.from_numpy(enc["attention_mask"])
                hidden = model(
                    input_ids=torch.from_numpy(enc["input_ids"]), attention_mask=mask
                ).last_hidden_state
                m = mask.unsqueeze(-1).float()
                out.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy())
            return finish(np.concatenate(out))

        return encode, "HF attn=sdpa, eager, no_grad"
    if backend == "tf":
        import tensorflow as tf
        import tf_keras  # noqa: F401  (HF's TF classes run on Keras 2)

        model = transformers.TFXLMRobertaModel.from_pretrained(model_dir, from_pt=True)

        def encode(texts):
            out = []
            for enc in batches(texts):
                hidden = model(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], training=False
                )
                m = tf.cast(enc["attention_mask"][..., None], tf.float32)
                out.append((tf.reduce_sum(hidden.last_hidden_state * m, 1) / tf.reduce_sum(m, 1)).numpy())
            return finish(np.concatenate(out))

        return encode, "HF TF eager (Keras 2)"
    import jax
    import jax.numpy as jnp

    model = transformers.FlaxXLMRobertaModel.from_pretrained(model_dir, from_pt=True)

    @jax.jit
    def pooled(params, ids, mask):
        hidden = model(ids, mask, params=params).last_hidden_state
        m = mask[..., None].astype(jnp.float32)
        return (hidden * m).sum(1) / m.sum(1)

    def encode(texts):
        out = [
            np.asarray(pooled(model.params, enc["input_ids"], enc["attention_mask"]))
            for enc in batches(texts)
        ]
        return finish(np.concatenate(out))

    return encode, "HF Flax under jax.jit (one compile per padded batch shape)"


def run_naive(backend: str, model_dir: str, quick: bool, n: int, rounds: int = 2) -> list[dict]:
    if backend != "tf":
        os.environ.setdefault("USE_TF", "0")
    texts, ids = C.corpus(n)
    naive, note = _hf_naive(backend, model_dir)
    ours = _encoder(backend).from_pretrained(model_dir)
    naive(texts[:4])  # warm-up
    ours.encode(texts[:4])
    routes = {"hf": naive, "xlmr": lambda t: ours.encode(t, batch_size=BATCH)}
    times, outputs = _alternate(routes, texts, rounds)
    stats = ours.last_stats
    diff = float(np.max(np.abs(outputs["xlmr"] - outputs["hf"])))
    tokens = sum(len(x) for x in ids)
    padded = sum(len(b) * max(len(ids[i]) for i in b) for b in C.naive_batches(ids, BATCH))
    hf_time, our_time = min(times["hf"]), min(times["xlmr"])
    first = times["hf"][0] / times["xlmr"][0]
    return [
        {
            "benchmark": f"encode {n} corpus texts ({tokens} tokens), {_scale(quick)}, fp32, mean pooling: "
            "encoder vs HF naive (batches of 32 in corpus order, padded)",
            "backend": backend,
            "xlmr": our_time,
            "hf": hf_time,
            "unit": "s",
            "ratio": hf_time / our_time,
            "notes": (
                f"{note}, HF padding {1 - tokens / padded:.0%}; xlmr {'packed' if ours.packed else 'padded (sorted)'}, "
                f"{stats.batches} batches, padding {1 - stats.tokens / stats.slots:.0%}; best of {rounds} "
                f"alternating passes (HF {_list(times['hf'])}, xlmr {_list(times['xlmr'])}; first pass, "
                f"compiles included: x{first:.2f}); max |diff| {diff:.1e}"
            ),
        }
    ]


# -- memory: 100,000 short texts vs 1,000 ---------------------------------------------------------
def queries(n: int, seed: int = 1) -> list[str]:
    """``n`` short texts: single sentences of the corpus' languages, with repeats."""
    sentences = [text for _, text in C._sentences()]
    rng = np.random.default_rng(seed)
    return [sentences[i] for i in rng.integers(len(sentences), size=n)]


def _peak_rss(reset: bool = False) -> int:
    """The process's peak resident set (bytes). ``reset``: start a new peak from now (Linux
    ``clear_refs``), so loading the model's transient copies do not count -- only encoding."""
    status = Path("/proc/self/status")
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def run_memory_child(model_dir: str, n: int) -> dict:
    """Encode ``n`` short texts; the peak RSS while encoding (bytes, the loaded model included)."""
    from xlmr_torch import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(model_dir)
    texts = queries(n)
    encoder.encode(texts[:8], batch_size=BATCH)  # warm-up: thread pools, first allocations
    loaded = _peak_rss(reset=True)
    embeddings, seconds = _timed(encoder.encode, texts, batch_size=BATCH)
    assert embeddings.shape == (n, encoder.get_embedding_dimension())
    return {
        "peak": _peak_rss(),
        "loaded": loaded,
        "seconds": seconds,
        "tokens": encoder.last_stats.tokens,
        "bytes": embeddings.nbytes,
    }


def run_memory(model_dir: str, quick: bool) -> list[dict]:
    small, large = (1_000, 10_000) if quick else (1_000, 100_000)
    out = {}
    for n in (small, large):
        out[n] = _child(f"run_memory_child({model_dir!r}, {n})")
    ratio = out[large]["peak"] / out[small]["peak"]
    return [
        {
            "benchmark": f"peak RSS encoding {large:,} short texts over {small:,}, torch SentenceEncoder "
            f"({'tiny' if quick else 'base width, 2 layers'})",
            "backend": "torch",
            "xlmr": round(out[large]["peak"] / 2**20),
            "hf": round(out[small]["peak"] / 2**20),
            "unit": "MiB",
            "ratio": ratio,
            "notes": (
                f"peak RSS while encoding (model loaded: {out[small]['loaded'] / 2**20:.0f} MiB); "
                f"ratio = {large:,} texts / {small:,} texts (target <= 1.5); {large:,} texts: "
                f"{out[large]['tokens']:,} tokens in {out[large]['seconds']:.0f} s, result "
                f"{out[large]['bytes'] / 2**20:.0f} MiB"
            ),
        }
    ]


# -- processes -------------------------------------------------------------------------------------
def _child(call: str) -> object:
    """Run ``bench.bench_sentence.<call>`` in a fresh process; its JSON result."""
    code = f"import json\nfrom bench.bench_sentence import *\nprint('@@OUT@@' + json.dumps({call}))\n"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    found = [line for line in proc.stdout.splitlines() if line.startswith("@@OUT@@")]
    if proc.returncode or not found:
        raise RuntimeError(f"bench_sentence {call} failed:\n{proc.stderr[-3000:]}")
    return json.loads(found[-1][len("@@OUT@@") :])


def run(
    quick: bool = False,
    n: int | None = None,
    parts: tuple[str, ...] = PARTS,
    backends: tuple[str, ...] = BACKENDS,
) -> list[dict]:
    """Every part, each measurement in its own process (frameworks and memory peaks do not mix)."""
    n = n or (200 if quick else C.N_TEXTS)
    rows: list[dict] = []
    work = tempfile.mkdtemp(prefix="xlmr-bench-sentence-")
    try:
        if "st" in parts or "naive" in parts:
            model_dir = _child(f"prepare({work + '/main'!r}, {quick})")
            if "st" in parts:
                rows += _child(f"run_st({model_dir!r}, {quick}, {n})")
            if "naive" in parts:
                for backend in backends:
                    rows += _child(f"run_naive({backend!r}, {model_dir!r}, {quick}, {n})")
        if "memory" in parts:
            model_dir = _child(f"prepare({work + '/memory'!r}, {quick}, layers={1 if quick else 2})")
            rows += run_memory(model_dir, quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 200 texts: a smoke run")
    parser.add_argument("--texts", type=int, help="corpus texts for the st and naive parts (default 2,000)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args(argv)
    rows = run(args.quick, args.texts, tuple(args.parts.split(",")), tuple(args.backends.split(",")))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
