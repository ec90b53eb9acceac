"""``xlmr-convert SRC DST --to onnx``: an ONNX graph of any head for ONNX Runtime, checked against torch.

The graph is exported from xlmr_torch with the exporter torch recommends (``torch.onnx.export(...,
dynamo=True)``, via ``torch.export``), with dynamic batch and sequence axes (and the choices axis
of multiple choice). Inputs: ``input_ids``, ``attention_mask`` and, when the config has more than
one token type, ``token_type_ids`` (int64); outputs: the head's tensor fields by name (``logits``;
``start_logits``/``end_logits``; ``last_hidden_state``/``pooler_output``).

Every file written is run by ONNX Runtime on padded batches of shapes other than the export
example's, before anything is moved into place, and compared with xlmr_torch's eager outputs:

- ``model.onnx`` (float32) within :data:`ATOL` (1e-4);
- ``model_optimized.onnx`` (``optimize=True``: ONNX Runtime's transformer graph optimizer,
  ``onnxruntime.transformers.optimizer`` for BERT-like models) within :data:`ATOL`;
- ``model_quantized.onnx`` (``quantize="int8"``: ``onnxruntime.quantization.quantize_dynamic``,
  int8 weights, from the optimized graph when there is one) with a cosine similarity of at
  least :data:`MIN_COSINE` (0.99) to float32, per output.

This module sits above xlmr_torch (which loads through ``conversion``): only the CLI imports it,
never ``conversion/__init__`` or ``convert``, so imports still go one way.

The directory is replaced as a whole (:class:`xlmr._fileio.StagedDirectory`) and receives
``config.json`` and the source's tokenizer files, like every other conversion. Needs torch,
onnx, onnxscript and onnxruntime (``pip install "xlmr[torch,onnx]"``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlmr import _hub
from xlmr._fileio import StagedDirectory
from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head, get_head

from . import io
from .common import CheckpointError
from .convert import TOKENIZER_FILES, copy_tokenizer_files, resolve_source

logger = logging.getLogger("xlmr")

ONNX_FILE = "model.onnx"
OPTIMIZED_FILE = "model_optimized.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
#: Every file name an ONNX export may write (weights kept beside a graph over 2 GB: ``<name>.data``).
ONNX_FILES = (ONNX_FILE, OPTIMIZED_FILE, QUANTIZED_FILE)
QUANTIZE_MODES = ("int8",)

ATOL = 1e-4  # float32 and optimized graphs against torch, largest absolute difference
MIN_COSINE = 0.99  # int8 graph against float32, per output
_TWO_GB = 2**31


@dataclass
class OnnxSummary:
    """What an export did: the files, the graph's inputs and outputs, and each file's check."""

    source: str
    target: Path
    head: str
    inputs: list[str]
    outputs: list[str]
    checks: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        checks = "; ".join(f"{name} {check}" for name, check in self.checks.items())
        return (
            f"exported {self.source} -> {self.target} (onnx, {self.head}; inputs {', '.join(self.inputs)}; "
            f"outputs {', '.join(self.outputs)}; dynamic batch and sequence axes): {checks}, {self.seconds:.1f} s"
        )


def input_names(config: XLMRobertaConfig) -> list[str]:
    """The graph's inputs: ``input_ids``, ``attention_mask``, and ``token_type_ids`` when there are several types."""
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if config.type_vocab_size > 1 else [])


