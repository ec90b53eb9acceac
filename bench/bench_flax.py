"""Flax backend against HF transformers 4.57.6's Flax classes: jitted forward and an optax train step.

    python -m bench.bench_flax [--quick]

1. Forward: ``xlmr_flax.FlaxXLMRobertaModel`` and HF's ``FlaxXLMRobertaModel`` at the shape of
   xlm-roberta-base (vocab 250002, hidden 768, 12 layers, 12 heads, intermediate 3072,
   max_position_embeddings 514, type_vocab_size 1) on 8 x 128 tokens (half the rows padded),
   float32 on CPU. Both run the *same* params pytree (our layout is HF's), each as
   ``jax.jit(lambda params, ids, mask: model(ids, mask, params=params).last_hidden_state)``;
   compilation is excluded (a warm-up call), every call ends in ``block_until_ready``, the two
   are timed in alternation and the medians compared.
2. Train step: a small sequence classifier (hidden 256, 4 layers, vocab 8000, 16 x 64 tokens);
   the same jitted step for both -- ``jax.value_and_grad`` of the same cross entropy
   (``xlmr_flax.losses.loss_fn``) on the model's logits with dropout, then ``optax.adamw`` --
   differing only in the model. Reported as steps per second.

Ratios are hf / xlmr for times and xlmr / hf for throughput (>= 1.0: xlmr is as fast or faster).
``quick=True`` uses tiny shapes and a few repetitions; it finishes in seconds.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench import shapes
from bench.shapes import XLMR_BASE

BASE = XLMR_BASE
SMALL = dict(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
             max_position_embeddings=130, type_vocab_size=1, layer_norm_eps=1e-5, num_labels=3)  # fmt: skip
TINY = dict(shapes.TINY, max_position_embeddings=130, num_labels=3)


def _inputs(vocab_size: int, batch: int, seq: int, pad_token_id: int = 1):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab_size, size=(batch, seq), dtype=np.int32)
    ids[:, 0] = 0
    mask = np.ones((batch, seq), np.int32)
    for row in range(batch // 2, batch):  # half the rows padded, as a tokenizer batch would be
        length = max(2, seq - 8 * (row - batch // 2 + 1))
        ids[row, length:] = pad_token_id
        mask[row, length:] = 0
    return ids, mask


def _alternate(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (after one warm-up call each)."""
    import jax

    for fn in fns.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _forward_row(quick: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import transformers

    import xlmr_flax
    from xlmr import XLMRobertaConfig

    shape = dict(TINY) if quick else dict(BASE)
    shape.pop("num_labels", None)
    batch, seq = (2, 16) if quick else (8, 128)
    config = XLMRobertaConfig(**shape)
    ours = xlmr_flax.FlaxXLMRobertaModel(config, seed=0)
    hf = transformers.FlaxXLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict()), _do_init=False)
    params = ours.params
    ids, mask = (jnp.asarray(a) for a in _inputs(config.vocab_size, batch, seq))

    ours_fn = jax.jit(lambda p, i, m: ours(i, m, params=p).last_hidden_state)
    hf_fn = jax.jit(lambda p, i, m: hf(i, m, params=p).last_hidden_state)
    np.testing.assert_allclose(np.asarray(ours_fn(params, ids, mask)), np.asarray(hf_fn(params, ids, mask)),
                               atol=1e-4)  # fmt: skip
    medians = _alternate({"xlmr": lambda: ours_fn(params, ids, mask), "hf": lambda: hf_fn(params, ids, mask)},
                         reps=3 if quick else 15)  # fmt: skip
    name = "tiny" if quick else "xlm-roberta-base"
    return {
        "benchmark": f"jit forward {name} {batch}x{seq} fp32",
        "backend": "flax",
        "xlmr": medians["xlmr"] * 1e3,
        "hf": medians["hf"] * 1e3,
        "unit": "ms",
        "ratio": medians["hf"] / medians["xlmr"],
        "notes": f"CPU, jax {jax.__version__}, same params pytree, compile excluded, median of "
        f"{3 if quick else 15} alternating reps",
    }


def _train_row(quick: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import transformers

    import xlmr_flax
    from xlmr import XLMRobertaConfig
    from xlmr_flax.losses import loss_fn

    config = XLMRobertaConfig(**(TINY if quick else SMALL))
    batch, seq = (4, 16) if quick else (16, 64)
    ours = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config, seed=0)
    hf = transformers.FlaxXLMRobertaForSequenceClassification(
        transformers.XLMRobertaConfig(**config.to_dict()), _do_init=False
    )
    ids, mask = _inputs(config.vocab_size, batch, seq)
    data = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask),
            "labels": jnp.asarray(np.arange(batch) % config.num_labels)}  # fmt: skip
    optimizer = optax.adamw(1e-4, weight_decay=0.01)

    def make_step(model):
        def step(params, opt_state, b, rng):
            def loss_of(p):
                out = model(b["input_ids"], b["attention_mask"], params=p, dropout_rng=rng, train=True)
                return loss_fn("sequence_classification", out, b, config)

            loss, grads = jax.value_and_grad(loss_of)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return jax.jit(step)

    steps = {"xlmr": make_step(ours), "hf": make_step(hf)}
    state = {name: (ours.params, optimizer.init(ours.params)) for name in steps}
    rng = jax.random.PRNGKey(0)

    def run_step(name):
        def call():
            params, opt_state = state[name]
            params, opt_state, loss = steps[name](params, opt_state, data, rng)
            state[name] = (params, opt_state)
            return loss

        return call

    medians = _alternate({name: run_step(name) for name in steps}, reps=3 if quick else 20)
    name = "tiny" if quick else "small (hidden 256, 4 layers)"
    return {
        "benchmark": f"jit optax train step {name} {batch}x{seq}",
        "backend": "flax",
        "xlmr": 1.0 / medians["xlmr"],
        "hf": 1.0 / medians["hf"],
        "unit": "steps/s",
        "ratio": medians["hf"] / medians["xlmr"],
        "notes": "value_and_grad + adamw, dropout on, same loss fn and initial params, compile excluded",
    }


def run(quick: bool = False) -> list[dict]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import transformers

    transformers.logging.set_verbosity_error()
    return [_forward_row(quick), _train_row(quick)]


if __name__ == "__main__":
    rows = run(quick="--quick" in sys.argv)
    print("| benchmark | backend | xlmr | HF 4.57.6 | unit | ratio | notes |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['backend']} | {r['xlmr']:.4g} | {r['hf']:.4g} | {r['unit']} | "
              f"{r['ratio']:.3g} | {r['notes']} |")  # fmt: skip
