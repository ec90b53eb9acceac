"""Forward pass of xlmr_torch.XLMRobertaModel against HF transformers 4.57.6's, same weights, same process.

    python -m bench.bench_forward_torch [--quick]

Shape of xlm-roberta-base (vocab 250002, hidden 768, 12 layers, 12 heads, intermediate 3072,
max_position_embeddings 514, type_vocab_size 1) on a batch of 8 x 128 tokens (the last rows
padded), float32 on CPU under ``torch.no_grad()``. HF runs its default attention implementation
(SDPA). The two models are timed in alternation; the ratio is hf / xlmr of the medians
(>= 1.0: xlmr is at least as fast). ``quick=True`` uses a tiny config and finishes in seconds.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.shapes import TINY, XLMR_BASE

BASE = XLMR_BASE


def _inputs(torch, vocab_size: int, batch: int, seq: int, pad_token_id: int = 1):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab_size, (batch, seq), generator=gen)
    ids[:, 0] = 0
    mask = torch.ones(batch, seq, dtype=torch.long)
    for row in range(batch // 2, batch):  # half the rows padded, as a tokenizer batch would be
        length = seq - 8 * (row - batch // 2 + 1)
        ids[row, length:] = pad_token_id
        mask[row, length:] = 0
    return ids, mask


def run(quick: bool = False) -> list[dict]:
    import torch
    import transformers

    import xlmr_torch
    from xlmr import weights as W

    shape = TINY if quick else BASE
    batch, seq = (2, 16) if quick else (8, 128)
    warmup, reps = (2, 10) if quick else (2, 7)

    torch.manual_seed(0)
    hf_model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**shape)).eval()
    assert hf_model.config._attn_implementation == "sdpa", hf_model.config._attn_implementation
    with torch.device("meta"):
        model = xlmr_torch.XLMRobertaModel(xlmr_torch.XLMRobertaConfig(**shape))
    model.to_empty(device="cpu")
    hf_sd = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    model.load_canonical_state_dict(W.canonicalize(hf_sd)).eval()  # the same weights

    ids, mask = _inputs(torch, shape["vocab_size"], batch, seq)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).last_hidden_state
        theirs = hf_model(ids, attention_mask=mask).last_hidden_state
        rows = mask.bool()
        diff = float((ours - theirs)[rows].abs().max())

        def timed(fn) -> float:
            start = time.perf_counter()
            fn(ids, attention_mask=mask)
            return time.perf_counter() - start

        for _ in range(warmup):
            timed(model)
            timed(hf_model)
        ours_t, hf_t = [], []
        for _ in range(reps):  # interleaved, so load changes hit both alike
            ours_t.append(timed(model))
            hf_t.append(timed(hf_model))
    xlmr_ms = 1000 * statistics.median(ours_t)
    hf_ms = 1000 * statistics.median(hf_t)
    name = "tiny" if quick else "xlm-roberta-base shape"
    return [
        {
            "benchmark": f"forward {batch}x{seq} fp32 CPU no_grad ({name})",
            "backend": "torch",
            "xlmr": xlmr_ms,
            "hf": hf_ms,
            "unit": "ms",
            "ratio": hf_ms / xlmr_ms,
            "notes": (
                f"median of {reps} interleaved runs; HF attn=sdpa; {torch.get_num_threads()} threads; "
                f"max |diff| {diff:.1e}"
            ),
        }
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = run(quick="--quick" in argv)
    print("| benchmark | backend | xlmr | HF 4.57.6 | unit | ratio | notes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['benchmark']} | {r['backend']} | {r['xlmr']:.4g} | {r['hf']:.4g} | {r['unit']} | "
            f"{r['ratio']:.3f} | {r['notes']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
