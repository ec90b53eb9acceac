"""ONNX Runtime (float32, optimized, int8) against xlmr_torch, same weights, same process.

    python -m bench.bench_onnx [--quick] [--parts=uniform,corpus]

The graphs are what ``xlmr-convert SRC DST --to onnx --optimize --quantize int8`` writes (each
checked by the export itself), from an xlm-roberta-base-shaped ``XLMRobertaModel`` with random
weights (``quick``: the tiny shape). CPU, float32 unless int8; ONNX Runtime's CPU provider and
torch with their default thread counts (ORT's thread spinning off, so alternating routes do not
slow each other). Two workloads:

- **uniform**: a batch of 8 x 128 tokens, half the rows padded (bench_forward_torch's batch),
  xlmr_torch eager ``no_grad`` against each graph, timed in alternation (medians);
- **corpus**: bench/corpus.py's 2,000 texts (quick: 200). ONNX graphs take padded batches, so
  ONNX Runtime runs them sorted by token count, longest first, in batches of 32 (the best a
  padded batcher can do); xlmr_torch runs them packed (``segment_ids``, padding-free), its
  fastest route, and also on the same sorted padded batches.

In the table the "HF" column holds the xlmr_torch time (HF's is the same: bench_forward_torch),
the "xlmr" column the ONNX Runtime time, and ratio = xlmr_torch / ONNX Runtime (above 1.0:
ONNX Runtime is faster). Notes give the largest difference to torch (float graphs, real tokens)
or the smallest cosine similarity (int8).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import corpus as C
from bench.bench_forward_torch import _inputs
from bench.bench_packed import _Clock, _pad
from bench.shapes import TINY, XLMR_BASE

BATCH = 32
GRAPHS = {"float32": "model.onnx", "optimized": "model_optimized.onnx", "int8": "model_quantized.onnx"}


def _config(quick: bool) -> dict:
    return dict(TINY if quick else XLMR_BASE, vocab_size=8002 if quick else XLMR_BASE["vocab_size"])


def _export(config: dict, directory: Path) -> tuple[object, float, str]:
    """xlmr_torch model (float32, eval) and the export time; the ONNX graphs written under ``directory``."""
    import torch

    import xlmr_torch
    from conversion.onnx_export import export_onnx

    torch.manual_seed(0)
    model = xlmr_torch.XLMRobertaModel(xlmr_torch.XLMRobertaConfig(**config)).eval()
    model.save_pretrained(directory / "checkpoint")
    start = time.perf_counter()
    summary = export_onnx(directory / "checkpoint", directory / "onnx", optimize=True, quantize="int8")
    return model, time.perf_counter() - start, "; ".join(f"{k} {v}" for k, v in summary.checks.items())


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ORT's worker threads spin after each run by default, taking the cores from torch's next call
    # when the two alternate; without spinning each route gets the machine to itself.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _accuracy(kind: str, got: np.ndarray, expected: np.ndarray) -> str:
    if kind == "int8":
        return f"cosine {_cosine(got, expected):.4f}"
    return f"max |diff| {float(np.max(np.abs(got - expected))):.1e}"


def _uniform(model, sessions: dict, quick: bool) -> list[dict]:
    import torch

    batch, seq = (2, 16) if quick else (8, 128)
    warmup, reps = (2, 10) if quick else (2, 7)
    ids, mask = _inputs(torch, model.config.vocab_size, batch, seq)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    real = mask.numpy().astype(bool)

    def run_torch():
        with torch.no_grad():
            return model(ids, attention_mask=mask).last_hidden_state.numpy()

    runs = {name: (lambda s=s: s.run(["last_hidden_state"], feed)[0]) for name, s in sessions.items()}
    expected = run_torch()
    notes = {name: _accuracy(name, fn()[real], expected[real]) for name, fn in runs.items()}
    times: dict[str, list[float]] = {"torch": [], **{name: [] for name in runs}}
    for i in range(warmup + reps):
        for name, fn in (("torch", run_torch), *runs.items()):  # interleaved: load changes hit all alike
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    torch_ms = 1000 * statistics.median(times["torch"])
    scale = "tiny" if quick else "xlm-roberta-base shape"
    rows = []
    for name in runs:
        ms = 1000 * statistics.median(times[name])
        rows.append(
            {
                "benchmark": f"forward {batch}x{seq} ({scale}), ONNX Runtime {name} vs xlmr_torch eager",
                "backend": "onnxruntime",
                "xlmr": ms,
                "hf": torch_ms,
                "unit": "ms",
                "ratio": torch_ms / ms,
                "notes": f"HF column: xlmr_torch fp32 no_grad; {notes[name]} (real tokens)",
            }
        )
    return rows


def _padded_route(forward, ids, batches, keep) -> tuple[_Clock, dict[int, np.ndarray]]:
    """Time ``forward`` over padded ``batches``; keep the outputs of the texts in ``keep`` only (memory)."""
    clock, outputs = _Clock(), {}
    for batch in batches:
        x, mask = _pad(ids, batch)
        out = clock.call(forward, x, mask)
        for r, i in enumerate(batch):
            if i in keep:
                outputs[i] = np.array(out[r, : len(ids[i])])
    return clock, outputs


def _packed_route(forward, ids, max_length, keep) -> tuple[_Clock, dict[int, np.ndarray], int]:
    from xlmr._packing import pack_sequences

    clock, outputs = _Clock(), {}
    batches = pack_sequences(ids, max_length=max_length, pad_token_id=1)
    for b in batches:
        out = clock.call(forward, b.input_ids, b.segment_ids)
        for i, tokens in zip(b.index, b.tokens(out)):
            if int(i) in keep:
                outputs[int(i)] = np.array(tokens)
    return clock, outputs, len(batches)


def _corpus(model, graphs: dict[str, Path], quick: bool) -> list[dict]:
    """One ONNX Runtime session at a time (each keeps its own memory arena), outputs of 24 texts kept."""
    import gc

    import torch

    from xlmr import XLMRobertaConfig
    from xlmr.inputs import max_sequence_length

    n = 200 if quick else C.N_TEXTS
    _, ids = C.corpus(n)
    tokens = sum(len(x) for x in ids)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    batches = [order[i : i + BATCH].tolist() for i in range(0, n, BATCH)]
    pad = C.padding_fraction(ids, batches)

    @torch.no_grad()
    def packed(x, seg):
        return model(torch.from_numpy(x), segment_ids=torch.from_numpy(seg)).last_hidden_state.numpy()

    @torch.no_grad()
    def torch_padded(x, mask):
        return model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()

    max_length = max_sequence_length(XLMRobertaConfig(**model.config.to_dict()))
    sample = sorted(np.random.default_rng(0).choice(n, size=min(24, n), replace=False).tolist())
    keep = set(sample)
    pclock, poutputs, nbatches = _packed_route(packed, ids, max_length, keep)
    tclock, _ = _padded_route(torch_padded, ids, batches, keep)
    scale = "tiny" if quick else "xlm-roberta-base shape"
    rows = []
    for name, path in graphs.items():
        session = _session(path)
        clock, outputs = _padded_route(
            lambda x, mask, s=session: s.run(["last_hidden_state"], {"input_ids": x, "attention_mask": mask})[
                0
            ],
            ids,
            batches,
            keep,
        )
        del session
        gc.collect()
        got = np.concatenate([outputs[i] for i in sample])
        expected = np.concatenate([poutputs[i] for i in sample])
        for label, reference in (
            ("xlmr_torch packed", pclock.total),
            ("xlmr_torch sorted padded", tclock.total),
        ):
            rows.append(
                {
                    "benchmark": f"corpus {n} texts ({tokens} tokens, {scale}): ONNX Runtime {name} "
                    f"(sorted by tokens, batches of {BATCH}) vs {label}",
                    "backend": "onnxruntime",
                    "xlmr": clock.total,
                    "hf": reference,
                    "unit": "s",
                    "ratio": reference / clock.total,
                    "notes": f"HF column: {label}; ORT padding {pad:.0%}; xlmr_torch packed in {nbatches} batches; "
                    f"{_accuracy(name, got, expected)} vs packed (24 texts)",
                }
            )
    return rows


def run(quick: bool = False, parts: tuple[str, ...] = ("uniform", "corpus")) -> list[dict]:
    import gc

    config = _config(quick)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xlmr-bench-onnx-") as tmp:
        model, export_s, checks = _export(config, Path(tmp))
        graphs = {name: Path(tmp) / "onnx" / file for name, file in GRAPHS.items()}
        if "uniform" in parts:
            sessions = {name: _session(path) for name, path in graphs.items()}
            rows += _uniform(model, sessions, quick)
            del sessions
            gc.collect()
        if "corpus" in parts:
            rows += _corpus(model, graphs, quick)
    if rows:
        rows[0]["notes"] += f"; export + checks {export_s:.0f} s ({checks})"
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parts = ("uniform", "corpus")
    for arg in argv:
        if arg.startswith("--parts="):
            parts = tuple(arg.split("=", 1)[1].split(","))
    for r in run(quick="--quick" in argv, parts=parts):
        print(r, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
