"""Flax backend: parity with HF's Flax and PyTorch classes, jit, cache decoding, bf16, remat, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402

from tests.backends.flax_adapter import flax_class, input_shape, ours  # noqa: E402
from tests.reference import ATOL, assert_trees_close, head_config, make_inputs, to_numpy_tree  # noqa: E402
from xlmr import HEAD_NAMES, HEADS  # noqa: E402
from xlmr.weights import flatten_tree  # noqa: E402


def _np(tree):
    return to_numpy_tree(dict(tree) if isinstance(tree, dict) else tree)


def test_import_pulls_in_neither_torch_nor_tensorflow():
    code = (
        "import sys, xlmr_flax, xlmr_flax.losses, xlmr_flax.training, xlmr_flax.loading\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- HF Flax parity -------------------------------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_params_layout_and_outputs_match_hf_flax(head):
    """Same weights (HF's own PyTorch->Flax conversion) give the same params tree and outputs."""
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    model, config, pt_model, _ = ours(head)
    hf_config = transformers.XLMRobertaConfig(**config.to_dict())
    hf_model = getattr(transformers, HEADS[head].flax_class)(hf_config, input_shape=input_shape(head))
    hf_params = convert_pytorch_state_dict_to_flax(pt_model.state_dict(), hf_model)

    # Layout: exactly the paths and shapes of HF's own initialised params tree.
    hf_shapes = {p: tuple(v.shape) for p, v in flatten_tree(hf_model.params).items()}
    our_shapes = {p: tuple(v.shape) for p, v in flatten_tree(model.params).items()}
    assert our_shapes == hf_shapes
    hf_flat = flatten_tree(hf_params)
    for path, value in flatten_tree(model.params).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(hf_flat[path]), err_msg="/".join(path))

    inputs = make_inputs(config, head, labels=False)
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    actual = model(**inputs, **kwargs)
    expected = hf_model(**inputs, params=hf_params, **kwargs)
    assert list(actual.keys()) == [k for k in expected.keys()]
    assert_trees_close(_np(actual), _np(expected), atol=ATOL)
    # return_dict=False: HF's tuple order.
    actual_tuple = model(**inputs, return_dict=False, **kwargs)
    expected_tuple = hf_model(**inputs, params=hf_params, return_dict=False, **kwargs)
    assert_trees_close(_np(tuple(actual_tuple)), _np(tuple(expected_tuple)), atol=ATOL)


@pytest.mark.hf
@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_position_embeddings_match_hf_torch(kind):
    """HF's Flax classes lack relative positions; ours follow HF PyTorch."""
    pytest.importorskip("torch")
    from tests.reference import hf_torch_forward

    model, config, pt_model, _ = ours("masked_lm", position_embedding_type=kind)
    inputs = make_inputs(config, "masked_lm", labels=False)
    expected = hf_torch_forward(pt_model, inputs, output_attentions=True)
    actual = model(**inputs, output_attentions=True)
    assert_trees_close(_np(actual), expected, atol=ATOL)


@pytest.mark.hf
def test_head_mask_matches_hf_torch():
    pytest.importorskip("torch")
    from tests.reference import hf_torch_forward

    model, config, pt_model, _ = ours("sequence_classification")
    inputs = make_inputs(config, "sequence_classification", labels=False)
    head_mask = np.ones((config.num_hidden_layers, config.num_attention_heads), np.float32)
    head_mask[0, 1] = 0.0
    head_mask[1, 3] = 0.5
    expected = hf_torch_forward(pt_model, {**inputs, "head_mask": head_mask}, output_attentions=True)
    actual = model(**inputs, head_mask=head_mask, output_attentions=True)
    assert_trees_close(_np(actual), expected, atol=ATOL)
    assert float(np.abs(np.asarray(actual.attentions[0])[:, 1]).max()) == 0.0


# -- jit, outputs as pytrees ------------------------------------------------------------------------
def test_jit_matches_eager_and_traces_once_per_shape():
    model, config, _, _ = ours("masked_lm")
    traces = []

    def logits(params, ids, mask):
        traces.append(ids.shape)
        return model(ids, mask, params=params).logits

    jitted = jax.jit(logits)
    for seq in (7, 7, 5, 7, 5):
        inputs = make_inputs(config, "masked_lm", seq=seq, labels=False)
        eager = model(inputs["input_ids"], inputs["attention_mask"]).logits
        got = jitted(model.params, inputs["input_ids"], inputs["attention_mask"])
        np.testing.assert_allclose(np.asarray(got), np.asarray(eager), atol=ATOL, rtol=0)
    assert traces == [(2, 7), (2, 5)]


