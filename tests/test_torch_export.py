"""xlmr_torch graphs for deployment: traced and exported graphs keep the attention mask, and the
output classes are torch pytrees, so ``torch.export`` / ``torch.onnx.export`` take ``return_dict=True``.

Each graph is made from an UNPADDED example batch (an all-ones attention mask, the case that
eager execution may drop as a shortcut) and then runs a PADDED batch of the same shape: it must
give the eager outputs within 1e-5. The ONNX tests skip explicitly without onnx / onnxruntime
(and onnxscript for the dynamo exporter).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from tests.backends import torch_adapter as A  # noqa: E402
from tests.reference import ATOL, assert_trees_close, head_config, make_inputs, to_numpy_tree  # noqa: E402
from xlmr import HEAD_NAMES, HEADS  # noqa: E402
from xlmr.outputs import OUTPUT_CLASSES  # noqa: E402

HEAD = "sequence_classification"
NAMES = ("input_ids", "attention_mask", "token_type_ids")  # HF's order of the first three arguments


def _model(head: str = HEAD):
    torch.manual_seed(0)
    config = head_config(head)
    return A.build(head, config), config


def _batches(config, head: str = HEAD) -> tuple[dict, dict]:
    """(unpadded example, padded batch): the same ids; the example's mask is all ones."""
    padded = A.to_torch(make_inputs(config, head, labels=False))
    assert not bool(padded["attention_mask"].all())
    unpadded = dict(padded, attention_mask=torch.ones_like(padded["attention_mask"]))
    return unpadded, padded


def _eager_logits(model, padded) -> np.ndarray:
    with torch.no_grad():
        return model(**padded).logits.numpy()


def _close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual), expected, atol=ATOL, rtol=0)


def test_jit_trace_keeps_the_mask():
    model, config = _model()
    unpadded, padded = _batches(config)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python values in the traced code
        traced = torch.jit.trace(model, tuple(unpadded[n] for n in NAMES), strict=False)
        out = traced(*(padded[n] for n in NAMES))
    _close(out["logits"], _eager_logits(model, padded))


def _onnx_run(path_or_bytes, padded) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {n: padded[n].numpy() for n in NAMES if n in wanted})


def test_onnx_torchscript_exporter_keeps_the_mask():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, config = _model()
    unpadded, padded = _batches(config)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        torch.onnx.export(
            model,
            tuple(unpadded[n] for n in NAMES),
            buffer,
            dynamo=False,
            input_names=list(NAMES),
            output_names=["logits"],
        )
    (logits,) = _onnx_run(buffer.getvalue(), padded)
    _close(logits, _eager_logits(model, padded))


def test_onnx_dynamo_exporter_with_return_dict_keeps_the_mask(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, config = _model()
    unpadded, padded = _batches(config)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (),
            path,
            kwargs=dict(unpadded, return_dict=True),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    (logits,) = _onnx_run(str(path), padded)
    _close(logits, _eager_logits(model, padded))


def test_torch_export_keeps_the_mask_and_dynamic_axes():
    """Exported with an unpadded batch, dynamic batch and sequence axes; run padded, of another shape too."""
    model, config = _model()
    unpadded, padded = _batches(config)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=config.max_sequence_length)
    dims = {name: {0: batch, 1: seq} for name in NAMES}
    program = torch.export.export(
        model, (), kwargs=dict(unpadded, return_dict=True), dynamic_shapes=dict(dims, return_dict=None)
    )
    with torch.no_grad():
        out = program.module()(**padded, return_dict=True)
    assert type(out) is OUTPUT_CLASSES[HEAD]
    _close(out.logits.detach(), _eager_logits(model, padded))
    other = A.to_torch(make_inputs(config, HEAD, batch=3, seq=11, seed=1, labels=False))
    with torch.no_grad():
        _close(program.module()(**other, return_dict=True).logits, _eager_logits(model, other))


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_torch_export_every_head_with_return_dict(head):
    model, config = _model(head)
    inputs = A.to_torch(make_inputs(config, head, labels=False))
    program = torch.export.export(model, (), kwargs=dict(inputs, return_dict=True))
    with torch.no_grad():
        expected = to_numpy_tree(dict(model(**inputs, return_dict=True)))
        out = program.module()(**inputs, return_dict=True)
    assert type(out).__name__ == HEADS[head].output_class_name("torch")
    assert_trees_close(to_numpy_tree(dict(out)), expected, atol=ATOL)


def test_output_classes_are_pytrees():
    from torch.utils import _pytree as pytree

    out = OUTPUT_CLASSES["question_answering"](start_logits=torch.zeros(2), end_logits=torch.ones(2))
    leaves, spec = pytree.tree_flatten(out)
    assert len(leaves) == 2
    back = pytree.tree_unflatten([leaf + 1 for leaf in leaves], spec)
    assert (
        type(back) is type(out) and back.loss is None and torch.equal(back.end_logits, torch.full((2,), 2.0))
    )
    assert xlmr_torch.XLMRobertaModel.head.output_class_name("torch") in {
        c.__name__ for c in OUTPUT_CLASSES.values()
    }
