"""The opt-in fast CPU paths against float32: bf16 and int8 in torch; bf16 in TF and JAX for comparison.

    python -m bench.bench_cpu_paths [--quick]

Set ``XLMR_BENCH_TEXTS=N`` for a shorter base-size run on an N-text corpus built the same way.

xlm-roberta-base shape, random weights, the packed route on bench/corpus.py's corpus (2,000
texts; ``--quick``: 200 texts of a tiny model). Rows (ratio = float32 time / path time, so above
1.0 the path is faster):

- torch ``from_pretrained(torch_dtype=torch.bfloat16)``: weights cast once while loading, matmuls
  in bf16, softmax and LayerNorm statistics in float32;
- torch ``model.quantize_dynamic_int8()``: ``torch.ao.quantization.quantize_dynamic`` of the
  Linear layers (int8 weights, activations quantized per call);
- TF (``dtype="bfloat16"`` compute under XLA) and Flax (``dtype=jnp.bfloat16``, float32 params)
  on the uniform 8x128 batch, to say whether bf16 is worth exposing there on this CPU.

Quality: cosine similarity of every token's last hidden state to float32 (mean and worst over
the corpus's tokens); the targets are >= 0.999 for bf16 and >= 0.99 for int8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import corpus as C
from bench.shapes import TINY, XLMR_BASE


def _config(quick: bool) -> dict:
    return dict(TINY if quick else XLMR_BASE, vocab_size=8002 if quick else XLMR_BASE["vocab_size"])


def _cosines(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    x = np.concatenate([t.astype(np.float64) for t in a])
    y = np.concatenate([t.astype(np.float64) for t in b])
    cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
    return float(cos.mean()), float(cos.min())


def _packed_outputs(forward, batches) -> tuple[float, dict[int, np.ndarray]]:
    outputs, total = {}, 0.0
    for b in batches:
        start = time.perf_counter()
        out = forward(b.input_ids, b.segment_ids)
        total += time.perf_counter() - start
        for i, tokens in zip(b.index, b.tokens(out)):
            outputs[int(i)] = tokens.astype(np.float32)
    return total, outputs


def run_torch(quick: bool) -> list[dict]:
    import torch

    import xlmr_torch
    from xlmr import XLMRobertaConfig
    from xlmr._packing import pack_sequences
    from xlmr.inputs import max_sequence_length

    config = XLMRobertaConfig(**_config(quick))
    directory = tempfile.mkdtemp(prefix="xlmr-bench-cpu-")
    torch.manual_seed(0)
    xlmr_torch.XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    fp32 = xlmr_torch.XLMRobertaModel.from_pretrained(directory, add_pooling_layer=False)
    bf16 = xlmr_torch.XLMRobertaModel.from_pretrained(
        directory, torch_dtype=torch.bfloat16, add_pooling_layer=False
    )
    int8 = fp32.quantize_dynamic_int8()
    _, ids = C.corpus(200 if quick else int(os.environ.get("XLMR_BENCH_TEXTS", C.N_TEXTS)))
    batches = pack_sequences(ids, max_length=max_sequence_length(config), pad_token_id=1)

    def forward(model):
        @torch.no_grad()
        def run(x, seg):
            out = model(torch.from_numpy(x), segment_ids=torch.from_numpy(seg)).last_hidden_state
            return out.float().numpy()

        return run

    forward(fp32)(batches[-1].input_ids, batches[-1].segment_ids)  # warm-up
    t32, o32 = _packed_outputs(forward(fp32), batches)
    rows = []
    for label, model, target in (("bf16", bf16, 0.999), ("int8 dynamic", int8, 0.99)):
        forward(model)(batches[-1].input_ids, batches[-1].segment_ids)
        t, o = _packed_outputs(forward(model), batches)
        mean, worst = _cosines([o[i] for i in sorted(o)], [o32[i] for i in sorted(o32)])
        rows.append(
            {
                "benchmark": f"torch {label} vs float32, packed corpus ({len(ids)} texts), "
                f"{'tiny' if quick else 'xlm-roberta-base shape'}",
                "backend": "torch",
                "xlmr": t,
                "hf": t32,
                "unit": "s",
                "ratio": t32 / t,
                "notes": f"'hf' column = xlmr float32; token cosine to float32 mean {mean:.5f}, "
                f"worst {worst:.5f} (target >= {target}); {torch.get_num_threads()} threads",
            }
        )
    return rows


def _uniform(vocab: int, quick: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    batch, seq = (2, 16) if quick else (8, 128)
    ids = rng.integers(3, vocab, size=(batch, seq))
    ids[:, 0] = 0
    return ids.astype(np.int32)


def _time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_flax(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp

    import xlmr_flax
    from xlmr import XLMRobertaConfig

    config = XLMRobertaConfig(**_config(quick))
    fp32 = xlmr_flax.FlaxXLMRobertaModel(config, add_pooling_layer=False, seed=0)
    bf16 = xlmr_flax.FlaxXLMRobertaModel(config, add_pooling_layer=False, dtype=jnp.bfloat16, _do_init=False)
    bf16.params = fp32.params
    ids = _uniform(config.vocab_size, quick)
    f32 = jax.jit(lambda p, x: fp32(x, params=p).last_hidden_state)
    f16 = jax.jit(lambda p, x: bf16(x, params=p).last_hidden_state)
    t32 = _time(lambda: jax.block_until_ready(f32(fp32.params, ids)), 3 if quick else 5)
    t16 = _time(lambda: jax.block_until_ready(f16(fp32.params, ids)), 3 if quick else 5)
    a, b = np.asarray(f16(fp32.params, ids), np.float32), np.asarray(f32(fp32.params, ids))
    mean, worst = _cosines(list(a), list(b))
    return [
        _bf16_row("flax", "jax.jit, dtype=jnp.bfloat16 (params float32)", ids.shape, t16, t32, mean, worst)
    ]


def run_tf(quick: bool) -> list[dict]:
    import keras
    import tensorflow as tf

    import xlmr_tf
    from xlmr import XLMRobertaConfig

    config = XLMRobertaConfig(**_config(quick))
    fp32 = xlmr_tf.TFXLMRobertaModel(config, add_pooling_layer=False).build_model()
    keras.config.set_dtype_policy("mixed_bfloat16")
    bf16 = xlmr_tf.TFXLMRobertaModel(config, add_pooling_layer=False).build_model()
    keras.config.set_dtype_policy("float32")
    bf16.load_canonical_state_dict(fp32.canonical_state_dict())
    ids = tf.constant(_uniform(config.vocab_size, quick))
    f32 = tf.function(lambda x: fp32(input_ids=x)["last_hidden_state"], jit_compile=True)
    f16 = tf.function(lambda x: tf.cast(bf16(input_ids=x)["last_hidden_state"], tf.float32), jit_compile=True)
    t32 = _time(lambda: f32(ids).numpy(), 3 if quick else 5)
    t16 = _time(lambda: f16(ids).numpy(), 3 if quick else 5)
    mean, worst = _cosines(list(f16(ids).numpy()), list(f32(ids).numpy()))
    return [_bf16_row("tf", "XLA, Keras mixed_bfloat16 policy", tuple(ids.shape), t16, t32, mean, worst)]


def _bf16_row(backend, how, shape, t16, t32, mean, worst) -> dict:
    return {
        "benchmark": f"{backend} bf16 vs float32 forward, {shape[0]}x{shape[1]}",
        "backend": backend,
        "xlmr": 1000 * t16,
        "hf": 1000 * t32,
        "unit": "ms",
        "ratio": t32 / t16,
        "notes": f"'hf' column = xlmr float32; {how}; token cosine mean {mean:.5f}, worst {worst:.5f}",
    }


def run(quick: bool = False) -> list[dict]:
    """Each framework in its own process."""
    rows = []
    root = Path(__file__).resolve().parent.parent
    for name in ("torch", "tf", "flax"):
        code = (
            "import json\nfrom bench.bench_cpu_paths import run_" + name + "\n"
            f"print('@@ROWS@@' + json.dumps(run_{name}({quick})))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
        found = [line for line in proc.stdout.splitlines() if line.startswith("@@ROWS@@")]
        if proc.returncode or not found:
            raise RuntimeError(f"bench_cpu_paths {name} failed:\n{proc.stderr[-3000:]}")
        rows.extend(json.loads(found[-1][len("@@ROWS@@") :]))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(json.dumps(row))
