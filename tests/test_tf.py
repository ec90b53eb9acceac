"""xlmr_tf against HF transformers 4.57.6 (its TF classes on tf-keras, and its PyTorch classes):
outputs, KV cache, input conventions, checkpoints, bad input. Tolerance 1e-5 in float32."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import tensorflow as tf  # noqa: E402

import xlmr_tf  # noqa: E402
from tests.reference import (  # noqa: E402
    ATOL,
    assert_trees_close,
    canonical_state_dict,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEAD_NAMES, HEADS  # noqa: E402
from xlmr.weights import WeightMismatchError, expected_shapes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _np(obj):
    if isinstance(obj, dict):
        return {k: _np(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, tuple | list):
        return tuple(_np(v) for v in obj)
    return np.asarray(obj)


def _config(head: str, **overrides):
    if head == "question_answering":
        overrides.setdefault("num_labels", 2)
    return tiny_config(**overrides)


@pytest.fixture(scope="module")
def torch_refs():
    """head -> (config, HF PyTorch model, canonical state dict); built lazily, shared by the module."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    cache = {}

    def get(head: str):
        if head not in cache:
            config = _config(head)
            ref = hf_torch_model(head, config)
            cache[head] = (config, ref, canonical_state_dict(ref, config, head))
        return cache[head]

    return get


@pytest.fixture(scope="module")
def hf_dirs(torch_refs, tmp_path_factory):
    """head -> directory written by HF's PyTorch save_pretrained (model.safetensors)."""
    cache = {}

    def get(head: str, safe: bool = True):
        if (head, safe) not in cache:
            _, ref, _ = torch_refs(head)
            d = tmp_path_factory.mktemp(f"hf_{head}_{'st' if safe else 'bin'}")
            ref.save_pretrained(d, safe_serialization=safe)
            cache[head, safe] = d
        return cache[head, safe]

    return get


def _ours(head, config, state_dict):
    model = getattr(xlmr_tf, HEADS[head].tf_class)(config)
    return model.load_canonical_state_dict(state_dict)


# -- HF's own TF classes --------------------------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_matches_hf_tf_classes(head, torch_refs, hf_dirs):
    """Same weights (HF's PT->TF conversion for HF's model, canonical dict for ours): same outputs."""
    import transformers

    config, _, sd = torch_refs(head)
    hf_tf = getattr(transformers, HEADS[head].tf_class).from_pretrained(hf_dirs(head), from_pt=True)
    inputs = make_inputs(config, head, labels=head != "base")
    feats = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    kwargs = dict(output_hidden_states=True, output_attentions=True, training=False)
    expected = _np(dict(hf_tf(feats, **kwargs)))
    ours = _ours(head, config, sd)
    actual = _np(dict(ours(feats, **kwargs)))
    if head == "multiple_choice":
        # HF's TF multiple-choice class passes output_attentions / output_hidden_states to its backbone in
        # the wrong positional slots and returns neither; those fields are checked against HF PT in test_matrix.
        assert set(expected) == {"logits"}
        actual = {"logits": actual["logits"]}
    assert set(actual) == set(expected)
    assert_trees_close(actual, expected, atol=ATOL)
    # HF TF's losses are per-example where HF PT averages; the means agree where the definitions do.
    if head in (
        "causal_lm",
        "masked_lm",
        "sequence_classification",
        "multiple_choice",
        "token_classification",
    ):
        labels = inputs["labels"]
        hf_loss = float(np.mean(hf_tf(feats, labels=labels, training=False).loss.numpy()))
        our_loss = float(ours(feats, labels=labels).loss.numpy())
        assert abs(hf_loss - our_loss) < ATOL, (hf_loss, our_loss)


