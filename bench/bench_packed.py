"""Padding-free execution on the realistic corpus, each backend against HF's class, same weights.

    python -m bench.bench_packed [--quick] [--backends=torch,tf,flax] [--texts=N] [--xlmr-only]

``--texts=N`` builds an N-text corpus the same way (same distribution, half queries; 400 texts
have 79% padding in HF-naive batches against 80% for all 2,000) for a shorter base-size run.
``--xlmr-only`` drops the HF rows (HF naive over all 2,000 texts takes ~17 minutes per backend)
and reports xlmr packed alone over the whole corpus (:func:`run_whole_corpus`): shapes compiled
against the planner's bound, compile time apart from steady-state time, texts/s. Measured (base
shape, fp32, 2 shared cores; README "Benchmarks"): the 2,000 texts pack into 11 batches of
32 x 512, so TF and JAX each compile 1 shape (bound: 2 per ``pack_sequences`` call, 51 for any
calls); steady-state pass 524 s (TF, 3.8 texts/s) and 397 s (JAX, 5.0 texts/s); compiling the
32 x 512 forward, read from the frameworks' logs (``--texts=200``: the same shape), 0.85 s (TF, XLA)
and 1.09 s (JAX, trace + lowering + XLA).

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
once: rows say how many shapes each route compiled and the time of the first calls (compile plus
one run of that batch), which the total includes (a user pays it); ``--xlmr-only`` separates
compile from steady state (see :func:`run_whole_corpus`). HF's TF class runs eagerly (its
users' default; Keras 2); HF's Flax class runs under ``jax.jit`` like ours. Accuracy: for 24
sequences (shortest, longest and random), the packed output of each is compared with HF's class
running it alone, unpadded: max abs difference.
"""

from __future__ import annotations

import json
import os
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


# -- backends: (xlmr forward on packed rows, HF forward on padded batches or alone, a note, and
# a callable counting the shapes xlmr's jitted forward compiled -- None where it runs eagerly) ---
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

    return packed, padded, "HF attn=sdpa, eager", None


def _tf(config: dict):
    import tempfile

    import tensorflow as tf
    import tf_keras  # noqa: F401  (HF's TF classes run on Keras 2)
    import transformers

    import xlmr_tf

    hf = transformers.TFXLMRobertaModel(transformers.XLMRobertaConfig(**config))  # HF TF: always a pooler
    hf(np.zeros((1, 4), np.int32))
    directory = tempfile.mkdtemp(prefix="xlmr-bench-packed-")
    hf.save_pretrained(directory)  # tf_model.h5 in HF's layout: ours reads the same weights
    ours = xlmr_tf.TFXLMRobertaModel.from_pretrained(directory)

    @tf.function(jit_compile=True, reduce_retracing=False)
    def ours_xla(x, seg):
        return ours(input_ids=x, segment_ids=seg, training=False)["last_hidden_state"]

    def packed(x, seg):
        return ours_xla(tf.constant(x, tf.int32), tf.constant(seg, tf.int32)).numpy()

    def padded(x, mask):
        return hf(input_ids=x, attention_mask=mask, training=False).last_hidden_state.numpy()

    compiled = ours_xla.experimental_get_tracing_count  # one trace (and XLA compile) per input shape
    return packed, padded, "ours tf.function(jit_compile=True) per shape; HF TF eager (Keras 2)", compiled


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

    def xlmr_packed_forward(p, x, seg):  # the name JAX's compile log gives (run_whole_corpus reads it)
        return ours(x, segment_ids=seg, params=p).last_hidden_state

    ours_jit = jax.jit(xlmr_packed_forward)
    hf_jit = jax.jit(lambda p, x, mask: hf(x, mask, params=p).last_hidden_state)

    def packed(x, seg):
        return np.asarray(ours_jit(params, x.astype(np.int32), seg.astype(np.int32)))

    def padded(x, mask):
        return np.asarray(hf_jit(params, x.astype(np.int32), mask.astype(np.int32)))

    compiled = ours_jit._cache_size  # entries of the jitted function's own executable cache
    return packed, padded, "both jax.jit per shape", compiled


_BUILDERS = {"torch": _torch, "tf": _tf, "flax": _flax}


def run_backend(name: str, quick: bool, texts: int | None = None) -> list[dict]:
    config = _config(quick)
    n = texts or (200 if quick else C.N_TEXTS)
    texts, ids = C.corpus(n)
    from xlmr import XLMRobertaConfig
    from xlmr.inputs import max_sequence_length

    max_length = max_sequence_length(XLMRobertaConfig(**config))
    packed_fn, padded_fn, note, _ = _BUILDERS[name](config)
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


