"""Loading a checkpoint: time and peak memory of ``from_pretrained``, each backend x each weight format.

    python -m bench.bench_loading [--quick] [--keep DIR]

An xlm-roberta-base-shaped XLMRobertaForMaskedLM checkpoint (vocab 250002, hidden 768, 12
layers; 278M parameters, 1.11 GB as float32 safetensors) is written once with random weights
by ``conversion.save_pretrained`` in each of the four formats (model.safetensors,
pytorch_model.bin, tf_model.h5, flax_model.msgpack; one directory each), in a child process.
Every load then runs in a fresh subprocess: the framework is imported first (not timed), then
``from_pretrained`` of the bare model (``XLMRobertaModel`` / ``TFXLMRobertaModel`` /
``FlaxXLMRobertaModel``, as in the issue's table; the pooler is newly initialised, as in HF)
plus one small forward (1 x 8 tokens, which makes a memory-mapped loader pay for the pages it
uses) is timed. Peak memory is the process's ``VmHWM`` at the end -- interpreter and framework
import included -- over the checkpoint's size (the float32 safetensors file).

HF transformers 4.57.6's own loader for the same file, where it has one, runs the same way:
HF torch from model.safetensors and pytorch_model.bin, HF TF from tf_model.h5, HF Flax from
flax_model.msgpack. Times: ratio = hf / xlmr (>= 1.0: xlmr at least as fast); memory: ratio =
hf / xlmr (>= 1.0: xlmr at least as lean). Each cell is the median of ``REPEATS`` fresh
processes, after one unmeasured warm-up load that puts the file in the page cache.

Rows ``bf16`` load the float32 safetensors file straight into bfloat16 weights
(``torch_dtype=torch.bfloat16`` / Keras ``dtype="bfloat16"`` / Flax ``dtype=param_dtype=jnp.bfloat16``,
HF torch with ``torch_dtype=torch.bfloat16``). Rows ``masked_lm`` load the LM class, whose
forward reads every weight (the tied decoder is the whole embedding matrix): the figure to
compare the bf16 rows with, since a memory-mapped float32 load of the bare model leaves the
embedding rows it does not use on disk.

The files are xlmr's own (``conversion.save_pretrained``): pytorch_model.bin and
flax_model.msgpack byte-identical to what torch and flax write for the same tensors;
model.safetensors and tf_model.h5 differ from the original libraries' in one respect, their
tensors start at multiples of 64 bytes of the file, which lets TensorFlow and JAX use the mapped
file in place (a tensor anywhere else is copied once). Rows ``safetensors_library`` load the same
tensors as ``safetensors.numpy.save_file`` lays them out -- as in the files on the Hub, written by
that library -- where the data start at the 8-byte-padded end of the header and, here, no tensor
sits on a 64-byte boundary.

``quick=True``: a tiny config, one repeat, safetensors and one other format per backend, no HF.
Set ``XLMR_BENCH_LOADING_DIR`` to keep the checkpoints there between runs (they are reused).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.shapes import TINY, XLMR_BASE

HEAD = "masked_lm"
FORMATS = ("safetensors", "pytorch", "tf", "flax")
# The same tensors as the safetensors library's save_file lays them out (as in Hub files): the data
# start where an 8-byte-padded header ends, so no tensor need sit on a 64-byte boundary.
LIBRARY = "safetensors_library"
BACKENDS = ("torch", "tf", "flax")
REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]
# HF's own loader per backend: the formats it reads natively.
HF_FORMATS = {"torch": ("safetensors", LIBRARY, "pytorch"), "tf": ("tf",), "flax": ("flax",)}

_PRELUDE = """
import gc, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
backend, impl, path, variant = sys.argv[1:5]
ids = [[0, 581, 6, 542, 83, 10, 334, 2]]
"""

# Import the framework (untimed), then time from_pretrained + one forward.
_CHILD = (
    _PRELUDE
    + """
