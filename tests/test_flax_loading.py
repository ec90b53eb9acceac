"""Flax backend: from_pretrained on HF-written checkpoints, save_pretrained read back by HF's Flax classes."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from tests.backends.flax_adapter import flax_class, ours, reference  # noqa: E402
from tests.reference import ATOL, assert_trees_close, hf_torch_forward, make_inputs, to_numpy_tree  # noqa: E402
from xlmr.weights import WeightMismatchError, flatten_tree  # noqa: E402

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def _hf_flax_params(transformers, head, config, pt_model):
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    from xlmr import HEADS

    hf_model = getattr(transformers, HEADS[head].flax_class)(
        transformers.XLMRobertaConfig(**config.to_dict())
    )
    return hf_model, convert_pytorch_state_dict_to_flax(pt_model.state_dict(), hf_model)


@pytest.fixture(scope="module")
def hf_checkpoints(transformers, tmp_path_factory):
    """The masked-LM reference saved by HF itself in three formats."""
    config, pt_model, _ = reference("masked_lm")
    root = tmp_path_factory.mktemp("hf_ckpt")
    pt_model.save_pretrained(root / "safetensors", safe_serialization=True)
    pt_model.save_pretrained(root / "pytorch", safe_serialization=False)
    hf_flax, hf_params = _hf_flax_params(transformers, "masked_lm", config, pt_model)
    hf_flax.save_pretrained(root / "flax", params=hf_params)
    assert (root / "flax" / "flax_model.msgpack").is_file() and (
        root / "pytorch" / "pytorch_model.bin"
    ).is_file()
    return root, config, pt_model


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "flax"])
def test_from_pretrained_reads_hf_written_checkpoints(hf_checkpoints, fmt):
    root, config, pt_model = hf_checkpoints
    model = flax_class("masked_lm").from_pretrained(root / fmt)
    assert model.load_report.newly_initialized == []
    inputs = make_inputs(config, "masked_lm", labels=False)
    expected = hf_torch_forward(pt_model, inputs, output_hidden_states=True)
    actual = to_numpy_tree(dict(model(**inputs, output_hidden_states=True)))
    assert_trees_close(actual, expected, atol=ATOL)


def test_from_pretrained_into_other_heads(hf_checkpoints):
    root, config, pt_model = hf_checkpoints
    # The bare model drops the roberta. prefix and the LM head.
    base = flax_class("base").from_pretrained(root / "safetensors", seed=1)
    expected = pt_model.roberta.embeddings.word_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(
        np.asarray(base.params["embeddings"]["word_embeddings"]["embedding"]), expected
    )
    assert base.load_report.newly_initialized == ["pooler.dense.weight", "pooler.dense.bias"]
    # A classifier gets a freshly initialised head (the module's own init), the backbone from the file.
    clf = flax_class("sequence_classification").from_pretrained(root / "flax", classifier_dropout=0.3)
    assert clf.config.classifier_dropout == 0.3
    assert sorted(clf.load_report.newly_initialized) == sorted(
        f"classifier.{m}.{p}" for m in ("dense", "out_proj") for p in ("weight", "bias")
    )
    kernel = np.asarray(clf.params["classifier"]["out_proj"]["kernel"])
    assert kernel.shape == (32, 3) and 0.005 < kernel.std() < 0.05  # normal(initializer_range=0.02)
    inputs = make_inputs(config, "sequence_classification", labels=False)
    hidden = clf(**inputs, output_hidden_states=True).hidden_states[-1]
    expected_hidden = hf_torch_forward(pt_model, inputs, output_hidden_states=True)["hidden_states"][-1]
    np.testing.assert_allclose(np.asarray(hidden), expected_hidden, atol=ATOL)


def test_from_pretrained_dtype_and_bad_overrides(hf_checkpoints):
    root, config, _ = hf_checkpoints
    model = flax_class("masked_lm").from_pretrained(root / "safetensors", dtype=jnp.bfloat16)
    assert model.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree_util.tree_leaves(model.params)} == {jnp.dtype(jnp.float32)}
    assert model(**make_inputs(config, "masked_lm", labels=False)).logits.dtype == jnp.bfloat16
    with pytest.raises(
        WeightMismatchError, match=r"word_embeddings.weight: checkpoint \(99, 32\) vs model \(120, 32\)"
    ):
        flax_class("masked_lm").from_pretrained(root / "safetensors", vocab_size=120)
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        flax_class("masked_lm").from_pretrained(root / "missing")


@pytest.mark.parametrize(
    "head, fmt", [("masked_lm", "safetensors"), ("masked_lm", "flax"), ("question_answering", "flax")]
)
def test_save_pretrained_loads_in_hf_flax(transformers, tmp_path, head, fmt):
    from xlmr import HEADS

    model, config, _, _ = ours(head)
    target = model.save_pretrained(tmp_path, format=fmt)
    assert target.name == {"safetensors": "model.safetensors", "flax": "flax_model.msgpack"}[fmt]
    hf_model = getattr(transformers, HEADS[head].flax_class).from_pretrained(tmp_path)
    hf_flat = flatten_tree(hf_model.params)
    for path, value in flatten_tree(model.params).items():
        np.testing.assert_array_equal(np.asarray(hf_flat[path]), np.asarray(value), err_msg="/".join(path))
    inputs = make_inputs(config, head, labels=False)
    expected = to_numpy_tree(dict(hf_model(**inputs, output_attentions=True)))
    actual = to_numpy_tree(dict(model(**inputs, output_attentions=True)))
    assert_trees_close(actual, expected, atol=ATOL)
    # And back: our from_pretrained reads what we wrote.
    again = flax_class(head).from_pretrained(tmp_path)
    assert_trees_close(to_numpy_tree(again.params), to_numpy_tree(model.params), atol=0)


def test_save_pretrained_refuses_unknown_format(tmp_path):
    model, _, _, _ = ours("token_classification")
    with pytest.raises(ValueError, match="unknown format 'onnx'"):
        model.save_pretrained(tmp_path, format="onnx")