class _CompileLog:
    """The framework's own timing of the XLA compiles of xlmr's jitted forward, read from its log.

    TF: ``device_compilation_profiler`` (VLOG 1, enabled by ``TF_CPP_VMODULE`` before TF is
    imported) logs "Compiled __inference_ours_xla_N k times, compile time: T us" for each XLA
    compile; its stderr is redirected to a file while active. JAX: ``jax_log_compiles`` logs
    tracing, MLIR lowering and XLA compilation times of ``jit(xlmr_packed_forward)``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.compiles = 0
        self.xla_s = 0.0  # XLA compilation alone
        self.trace_lower_s = 0.0  # JAX only: tracing + lowering to MLIR
        if name == "tf":
            os.environ["TF_CPP_VMODULE"] = "device_compilation_profiler=1"
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

    def __enter__(self) -> _CompileLog:
        import logging
        import tempfile

        if self.name == "tf":
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile(mode="w+")
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        elif self.name == "flax":
            import jax

            self._records: list[str] = []
            log = self

            class Handler(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    log._records.append(record.getMessage())

            self._handler = Handler(logging.DEBUG)
            self._logger = logging.getLogger("jax")
            self._logger.addHandler(self._handler)
            jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc) -> None:
        import re

        if self.name == "tf":
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._file.seek(0)
            for m in re.finditer(
                r"Compiled __inference_ours_xla\S* \d+ times, compile time: (\d+) us", self._file.read()
            ):
                self.compiles += 1
                self.xla_s += int(m.group(1)) / 1e6
            self._file.close()
        elif self.name == "flax":
            import jax

            jax.config.update("jax_log_compiles", False)
            self._logger.removeHandler(self._handler)
            for msg in self._records:
                if m := re.match(
                    r"Finished XLA compilation of jit\(xlmr_packed_forward\) in ([\d.e+-]+) sec", msg
                ):
                    self.compiles += 1
                    self.xla_s += float(m.group(1))
                elif m := re.match(
                    r"Finished (?:tracing xlmr_packed_forward for jit|jaxpr to MLIR module conversion "
                    r"jit\(xlmr_packed_forward\)) in ([\d.e+-]+) sec",
                    msg,
                ):
                    self.trace_lower_s += float(m.group(1))


def run_whole_corpus(name: str, quick: bool, texts: int | None = None) -> list[dict]:
    """xlmr packed alone over the whole corpus: shapes compiled, compile time, steady state.

    Two passes over the same packed batches. Pass 1 starts cold: the first call of each shape
    traces and compiles it (XLA) or warms the kernels up (torch eager). Pass 2 runs with every
    shape compiled: it is the steady state. Compile time is what the framework itself measured
    for the compiles of xlmr's forward during the passes (:class:`_CompileLog`: TF's XLA compile
    time; JAX's tracing + lowering + XLA compile time), not a difference of wall clocks, which
    a loaded machine's noise swamps (a 48 s batch varies by more than its compile); the wall-clock
    cross-check (first call of a shape minus the median warm call of that shape) is reported too,
    and is torch's only figure. Shapes compiled are counted by the jitted function itself (TF
    ``experimental_get_tracing_count()``, JAX ``_cache_size()``) after each pass (pass 2 must add
    none), and by the compiles logged.
    """
    from xlmr import XLMRobertaConfig
    from xlmr._packing import DEFAULT_MAX_BATCH_TOKENS, max_shapes, pack_sequences, row_length_buckets
    from xlmr.inputs import max_sequence_length

    config = _config(quick)
    n = texts or (200 if quick else C.N_TEXTS)
    _, ids = C.corpus(n)
    tokens = sum(len(x) for x in ids)
    max_length = max_sequence_length(XLMRobertaConfig(**config))
    log = _CompileLog(name)  # before the builder imports TF
    packed_fn, _, _, compiled = _BUILDERS[name](config)
    note = {"torch": "torch eager", "tf": "tf.function(jit_compile=True)", "flax": "jax.jit"}[name]
    start = time.perf_counter()
    batches = pack_sequences(ids, max_length=max_length, pad_token_id=1)
    plan_s = time.perf_counter() - start
    shapes = sorted({b.shape for b in batches})
    # One pack_sequences call: one row length (the bucket of the longest text), full batches of
    # max_batch_tokens // row_length rows plus a last batch rounded up to a power of two -> <= 2.
    per_call_bound = 2
    all_calls_bound = max_shapes(max_length, DEFAULT_MAX_BATCH_TOKENS)

    def one_pass() -> tuple[list[float], list[np.ndarray]]:
        times, outs = [], []
        for b in batches:
            t = time.perf_counter()
            outs.append(np.asarray(packed_fn(b.input_ids, b.segment_ids)))
            times.append(time.perf_counter() - t)
        return times, outs

    with log:
        cold, cold_out = one_pass()
        compiled_cold = compiled() if compiled else None
        warm, warm_out = one_pass()
        compiled_warm = compiled() if compiled else None
    first = {}
    for i, b in enumerate(batches):
        first.setdefault(b.shape, i)
    # Cross-check by wall clock: first call of a shape minus the median warm call of that shape.
    per_shape = {
        shape: cold[i] - float(np.median([w for w, b in zip(warm, batches) if b.shape == shape]))
        for shape, i in first.items()
    }
    first_minus_warm = sum(per_shape.values())
    compile_s = log.xla_s + log.trace_lower_s if compiled else first_minus_warm
    steady = sum(warm)
    same = max(float(np.max(np.abs(a - b))) for a, b in zip(cold_out, warm_out))
    scale = "tiny" if quick else "xlm-roberta-base shape"
    source = (
        f"{log.compiles} compiles logged by {'TF' if name == 'tf' else 'JAX'}"
        if compiled
        else "first calls minus median warm call"
    )
    count = "eager (no compile)" if compiled is None else f"{compiled_cold} (after pass 2: {compiled_warm})"
    return [
        {
            "benchmark": f"corpus {n} texts ({tokens} tokens), {scale}, fp32: xlmr packed, whole corpus",
            "backend": name,
            "xlmr": steady,
            "hf": "-",
            "unit": "s",
            "ratio": "-",
            "shapes_compiled": compiled_cold,
            "shapes_compiled_after_pass2": compiled_warm,
            "shapes_planned": [list(s) for s in shapes],
            "bound_one_call": per_call_bound,
            "bound_max_shapes": all_calls_bound,
            "row_length_buckets": list(row_length_buckets(max_length)),
            "batches": len(batches),
            "slots": int(sum(np.prod(b.shape) for b in batches)),
            "plan_s": plan_s,
            "first_pass_s": sum(cold),
            "compile_s": compile_s,
            "compiles_logged": log.compiles if compiled else None,
            "xla_compile_s": log.xla_s if compiled else None,
            "trace_lower_s": log.trace_lower_s if compiled else None,
            "first_call_minus_median_warm_s": {f"{s[0]}x{s[1]}": v for s, v in per_shape.items()},
            "cold_call_s": cold,
            "warm_call_s": warm,
            "steady_s": steady,
            "texts_per_s": n / steady,
            "texts_per_s_first_pass": n / sum(cold),
            "notes": (
                f"{len(batches)} batches, shapes {', '.join(f'{a}x{b}' for a, b in shapes)}; compiled {count}, "
                f"bound {per_call_bound} per pack_sequences call, max_shapes {all_calls_bound}; "
                f"first pass {sum(cold):.1f}s, compile {compile_s:.1f}s ({source}), "
                f"first calls minus median warm call {first_minus_warm:.1f}s, steady state {steady:.1f}s "
                f"({n / steady:.1f} texts/s); pass 2 vs pass 1 max |diff| {same:.1e}; {note}"
            ),
        }
    ]


def run(
    quick: bool = False,
    backends: tuple[str, ...] = BACKENDS,
    texts: int | None = None,
    fn: str = "run_backend",
) -> list[dict]:
    """Each backend in its own process (frameworks and memory peaks do not mix); ``fn`` is
    ``run_backend`` (HF rows against xlmr packed) or ``run_whole_corpus`` (xlmr alone)."""
    rows = []
    root = Path(__file__).resolve().parent.parent
    for name in backends:
        code = (
            f"import json\nfrom bench.bench_packed import {fn}\n"
            f"print('@@ROWS@@' + json.dumps({fn}({name!r}, {quick}, {texts})))\n"
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
    failed = []
    for name in backends:  # rows printed as each backend finishes; a failing one does not lose the others
        try:
            fn = "run_whole_corpus" if "--xlmr-only" in argv else "run_backend"
            rows = run(quick="--quick" in argv, backends=(name,), texts=texts, fn=fn)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            failed.append(name)
            continue
        for r in rows:
            print(json.dumps(r), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
