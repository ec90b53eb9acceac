"""XLMRobertaConfig against HF transformers 4.57.6's XLMRobertaConfig."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from xlmr import XLMRobertaConfig
from xlmr import weights as W


@pytest.fixture(scope="module")
def hf_config_cls():
    transformers = pytest.importorskip("transformers")
    return transformers.XLMRobertaConfig


@pytest.mark.hf
def test_defaults_match_hf(hf_config_cls):
    ours, theirs = XLMRobertaConfig(), hf_config_cls()
    for field in (
        "vocab_size hidden_size num_hidden_layers num_attention_heads intermediate_size hidden_act "
        "hidden_dropout_prob attention_probs_dropout_prob max_position_embeddings type_vocab_size "
        "initializer_range layer_norm_eps pad_token_id bos_token_id eos_token_id position_embedding_type "
        "use_cache classifier_dropout is_decoder add_cross_attention num_labels problem_type "
        "tie_word_embeddings architectures output_attentions output_hidden_states use_return_dict"
    ).split():
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id
    assert ours.vocab_size == 30522


@pytest.mark.hf
def test_reads_hf_config_json_and_hf_reads_ours(tmp_path, hf_config_cls):
    hf = hf_config_cls(
        vocab_size=250002,
        max_position_embeddings=514,
        type_vocab_size=1,
        num_labels=3,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        label2id={"neg": 0, "neu": 1, "pos": 2},
        architectures=["XLMRobertaForSequenceClassification"],
        problem_type="single_label_classification",
        custom_field={"a": 1},
    )
    hf.save_pretrained(tmp_path / "hf")
    ours = XLMRobertaConfig.from_pretrained(tmp_path / "hf")
    assert ours.vocab_size == 250002 and ours.num_labels == 3
    assert ours.id2label == {0: "neg", 1: "neu", 2: "pos"} and ours.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert ours.custom_field == {"a": 1}
    ours.save_pretrained(tmp_path / "ours")
    back = hf_config_cls.from_pretrained(tmp_path / "ours")
    assert back.to_diff_dict() == hf_config_cls.from_pretrained(tmp_path / "hf").to_diff_dict()
    # Unknown keys survive a round trip through our class.
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    hf_saved = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (
        saved["custom_field"] == {"a": 1}
        and saved["transformers_version"] == hf_saved["transformers_version"]
    )


def test_round_trip_and_overrides(tmp_path):
    config = XLMRobertaConfig(hidden_size=64, num_attention_heads=4, num_labels=4, my_key="kept")
    config.save_pretrained(tmp_path)
    again = XLMRobertaConfig.from_pretrained(tmp_path / "config.json", num_hidden_layers=3)
    assert again.hidden_size == 64 and again.num_labels == 4 and again.my_key == "kept"
    assert again.num_hidden_layers == 3 and config.num_hidden_layers == 12
    assert XLMRobertaConfig.from_dict(config.to_dict()) == config
    assert json.loads(config.to_json_string())["model_type"] == "xlm-roberta"
    relabelled = XLMRobertaConfig.from_pretrained(tmp_path, num_labels=2)
    assert relabelled.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert XLMRobertaConfig.from_pretrained(tmp_path, num_labels=4).id2label == config.id2label
    config.num_labels = 5
    assert config.id2label[4] == "LABEL_4" and "num_labels" not in config.to_dict()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(intermediate_size=2.5), "intermediate_size"),
        (dict(position_embedding_type="rotary"), "position_embedding_type"),
        (dict(num_labels=3, id2label={0: "a", 1: "b"}), "num_labels"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(hidden_act="mish"), "hidden_act"),
        (dict(problem_type="ranking"), "problem_type"),
        (dict(max_position_embeddings=2), "max_position_embeddings"),
        (dict(layer_norm_eps=float("nan")), "layer_norm_eps"),
        (dict(layer_norm_eps=float("inf")), "layer_norm_eps"),
        (dict(attention_probs_dropout_prob=float("nan")), "attention_probs_dropout_prob"),
        (dict(classifier_dropout=float("nan")), "classifier_dropout"),
        (dict(classifier_dropout="0.1"), "classifier_dropout"),
        (dict(initializer_range=float("nan")), "initializer_range"),
        (dict(pad_token_id="1"), "pad_token_id"),
        (dict(eos_token_id=True), "eos_token_id"),
        (dict(hidden_size=None), "hidden_size"),
        (dict(num_hidden_layers=True), "num_hidden_layers"),
        (dict(use_cache=1), "use_cache"),
        (dict(tie_word_embeddings="yes"), "tie_word_embeddings"),
        (dict(architectures="XLMRobertaModel"), "architectures"),
        (dict(id2label={"a": "x"}), "id2label"),
        (dict(id2label={0: 5}), "id2label"),
        (dict(label2id={"x": "zero"}), "label2id"),
        (dict(num_labels=10**9), "num_labels"),
        (dict(num_hidden_layers=10**9), "num_hidden_layers"),
        (dict(vocab_size=2**40), "vocab_size"),
        (dict(vocab_size=10**9, hidden_size=4096, num_attention_heads=32), "vocab_size"),
        (dict(hidden_size=2**16, num_attention_heads=16, num_hidden_layers=100), "hidden_size"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        XLMRobertaConfig(**kwargs)


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        XLMRobertaConfig.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        XLMRobertaConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="gpt2"):
        XLMRobertaConfig.from_pretrained(tmp_path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    XLMRobertaConfig().save_pretrained(tmp_path)
    XLMRobertaConfig(hidden_size=96, num_attention_heads=4).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert XLMRobertaConfig.from_pretrained(tmp_path).hidden_size == 96


def test_core_imports_no_framework():
    code = (
        "import sys, xlmr, xlmr.weights, xlmr.outputs, xlmr.heads, conversion\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_sizes_pass_and_the_parameter_count_is_right():
    from xlmr.config import parameter_count

    base = XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1)
    # Backbone with pooler plus the LM head: xlm-roberta-base's XLMRobertaForMaskedLM (278,295,186) + pooler.
    assert parameter_count(base) == 278_295_186 + 768 * 768 + 768
    for relative in (False, True):
        config = base.copy(
            position_embedding_type="relative_key" if relative else "absolute", add_cross_attention=True
        )
        shapes = {**W.expected_shapes(config, "base"), **W.head_module_shapes(config, "masked_lm")}
        assert parameter_count(config) == sum(math.prod(s) for s in shapes.values())
    XLMRobertaConfig(vocab_size=250880, hidden_size=4096, num_hidden_layers=48, num_attention_heads=32,
                     intermediate_size=16384, max_position_embeddings=514)  # XLM-R XXL  # fmt: skip


def test_config_file_errors_name_the_file(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"hidden_size": "\xff"}')
    with pytest.raises(ValueError, match="config.json is not UTF-8"):
        XLMRobertaConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"a": ' + "[" * 100 + "]" * 100 + "}")
    with pytest.raises(ValueError, match="config.json is not a config: its JSON is nested more than 64"):
        XLMRobertaConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json is not a config: the JSON is a list"):
        XLMRobertaConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"layer_norm_eps": NaN}')
    with pytest.raises(
        ValueError, match=r"config.json: layer_norm_eps must be a finite positive number, got nan"
    ):
        XLMRobertaConfig.from_pretrained(tmp_path)
