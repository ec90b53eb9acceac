"""xlmr_torch against HF transformers 4.57.6 through checkpoint files, plus API behaviour.

Checkpoints are written by HF's own ``save_pretrained`` (safetensors and ``pytorch_model.bin``)
and read with ``xlmr_torch``'s ``from_pretrained``; ours are read back by HF's classes.
Every comparison is against HF outputs at 1e-5 (float32).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from tests.backends import torch_adapter as A  # noqa: E402
from tests.reference import (  # noqa: E402
    ATOL,
    assert_trees_close,
    head_config,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
    to_numpy_tree,
)
from xlmr import HEAD_NAMES, HEADS  # noqa: E402
from xlmr.weights import WeightMismatchError  # noqa: E402

pytestmark = pytest.mark.hf

transformers = pytest.importorskip("transformers")


def _ours(head: str):
    return getattr(xlmr_torch, HEADS[head].torch_class)


def _hf_class(head: str):
    return getattr(transformers, HEADS[head].torch_class)


def _compare(model, hf_model, head, config, **kwargs):
    """Full outputs (with attentions, eager path) and the fast SDPA path, both against HF."""
    inputs = make_inputs(config, head, labels=head != "base")
    full = dict(output_hidden_states=True, output_attentions=True, **kwargs)
    expected = hf_torch_forward(hf_model, inputs, **full)
    actual = A.forward(model, inputs, **full)
    expected.pop("past_key_values", None)
    actual.pop("past_key_values", None)
    assert set(actual) == set(expected)
    assert_trees_close(actual, expected, atol=ATOL)
    fast = A.forward(model, inputs, **kwargs)  # no attentions requested: SDPA
    fast.pop("past_key_values", None)
    assert "attentions" not in fast
    assert_trees_close(fast, {k: v for k, v in expected.items() if k not in ("attentions", "hidden_states")})


# -- HF files -> xlmr_torch ------------------------------------------------------------------------
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_from_pretrained_hf_checkpoint(head, safe, tmp_path):
    config = head_config(head)
    hf_model = hf_torch_model(head, config)
    hf_model.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    model = _ours(head).from_pretrained(tmp_path)
    assert type(model).__name__ == HEADS[head].torch_class
    assert not model.training
    _compare(model, hf_model, head, config)


def test_masked_lm_checkpoint_into_sequence_classifier(tmp_path, caplog):
    config = tiny_config()
    mlm = hf_torch_model("masked_lm", config)
    mlm.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path)
    newly = [r.getMessage() for r in caplog.records if "newly initialized" in r.getMessage()]
    assert newly and all(k in newly[0] for k in ("classifier.dense.weight", "classifier.out_proj.bias"))
    # Backbone equal to the checkpoint's.
    ours = model.canonical_state_dict()
    for key, value in mlm.state_dict().items():
        if key.startswith("roberta."):
            np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)
    # Head initialised as HF's _init_weights: zero biases, N(0, 0.02) weights.
    assert torch.count_nonzero(model.classifier.out_proj.bias) == 0
    std = float(model.classifier.dense.weight.detach().std())
    assert 0.01 < std < 0.03, std
    # With HF's (equally new) classifier weights copied in, logits equal HF's loaded model.
    hf_model = transformers.XLMRobertaForSequenceClassification.from_pretrained(
        tmp_path, attn_implementation="eager"
    )
    with torch.no_grad():
        for name, p in model.classifier.named_parameters():
            p.copy_(hf_model.classifier.get_parameter(name))
    inputs = make_inputs(config, "sequence_classification")
    assert_trees_close(A.forward(model, inputs), hf_torch_forward(hf_model.eval(), inputs))


def test_bare_checkpoint_into_head_and_head_into_bare(tmp_path, caplog):
    config = tiny_config()
    bare = hf_torch_model("base", config)
    bare.save_pretrained(tmp_path / "bare")
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        tagger = xlmr_torch.XLMRobertaForTokenClassification.from_pretrained(tmp_path / "bare")
    assert any("classifier.weight" in r.getMessage() for r in caplog.records)
    inputs = make_inputs(config, "token_classification", labels=False)
    hidden = A.forward(tagger.roberta, inputs)["last_hidden_state"]
    assert_trees_close(hidden, hf_torch_forward(bare, inputs)["last_hidden_state"])

    qa_config = head_config("question_answering")
    qa = hf_torch_model("question_answering", qa_config)
    qa.save_pretrained(tmp_path / "qa")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        model = xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path / "qa")
    assert any("pooler.dense.weight" in r.getMessage() for r in caplog.records)  # QA has no pooler
    expected = hf_torch_forward(qa.roberta, inputs)["last_hidden_state"]
    assert_trees_close(A.forward(model, inputs)["last_hidden_state"], expected)


def test_legacy_gamma_beta_names_load(tmp_path):
    config = tiny_config()
    hf_model = hf_torch_model("masked_lm", config)
    legacy = {}
    for key, value in hf_model.state_dict().items():
        if "LayerNorm." in key:
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        legacy[key] = value.clone()
    assert any(k.endswith("LayerNorm.gamma") for k in legacy)
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    hf_model.config.save_pretrained(tmp_path)
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    inputs = make_inputs(config, "masked_lm")
    assert_trees_close(A.forward(model, inputs), hf_torch_forward(hf_model, inputs))


def test_from_pretrained_on_base_class_picks_architecture(tmp_path):
    config = tiny_config()
    hf_torch_model("token_classification", config).save_pretrained(tmp_path)
    model = xlmr_torch.XLMRobertaPreTrainedModel.from_pretrained(tmp_path)
    assert isinstance(model, xlmr_torch.XLMRobertaForTokenClassification)


def test_from_pretrained_torch_dtype_and_overrides(tmp_path):
    config = tiny_config()
    hf_torch_model("masked_lm", config).save_pretrained(tmp_path)
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(
        tmp_path, torch_dtype="float16", output_hidden_states=True
    )
    assert model.dtype == torch.float16 and model.config.output_hidden_states is True


# -- xlmr_torch -> HF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_save_pretrained_loads_in_hf(head, safe, tmp_path):
    config = head_config(head)
    reference = hf_torch_model(head, config)
    model = A.from_hf(reference, head, config)
    model.save_pretrained(tmp_path, safe_serialization=safe)
    names = {p.name for p in tmp_path.iterdir()}
    assert ("model.safetensors" if safe else "pytorch_model.bin") in names
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [HEADS[head].torch_class]
    hf_loaded = _hf_class(head).from_pretrained(tmp_path, attn_implementation="eager").eval()
    inputs = make_inputs(config, head, labels=head != "base")
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    expected = hf_torch_forward(reference, inputs, **kwargs)
    assert_trees_close(hf_torch_forward(hf_loaded, inputs, **kwargs), expected)


def test_save_pretrained_format_argument(tmp_path):
    config = tiny_config()
    model = A.from_hf(hf_torch_model("base", config), "base", config)
    model.save_pretrained(tmp_path / "a", format="pytorch")
    assert (tmp_path / "a" / "pytorch_model.bin").is_file()
    with pytest.raises(ValueError, match="bogus"):
        model.save_pretrained(tmp_path / "b", format="bogus")


# -- model API -----------------------------------------------------------------------------------------
def test_return_dict_false_tuple_and_access():
    config = tiny_config()
    head = "sequence_classification"
    hf_model = hf_torch_model(head, config)
    model = A.from_hf(hf_model, head, config)
    feed = A.to_torch(make_inputs(config, head))
    with torch.no_grad():
        ours = model(**feed, output_hidden_states=True, return_dict=False)
        theirs = hf_model(**feed, output_hidden_states=True, return_dict=False)
        out = model(**feed)
    assert isinstance(ours, tuple) and len(ours) == len(theirs) == 3
    assert_trees_close(to_numpy_tree(ours), to_numpy_tree(theirs))
    assert out.logits is out["logits"] and out[0] is out.loss
    assert out.to_tuple()[1] is out.logits and out.hidden_states is None


def test_inputs_embeds_position_ids_and_head_mask_match_hf():
    config = tiny_config()
    hf_model = hf_torch_model("masked_lm", config)
    model = A.from_hf(hf_model, "masked_lm", config)
    inputs = make_inputs(config, "masked_lm", labels=False)
    embeds = (
        hf_model.roberta.embeddings.word_embeddings(torch.from_numpy(inputs["input_ids"])).detach().numpy()
    )
    by_embeds = {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"]}
    assert_trees_close(A.forward(model, by_embeds), hf_torch_forward(hf_model, by_embeds))
    head_mask = np.ones((2, 4), dtype=np.float32)
    head_mask[0, 1] = 0.0
    head_mask[1, 3] = 0.0
    kw = dict(head_mask=torch.from_numpy(head_mask), output_attentions=True)
    expected = hf_torch_forward(hf_model, inputs, **kw)
    assert_trees_close(A.forward(model, inputs, **kw), expected)
    positions = {**inputs, "position_ids": np.tile(np.arange(2, 9), (2, 1))}
    assert_trees_close(A.forward(model, positions), hf_torch_forward(hf_model, positions))


def test_packed_inputs_embeds_match_packed_ids():
    """With segment_ids and inputs_embeds, positions restart per sequence as they do from input_ids."""
    config = tiny_config()
    model = A.from_hf(hf_torch_model("base", config), "base", config)
    ids = torch.tensor([[0, 5, 6, 2, 0, 7, 2, 1, 1], [0, 8, 9, 10, 11, 2, 0, 12, 2]])
    segment_ids = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 2, 2, 2]])
    with torch.no_grad():
        by_ids = model(ids, segment_ids=segment_ids)
        by_embeds = model(inputs_embeds=model.embeddings.word_embeddings(ids), segment_ids=segment_ids)
        second = model(torch.tensor([[0, 7, 2]]))  # row 0's second sequence alone
    torch.testing.assert_close(by_embeds.last_hidden_state, by_ids.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(by_embeds.pooler_output, by_ids.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(by_ids.pooler_output[0, 1], second.pooler_output[0], atol=ATOL, rtol=0)
    assert torch.equal(by_ids.pooler_output[0, 2:], torch.zeros(7, config.hidden_size))


@pytest.mark.parametrize(
    "num_labels,labels",
    [
        (1, np.array([0.5, -1.25], dtype=np.float32)),
        (3, np.array([[1, 0, 1], [0, 0, 1]], dtype=np.float32)),
        (3, np.array([2, 0])),
    ],
    ids=["regression", "multi_label", "single_label"],
)
def test_problem_type_inferred_like_hf(num_labels, labels):
    config = tiny_config(num_labels=num_labels)
    hf_model = hf_torch_model("sequence_classification", config)
    model = A.from_hf(hf_model, "sequence_classification", config)
    inputs = {**make_inputs(config, "sequence_classification", labels=False), "labels": labels}
    expected = hf_torch_forward(hf_model, inputs)
    assert_trees_close(A.forward(model, inputs), expected)
    assert model.config.problem_type == hf_model.config.problem_type is not None


def test_num_parameters_and_embeddings_api():
    config = tiny_config()
    hf_model = hf_torch_model("masked_lm", config)
    model = xlmr_torch.XLMRobertaForMaskedLM(config)
    assert model.num_parameters() == hf_model.num_parameters()
    assert model.num_parameters(exclude_embeddings=True) == hf_model.num_parameters(exclude_embeddings=True)
    assert model.get_input_embeddings() is model.roberta.embeddings.word_embeddings
    assert model.get_output_embeddings() is model.lm_head.decoder
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    assert model.lm_head.decoder.bias is model.lm_head.bias
    untied = xlmr_torch.XLMRobertaForMaskedLM(tiny_config(tie_word_embeddings=False))
    assert untied.lm_head.decoder.weight is not untied.get_input_embeddings().weight
    assert "lm_head.decoder.weight" in untied.canonical_state_dict()
    assert xlmr_torch.XLMRobertaModel(config, add_pooling_layer=False).pooler is None


def test_init_weights_like_hf():
    """HF's _init_weights: N(0, initializer_range), zero biases and padding rows, LayerNorm (1, 0)."""
    config = tiny_config(initializer_range=0.05, vocab_size=2000, hidden_size=64, intermediate_size=64)
    model = xlmr_torch.XLMRobertaForMaskedLM(config)
    emb = model.roberta.embeddings
    assert torch.count_nonzero(emb.word_embeddings.weight[config.pad_token_id]) == 0
    assert torch.count_nonzero(emb.position_embeddings.weight[config.pad_token_id]) == 0
    assert abs(float(emb.word_embeddings.weight.detach().std()) - 0.05) < 0.003
    layer = model.roberta.encoder.layer[0]
    assert abs(float(layer.attention.self.query.weight.detach().std()) - 0.05) < 0.01
    assert torch.count_nonzero(layer.attention.self.query.bias) == 0
    assert (
        torch.all(layer.output.LayerNorm.weight == 1)
        and torch.count_nonzero(layer.output.LayerNorm.bias) == 0
    )
    assert torch.count_nonzero(model.lm_head.bias) == 0