# -- decoder: KV cache and cross-attention -------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("cross", [False, True], ids=["self_only", "cross_attention"])
def test_kv_cache_decoding_equals_full_pass(cross):
    pytest.importorskip("torch")
    config = tiny_config(is_decoder=True, add_cross_attention=cross)
    ref = hf_torch_model("causal_lm", config)
    model = _ours("causal_lm", config, canonical_state_dict(ref, config, "causal_lm"))
    rng = np.random.default_rng(5)
    ids = rng.integers(3, config.vocab_size, size=(2, 6)).astype(np.int32)
    extra = {}
    if cross:
        extra["encoder_hidden_states"] = rng.standard_normal((2, 4, config.hidden_size)).astype(np.float32)
        extra["encoder_attention_mask"] = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)
    full = model(ids, use_cache=True, **extra)
    hf_full = hf_torch_forward(
        ref,
        {
            "input_ids": ids.astype(np.int64),
            **{k: v.astype(np.int64) if v.dtype == np.int32 else v for k, v in extra.items()},
        },
        use_cache=False,
    )
    np.testing.assert_allclose(full.logits.numpy(), hf_full["logits"], atol=ATOL, rtol=0)
    layer_past = full.past_key_values[0]
    assert len(full.past_key_values) == config.num_hidden_layers and len(layer_past) == (4 if cross else 2)
    assert layer_past[0].shape == (2, config.num_attention_heads, 6, config.head_dim)

    past, steps = None, []
    for t in range(ids.shape[1]):
        out = model(
            ids[:, t : t + 1],
            attention_mask=np.ones((2, t + 1), np.int32),
            past_key_values=past,
            use_cache=True,
            **extra,
        )
        past = out.past_key_values
        steps.append(out.logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full.logits.numpy(), atol=ATOL, rtol=0)
    # a prefix, then the rest in one chunk
    first = model(ids[:, :3], use_cache=True, **extra)
    rest = model(ids[:, 3:], past_key_values=first.past_key_values, use_cache=True, **extra)
    np.testing.assert_allclose(rest.logits.numpy(), full.logits.numpy()[:, 3:], atol=ATOL, rtol=0)


# -- input conventions --------------------------------------------------------------------------
@pytest.mark.hf
def test_three_input_conventions_match_hf(torch_refs):
    config, ref, sd = torch_refs("token_classification")
    model = _ours("token_classification", config, sd)
    inputs = make_inputs(config, "token_classification", labels=False)
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    expected = hf_torch_forward(ref, inputs)["logits"]
    only_ids = hf_torch_forward(ref, {"input_ids": ids})["logits"]
    variants = {
        "keywords": model(input_ids=ids, attention_mask=mask, token_type_ids=types),
        "list": model([ids, mask, types]),
        "dict": model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types}),
        "positional": model(tf.constant(ids), tf.constant(mask), tf.constant(types)),
        "tuple_out": model(ids, attention_mask=mask, token_type_ids=types, return_dict=False),
    }
    for name, out in variants.items():
        logits = out[0] if name == "tuple_out" else out["logits"]
        np.testing.assert_allclose(np.asarray(logits), expected, atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(model(tf.constant(ids)).logits.numpy(), only_ids, atol=ATOL, rtol=0)
    # and the same dict inside a tf.function (how Keras calls it)
    graph_logits = tf.function(lambda d: model(d)["logits"])(
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    )
    np.testing.assert_allclose(graph_logits.numpy(), expected, atol=ATOL, rtol=0)


@pytest.mark.hf
def test_inputs_embeds_and_head_mask_match_hf(torch_refs):
    import torch

    config, ref, sd = torch_refs("base")
    model = _ours("base", config, sd)
    inputs = make_inputs(config, "base", labels=False)
    emb = sd["embeddings.word_embeddings.weight"][inputs["input_ids"]]
    head_mask = np.ones((config.num_hidden_layers, config.num_attention_heads), np.float32)
    head_mask[0, 1] = 0.0
    with torch.no_grad():
        exp = ref(
            inputs_embeds=torch.from_numpy(emb),
            attention_mask=torch.from_numpy(inputs["attention_mask"]),
            head_mask=torch.from_numpy(head_mask),
            output_attentions=True,
        )
    out = model(
        inputs_embeds=emb,
        attention_mask=inputs["attention_mask"],
        head_mask=head_mask,
        output_attentions=True,
    )
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), exp.last_hidden_state.numpy(), atol=ATOL, rtol=0
    )
    np.testing.assert_allclose(out.attentions[0].numpy(), exp.attentions[0].numpy(), atol=ATOL, rtol=0)


@pytest.mark.hf
def test_relative_position_embeddings_match_hf():
    pytest.importorskip("torch")
    config = tiny_config(position_embedding_type="relative_key_query")
    ref = hf_torch_model("masked_lm", config)
    model = _ours("masked_lm", config, canonical_state_dict(ref, config, "masked_lm"))
    inputs = make_inputs(config, "masked_lm")
    expected = hf_torch_forward(ref, inputs)
    actual = _np(dict(model(**inputs)))
    assert_trees_close(actual, expected, atol=ATOL)


