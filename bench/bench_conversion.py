"""Checkpoint conversion time and peak memory: xlmr-convert against HF transformers 4.57.6's own route.

    python -m bench.bench_conversion [--quick]

The benchmark writes an xlm-roberta-base-sized XLMRobertaForMaskedLM checkpoint (vocab 250002,
hidden 768, 12 layers; 278M parameters, 1.11 GB as float32 safetensors) with random weights in
a temporary directory, converts it safetensors -> each format, between every two framework formats (xlmr only) and
each format -> safetensors,
and times each conversion in a fresh subprocess, reading its peak RSS (``VmHWM``) at the
end (the checkpoint is made in a subprocess too, so no child inherits a big parent). xlmr's time includes re-reading and checking the written file. Memory is reported as
peak RSS / checkpoint size (the float32 safetensors file); the interpreter and its imports count.

HF's route for the same conversion, also in a fresh subprocess: ``from_pretrained`` of the
matching class (``from_pt`` / ``from_tf`` / ``from_flax`` across frameworks) then
``save_pretrained`` (into PyTorch from TF / Flax: a fresh model loaded with HF's
``load_tf2_checkpoint_in_pytorch_model`` / ``load_flax_checkpoint_in_pytorch_model``, because
``from_pretrained(from_tf=True / from_flax=True)`` leaves the weights on the meta device in
4.57.6). Ratios are hf / xlmr for both time and memory (>= 1.0: xlmr is as fast /
as lean or better). Temporary files are deleted as soon as a row is measured.
``quick=True`` uses a tiny config, two format pairs and no HF route; it finishes in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.shapes import TINY, XLMR_BASE

BASE = XLMR_BASE
HEAD = "masked_lm"
ROOT = Path(__file__).resolve().parents[1]

# Peak RSS of this process: VmHWM, which starts afresh at exec (ru_maxrss keeps the parent's peak).
_PEAK = """
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
"""

_XLMR_CHILD = (
    _PEAK
    + """
import json, sys, time
from conversion.convert import convert
src, dst, to = sys.argv[1:4]
start = time.perf_counter()
summary = convert(src, dst, to, force=True)
print(json.dumps({"seconds": time.perf_counter() - start, "peak": peak()}))
"""
)

_HF_CHILD = (
    _PEAK
    + """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import transformers
from transformers import modeling_tf_pytorch_utils as tf_pt
transformers.logging.set_verbosity_error()
src, dst, source_fmt, to = sys.argv[1:5]
start = time.perf_counter()
if to == "tf":
    model = transformers.TFXLMRobertaForMaskedLM.from_pretrained(src, from_pt=True)
elif to == "flax":
    model = transformers.FlaxXLMRobertaForMaskedLM.from_pretrained(src, from_pt=True)
elif source_fmt in ("tf", "flax"):
    # from_pretrained(from_tf=True / from_flax=True) leaves the weights on the meta device in 4.57.6,
    # so build the model and load the file with HF's own cross-framework loader, as from_tf does.
    model = transformers.XLMRobertaForMaskedLM(transformers.XLMRobertaConfig.from_pretrained(src))
    if source_fmt == "tf":
        tf_pt.load_tf2_checkpoint_in_pytorch_model(model, os.path.join(src, "tf_model.h5"))
    else:
        from transformers import modeling_flax_pytorch_utils as flax_pt
        flax_pt.load_flax_checkpoint_in_pytorch_model(model, os.path.join(src, "flax_model.msgpack"))
else:
    model = transformers.XLMRobertaForMaskedLM.from_pretrained(src)
model.save_pretrained(dst, **({"safe_serialization": False} if to == "pytorch" else {}))
print(json.dumps({"seconds": time.perf_counter() - start, "peak": peak()}))
"""
)


_MAKE_CHILD = """
import json, sys
from bench.bench_conversion import make_checkpoint
from pathlib import Path
print(json.dumps({"size": make_checkpoint(Path(sys.argv[1]), json.loads(sys.argv[2]))}))
"""


def _child(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({' '.join(args)}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_checkpoint(directory: Path, shape: dict) -> int:
    """A random-weight XLMRobertaForMaskedLM checkpoint (model.safetensors + config.json), written tensor by tensor."""
    import numpy as np

    from conversion import io
    from conversion.common import LazyTensor
    from xlmr import XLMRobertaConfig
    from xlmr import weights as W

    config = XLMRobertaConfig(**shape, architectures=["XLMRobertaForMaskedLM"])
    rng = np.random.default_rng(0)

    def sample(shape):
        return lambda: (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    lazy = {k: LazyTensor(s, np.float32, sample(s)) for k, s in W.expected_shapes(config, HEAD).items()}
    io.save_pretrained(lazy, config, HEAD, directory, "safetensors")
    return (directory / "model.safetensors").stat().st_size


def run(quick: bool = False) -> list[dict]:
    shape = TINY if quick else BASE
    to_formats = ("flax",) if quick else ("tf", "flax", "pytorch", "safetensors")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xlmr-bench-conv-") as tmp:
        tmp = Path(tmp)
        src = tmp / "safetensors"
        size = _child(_MAKE_CHILD, str(src), json.dumps(shape))["size"]
        limit = "" if quick else " (must be < 2x)"
        size_note = (
            f"{'tiny' if quick else 'xlm-roberta-base'} MaskedLM, checkpoint {size / 1e9:.3f} GB float32"
        )

        def measure(source: Path, source_fmt: str, to: str, keep: bool, with_hf: bool = True) -> None:
            out = tmp / f"out_{source_fmt}_{to}"
            mine = _child(_XLMR_CHILD, str(source), str(out), to)
            hf = None
            if not quick and with_hf:
                hf_out = tmp / f"hf_{source_fmt}_{to}"
                hf = _child(_HF_CHILD, str(source), str(hf_out), source_fmt, to)
                shutil.rmtree(hf_out, ignore_errors=True)
            pair = f"convert {source_fmt} -> {to}"
            route = (
                "HF: from_pretrained + save_pretrained"
                if hf
                else ("HF route not run (quick)" if quick else "HF route not measured for this pair")
            )
            nan = float("nan")
            rows.append(dict(benchmark=pair, backend="numpy", xlmr=mine["seconds"], hf=hf["seconds"] if hf else nan,
                             unit="s", ratio=hf["seconds"] / mine["seconds"] if hf else nan,
                             notes=f"{size_note}; xlmr time includes the read-back check; {route}"))  # fmt: skip
            mem, hf_mem = mine["peak"] / size, (hf["peak"] / size if hf else nan)
            rows.append(dict(benchmark=f"{pair} peak RSS", backend="numpy", xlmr=mem, hf=hf_mem,
                             unit="x checkpoint size", ratio=hf_mem / mem if hf else nan,
                             notes=f"{size_note}; peak RSS {mine['peak'] / 1e9:.2f} GB{limit}; {route}"))  # fmt: skip
            if not keep:
                shutil.rmtree(out, ignore_errors=True)

        kept = {}
        for to in to_formats:  # safetensors -> each format; keep the outputs as sources for the way back
            measure(src, "safetensors", to, keep=to != "safetensors")
            if to != "safetensors":
                kept[to] = tmp / f"out_safetensors_{to}"
        for fmt, directory in kept.items():  # the pairs between the framework formats, xlmr only
            for to in kept:
                if to != fmt:
                    measure(directory, fmt, to, keep=False, with_hf=False)
        for fmt, directory in kept.items():  # each format -> safetensors
            measure(directory, fmt, "safetensors", keep=False)
            shutil.rmtree(directory, ignore_errors=True)
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
    print(_table(run(quick="--quick" in sys.argv)))