if backend == "torch":
    import torch
    torch.set_num_threads(1)
    kwargs = {"torch_dtype": torch.bfloat16} if variant == "bf16" else {}
    if impl == "xlmr":
        import xlmr_torch as lib
        cls = lib.XLMRobertaForMaskedLM if variant == "masked_lm" else lib.XLMRobertaModel
    else:
        import transformers as lib
        transformers_logging = lib.logging.set_verbosity_error()
        cls = lib.XLMRobertaForMaskedLM if variant == "masked_lm" else lib.XLMRobertaModel
        kwargs["attn_implementation"] = "eager"
    gc.collect()  # the import's garbage, not the load's
    start = time.perf_counter()
    model = cls.from_pretrained(path, **kwargs)
    loaded = time.perf_counter()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids))[0]
    float(out.float().sum())
elif backend == "tf":
    import tensorflow as tf
    if impl == "xlmr":
        import xlmr_tf as lib
        kwargs = {"dtype": "bfloat16"} if variant == "bf16" else {}
        cls = lib.TFXLMRobertaForMaskedLM if variant == "masked_lm" else lib.TFXLMRobertaModel
    else:
        import tf_keras  # noqa: F401  (HF's TF classes run on Keras 2)
        import transformers as lib
        lib.logging.set_verbosity_error()
        kwargs = {}
        cls = lib.TFXLMRobertaForMaskedLM if variant == "masked_lm" else lib.TFXLMRobertaModel
    gc.collect()  # the import's garbage, not the load's
    start = time.perf_counter()
    model = cls.from_pretrained(path, **kwargs)
    loaded = time.perf_counter()
    out = model(input_ids=tf.constant(ids))[0]
    float(tf.reduce_sum(tf.cast(out, tf.float32)))
else:
    import jax, jax.numpy as jnp
    jnp.zeros(1).block_until_ready()
    if impl == "xlmr":
        import xlmr_flax as lib
        kwargs = {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16} if variant == "bf16" else {}
        cls = lib.FlaxXLMRobertaForMaskedLM if variant == "masked_lm" else lib.FlaxXLMRobertaModel
    else:
        import transformers as lib
        lib.logging.set_verbosity_error()
        kwargs = {}
        cls = lib.FlaxXLMRobertaForMaskedLM if variant == "masked_lm" else lib.FlaxXLMRobertaModel
    gc.collect()  # the import's garbage, not the load's
    start = time.perf_counter()
    model = cls.from_pretrained(path, **kwargs)
    jax.block_until_ready(model.params)
    loaded = time.perf_counter()
    out = model(jnp.asarray(ids))[0]
    float(jnp.sum(out.astype(jnp.float32)))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "load": loaded - start, "peak": peak()}))