@pytest.mark.hf
def test_compiled_forward_xla_matches_hf(torch_refs):
    config, ref, sd = torch_refs("question_answering")
    model = _ours("question_answering", config, sd)
    inputs = make_inputs(config, "question_answering", labels=False)
    expected = hf_torch_forward(ref, inputs)
    out = xlmr_tf.compiled_forward(model, jit_compile=True)(inputs)
    assert_trees_close(_np(out), expected, atol=ATOL)


# -- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model_bin"])
def test_from_pretrained_reads_hf_files(safe, torch_refs, hf_dirs):
    config, ref, _ = torch_refs("masked_lm")
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(hf_dirs("masked_lm", safe))
    inputs = make_inputs(config, "masked_lm")
    assert_trees_close(_np(dict(model(**inputs))), hf_torch_forward(ref, inputs), atol=ATOL)


@pytest.mark.hf
def test_from_pretrained_other_head_initialises_it(torch_refs, hf_dirs):
    """An MLM checkpoint into a classifier: backbone loaded, classifier new, as HF does."""
    config, ref, sd = torch_refs("masked_lm")
    model = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(hf_dirs("masked_lm"), num_labels=4)
    assert model.config.num_labels == 4
    ours = model.canonical_state_dict()
    for key in ("roberta.embeddings.word_embeddings.weight", "roberta.encoder.layer.1.output.dense.weight"):
        np.testing.assert_array_equal(ours[key], sd[key])
    assert ours["classifier.out_proj.weight"].shape == (4, config.hidden_size)


def test_pytorch_bin_without_torch_says_so(hf_dirs, monkeypatch):
    d = hf_dirs("masked_lm", safe=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="xlmr-convert"):
        xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(d)


@pytest.mark.hf
@pytest.mark.parametrize("head", ["masked_lm", "sequence_classification"])
def test_save_pretrained_reloads_in_hf_torch(head, torch_refs, tmp_path):
    import transformers

    config, ref, sd = torch_refs(head)
    _ours(head, config, sd).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    reloaded = getattr(transformers, HEADS[head].torch_class).from_pretrained(
        tmp_path, attn_implementation="eager"
    )
    inputs = make_inputs(config, head)
    assert_trees_close(hf_torch_forward(reloaded.eval(), inputs), hf_torch_forward(ref, inputs), atol=ATOL)


@pytest.mark.hf
def test_save_pretrained_tf_h5_loads_in_hf_tf(torch_refs, tmp_path):
    import transformers

    import conversion

    if "tf" not in conversion.io._WRITERS:
        pytest.skip("conversion has no tf_model.h5 writer yet (conversion helper's task)")
    config, ref, sd = torch_refs("token_classification")
    _ours("token_classification", config, sd).save_pretrained(tmp_path, format="tf")
    assert (tmp_path / "tf_model.h5").is_file()
    hf_tf = transformers.TFXLMRobertaForTokenClassification.from_pretrained(tmp_path)
    inputs = make_inputs(config, "token_classification", labels=False)
    np.testing.assert_allclose(
        hf_tf(inputs).logits.numpy(), hf_torch_forward(ref, inputs)["logits"], atol=ATOL
    )