def test_jitted_function_returns_whole_outputs():
    model, config, _, _ = ours("question_answering")
    inputs = make_inputs(config, "question_answering", labels=False)
    out = jax.jit(lambda p, ids: model(ids, params=p, output_hidden_states=True))(
        model.params, inputs["input_ids"]
    )
    assert type(out).__name__ == "QuestionAnsweringModelOutput"
    assert list(out.keys()) == ["start_logits", "end_logits", "hidden_states"]
    eager = model(inputs["input_ids"], output_hidden_states=True)
    assert_trees_close(_np(out), _np(eager), atol=ATOL)
    leaves = jax.tree_util.tree_leaves(out)
    assert len(leaves) == 2 + config.num_hidden_layers + 1


# -- cached decoding -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decoder():
    model, config, _, _ = ours("causal_lm", is_decoder=True)
    inputs = make_inputs(config, "causal_lm", seq=7, labels=False)
    full = model(inputs["input_ids"], inputs["attention_mask"]).logits
    return model, config, inputs, np.asarray(full)


def _decode(model, step, inputs, prefill: int):
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    batch, seq = ids.shape
    cache = model.init_cache(batch, seq)
    pieces = []
    out = step(model.params, ids[:, :prefill], mask, cache)
    pieces.append(out.logits)
    cache = out.past_key_values
    for t in range(prefill, seq):
        out = step(model.params, ids[:, t : t + 1], mask, cache)
        pieces.append(out.logits)
        cache = out.past_key_values
    return np.concatenate([np.asarray(p) for p in pieces], axis=1), cache


def test_cached_decoding_equals_full_pass_eager(decoder):
    model, _, inputs, full = decoder

    def step(params, ids, mask, cache):
        return model(ids, attention_mask=mask, params=params, past_key_values=cache)

    stepped, cache = _decode(model, step, inputs, prefill=1)
    np.testing.assert_allclose(stepped, full, atol=ATOL, rtol=0)
    index = [v for p, v in flatten_tree(cache).items() if p[-1] == "cache_index"]
    assert len(index) == 2 and all(int(i) == inputs["input_ids"].shape[1] for i in index)


def test_cached_decoding_equals_full_pass_jitted(decoder):
    model, _, inputs, full = decoder
    traces = []

    @jax.jit
    def step(params, ids, mask, cache):
        traces.append(ids.shape)
        return model(ids, attention_mask=mask, params=params, past_key_values=cache)

    stepped, _ = _decode(model, step, inputs, prefill=3)
    np.testing.assert_allclose(stepped, full, atol=ATOL, rtol=0)
    assert traces == [(2, 3), (2, 1)]  # one trace for the prefill, one for all single steps


def test_cache_overflow_and_non_decoder_are_refused(decoder):
    model, _, inputs, _ = decoder
    cache = model.init_cache(2, 3)
    with pytest.raises(ValueError, match="holds 3 tokens"):
        model(inputs["input_ids"][:, :4], attention_mask=np.ones((2, 3), "i4"), past_key_values=cache)
    with pytest.raises(ValueError, match="covers all 3 cache slots"):
        model(inputs["input_ids"][:, :1], attention_mask=np.ones((2, 1), "i4"), past_key_values=cache)
    with pytest.raises(ValueError, match="max_sequence_length"):
        model.init_cache(1, model.config.max_sequence_length + 1)
    encoder_only, _, _, _ = ours("masked_lm")
    with pytest.raises(ValueError, match="is_decoder"):
        flax_class("causal_lm")(encoder_only.config).init_cache(1, 4)


# -- bf16 and remat --------------------------------------------------------------------------------
def test_bfloat16_computes_in_bf16_close_to_float32():
    model, config, _, state_dict = ours("sequence_classification")
    bf16 = flax_class("sequence_classification")(config, dtype=jnp.bfloat16)
    bf16.load_canonical_state_dict(state_dict)
    assert {v.dtype for v in jax.tree_util.tree_leaves(bf16.params)} == {jnp.dtype(jnp.float32)}
    inputs = make_inputs(config, "sequence_classification", labels=False)
    out = bf16(**inputs, output_attentions=True, output_hidden_states=True)
    assert out.logits.dtype == jnp.bfloat16 and out.hidden_states[-1].dtype == jnp.bfloat16
    ref = model(**inputs).logits
    logits = np.asarray(out.logits, np.float32)
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, np.asarray(ref), atol=0.05 * float(np.abs(ref).max()) + 0.02)
    # Attention rows still sum to one; padded keys get exactly zero weight.
    probs = np.asarray(out.attentions[0], np.float32)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-2)
    assert probs[1, :, :, -2:].max() == 0.0


