"""ONNX exports (issue 15): ``xlmr-convert SRC DST --to onnx`` for every head, and tf2onnx on xlmr_tf's SavedModels.

Sources are checkpoints written by HF transformers 4.57.6 (perturbed tiny models); the exported
graphs run in ONNX Runtime on padded batches of shapes other than the export example's and are
compared with HF's own PyTorch outputs: float32 and optimized graphs within 1e-4, the int8 graph
with cosine similarity >= 0.99. The export checks itself too (against xlmr_torch) before
anything is moved into place; the failure tests below show that check refusing a wrong graph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

import onnx  # noqa: E402

from conversion import cli, onnx_export  # noqa: E402
from tests.reference import head_config, hf_torch_forward, hf_torch_model, make_inputs  # noqa: E402
from xlmr import HEAD_NAMES, HEADS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {
    "base": ["last_hidden_state", "pooler_output"],
    "question_answering": ["start_logits", "end_logits"],
}


def _hf_checkpoint(head: str, directory: Path, **overrides) -> tuple[object, object]:
    config = head_config(head, **overrides)
    model = hf_torch_model(head, config, seed=3)
    model.save_pretrained(directory)
    return model, config


def _run(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(None, feed)))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_every_head_exports_optimizes_and_quantizes_matching_hf(head, tmp_path, capsys):
    hf_model, config = _hf_checkpoint(head, tmp_path / "src")
    dst = tmp_path / "onnx"
    code = cli.main([str(tmp_path / "src"), str(dst), "--to", "onnx", "--optimize", "--quantize", "int8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "model.onnx within" in out and "model_quantized.onnx cosine" in out
    assert sorted(p.name for p in dst.iterdir()) == [
        "config.json",
        "model.onnx",
        "model_optimized.onnx",
        "model_quantized.onnx",
    ]
    graph = onnx.load(str(dst / "model.onnx"))
    inputs = {i.name: i for i in graph.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]  # type_vocab_size 2
    rank = HEADS[head].input_rank
    for value in inputs.values():
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == rank and all(d.dim_param and not d.dim_value for d in dims)  # every axis dynamic
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
    names = [o.name for o in graph.graph.output]
    assert names == OUTPUTS.get(head, ["logits"])

    for batch, seq, seed in ((3, 11, 5), (1, 4, 6)):  # neither is the export example's shape (2 x 8)
        feed = make_inputs(config, head, batch=batch, seq=seq, seed=seed, labels=False)
        extra = {"use_cache": False} if HEADS[head].decodes else {}
        expected = hf_torch_forward(hf_model, feed, **extra)
        for file in ("model.onnx", "model_optimized.onnx"):
            got = _run(dst / file, feed)
            for name in names:
                np.testing.assert_allclose(
                    got[name], expected[name], atol=1e-4, rtol=0, err_msg=f"{file} {name}"
                )
        got = _run(dst / "model_quantized.onnx", feed)
        for name in names:
            assert _cosine(got[name], expected[name]) >= 0.99, name


def test_one_token_type_means_two_inputs_and_tokenizer_files_are_copied(tmp_path, capsys):
    from tests.test_tokenization import model_file
    from xlmr import XLMRobertaTokenizerFast

    hf_model, config = _hf_checkpoint("sequence_classification", tmp_path / "src", type_vocab_size=1)
    XLMRobertaTokenizerFast(model_file("small")).save_pretrained(tmp_path / "src")
    assert cli.main([str(tmp_path / "src"), str(tmp_path / "onnx"), "--to", "onnx", "-q"]) == 0
    capsys.readouterr()
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    files = {p.name for p in (tmp_path / "onnx").iterdir()}
    assert {
        "tokenizer.json",
        "sentencepiece.bpe.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    } <= files
    feed = make_inputs(config, "sequence_classification", batch=4, seq=9, seed=2, labels=False)
    del feed["token_type_ids"]
    np.testing.assert_allclose(
        _run(tmp_path / "onnx" / "model.onnx", feed)["logits"],
        hf_torch_forward(hf_model, feed)["logits"],
        atol=1e-4,
        rtol=0,
    )


def test_head_base_exports_the_encoder_of_a_masked_lm_checkpoint(tmp_path, capsys):
    hf_model, config = _hf_checkpoint("masked_lm", tmp_path / "src")
    assert cli.main([str(tmp_path / "src"), str(tmp_path / "onnx"), "--to", "onnx", "--head", "base"]) == 0
    assert "(onnx, base;" in capsys.readouterr().out
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["architectures"] == ["XLMRobertaModel"]
    feed = make_inputs(config, "base", batch=3, seq=12, seed=8, labels=False)
    got = _run(tmp_path / "onnx" / "model.onnx", feed)
    assert list(got) == ["last_hidden_state", "pooler_output"]  # the pooler is new (not in the checkpoint)
    expected = hf_torch_forward(hf_model.roberta, feed)["last_hidden_state"]
    np.testing.assert_allclose(got["last_hidden_state"], expected, atol=1e-4, rtol=0)


def _perturbed(source: Path, target: Path, scale: float) -> None:
    """A copy of a graph whose largest float weight is multiplied by ``scale`` (a wrong graph)."""
    model = onnx.load(str(source))
    biggest = max(
        (t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
        key=lambda t: int(np.prod(t.dims)),
    )
    array = onnx.numpy_helper.to_array(biggest) * scale
    biggest.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), biggest.name))
    onnx.save(model, str(target))


@pytest.mark.parametrize("step", ["optimize", "quantize"])
def test_a_graph_that_fails_its_check_is_refused_and_the_destination_kept(
    step, tmp_path, monkeypatch, capsys
):
    _hf_checkpoint("token_classification", tmp_path / "src")
    dst = tmp_path / "onnx"
    dst.mkdir()
    (dst / "README.md").write_text("keep me")
    if step == "optimize":
        monkeypatch.setattr(onnx_export, "optimize_onnx", lambda src, out, config: _perturbed(src, out, 1.5))
        argv, expected = (
            ["--optimize"],
            r"model_optimized.onnx: logits on a 3x13 padded batch differs from torch by",
        )
    else:
        monkeypatch.setattr(onnx_export, "quantize_onnx", lambda src, out, mode: _perturbed(src, out, -1.0))
        argv, expected = (
            ["--quantize", "int8"],
            r"model_quantized.onnx: logits on a 3x13 batch has cosine similarity",
        )
    assert cli.main([str(tmp_path / "src"), str(dst), "--to", "onnx", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(expected, err), err
    assert sorted(p.name for p in dst.iterdir()) == ["README.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx.xlmr-tmp")]


def test_an_existing_export_needs_force_and_stale_weights_go(tmp_path, capsys):
    _hf_checkpoint("masked_lm", tmp_path / "src")
    dst = tmp_path / "onnx"
    dst.mkdir()
    (dst / "model.onnx").write_bytes(b"old")
    (dst / "model.safetensors").write_bytes(b"stale weights of another model")
    (dst / "notes.txt").write_text("keep")
    assert cli.main([str(tmp_path / "src"), str(dst), "--to", "onnx"]) == 1
    assert (
        "model.onnx already exists" in capsys.readouterr().err and (dst / "model.onnx").read_bytes() == b"old"
    )
    assert cli.main([str(tmp_path / "src"), str(dst), "--to", "onnx", "--force"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.onnx", "notes.txt"]
    assert json.loads((dst / "config.json").read_text())["architectures"] == ["XLMRobertaForMaskedLM"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "tf", "--optimize"], "--optimize needs --to onnx"),
        (["--to", "flax", "--quantize", "int8"], "--quantize needs --to onnx"),
        (["--to", "onnx", "--dtype", "float16"], "do not apply to --to onnx"),
        (["--to", "onnx", "--quantize", "int4"], "invalid choice: 'int4'"),
        (["--to", "safetensors", "--head", "base"], "--head needs --to onnx"),
    ],
)
def test_onnx_options_misused_are_argument_errors(tmp_path, capsys, argv, message):
    assert cli.main([str(tmp_path), str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


# -- tf2onnx on xlmr_tf's SavedModel -----------------------------------------------------------------
_TF2ONNX = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np
    import tf2onnx.convert
    import xlmr_tf
    from tests.reference import head_config, make_inputs
    from xlmr import HEADS
    from xlmr_tf.training import export_saved_model

    out = sys.argv[1]
    for head in sys.argv[2:]:
        config = head_config(head)
        model = getattr(xlmr_tf, HEADS[head].tf_class)(config)
        model.build_model()
        rng = np.random.default_rng(7)
        model.load_canonical_state_dict(
            {k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in model.canonical_state_dict().items()}
        )
        export_saved_model(model, os.path.join(out, head))
        sys.argv = ["tf2onnx", "--saved-model", os.path.join(out, head), "--output", os.path.join(out, head + ".onnx")]
        tf2onnx.convert.main()
        feed = make_inputs(config, head, batch=3, seq=9, seed=4, labels=False)
        result = model(input_ids=feed["input_ids"].astype(np.int32), attention_mask=feed["attention_mask"].astype(np.int32),
                       training=False, return_dict=True)
        np.savez(os.path.join(out, head + ".npz"), input_ids=feed["input_ids"], attention_mask=feed["attention_mask"],
                 **{k: np.asarray(v) for k, v in result.items() if v is not None and k != "past_key_values"})
    """
)


def test_tf2onnx_converts_the_saved_model_of_every_head(tmp_path):
    """tf2onnx turns xlmr_tf's SavedModel (``export_saved_model``) of each head into a graph ONNX Runtime
    runs within 1e-4 of xlmr_tf, on a padded batch (the exact GELU is written without Erfc, which
    ONNX Runtime cannot run)."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("tensorflow")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", _TF2ONNX, str(tmp_path), *HEAD_NAMES],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for head in HEAD_NAMES:
        graph = onnx.load(str(tmp_path / f"{head}.onnx"))
        assert "Erfc" not in {n.op_type for n in graph.graph.node}
        expected = dict(np.load(tmp_path / f"{head}.npz"))
        session = ort.InferenceSession(str(tmp_path / f"{head}.onnx"), providers=["CPUExecutionProvider"])
        feed = {i.name: expected[i.name.split(":")[0]].astype(np.int32) for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        assert sorted(outputs) == sorted(OUTPUTS.get(head, ["logits"])), head
        for name, value in zip(outputs, session.run(None, feed)):
            np.testing.assert_allclose(value, expected[name], atol=1e-4, rtol=0, err_msg=f"{head} {name}")
