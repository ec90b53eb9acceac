"""Padding-free execution on the realistic corpus, each backend against HF's class, same weights.

    python -m bench.bench_packed [--quick] [--backends torch,tf,flax] [--texts N]

``--texts N`` builds an N-text corpus the same way (same distribution, half queries; 400 texts
have 79% padding in HF-naive batches against 80% for all 2,000) for a shorter base-size run.

The corpus is bench/corpus.py's (2,000 texts: 1,000 one-sentence queries and 1,000 passages of
log-normal length, truncated at 512 tokens; 80% of HF-naive batch slots are padding).
xlm-roberta-base shape, float32, CPU, the encoder's ``last_hidden_state`` for every text. Rows
per backend (each in its own process; HF and xlmr hold the same weights):

- HF naive: HF's class, batches of 32 in corpus order, each padded to its longest text;
- HF sorted (chars): sentence-transformers' batching -- texts sorted by character length,
  longest first, batches of 32;
- HF sorted (tokens): sorted by token count instead (the best a padded batcher can do);
- xlmr packed: ``xlmr._packing.pack_sequences`` (first fit decreasing, 16,384-token budget,
  bucketed shapes) through ``segment_ids``.

Under XLA (TF ``tf.function(jit_compile=True)``, ``jax.jit``) every distinct batch shape compiles
once: rows say how many shapes each route compiled and the compile time, which the total
includes (a user pays it); steady state is total minus compile. HF's TF class runs eagerly (its
users' default; Keras 2); HF's Flax class runs under ``jax.jit`` like ours. Accuracy: for 24
sequences (shortest, longest and random), the packed output of each is compared with HF's class
running it alone, unpadded: max abs difference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import corpus as C
from bench.shapes import TINY, XLMR_BASE

BACKENDS = ("torch", "tf", "flax")
BATCH = 32


def _config(quick: bool) -> dict:
    return dict(TINY if quick else XLMR_BASE, vocab_size=8002 if quick else XLMR_BASE["vocab_size"])


def _sample(ids: list[list[int]], n: int = 24, seed: int = 0) -> list[int]:
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(lengths)
    rng = np.random.default_rng(seed)
    picks = set(order[:4].tolist()) | set(order[-4:].tolist())
    picks |= set(rng.choice(len(ids), size=n - len(picks), replace=False).tolist())
    return sorted(picks)


def _pad(ids: list[list[int]], batch: list[int], pad_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(ids[i]) for i in batch)
    out = np.full((len(batch), longest), pad_id, np.int64)
    mask = np.zeros_like(out)
    for r, i in enumerate(batch):
        out[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    return out, mask


class _Clock:
    """Wall time of a route, with the first call per shape (XLA compiles) kept apart."""

    def __init__(self) -> None:
        self.total = 0.0
        self.compile = 0.0
        self.shapes: set = set()

    def call(self, fn, *args):
        shape = tuple(np.shape(a) for a in args)
        start = time.perf_counter()
        out = fn(*args)
        elapsed = time.perf_counter() - start
        self.total += elapsed
        if shape not in self.shapes:
            self.shapes.add(shape)
            self.compile += elapsed  # first call of a shape: compile + one run (run subtracted below)
        return out


def _route_padded(forward, ids, batches) -> tuple[_Clock, dict[int, np.ndarray]]:
    clock, outputs = _Clock(), {}
    for batch in batches:
        x, mask = _pad(ids, batch)
        out = np.asarray(clock.call(forward, x, mask))
        for r, i in enumerate(batch):
            outputs[i] = out[r, : len(ids[i])]
    return clock, outputs


def _route_packed(forward, ids, max_length) -> tuple[_Clock, dict[int, np.ndarray], int]:
    from xlmr._packing import pack_sequences

    clock, outputs = _Clock(), {}
    batches = pack_sequences(ids, max_length=max_length, pad_token_id=1)
    for b in batches:
        out = np.asarray(clock.call(forward, b.input_ids, b.segment_ids))
        for i, tokens in zip(b.index, b.tokens(out)):
            outputs[int(i)] = tokens
    return clock, outputs, len(batches)


# -- backends: (xlmr forward on packed rows, HF forward on padded batches, HF forward alone) -------
def _torch(config: dict):
    import torch
    import transformers

    import xlmr_torch
    from xlmr import weights as W

    torch.manual_seed(0)
    hf = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**config), add_pooling_layer=False).eval()
    with torch.device("meta"):
        ours = xlmr_torch.XLMRobertaModel(xlmr_torch.XLMRobertaConfig(**config), add_pooling_layer=False)
    ours.to_empty(device="cpu")
    ours.load_canonical_state_dict(W.canonicalize({k: v.numpy() for k, v in hf.state_dict().items()}))
    ours.eval()

    @torch.no_grad()
    def packed(x, seg):
        return ours(torch.from_numpy(x), segment_ids=torch.from_numpy(seg)).last_hidden_state.numpy()

    @torch.no_grad()
    def padded(x, mask):
        return hf(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()

    return packed, padded, "HF attn=sdpa, eager"


def _tf(config: dict):
    import tempfile

    import tensorflow as tf
    import tf_keras  # noqa: F401  (HF's TF classes run on Keras 2)
    import transformers

    import xlmr_tf

    hf = transformers.TFXLMRobertaModel(transformers.XLMRobertaConfig(**config), add_pooling_layer=False)
    hf(np.zeros((1, 4), np.int32))
    directory = tempfile.mkdtemp(prefix="xlmr-bench-packed-")
    hf.save_pretrained(directory)  # tf_model.h5 in HF's layout: ours reads the same weights
    ours = xlmr_tf.TFXLMRobertaModel.from_pretrained(directory, add_pooling_layer=False)

    @tf.function(jit_compile=True, reduce_retracing=False)
    def ours_xla(x, seg):
        return ours(input_ids=x, segment_ids=seg, training=False)["last_hidden_state"]

    def packed(x, seg):
        return ours_xla(tf.constant(x, tf.int32), tf.constant(seg, tf.int32)).numpy()

    def padded(x, mask):
        return hf(input_ids=x, attention_mask=mask, training=False).last_hidden_state.numpy()

    return packed, padded, "ours tf.function(jit_compile=True) per shape; HF TF eager (Keras 2)"


def _flax(config: dict):
    import jax
    import transformers

    import xlmr_flax
    from xlmr import XLMRobertaConfig

    ours = xlmr_flax.FlaxXLMRobertaModel(XLMRobertaConfig(**config), add_pooling_layer=False, seed=0)
    hf = transformers.FlaxXLMRobertaModel(
        transformers.XLMRobertaConfig(**config), add_pooling_layer=False, _do_init=False
    )
    params = ours.params  # HF's params layout: the same tree runs both

    ours_jit = jax.jit(lambda p, x, seg: ours(x, segment_ids=seg, params=p).last_hidden_state)
    hf_jit = jax.jit(lambda p, x, mask: hf(x, mask, params=p).last_hidden_state)

    def packed(x, seg):
        return np.asarray(ours_jit(params, x.astype(np.int32), seg.astype(np.int32)))

    def padded(x, mask):
        return np.asarray(hf_jit(params, x.astype(np.int32), mask.astype(np.int32)))

    return packed, padded, "both jax.jit per shape"


def run_backend(name: str, quick: bool, texts: int | None = None) -> list[dict]:
    config = _config(quick)
    n = texts or (200 if quick else C.N_TEXTS)
    texts, ids = C.corpus(n)
    from xlmr import XLMRobertaConfig
    from xlmr.inputs import max_sequence_length

    max_length = max_sequence_length(XLMRobertaConfig(**config))
    packed_fn, padded_fn, note = {"torch": _torch, "tf": _tf, "flax": _flax}[name](config)
    tokens = sum(len(x) for x in ids)
    routes = {
        "HF naive (corpus order, batches of 32)": C.naive_batches(ids, BATCH),
        "HF sorted by characters (sentence-transformers)": C.sorted_batches(texts, BATCH),
        "HF sorted by tokens": [
            o.tolist()
            for o in np.array_split(np.argsort([-len(x) for x in ids], kind="stable"), -(-n // BATCH))
        ],
    }
    results = {}
    for label, batches in routes.items():
        clock, outputs = _route_padded(padded_fn, ids, batches)
        results[label] = (clock, outputs, C.padding_fraction(ids, batches))
    pclock, poutputs, nbatches = _route_packed(packed_fn, ids, max_length)
    # Accuracy: packed outputs against HF alone, unpadded.
    worst = 0.0
    for i in _sample(ids):
        x = np.asarray([ids[i]], np.int64)
        alone = np.asarray(padded_fn(x, np.ones_like(x)))[0]
        worst = max(worst, float(np.max(np.abs(poutputs[i] - alone))))
    rows = []
    scale = "tiny" if quick else "xlm-roberta-base shape"
    for label, (clock, _, pad) in results.items():
        rows.append(
            {
                "benchmark": f"corpus {n} texts ({tokens} tokens), {scale}, fp32: {label} vs xlmr packed",
                "backend": name,
                "xlmr": pclock.total,
                "hf": clock.total,
                "unit": "s",
                "ratio": clock.total / pclock.total,
                "notes": (
                    f"HF padding {pad:.0%}, {len(clock.shapes)} shapes; xlmr {nbatches} batches, "
                    f"{len(pclock.shapes)} shapes, first calls {pclock.compile:.1f}s; {note}; "
                    f"packed vs alone max |diff| {worst:.1e}"
                ),
            }
        )
    return rows


def run(quick: bool = False, backends: tuple[str, ...] = BACKENDS, texts: int | None = None) -> list[dict]:
    """Each backend in its own process (frameworks and memory peaks do not mix)."""
    rows = []
    root = Path(__file__).resolve().parent.parent
    for name in backends:
        code = (
            "import json\nfrom bench.bench_packed import run_backend\n"
            f"print('@@ROWS@@' + json.dumps(run_backend({name!r}, {quick}, {texts})))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
        found = [line for line in proc.stdout.splitlines() if line.startswith("@@ROWS@@")]
        if proc.returncode or not found:
            raise RuntimeError(f"bench_packed {name} failed:\n{proc.stderr[-3000:]}")
        rows.extend(json.loads(found[-1][len("@@ROWS@@") :]))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    backends, texts = BACKENDS, None
    for arg in argv:
        if arg.startswith("--backends="):
            backends = tuple(arg.split("=", 1)[1].split(","))
        elif arg.startswith("--texts="):
            texts = int(arg.split("=", 1)[1])
    for r in run(quick="--quick" in argv, backends=backends, texts=texts):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
