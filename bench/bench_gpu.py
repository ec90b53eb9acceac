"""GPU checks and timings (CUDA): xlmr_torch against HF's PyTorch class, xlmr_flax under jax.jit.

    python -m bench.bench_gpu [--out FILE]

Needs a CUDA GPU, so it is not part of ``bench.run_all`` (CI has none). Shape of xlm-roberta-base,
batch 32 x 512 tokens with a quarter of the rows padded, the same random weights in every model:

- torch, float32 (TF32 off): xlmr's last hidden state against HF's (max |diff| over real tokens);
- torch, bfloat16 and float16 weights: max |diff| against the float32 result, finiteness, and a fully
  padded row that must not turn into NaN;
- torch timings, bfloat16: forward under ``no_grad`` and a forward + backward step, xlmr and HF timed
  in alternation, ratio = HF median / xlmr median (>= 1.0: xlmr as fast or faster);
- flax, bfloat16 compute with float32 params under ``jax.jit``: max |diff| against torch float32, and
  the forward time (no HF Flax class to compare with in transformers >= 5).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from bench.shapes import TINY, XLMR_BASE

BATCH, SEQ = 32, 512
SHAPE = dict(XLMR_BASE)
DEVICE = "cuda"


def _inputs(vocab_size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab_size, size=(BATCH, SEQ))
    ids[:, 0] = 0
    mask = np.ones((BATCH, SEQ), dtype=np.int64)
    for row in range(3 * BATCH // 4, BATCH):
        length = SEQ - 32 * (row - 3 * BATCH // 4 + 1)
        ids[row, length:] = 1
        mask[row, length:] = 0
    return ids, mask


def _median_ms(torch, fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out.append(1000 * (time.perf_counter() - start))
    return out


def torch_checks() -> tuple[list[dict], dict]:
    import torch
    import transformers

    import xlmr_torch
    from xlmr import weights as W

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(DEVICE)
    torch.manual_seed(0)
    hf = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**SHAPE), add_pooling_layer=False)
    hf = hf.eval()
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    ours = xlmr_torch.XLMRobertaModel(xlmr_torch.XLMRobertaConfig(**SHAPE), add_pooling_layer=False)
    ours.load_canonical_state_dict(W.canonicalize(state))
    ours = ours.eval()
    hf.to(dev)
    ours.to(dev)
    ids_np, mask_np = _inputs(SHAPE["vocab_size"])
    ids, mask = torch.tensor(ids_np, device=dev), torch.tensor(mask_np, device=dev)
    real = mask.bool()
    facts: dict = {"torch": torch.__version__, "transformers": transformers.__version__}
    facts["gpu"] = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)"
    facts["hf_attn"] = hf.config._attn_implementation
    with torch.no_grad():
        ref32 = hf(ids, attention_mask=mask).last_hidden_state
        got32 = ours(ids, attention_mask=mask).last_hidden_state
        facts["fp32_max_diff_vs_hf"] = float((got32 - ref32)[real].abs().max())
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            ours.to(dtype)
            hf.to(dtype)
            got = ours(ids, attention_mask=mask).last_hidden_state.float()
            ref = hf(ids, attention_mask=mask).last_hidden_state.float()
            facts[f"{name}_max_diff_vs_fp32"] = float((got - ref32)[real].abs().max())
            facts[f"{name}_hf_max_diff_vs_fp32"] = float((ref - ref32)[real].abs().max())
            facts[f"{name}_finite"] = bool(torch.isfinite(got).all())
            empty = mask.clone()
            empty[-1] = 0  # a row with no real token at all
            out = ours(ids, attention_mask=empty).last_hidden_state
            facts[f"{name}_fully_padded_row_nan"] = bool(torch.isnan(out).any())
        ours.to(torch.bfloat16)
        hf.to(torch.bfloat16)
        rows = []
        for label, fn_ours, fn_hf in (
            (
                "forward no_grad",
                lambda: ours(ids, attention_mask=mask),
                lambda: hf(ids, attention_mask=mask),
            ),
        ):
            for _ in range(3):
                fn_ours(), fn_hf()
            t_ours, t_hf = [], []
            for _ in range(20):
                t_ours += _median_ms(torch, fn_ours, 1)
                t_hf += _median_ms(torch, fn_hf, 1)
            rows.append(_row(label, "no_grad", t_ours, t_hf))

    def step(model):
        out = model(ids, attention_mask=mask).last_hidden_state
        out.float().pow(2).mean().backward()

    ours.train()
    hf.train()
    for _ in range(3):
        step(ours), step(hf)
    t_ours, t_hf = [], []
    for _ in range(10):
        t_ours += _median_ms(torch, lambda: step(ours), 1)
        t_hf += _median_ms(torch, lambda: step(hf), 1)
    rows.append(_row("forward + backward", "bf16 weights, dropout 0.1", t_ours, t_hf))
    facts["ref32"] = ref32.float().cpu().numpy()
    facts["state"] = state
    return rows, facts


def _row(label: str, extra: str, t_ours: list[float], t_hf: list[float]) -> dict:
    a, b = statistics.median(t_ours), statistics.median(t_hf)
    return {
        "benchmark": f"{label}, xlm-roberta-base shape, {BATCH}x{SEQ}, bf16",
        "backend": "torch CUDA",
        "xlmr": a,
        "hf": b,
        "unit": "ms",
        "ratio": b / a,
        "notes": f"median of {len(t_ours)} alternating runs; {extra}",
    }


def flax_checks(state, ref32, mask_np, ids_np) -> tuple[list[dict], dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import xlmr_flax
    from xlmr import weights as W

    facts = {"jax": jax.__version__, "jax_devices": str(jax.devices())}
    config = xlmr_flax.XLMRobertaConfig(**SHAPE)
    model = xlmr_flax.FlaxXLMRobertaModel(config, dtype=jnp.bfloat16, add_pooling_layer=False, _do_init=False)
    params = W.unflatten_tree(W.to_backend(W.canonicalize(state), "flax"))
    model.params = {k: v for k, v in params.items()}
    params = jax.device_put(model.params)

    @jax.jit
    def forward(params, ids, mask):
        return model(ids, attention_mask=mask, params=params).last_hidden_state

    ids, mask = jnp.asarray(ids_np), jnp.asarray(mask_np)
    start = time.perf_counter()
    out = forward(params, ids, mask).block_until_ready()
    facts["flax_compile_s"] = time.perf_counter() - start
    real = mask_np.astype(bool)
    facts["flax_bf16_max_diff_vs_torch_fp32"] = float(np.abs(np.asarray(out, np.float32) - ref32)[real].max())
    times = []
    for _ in range(20):
        start = time.perf_counter()
        forward(params, ids, mask).block_until_ready()
        times.append(1000 * (time.perf_counter() - start))
    facts["flax_bf16_forward_ms_median"] = statistics.median(times)
    return [], facts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    if "--dry-run" in argv:  # tiny shape on CPU, to check the script itself
        global SHAPE, DEVICE, BATCH, SEQ
        SHAPE, DEVICE, BATCH, SEQ = TINY, "cpu", 8, 64
    rows, facts = torch_checks()
    ref32, state = facts.pop("ref32"), facts.pop("state")
    ids_np, mask_np = _inputs(SHAPE["vocab_size"])
    try:
        more, flax_facts = flax_checks(state, ref32, mask_np, ids_np)
        rows += more
        facts.update(flax_facts)
    except Exception as e:  # report, keep the torch results
        facts["flax_error"] = f"{type(e).__name__}: {e}"
    lines = [
        "| benchmark | backend | xlmr | HF | unit | ratio | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['backend']} | {r['xlmr']:.4g} | {r['hf']:.4g} | {r['unit']} | "
            f"{r['ratio']:.3f} | {r['notes']} |"
        )
    text = "\n".join(lines) + "\n\n```json\n" + json.dumps(facts, indent=2, default=str) + "\n```\n"
    print(text)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