def test_import_does_not_load_tensorflow_or_jax():
    code = (
        "import sys, xlmr_torch\n"
        "bad = [m for m in ('tensorflow', 'jax', 'flax', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert sorted(xlmr_torch.__all__) == sorted(['XLMRobertaConfig', 'XLMRobertaPreTrainedModel', "
        "'XLMRobertaModel', 'XLMRobertaForCausalLM', 'XLMRobertaForMaskedLM', "
        "'XLMRobertaForSequenceClassification', 'XLMRobertaForMultipleChoice', "
        "'XLMRobertaForTokenClassification', 'XLMRobertaForQuestionAnswering', 'SentenceEncoder'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# -- bad checkpoints -----------------------------------------------------------------------------------
def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        xlmr_torch.XLMRobertaModel.from_pretrained(missing)


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
def test_truncated_weight_file_names_it(safe, tmp_path):
    config = tiny_config()
    hf_torch_model("base", config).save_pretrained(tmp_path, safe_serialization=safe)
    weights = tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=weights.name):
        xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path)


def test_misshapen_checkpoint_names_key(tmp_path):
    config = tiny_config()
    hf_torch_model("base", config).save_pretrained(tmp_path)
    with pytest.raises(WeightMismatchError, match="embeddings.word_embeddings.weight"):
        xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path, vocab_size=50)


def test_load_canonical_state_dict_is_exact():
    config = tiny_config()
    model = xlmr_torch.XLMRobertaModel(config)
    sd = model.canonical_state_dict()
    sd.pop("pooler.dense.bias")
    with pytest.raises(WeightMismatchError, match="pooler.dense.bias"):
        model.load_canonical_state_dict(sd)
    sd = model.canonical_state_dict()
    sd["encoder.layer.9.output.dense.weight"] = sd["pooler.dense.weight"]
    with pytest.raises(WeightMismatchError, match="encoder.layer.9"):
        model.load_canonical_state_dict(sd)


def test_bench_forward_quick_smoke():
    from bench import bench_forward_torch

    (row,) = bench_forward_torch.run(quick=True)
    assert set(row) == {"benchmark", "backend", "xlmr", "hf", "unit", "ratio", "notes"}
    assert row["backend"] == "torch" and row["xlmr"] > 0 and row["hf"] > 0
    assert abs(row["ratio"] - row["hf"] / row["xlmr"]) < 1e-9


@pytest.mark.parametrize("module", ["modeling", "training", "__init__"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module("xlmr_torch" if module == "__init__" else f"xlmr_torch.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or module == "__init__")
