"""xlmr_tf against HF transformers 4.57's TF classes, same process, same weights.

1. XLA-compiled forward (``tf.function(jit_compile=True)``) of the bare model at xlm-roberta-base shape
   (8 x 128 tokens, fp32, CPU): ms per forward, ratio = hf / xlmr.
2. Keras ``fit`` throughput on a small sequence classifier (4 layers, hidden 256), both compiled with
   ``jit_compile=True`` and trained on their own loss: steps/s, ratio = xlmr / hf.

Run: ``python -m bench.bench_tf`` (full) -- ``run(quick=True)`` uses tiny shapes.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import shapes  # noqa: E402
from bench.shapes import XLMR_BASE  # noqa: E402
from xlmr import XLMRobertaConfig  # noqa: E402

BASE = XLMR_BASE
TINY = dict(shapes.TINY, max_position_embeddings=130)
FIT_SMALL = dict(
    vocab_size=8000,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=130,
    type_vocab_size=1,
    num_labels=2,
)
FIT_TINY = dict(
    vocab_size=500,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=1,
    num_labels=2,
)


def _hf_tf_model(hf_class: str, config: XLMRobertaConfig, state_dict: dict):
    """HF's TF class with our canonical (= HF PyTorch) weights, through HF's own PT->TF name mapping."""
    import transformers
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = getattr(transformers, hf_class)(transformers.XLMRobertaConfig(**config.to_dict()))
    model.build_in_name_scope()
    load_pytorch_state_dict_in_tf2_model(model, dict(state_dict))
    return model


def _time(fn, reps: int) -> float:
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def bench_forward(quick: bool) -> dict:
    import tensorflow as tf

    import xlmr_tf

    config = XLMRobertaConfig(**(TINY if quick else BASE))
    batch, seq = (2, 16) if quick else (8, 128)
    ours = xlmr_tf.TFXLMRobertaModel(config).build_model()
    sd = ours.canonical_state_dict()
    hf = _hf_tf_model("TFXLMRobertaModel", config, {f"roberta.{k}": v for k, v in sd.items()})
    del sd
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(3, config.vocab_size, size=(batch, seq)), tf.int32)
    mask = tf.ones_like(ids)

    ours_fn = tf.function(
        lambda i, m: ours(i, attention_mask=m, training=False)["last_hidden_state"], jit_compile=True
    )
    hf_fn = tf.function(
        lambda i, m: hf(i, attention_mask=m, training=False).last_hidden_state, jit_compile=True
    )
    a, b = ours_fn(ids, mask).numpy(), hf_fn(ids, mask).numpy()  # compile both
    max_err = float(np.abs(a - b).max())
    reps = 3 if quick else 10
    for _ in range(2):
        ours_fn(ids, mask).numpy()
        hf_fn(ids, mask).numpy()
    t_ours, t_hf = [], []
    for _ in range(reps):  # interleaved, so background load hits both alike
        t_ours.append(_time(lambda: ours_fn(ids, mask).numpy(), 1))
        t_hf.append(_time(lambda: hf_fn(ids, mask).numpy(), 1))
    xo, xh = 1000 * float(np.median(t_ours)), 1000 * float(np.median(t_hf))
    return {
        "benchmark": f"forward XLA {'tiny' if quick else 'base'} {batch}x{seq} fp32 CPU",
        "backend": "tf",
        "xlmr": round(xo, 3),
        "hf": round(xh, 3),
        "unit": "ms/forward",
        "ratio": round(xh / xo, 3),
        "notes": f"tf.function(jit_compile=True), median of {reps}; max |diff| last_hidden_state {max_err:.2e}",
    }


def bench_fit(quick: bool) -> dict:
    import keras
    import tensorflow as tf
    import tf_keras

    import xlmr_tf

    config = XLMRobertaConfig(**(FIT_TINY if quick else FIT_SMALL))
    batch, seq, steps = (4, 16, 4) if quick else (16, 64, 20)
    rng = np.random.default_rng(0)
    n = batch * steps
    ids = rng.integers(3, config.vocab_size, size=(n, seq)).astype(np.int32)
    ids[:, 0] = 0
    data = {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": (ids[:, 1] % 2).astype(np.int32)}

    ours = xlmr_tf.TFXLMRobertaForSequenceClassification(config).build_model()
    hf = _hf_tf_model("TFXLMRobertaForSequenceClassification", config, ours.canonical_state_dict())
    jit = not quick  # quick: skip the XLA compilations so the smoke run stays short
    ours.compile(keras.optimizers.Adam(1e-4), jit_compile=jit)
    hf.compile(optimizer=tf_keras.optimizers.Adam(1e-4), jit_compile=jit)

    def epoch(model):
        ds = tf.data.Dataset.from_tensor_slices(data).batch(batch)
        t0 = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        return time.perf_counter() - t0

    epoch(ours), epoch(hf)  # compile
    t_ours, t_hf = [], []
    for _ in range(2 if quick else 3):
        t_ours.append(epoch(ours))
        t_hf.append(epoch(hf))
    so, sh = steps / float(np.median(t_ours)), steps / float(np.median(t_hf))
    return {
        "benchmark": f"keras fit seq-cls {config.num_hidden_layers}L h{config.hidden_size} {batch}x{seq}",
        "backend": "tf",
        "xlmr": round(so, 3),
        "hf": round(sh, 3),
        "unit": "steps/s",
        "ratio": round(so / sh, 3),
        "notes": f"own loss, Adam, jit_compile={jit}, {steps} steps/epoch, median of epochs after the first",
    }


def run(quick: bool = False) -> list[dict]:
    return [bench_forward(quick), bench_fit(quick)]


def _table(rows: list[dict]) -> str:
    cols = ["benchmark", "backend", "xlmr", "hf", "unit", "ratio", "notes"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(_table(run(quick="--quick" in sys.argv)))