def test_canonical_names_and_weight_errors(torch_refs):
    config, _, sd = torch_refs("masked_lm")
    model = _ours("masked_lm", config, sd)
    paths = {v.path.split("/", 1)[1] for v in model.weights}
    assert "roberta/encoder/layer.1/attention/self/query/kernel" in paths
    assert "lm_head/bias" in paths and not any("decoder" in p for p in paths)  # tied decoder: no variable
    out = model.canonical_state_dict()
    assert set(out) == set(sd)  # canonical names, no tied aliases
    assert list(out) == list(expected_shapes(config, "masked_lm"))  # in canonical order
    np.testing.assert_array_equal(
        out["roberta.encoder.layer.0.attention.self.query.weight"],
        sd["roberta.encoder.layer.0.attention.self.query.weight"],
    )
    bad = dict(sd, **{"roberta.encoder.layer.0.attention.self.query.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(WeightMismatchError, match=r"layer\.0\.attention\.self\.query\.weight"):
        model.load_canonical_state_dict(bad)
    missing = {k: v for k, v in sd.items() if "layer.1.output.dense" not in k}
    with pytest.raises(WeightMismatchError, match=r"layer\.1\.output\.dense"):
        model.load_canonical_state_dict(missing)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_errors_name_the_values():
    config = tiny_config()
    model = xlmr_tf.TFXLMRobertaModel(config).build_model()
    ids = np.full((2, 5), 7, np.int64)
    ids[1, 3] = 150
    with pytest.raises(ValueError, match=r"150.*vocab_size=99"):
        model(ids)
    with pytest.raises(ValueError, match=r"token id -4, outside \[0, vocab_size=99\)"):
        model(np.array([[0, -4, 5]]))
    too_long = np.full((1, config.max_sequence_length + 1), 5)
    with pytest.raises(
        ValueError,
        match=rf"{config.max_sequence_length + 1}.*max_sequence_length={config.max_sequence_length}",
    ):
        model(too_long)
    with pytest.raises(ValueError, match="both input_ids and inputs_embeds"):
        model(input_ids=ids[:1, :3] % 50, inputs_embeds=np.zeros((1, 3, 32), np.float32))
    with pytest.raises(ValueError, match="either input_ids or inputs_embeds"):
        model(attention_mask=np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\).*\(2, 5\)"):
        model(ids % 50, attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown input 'labelz'"):
        model({"input_ids": ids % 50, "labelz": ids})
    # inside a graph the check is a tf.debugging assert with the same facts
    graph = tf.function(lambda x: model(x).last_hidden_state)
    with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size=99"):
        graph(tf.constant(ids))


def test_import_error_on_other_keras_backend():
    code = "import os; os.environ['KERAS_BACKEND'] = 'numpy'; import xlmr_tf"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "numpy"},
        timeout=120,
    )
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "KERAS_BACKEND=tensorflow" in proc.stderr


def test_float_ids_are_a_type_error_on_every_path():
    """The dtype is static: eager, tf.function and XLA calls refuse float ids (never cast them)."""
    model = xlmr_tf.TFXLMRobertaModel(tiny_config()).build_model()
    ids = np.array([[0.0, 5.0, 6.0, 2.0]], np.float32)
    message = "input_ids must hold integer ids, got a float array"
    paths = {
        "eager": lambda x: model(x),
        "graph": tf.function(lambda x: model(x).last_hidden_state),
        "xla": tf.function(lambda x: model(x).last_hidden_state, jit_compile=True),
        "compiled_forward": xlmr_tf.compiled_forward(model),
    }
    for name, run in paths.items():
        with pytest.raises(TypeError, match=message):
            run(tf.constant(ids))
        assert name  # every path raised


@pytest.mark.parametrize("path", ["graph", "xla", "compiled_forward"])
def test_out_of_range_ids_and_labels_under_tracing(path):
    """Never silent: graphs assert; XLA (which drops asserts) poisons the row / the loss with NaN."""
    config = tiny_config(num_labels=3, **NO_DROPOUT)
    model = xlmr_tf.TFXLMRobertaForTokenClassification(config).build_model()
    ids = np.full((2, 5), 7, np.int32)
    ids[1, 3] = config.vocab_size + 5
    good_labels = np.zeros((2, 5), np.int32)
    bad_labels = good_labels.copy()
    bad_labels[0, 2] = config.num_labels
    if path == "compiled_forward":
        run = xlmr_tf.compiled_forward(model)
    else:
        run = tf.function(lambda x: dict(model(x)), jit_compile=path == "xla")
    if path == "graph":
        with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size=99"):
            run({"input_ids": ids})
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[0, 3\)"):
            run({"input_ids": ids % 50, "labels": bad_labels})
        return
    logits = run({"input_ids": ids})["logits"].numpy()
    assert np.isnan(logits[1]).all() and np.isfinite(logits[0]).all()  # the bad id's row only
    assert np.isfinite(run({"input_ids": ids % 50, "labels": good_labels})["loss"].numpy())
    assert np.isnan(run({"input_ids": ids % 50, "labels": bad_labels})["loss"].numpy())


def test_gelu_converts_to_onnx_and_matches_tf_nn_gelu():
    """Issue 15: the exact GELU is written with erf (tf2onnx cannot convert tf.nn.gelu's Erfc)."""
    from xlmr_tf.modeling import ACT2FN

    x = tf.constant(np.linspace(-12.0, 12.0, 24001), tf.float32)
    ours, reference = ACT2FN["gelu"](x), tf.nn.gelu(x, approximate=False)
    assert float(tf.reduce_max(tf.abs(ours - reference))) <= 1e-6
    graph = tf.function(ACT2FN["gelu"]).get_concrete_function(tf.TensorSpec([None], tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "Erf" in ops and "Erfc" not in ops


@pytest.mark.hf
@pytest.mark.parametrize("convention", ["keywords", "dict", "list", "graph_dict"])
def test_segment_ids_in_every_input_convention(convention, torch_refs):
    """Packed rows (segment_ids) through HF's three TF input conventions, as the keyword call."""
    config, _, sd = torch_refs("token_classification")
    model = _ours("token_classification", config, sd)
    ids = np.array([[0, 5, 6, 2, 0, 7, 2, 1], [0, 9, 9, 9, 9, 2, 1, 1]], np.int32)
    seg = np.array([[1, 1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 0, 0]], np.int32)
    expected = model(input_ids=ids, segment_ids=seg).logits.numpy()
    if convention == "keywords":
        out = model(ids, segment_ids=seg)
    elif convention == "dict":
        out = model({"input_ids": ids, "segment_ids": seg})
    elif convention == "list":  # segment_ids after HF's arguments (labels last among them)
        names = type(model)._arg_names
        assert names[-1] == "segment_ids" and names[-2] == "labels"
        out = model([ids, *[None] * (len(names) - 2), seg])
    else:
        out = tf.function(lambda d: model(d))({"input_ids": ids, "segment_ids": seg})
    np.testing.assert_allclose(out["logits"].numpy(), expected, atol=ATOL, rtol=0)
    # each sequence alone gives the same logits
    alone = model(ids[:1, 4:7]).logits.numpy()[0]
    np.testing.assert_allclose(expected[0, 4:7], alone, atol=ATOL, rtol=0)


@pytest.mark.hf
def test_packed_inputs_embeds_equal_packed_ids(torch_refs):
    """Positions of packed inputs_embeds restart per sequence as for ids; pooler slots are zero past the last."""
    config, _, sd = torch_refs("base")
    model = _ours("base", config, sd)
    ids = np.array([[0, 5, 6, 2, 0, 7, 2, 1]], np.int32)
    seg = np.array([[1, 1, 1, 1, 2, 2, 2, 0]], np.int32)
    from_ids = model(ids, segment_ids=seg)
    emb = sd["embeddings.word_embeddings.weight"][ids]
    from_embeds = model(inputs_embeds=emb, segment_ids=seg)
    np.testing.assert_allclose(
        from_embeds.last_hidden_state.numpy()[:, :7], from_ids.last_hidden_state.numpy()[:, :7], atol=ATOL
    )
    pooled = from_ids.pooler_output.numpy()
    assert pooled.shape == (1, 8, config.hidden_size)
    np.testing.assert_allclose(pooled[0, 1], model(ids[:, 4:7]).pooler_output.numpy()[0], atol=ATOL, rtol=0)
    assert (pooled[0, 2:] == 0).all()


@pytest.mark.parametrize("module", ["modeling", "training", "__init__"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module("xlmr_tf" if module == "__init__" else f"xlmr_tf.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or module != "modeling")


def test_packed_sequence_classification_labels_are_slots_of_single_label_classes():
    """Packed labels: (batch, seq) slots of class ids; regression / multi-label need a padded batch."""
    ids = np.array([[0, 5, 2, 0, 7, 2, 1]], np.int32)
    seg = np.array([[1, 1, 1, 2, 2, 2, 0]], np.int32)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(tiny_config(num_labels=3)).build_model()
    with pytest.raises(ValueError, match=r"labels has shape \(2,\); with segment_ids .* expects .*\(1, 7\)"):
        model(ids, segment_ids=seg, labels=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"labels contain 3, outside \[0, 3\)"):
        model(ids, segment_ids=seg, labels=np.array([[1, 3, -100, -100, -100, -100, -100]]))
    multi = np.zeros((1, 7), np.float32)
    with pytest.raises(
        ValueError, match="single-label classification only.*this call is multi_label_classification"
    ):
        model(ids, segment_ids=seg, labels=multi)
    regression = xlmr_tf.TFXLMRobertaForSequenceClassification(tiny_config(num_labels=1)).build_model()
    with pytest.raises(ValueError, match="single-label classification only.*this call is regression"):
        regression(ids, segment_ids=seg, labels=multi)
    out = model(ids, segment_ids=seg, labels=np.array([[1, 2, -100, -100, -100, -100, -100]]))
    logits = out.logits.numpy()
    assert logits.shape == (1, 7, 3) and (logits[0, 2:] == 0).all()
    expected = -np.mean(
        [np.log(np.exp(logits[0, k]) / np.exp(logits[0, k]).sum())[label] for k, label in enumerate((1, 2))]
    )
    assert abs(float(out.loss) - expected) < 1e-5