"""
)

_MAKE_CHILD = """
import json, sys
from pathlib import Path
from bench.bench_loading import make_checkpoints
print(json.dumps({"size": make_checkpoints(Path(sys.argv[1]), json.loads(sys.argv[2]))}))
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                KERAS_BACKEND="tensorflow", TOKENIZERS_PARALLELISM="false")  # fmt: skip


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({' '.join(args)}): {proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_checkpoints(directory: Path, shape: dict) -> int:
    """A random-weight MaskedLM checkpoint in ``directory/<format>`` for each of the four formats.

    Written by ``conversion.save_pretrained`` (the safetensors file from lazily generated
    tensors, then each other format from it, tensor by tensor). Returns the safetensors file's
    size. Directories already there are kept (a checkpoint of another shape is rewritten).
    """
    import numpy as np

    import conversion
    from conversion.common import LazyTensor
    from xlmr import XLMRobertaConfig
    from xlmr import weights as W

    config = XLMRobertaConfig(**shape, architectures=["XLMRobertaForMaskedLM"])
    src = directory / "safetensors"
    marker = directory / "shape.json"
    if marker.is_file() and json.loads(marker.read_text()) != shape:
        for fmt in (*FORMATS, LIBRARY):
            for path in (directory / fmt).glob("*") if (directory / fmt).is_dir() else ():
                path.unlink()
    if not (src / "model.safetensors").is_file():
        rng = np.random.default_rng(0)

        def sample(shape):
            return lambda: (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

        lazy = {k: LazyTensor(s, np.float32, sample(s)) for k, s in W.expected_shapes(config, HEAD).items()}
        conversion.save_pretrained(lazy, config, HEAD, src, "safetensors")
    for fmt in FORMATS[1:]:
        single = conversion.FORMATS[fmt][0]
        if not (directory / fmt / single).is_file():
            with conversion.open_state_dict(src / "model.safetensors", config) as lazy:
                conversion.save_pretrained(lazy, config, HEAD, directory / fmt, fmt)
    library = directory / LIBRARY / "model.safetensors"
    if not library.is_file():
        from safetensors.numpy import load_file, save_file

        library.parent.mkdir(parents=True, exist_ok=True)
        (library.parent / "config.json").write_bytes((src / "config.json").read_bytes())
        save_file(load_file(str(src / "model.safetensors")), str(library), metadata={"format": "pt"})
    marker.write_text(json.dumps(shape))
    return (src / "model.safetensors").stat().st_size


def _measure(backend: str, impl: str, path: Path, variant: str, repeats: int, warm_up: bool = True) -> dict:
    if warm_up:
        _child(_CHILD, backend, impl, str(path), variant)  # the file into the page cache
    runs = [_child(_CHILD, backend, impl, str(path), variant) for _ in range(repeats)]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "load": statistics.median(r["load"] for r in runs),
        "peak": statistics.median(r["peak"] for r in runs),
        "all_seconds": [round(r["seconds"], 2) for r in runs],
    }


def run(quick: bool = False) -> list[dict]:
    shape = TINY if quick else XLMR_BASE
    repeats = 1 if quick else REPEATS
    keep = os.environ.get("XLMR_BENCH_LOADING_DIR")
    with tempfile.TemporaryDirectory(prefix="xlmr-bench-load-") as tmp:
        directory = Path(keep) if keep else Path(tmp)
        size = _child(_MAKE_CHILD, str(directory), json.dumps(shape))["size"]
        what = f"{'tiny' if quick else 'xlm-roberta-base'} MaskedLM checkpoint, {size / 1e9:.3f} GB float32"
        nan = float("nan")
        rows: list[dict] = []
        cases = [(b, f, "base") for b in BACKENDS for f in (FORMATS[0], LIBRARY, *FORMATS[1:])]
        if quick:
            cases = [("torch", "safetensors", "base"), ("tf", LIBRARY, "base"), ("flax", "flax", "base")]
        else:
            cases += [(b, "safetensors", v) for b in BACKENDS for v in ("masked_lm", "bf16")]
        for backend, fmt, variant in cases:
            path = directory / fmt
            mine = _measure(backend, "xlmr", path, variant, repeats, warm_up=not quick)
            with_hf = not quick and (fmt in HF_FORMATS[backend] or (variant == "bf16" and backend == "torch"))
            hf = _measure(backend, "hf", path, variant, repeats) if with_hf else None
            model = "MaskedLM" if variant == "masked_lm" else "bare model"
            label = f"load {fmt} ({model}{', into bf16' if variant == 'bf16' else ''})"
            route = "HF: from_pretrained of the same file" if hf else "HF has no loader for this file here"
            note = f"{what}; from_pretrained + forward 1x8, fresh process, median of {repeats}"
            load = f"from_pretrained alone {mine['load']:.2f} s" + (f" (HF {hf['load']:.2f} s)" if hf else "")
            rows.append(dict(benchmark=f"{label} time", backend=backend, xlmr=mine["seconds"],
                             hf=hf["seconds"] if hf else nan, unit="s",
                             ratio=hf["seconds"] / mine["seconds"] if hf else nan,
                             notes=f"{note} (runs {mine['all_seconds']}); {load}; {route}"))  # fmt: skip
            mem = mine["peak"] / size
            hf_mem = hf["peak"] / size if hf else nan
            rows.append(dict(benchmark=f"{label} peak RSS", backend=backend, xlmr=mem, hf=hf_mem,
                             unit="x checkpoint size", ratio=hf_mem / mem if hf else nan,
                             notes=f"{what}; peak RSS {mine['peak'] / 1e9:.2f} GB, import included; {route}"))  # fmt: skip
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        "| benchmark | backend | xlmr | hf | unit | ratio (hf/xlmr) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['backend']} | {r['xlmr']:.3f} | {r['hf']:.3f} | {r['unit']} | "
                     f"{r['ratio']:.2f} | {r['notes']} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    if "--keep" in sys.argv:
        os.environ["XLMR_BENCH_LOADING_DIR"] = sys.argv[sys.argv.index("--keep") + 1]
    print(_table(run(quick="--quick" in sys.argv)))
