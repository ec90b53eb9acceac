"""The canonical weight map against HF's own PyTorch state dicts and Flax params trees."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.reference import canonical_state_dict, head_config, hf_torch_model, tiny_config
from xlmr import HEAD_NAMES, HEADS
from xlmr import weights as W

VARIANTS = {
    "default": {},
    "decoder": dict(is_decoder=True, add_cross_attention=True),
    "relative": dict(position_embedding_type="relative_key_query"),
    "untied": dict(tie_word_embeddings=False),
}


@pytest.mark.hf
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_key_sets_and_shapes_match_hf_torch(head, variant):
    pytest.importorskip("torch")
    config = head_config(head, **VARIANTS[variant])
    hf_sd = hf_torch_model(head, config).state_dict()
    aliases = W.tied_aliases(config, head)
    expected = {k: tuple(v.shape) for k, v in hf_sd.items() if k not in aliases}
    assert W.expected_shapes(config, head) == expected
    assert set(
        W.untie(canonical_state_dict(hf_torch_model(head, config), config, head), config, head)
    ) == set(hf_sd)


@pytest.mark.hf
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_flax_paths_match_hf_flax_params(head):
    pytest.importorskip("flax")
    import transformers

    config = head_config(head)
    hf_config = transformers.XLMRobertaConfig(**config.to_dict())
    hf_model = getattr(transformers, HEADS[head].flax_class)(hf_config, seed=0)
    flax_shapes = {path: tuple(v.shape) for path, v in W.flatten_tree(hf_model.params).items()}
    ours = {}
    for key, shape in W.expected_shapes(config, head).items():
        path, transpose = W.to_backend_path(key, "flax")
        ours[path] = shape[::-1] if transpose else shape
    # HF's bare Flax model keeps the backbone at the top level, like the PyTorch one.
    assert ours == flax_shapes
    for path in flax_shapes:
        key, _ = W.from_backend_path(path, "flax")
        assert W.to_backend_path(key, "flax")[0] == path


def test_backend_rules_round_trip():
    config = tiny_config(tie_word_embeddings=False)
    rng = np.random.default_rng(0)
    sd = {
        k: rng.standard_normal(s).astype(np.float32)
        for k, s in W.expected_shapes(config, "masked_lm").items()
    }
    for backend in W.BACKENDS:
        back = W.from_backend(W.to_backend(sd, backend), backend)
        assert back.keys() == sd.keys()
        assert all(np.array_equal(back[k], sd[k]) for k in sd)
    tf = W.to_backend(sd, "tf")
    assert tf[("roberta", "encoder", "layer", "0", "attention", "self", "query", "kernel")].shape == (32, 32)
    assert tf[("roberta", "encoder", "layer", "0", "intermediate", "dense", "kernel")].shape == (32, 37)
    assert ("roberta", "embeddings", "LayerNorm", "gamma") in tf and ("lm_head", "bias") in tf


def _random_sd(config, head, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in W.expected_shapes(config, head).items()}


def test_prefix_rule_both_ways():
    config = tiny_config()
    bare = _random_sd(config, "base")
    report = W.prepare_state_dict(bare, config, "token_classification")
    assert "roberta.embeddings.word_embeddings.weight" in report.state_dict
    assert sorted(report.newly_initialized) == ["classifier.bias", "classifier.weight"]
    assert "pooler.dense.weight" in report.ignored or "roberta.pooler.dense.weight" in report.ignored
    headed = _random_sd(config, "masked_lm")
    report = W.prepare_state_dict(headed, config, "base")
    assert "embeddings.word_embeddings.weight" in report.state_dict
    assert sorted(report.newly_initialized) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert any(k.startswith("lm_head.") for k in report.ignored)


def test_masked_lm_into_classifier_logs_new_head(caplog):
    config = tiny_config()
    sd = W.untie(_random_sd(config, "masked_lm"), config, "masked_lm")
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        report = W.prepare_state_dict(sd, config, "sequence_classification", source="mlm.safetensors")
    assert set(report.newly_initialized) == set(W.head_module_shapes(config, "sequence_classification"))
    assert "classifier.out_proj.weight" in caplog.text and "mlm.safetensors" in caplog.text


def test_legacy_gamma_beta_and_buffers():
    config = tiny_config()
    sd = _random_sd(config, "base")
    legacy = {}
    for k, v in sd.items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        legacy[k] = v
    legacy["embeddings.position_ids"] = np.arange(40)[None]
    report = W.prepare_state_dict(legacy, config, "base")
    assert report.state_dict.keys() == sd.keys()
    assert np.array_equal(report.state_dict["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.weight"])


def test_tied_alias_fills_missing_source():
    config = tiny_config()
    sd = _random_sd(config, "masked_lm")
    bias = sd.pop("lm_head.bias")
    sd["lm_head.decoder.bias"] = bias
    report = W.prepare_state_dict(sd, config, "masked_lm")
    assert np.array_equal(report.state_dict["lm_head.bias"], bias) and not report.newly_initialized


def test_loud_errors_name_keys_and_shapes():
    config = tiny_config()
    sd = _random_sd(config, "base")
    bad = dict(sd, **{"encoder.layer.1.output.dense.weight": np.zeros((32, 36), np.float32)})
    with pytest.raises(
        W.WeightMismatchError, match=r"encoder\.layer\.1\.output\.dense\.weight.*\(32, 36\).*\(32, 37\)"
    ):
        W.prepare_state_dict(bad, config, "base")
    missing = {k: v for k, v in sd.items() if k != "encoder.layer.0.attention.self.key.bias"}
    with pytest.raises(
        W.WeightMismatchError, match=r"missing.*encoder\.layer\.0\.attention\.self\.key\.bias"
    ):
        W.prepare_state_dict(missing, config, "base")
    with pytest.raises(W.WeightMismatchError, match="encoder.layer.7.output.dense.weight"):
        W.prepare_state_dict(
            dict(sd, **{"encoder.layer.7.output.dense.weight": sd["pooler.dense.weight"]}), config, "base"
        )
    with pytest.raises(W.WeightMismatchError, match="int64"):
        W.dtype_check({"pooler.dense.weight": np.zeros((2, 2), np.int64)})


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_infer_head_from_keys(head):
    config = tiny_config(num_labels=1 if head == "multiple_choice" else 3)
    guessed = W.infer_head(_random_sd(config, head)).name
    # Causal and masked LM share every weight: a key set cannot tell them apart.
    assert guessed == ("masked_lm" if head == "causal_lm" else head)