def _onnx_file(name: str) -> bool:
    return name in ONNX_FILES or any(name == f + ".data" for f in ONNX_FILES)


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"--to onnx needs {module} ({err}); pip install 'xlmr[{extra}]'") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' chatter: torch.onnx's missing-torchvision notes, ORT's quantizer advice."""
    names = ("torch.onnx._internal.exporter._registration", "onnxruntime.transformers", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    advice = logging.Filter()
    advice.filter = lambda record: not str(record.msg).startswith("Please consider to run pre-processing")
    root = logging.getLogger()
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        root.addFilter(advice)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(advice)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def check_inputs(
    config: XLMRobertaConfig, head: Head, batch: int, seq: int, seed: int
) -> dict[str, np.ndarray]:
    """A padded int64 batch (row 1, when there is one, ends in three padding tokens) for checking a graph."""
    rng = np.random.default_rng(seed)
    seq = max(1, min(seq, config.max_sequence_length))
    shape = (batch, 2, seq) if head.input_rank == 3 else (batch, seq)
    low = min(3, config.vocab_size - 1)
    ids = rng.integers(low, config.vocab_size, size=shape, dtype=np.int64)
    mask = np.ones(shape, dtype=np.int64)
    if batch > 1 and seq > 3:
        ids[1, ..., -3:] = config.pad_token_id if config.pad_token_id is not None else 1
        mask[1, ..., -3:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size > 1:
        out["token_type_ids"] = rng.integers(0, config.type_vocab_size, size=shape, dtype=np.int64)
    return out


class _Graph:
    """xlmr_torch's model as a function of the graph inputs, returning the head's tensors in order."""

    def __init__(self, model: Any, head: Head, config: XLMRobertaConfig) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.head = head
        self.inputs = input_names(config)
        self.extra = {"use_cache": False} if head.decodes else {}
        example = check_inputs(config, head, batch=2, seq=8, seed=0)
        example["attention_mask"][:] = 1  # unpadded: the mask must survive export all the same
        self.example = {k: torch.from_numpy(v) for k, v in example.items()}
        with torch.no_grad():
            out = model(**self.example, return_dict=True, **self.extra)
        skip = {"loss", "hidden_states", "attentions", "cross_attentions", "past_key_values"}
        self.outputs = [k for k, v in out.items() if k not in skip and isinstance(v, torch.Tensor)]

    def module(self) -> Any:
        torch, model, names, outputs, extra = self.torch, self.model, self.inputs, self.outputs, self.extra

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def run(self, **inputs: Any) -> tuple:
                out = self.model(**inputs, return_dict=True, **extra)
                return tuple(out[name] for name in outputs)

        class TwoInputs(Graph):
            def forward(self, input_ids: Any, attention_mask: Any) -> tuple:
                return self.run(input_ids=input_ids, attention_mask=attention_mask)

        class ThreeInputs(Graph):
            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> tuple:
                return self.run(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                )

        return (ThreeInputs if "token_type_ids" in names else TwoInputs)().eval()

    def eager(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        with torch.no_grad():
            out = self.model(
                **{k: torch.from_numpy(v) for k, v in inputs.items()}, return_dict=True, **self.extra
            )
        return [out[name].float().numpy() for name in self.outputs]

    def export(self, path: Path, opset: int | None) -> None:
        torch = self.torch
        batch = torch.export.Dim("batch")
        seq = torch.export.Dim("sequence", max=self.model.config.max_sequence_length)
        axes = (
            {0: batch, 1: torch.export.Dim("num_choices"), 2: seq}
            if self.head.input_rank == 3
            else {0: batch, 1: seq}
        )
        args = tuple(self.example[name] for name in self.inputs)
        with _quiet():
            program = torch.onnx.export(
                self.module(),
                args,
                dynamo=True,
                input_names=self.inputs,
                output_names=self.outputs,
                dynamic_shapes=tuple(axes for _ in args),
                opset_version=opset,
                verbose=False,
            )
            program.save(path)


def _session(path: Path) -> Any:
    ort = _require("onnxruntime", "onnx")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def verify_onnx(
    path: Path, graph: _Graph, batches: list[dict[str, np.ndarray]], *, cosine: bool = False
) -> float:
    """Run ``path`` with ONNX Runtime on ``batches``; raise naming the file and output past the tolerance.

    Returns the largest absolute difference to torch (float graphs) or the smallest cosine
    similarity to torch's float32 outputs (``cosine``, the int8 graph).
    """
    session = _session(path)
    got_inputs = [i.name for i in session.get_inputs()]
    got_outputs = [o.name for o in session.get_outputs()]
    if got_inputs != graph.inputs or got_outputs != graph.outputs:
        raise CheckpointError(
            f"{path.name}: graph inputs {got_inputs} / outputs {got_outputs}, expected {graph.inputs} / {graph.outputs}"
        )
    worst = 1.0 if cosine else 0.0
    for batch in batches:
        shape = "x".join(map(str, batch["input_ids"].shape))
        for name, actual, expected in zip(graph.outputs, session.run(None, batch), graph.eager(batch)):
            if actual.shape != expected.shape:
                raise CheckpointError(f"{path.name}: {name} has shape {actual.shape}, torch {expected.shape}")
            if cosine:
                a, e = actual.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
                value = float(a @ e / max(np.linalg.norm(a) * np.linalg.norm(e), 1e-30))
                if not value >= MIN_COSINE:
                    raise CheckpointError(
                        f"{path.name}: {name} on a {shape} batch has cosine similarity {value:.4f} to float32, "
                        f"below {MIN_COSINE}"
                    )
                worst = min(worst, value)
            else:
                value = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
                if not value <= ATOL:
                    raise CheckpointError(
                        f"{path.name}: {name} on a {shape} padded batch differs from torch by {value:.3g}, "
                        f"more than {ATOL}"
                    )
                worst = max(worst, value)
    return worst


def optimize_onnx(source: Path, target: Path, config: XLMRobertaConfig) -> None:
    """ONNX Runtime's transformer optimizer for BERT-like models (fused LayerNorm, GELU, ...)."""
    _require("onnxruntime", "onnx")
    from onnxruntime.transformers import optimizer

    with _quiet():
        model = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        logger.info("ONNX Runtime optimizer fused %s", fused or "nothing")
        model.save_model_to_file(str(target), use_external_data_format=_external(source))


def quantize_onnx(source: Path, target: Path, mode: str = "int8") -> None:
    """Dynamic quantization (``onnxruntime.quantization.quantize_dynamic``): int8 weights, activations at run time."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantization {mode!r}; expected one of {QUANTIZE_MODES}")
    _require("onnxruntime", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, use_external_data_format=_external(source)
        )


def _external(path: Path) -> bool:
    """Whether a graph keeps its weights in an external ``.data`` file (a model over 2 GB)."""
    return any(p.name.startswith(path.name) and p != path for p in path.parent.iterdir()) or (
        path.stat().st_size >= _TWO_GB
    )


def export_onnx(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    optimize: bool = False,
    quantize: str | None = None,
    force: bool = False,
    opset: int | None = None,
    head: str | None = None,
    root: str | os.PathLike | None = None,
    **hub: Any,
) -> OnnxSummary:
    """Export the checkpoint at ``src`` (a directory, weight file or Hub repo id) as ONNX graphs in ``dst``.

    Args:
        src: HF-layout directory, a weight file with ``config.json`` beside it, or a Hub repo id.
        dst: Directory receiving ``model.onnx`` (plus ``model_optimized.onnx`` / ``model_quantized.onnx``),
            ``config.json`` and the tokenizer files of ``src``.
        optimize: Also write ``model_optimized.onnx`` (ONNX Runtime's transformer optimizer).
        quantize: ``"int8"``: also write ``model_quantized.onnx`` (dynamic int8 quantization).
        force: Replace the ONNX and weight files ``dst`` already holds.
        opset: ONNX opset (default: the exporter's).
        head: Export this head (``"base"`` for the bare encoder of a masked-LM checkpoint...) instead
            of the checkpoint's own; weights it lacks are initialised and logged, as ``from_pretrained`` does.
        root: Widen the tree the source's files may resolve into (see :func:`xlmr._fileio.contained_path`).
        **hub: HF's Hub arguments (``revision``, ``cache_dir``, ``local_files_only``, ``token``,
            ``subfolder``, ``force_download``).

    Example:
        >>> from conversion.onnx_export import export_onnx
        >>> export_onnx("xlm-roberta-base", "xlmr-onnx", optimize=True, quantize="int8").line()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZE_MODES}")
    for module, extra in (
        ("torch", "torch"),
        ("onnx", "onnx"),
        ("onnxscript", "onnx"),
        ("onnxruntime", "onnx"),
    ):
        _require(module, extra)
    resolved = _hub.resolve_model(src, "pytorch", tokenizer=True, **hub)
    root = root if root is not None else resolved.root
    weight_file, config = resolve_source(resolved.path, root=root)
    src_dir = resolved.path if resolved.path.is_dir() else resolved.path.parent
    if head is not None:
        head = get_head(head)
    else:
        with io.open_raw(weight_file, root=root) as tensors:
            head = io.head_of(config, tensors)
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"destination {dst} is a file, not a directory")
    if dst.is_dir() and not force:
        present = sorted(p for p in dst.iterdir() if _onnx_file(p.name) or io.weight_file_format(p.name))
        if present:
            raise FileExistsError(
                f"{present[0]} already exists in the destination; pass --force to replace it"
            )

    import xlmr_torch

    model = _load_torch(xlmr_torch, head, weight_file)
    graph = _Graph(model, head, config)
    batches = [
        check_inputs(config, head, batch=3, seq=13, seed=1),
        check_inputs(config, head, batch=1, seq=5, seed=2),
    ]
    checks: dict[str, str] = {}
    with StagedDirectory(dst) as stage:
        exported = stage.path / ONNX_FILE
        graph.export(exported, opset)
        checks[ONNX_FILE] = f"within {verify_onnx(exported, graph, batches):.2g} of torch"
        quantize_from = exported
        if optimize:
            optimized = stage.path / OPTIMIZED_FILE
            optimize_onnx(exported, optimized, config)
            checks[OPTIMIZED_FILE] = f"within {verify_onnx(optimized, graph, batches):.2g} of torch"
            quantize_from = optimized
        if quantize:
            quantized = stage.path / QUANTIZED_FILE
            quantize_onnx(quantize_from, quantized, quantize)
            checks[QUANTIZED_FILE] = (
                f"cosine {verify_onnx(quantized, graph, batches, cosine=True):.4f} to float32"
            )
        config.copy(architectures=[head.torch_class]).save_pretrained(stage.path)
        tokenizer = copy_tokenizer_files(src_dir, stage.path, root)

        def carry_over(entry: str) -> bool:
            if _onnx_file(entry) or io.weight_file_format(entry):  # stale graphs or weights of another model
                return False
            return not (tokenizer and entry in TOKENIZER_FILES)

        stage.commit(carry_over, on_drop=io._log_dropped(stage.destination, "onnx"))
    return OnnxSummary(
        source=str(src),
        target=dst,
        head=head.name,
        inputs=graph.inputs,
        outputs=graph.outputs,
        checks=checks,
        seconds=time.perf_counter() - start,
    )


def _load_torch(xlmr_torch: Any, head: Head, weight_file: Path) -> Any:
    """The xlmr_torch model of ``head`` from a local weight file, float32, eval mode."""
    return getattr(xlmr_torch, head.torch_class).from_pretrained(str(weight_file)).float().eval()