def test_gradient_checkpointing_gives_same_gradients():
    from xlmr_flax.losses import compute_loss

    model, config, _, _ = ours("token_classification", num_hidden_layers=1)  # one layer: two compiles
    remat = flax_class("token_classification")(config, gradient_checkpointing=True, _do_init=False)
    remat.params = model.params
    batch = make_inputs(config, "token_classification")
    rng = jax.random.PRNGKey(3)

    def grads(m):
        fn = jax.jit(jax.grad(lambda p: compute_loss(m, batch, params=p, dropout_rng=rng, train=True)[0]))
        return fn(m.params)

    expected, actual = grads(model), grads(remat)
    for path, value in flatten_tree(expected).items():
        np.testing.assert_allclose(
            np.asarray(flatten_tree(actual)[path]), np.asarray(value), atol=ATOL, err_msg="/".join(path)
        )
    model.enable_gradient_checkpointing()  # `model` is this test's own instance
    assert model.module.gradient_checkpointing


# -- weights ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["masked_lm", "multiple_choice"])
def test_canonical_state_dict_round_trips_hf_torch_weights(head):
    model, config, _, state_dict = ours(head)
    back = model.canonical_state_dict()
    assert set(back) == set(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_tied_decoder_has_no_kernel_and_untied_has_one():
    model, _, _, _ = ours("masked_lm")
    assert "decoder" not in model.params["lm_head"] and model.params["lm_head"]["bias"].shape == (99,)
    untied = flax_class("masked_lm")(head_config("masked_lm", tie_word_embeddings=False))
    assert untied.params["lm_head"]["decoder"]["kernel"].shape == (32, 99)
    assert "lm_head.decoder.weight" in untied.canonical_state_dict()


def test_params_setter_names_the_mismatch():
    model, _, _, _ = ours("token_classification")
    params = jax.tree_util.tree_map(lambda x: x, model.params)
    params["classifier"]["kernel"] = np.zeros((32, 7), np.float32)
    del params["roberta"]["embeddings"]["LayerNorm"]
    with pytest.raises(ValueError, match="roberta/embeddings/LayerNorm/bias") as err:
        model.params = params
    assert "classifier/kernel: (32, 7) vs (32, 3)" in str(err.value)


# -- bad input -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder_model():
    return ours("masked_lm")[0]


def test_out_of_vocabulary_ids_name_the_id_and_vocab_size(encoder_model):
    ids = np.array([[0, 5, 150, 2]])
    with pytest.raises(ValueError, match=r"id 150.*vocab_size is 99"):
        encoder_model(ids)
    with pytest.raises(ValueError, match="negative id -3"):
        encoder_model(np.array([[0, -3, 2]]))


def test_over_long_sequences_name_length_and_limit(encoder_model):
    limit = encoder_model.config.max_sequence_length
    ids = np.full((1, limit + 1), 5)
    with pytest.raises(ValueError, match=rf"length {limit + 1} exceeds config.max_sequence_length={limit}"):
        encoder_model(ids)
    # Shape checks also run when traced.
    with pytest.raises(ValueError, match="max_sequence_length"):
        jax.jit(lambda i: encoder_model(i).logits)(jnp.asarray(ids))


def test_mismatched_masks_and_types_are_refused(encoder_model):
    ids = np.array([[0, 5, 6, 2]])
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 3\), expected \(1, 4\)"):
        encoder_model(ids, attention_mask=np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 3\)"):
        jax.jit(lambda i, m: encoder_model(i, m).logits)(ids, np.ones((1, 3), "i4"))
    with pytest.raises(ValueError, match="token_type_ids contain 2, but type_vocab_size is 2"):
        encoder_model(ids, token_type_ids=np.array([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, seq\)"):
        encoder_model(np.array([0, 5, 2]))
    with pytest.raises(TypeError, match="integer token ids"):
        encoder_model(np.array([[0.0, 5.0]]))
    with pytest.raises(ValueError, match="needs dropout_rng"):
        encoder_model(ids, train=True)
    with pytest.raises(ValueError, match="add_cross_attention"):
        encoder_model(ids, encoder_hidden_states=np.zeros((1, 2, 32), np.float32))
    with pytest.raises(ValueError, match=r"head_mask has shape \(3,\)"):
        encoder_model(ids, head_mask=np.ones(3))
