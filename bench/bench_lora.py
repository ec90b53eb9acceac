"""LoRA (r=8 on query/value) against full fine-tuning, in Keras ``fit`` and the Flax train step.

    python -m bench.bench_lora [--quick] [--vocab=N]

A sequence classifier at the shape of xlm-roberta-base (``quick``: the tiny shape), batch 8 x 128
tokens (``quick``: 4 x 16), Adam(W), float32 on CPU, trained two ways in the same framework:

- full fine-tuning: every weight trained (``model.fit`` / ``make_train_step`` over ``model.params``);
- LoRA: ``model.add_adapter(LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
  modules_to_save=["classifier"]))``, then the same ``fit`` / ``make_train_step`` (which train the
  adapter alone).

Each of the four runs (framework x method) is its own process, so that its peak resident memory is
its own. Reported per framework: steps per second (XLA-compiled steps, compilation excluded),
the optimizer state in MB (the bytes of Adam's variables / optax state) and the process's peak
resident memory in MB. In the rows, the ``xlmr`` column is LoRA and the ``hf`` column is full
fine-tuning (HF transformers has no LoRA for TensorFlow or Flax); ``ratio`` is LoRA's speed-up
for steps/s and full fine-tuning's size over LoRA's for memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench import shapes

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(shapes.XLMR_BASE, num_labels=2)
TINY = dict(shapes.TINY, num_labels=2)
LORA = dict(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])


def _data(vocab_size: int, batch: int, seq: int, steps: int):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab_size, size=(batch * steps, seq)).astype(np.int32)
    ids[:, 0] = 0
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}, (ids[:, 1] % 2).astype(np.int32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _config(quick: bool, vocab_size: int | None):
    from xlmr import XLMRobertaConfig

    shape = dict(TINY if quick else BASE)
    if vocab_size:
        shape["vocab_size"] = vocab_size
    return XLMRobertaConfig(**shape)


def measure_tf(lora: bool, quick: bool, vocab_size: int | None = None) -> dict:
    """Keras fit (own loss, Adam, jit_compile=True): steps/s, optimizer bytes, peak RSS."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np

    import xlmr_tf
    from xlmr.adapters import LoraConfig

    config = _config(quick, vocab_size)
    batch, seq, steps = (4, 16, 4) if quick else (8, 128, 4)
    x, y = _data(config.vocab_size, batch, seq, steps)
    keras.utils.set_random_seed(0)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(config).build_model()
    if lora:
        model.add_adapter(LoraConfig(**LORA))
    model.compile(keras.optimizers.Adam(1e-4), jit_compile=True)
    data = {**x, "labels": y}
    model.fit(data, batch_size=batch, epochs=1, verbose=0)  # compile (and build the optimizer)
    times = []
    for _ in range(2 if quick else 3):
        start = time.perf_counter()
        model.fit(data, batch_size=batch, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    state = sum(np.asarray(v.numpy()).nbytes for v in model.optimizer.variables)
    trained = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return {
        "steps_per_s": steps / float(np.median(times)),
        "optimizer_mb": state / 2**20,
        "peak_rss_mb": _peak_rss_mb(),
        "trained": trained,
    }


def measure_flax(lora: bool, quick: bool, vocab_size: int | None = None) -> dict:
    """xlmr_flax.training.make_train_step (optax.adamw): steps/s, optimizer bytes, peak RSS."""
    import jax
    import numpy as np
    import optax

    import xlmr_flax
    from xlmr.adapters import LoraConfig
    from xlmr_flax.training import make_train_step

    config = _config(quick, vocab_size)
    batch, seq, steps = (4, 16, 4) if quick else (8, 128, 4)
    x, y = _data(config.vocab_size, batch, seq, 1)
    data = {**x, "labels": y}
    model = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config, seed=0)
    if lora:
        model.add_adapter(LoraConfig(**LORA))
    optimizer = optax.adamw(1e-4)
    step = make_train_step(model, optimizer)
    params = model.adapter_params if lora else model.params
    opt_state = optimizer.init(params)
    rng = jax.random.PRNGKey(0)
    params, opt_state, loss = step(params, opt_state, data, rng)  # compile
    jax.block_until_ready(loss)
    times = []
    for i in range(steps if quick else 2 * steps):
        start = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, data, jax.random.fold_in(rng, i))
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    state = sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(opt_state))
    return {
        "steps_per_s": 1.0 / float(np.median(times)),
        "optimizer_mb": state / 2**20,
        "peak_rss_mb": _peak_rss_mb(),
        "trained": sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params)),
    }


def _in_process(framework: str, lora: bool, quick: bool, vocab_size: int | None) -> dict:
    """One measurement in a fresh process (its own peak RSS, no framework state shared)."""
    code = (
        "import json, bench.bench_lora as b\n"
        f"print('@@' + json.dumps(b.measure_{framework}({lora}, {quick}, {vocab_size})))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    raise RuntimeError(f"{framework} lora={lora} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def run(quick: bool = False, vocab_size: int | None = None) -> list[dict]:
    """The rows; ``vocab_size`` shrinks the vocabulary (xlm-roberta-base's 250002 rows are 70% of its
    weights), for machines where full fine-tuning at the full size does not fit in memory."""
    rows = []
    shape = "tiny" if quick else "xlm-roberta-base"
    if vocab_size:
        shape += f" with vocab {vocab_size}"
    batch = "4x16" if quick else "8x128"
    for framework, what in (("tf", "Keras fit (XLA)"), ("flax", "flax make_train_step (jit)")):
        lora = _in_process(framework, True, quick, vocab_size)
        full = _in_process(framework, False, quick, vocab_size)
        trained = f"trained params: LoRA {lora['trained']:,}, full {full['trained']:,}"
        rows += [
            {
                "benchmark": f"{what} seq-cls {shape} {batch}: LoRA r=8 q/v vs full fine-tuning",
                "backend": framework,
                "xlmr": round(lora["steps_per_s"], 3),
                "hf": round(full["steps_per_s"], 3),
                "unit": "steps/s",
                "ratio": round(lora["steps_per_s"] / full["steps_per_s"], 2),
                "notes": f"xlmr column: LoRA, hf column: full fine-tuning (both xlmr); Adam; {trained}",
            },
            {
                "benchmark": f"{what} optimizer state, {shape}: LoRA vs full",
                "backend": framework,
                "xlmr": round(lora["optimizer_mb"], 2),
                "hf": round(full["optimizer_mb"], 2),
                "unit": "MB",
                "ratio": round(full["optimizer_mb"] / lora["optimizer_mb"], 1),
                "notes": "bytes of the optimizer's variables (Adam moments, step count); ratio = full / LoRA",
            },
            {
                "benchmark": f"{what} peak RSS, {shape} {batch}: LoRA vs full",
                "backend": framework,
                "xlmr": round(lora["peak_rss_mb"]),
                "hf": round(full["peak_rss_mb"]),
                "unit": "MB",
                "ratio": round(full["peak_rss_mb"] / lora["peak_rss_mb"], 2),
                "notes": "peak resident memory of the process (model, optimizer, compiled step); ratio = full / LoRA",
            },
        ]
    return rows


if __name__ == "__main__":
    vocab = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--vocab=")), None)
    rows = run(quick="--quick" in sys.argv, vocab_size=vocab)
    print("| benchmark | backend | LoRA (xlmr col.) | full FT (hf col.) | unit | ratio | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['benchmark']} | {r['backend']} | {r['xlmr']} | {r['hf']} | {r['unit']} | {r['ratio']} | "
            f"{r['notes']} |"
        )
