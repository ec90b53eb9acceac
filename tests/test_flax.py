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


def _compiles(caplog, fn):
    """``fn()`` and the names of the programs XLA compiled meanwhile."""
    import logging

    caplog.clear()
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            result = fn()
    finally:
        jax.config.update("jax_log_compiles", False)
    names = [r.getMessage() for r in caplog.records if "Finished XLA compilation" in r.getMessage()]
    return result, [m.split(" of ")[1].split(" in ")[0] for m in names]


def test_eager_call_runs_compiled_blocks_shared_by_equal_configs(caplog):
    """An eager call runs compiled blocks (embeddings, one program for all layers, the head), not
    one compiled operation at a time; it equals the module applied op by op; a model with an
    equal config reuses the programs; a config changed afterwards gets its own and never reaches
    the shared ones."""
    from xlmr_flax import modeling

    model, config, _, _ = ours("token_classification", num_hidden_layers=3)
    inputs = make_inputs(config, "token_classification", seq=6, labels=False)
    with jax.disable_jit():
        by_operation = model.module.apply(
            {"params": model.params}, **{k: jnp.asarray(v, "i4") for k, v in inputs.items()}
        )
    modeling._COMPILED.clear()
    first, compiled = _compiles(caplog, lambda: model(**inputs).logits)
    # embeddings, the layer (one program for the three), the head; at most two input conversions
    assert compiled.count("jit(block)") == 3, compiled
    assert len(compiled) <= 5, compiled
    assert len(modeling._COMPILED) == 3
    np.testing.assert_allclose(np.asarray(first), np.asarray(by_operation[0]), atol=1e-6, rtol=0)

    twin, _, _, _ = ours("token_classification", num_hidden_layers=3)
    again, recompiled = _compiles(caplog, lambda: twin(**inputs).logits)
    assert recompiled == []
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))

    twin.config.num_labels = config.num_labels  # unchanged content: same programs
    twin(**inputs)
    assert len(modeling._COMPILED) == 3
    twin.config.layer_norm_eps = 0.5  # a config changed in place: its own programs, the shared ones intact
    changed = np.asarray(twin(**inputs).logits)
    assert len(modeling._COMPILED) == 6
    assert np.abs(changed - np.asarray(first)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(model(**inputs).logits), np.asarray(first))


def test_eager_train_call_is_one_program_with_the_traced_dropout():
    """train=True eagerly: one compiled program whose dropout masks are the op-by-op call's."""
    model, config, _, _ = ours(
        "token_classification", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3
    )
    inputs = make_inputs(config, "token_classification", seq=6, labels=False)
    rng = jax.random.PRNGKey(3)
    with jax.disable_jit():
        by_operation = model.module.apply(
            {"params": model.params},
            **{k: jnp.asarray(v, "i4") for k, v in inputs.items()},
            deterministic=False,
            rngs={"dropout": rng},
        )
    eager = model(**inputs, train=True, dropout_rng=rng).logits
    np.testing.assert_allclose(np.asarray(eager), np.asarray(by_operation[0]), atol=1e-6, rtol=0)
    assert np.abs(np.asarray(eager) - np.asarray(model(**inputs).logits)).max() > 1e-3  # dropout ran


@pytest.mark.parametrize(
    "head, overrides",
    [
        ("base", {}),
        ("masked_lm", {}),
        ("multiple_choice", {}),
        ("causal_lm", {"is_decoder": True, "add_cross_attention": True}),
        ("token_classification", {"position_embedding_type": "relative_key_query"}),
    ],
)
def test_params_shape_tree_is_the_full_inits(head, overrides):
    """The shape tree (traced with one layer, repeated) is eval_shape of the whole model's init."""
    config = head_config(head, num_hidden_layers=3, **overrides)
    model = flax_class(head)(config, input_shape=input_shape(head), _do_init=False)
    full = jax.eval_shape(lambda rng: model._init_variables(rng, model.input_shape), model.key)["params"]
    expected = {p: (tuple(v.shape), v.dtype) for p, v in flatten_tree(full).items()}
    got = {p: (tuple(v.shape), v.dtype) for p, v in flatten_tree(model.params_shape_tree).items()}
    assert got == expected
    assert sum(p[-1] == "kernel" and "layer" in p for p in got) == 3 * (
        6 + 4 * bool(overrides.get("add_cross_attention"))
    )


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


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_cached_decoding_with_relative_positions_equals_full_pass(kind):
    """The fixed-size cache puts the queries at the cache index, not at the end of the keys."""
    model, config, _, _ = ours("causal_lm", is_decoder=True, position_embedding_type=kind)
    inputs = make_inputs(config, "causal_lm", seq=6, labels=False)
    full = np.asarray(model(inputs["input_ids"], inputs["attention_mask"]).logits)

    def step(params, ids, mask, cache):
        return model(ids, attention_mask=mask, params=params, past_key_values=cache)

    stepped, _ = _decode(model, jax.jit(step), inputs, prefill=2)
    np.testing.assert_allclose(stepped, full, atol=ATOL, rtol=0)


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
    with pytest.raises(ValueError, match=r"token id 150, outside \[0, vocab_size=99\)"):
        encoder_model(ids)
    with pytest.raises(ValueError, match=r"token id -3, outside \[0, vocab_size=99\)"):
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
    with pytest.raises(ValueError, match=r"token_type_ids holds 2, outside \[0, type_vocab_size=2\)"):
        encoder_model(ids, token_type_ids=np.array([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, seq\)"):
        encoder_model(np.array([0, 5, 2]))
    with pytest.raises(TypeError, match="input_ids must hold integer ids"):
        encoder_model(np.array([[0.0, 5.0]]))
    with pytest.raises(ValueError, match="needs dropout_rng"):
        encoder_model(ids, train=True)
    with pytest.raises(ValueError, match="add_cross_attention"):
        encoder_model(ids, encoder_hidden_states=np.zeros((1, 2, 32), np.float32))
    with pytest.raises(ValueError, match=r"head_mask has shape \(3,\)"):
        encoder_model(ids, head_mask=np.ones(3))


# -- the module-level helpers ----------------------------------------------------------------------
def test_array_info_eager_and_traced():
    from xlmr_flax.modeling import array_info

    assert array_info(None) is None
    info = array_info([[0, 5, 2]])
    assert info.shape == (1, 3) and info.kind == "i" and info.values.tolist() == [[0, 5, 2]]
    info = array_info(jnp.ones((2, 3), jnp.bfloat16))
    assert info.shape == (2, 3) and info.kind == "V" and info.values is None
    seen = []
    jax.jit(lambda x: seen.append(array_info(x)) or x)(jnp.arange(4).reshape(1, 4))
    assert seen[0].shape == (1, 4) and seen[0].kind == "i" and seen[0].values is None


def test_position_ids_restart_for_every_packed_sequence():
    from xlmr_flax.modeling import create_position_ids_from_input_ids

    ids = jnp.array([[0, 5, 2, 0, 6, 7, 2, 1, 1], [0, 8, 9, 9, 9, 9, 2, 1, 1]])
    seg = jnp.array([[1, 1, 1, 2, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0, 0]])
    expected = [[2, 3, 4, 2, 3, 4, 5, 1, 1], [2, 3, 4, 5, 6, 7, 8, 1, 1]]
    assert create_position_ids_from_input_ids(ids, 1, segment_ids=seg).tolist() == expected
    assert create_position_ids_from_input_ids(ids, 1)[1].tolist() == expected[1]  # one sequence: as unpacked
    assert create_position_ids_from_input_ids(ids[:1, :2], 1, 5).tolist() == [[7, 8]]  # after 5 cached


def test_attention_keep_mask_and_first_tokens():
    from xlmr_flax.modeling import additive_mask, attention_keep_mask, sequence_first_tokens

    assert attention_keep_mask(None, None, 3, 0, False) is None
    seg = jnp.array([[1, 1, 2, 0]])
    keep = attention_keep_mask(None, seg, 4, 0, False)
    assert keep.shape == (1, 1, 4, 4)
    assert keep[0, 0].astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # 3-D mask (batch, seq, keys), combined with the causal mask after two cached tokens.
    per_query = jnp.ones((1, 2, 4), "i4").at[0, 1, 0].set(0)
    keep = attention_keep_mask(per_query, None, 2, 2, True)
    assert keep[0, 0].astype(int).tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]
    bias = additive_mask(jnp.array([True, False]), jnp.bfloat16)
    assert bias.dtype == jnp.bfloat16 and float(bias[0]) == 0.0 and np.isfinite(float(bias[1]))
    assert float(bias[1]) == float(jnp.finfo(jnp.bfloat16).min)

    hidden = jnp.arange(2 * 5 * 2, dtype=jnp.float32).reshape(2, 5, 2)
    seg = jnp.array([[1, 1, 2, 2, 2], [1, 1, 1, 1, 0]])
    slots = np.asarray(sequence_first_tokens(hidden, seg))
    np.testing.assert_array_equal(slots[0, :2], np.asarray(hidden)[0, [0, 2]])
    np.testing.assert_array_equal(slots[1, 0], np.asarray(hidden)[1, 0])
    assert (slots[0, 2:] == 0).all() and (slots[1, 1:] == 0).all()
    np.testing.assert_array_equal(np.asarray(sequence_first_tokens(hidden, None)), np.asarray(hidden)[:, 0])


@pytest.mark.hf
def test_three_d_attention_mask_matches_hf_torch():
    """A mask per query (batch, seq, seq), eagerly and under jax.jit, as HF PyTorch applies it."""
    pytest.importorskip("torch")
    from tests.reference import hf_torch_forward

    model, config, pt_model, _ = ours("token_classification")
    inputs = make_inputs(config, "token_classification", labels=False)
    seq = inputs["input_ids"].shape[1]
    band = (np.abs(np.arange(seq)[:, None] - np.arange(seq)[None, :]) <= 2).astype(np.int64)
    mask = band[None] * inputs["attention_mask"][:, None, :]  # (batch, seq, seq)
    feed = {**inputs, "attention_mask": mask}
    expected = hf_torch_forward(pt_model, feed, output_attentions=True)
    actual = model(**feed, output_attentions=True)
    assert_trees_close(_np(actual), expected, atol=ATOL)
    jitted = jax.jit(lambda p, f: model(**f, params=p).logits)(model.params, feed)
    np.testing.assert_allclose(np.asarray(jitted), expected["logits"], atol=ATOL, rtol=0)
    # A 3-D mask that repeats the 2-D one gives the 2-D result.
    repeated = np.repeat(inputs["attention_mask"][:, None, :], seq, axis=1)
    np.testing.assert_allclose(
        np.asarray(model(**{**inputs, "attention_mask": repeated}).logits),
        np.asarray(model(**inputs).logits),
        atol=ATOL,
        rtol=0,
    )


# -- packed rows under jax.jit ---------------------------------------------------------------------
def test_packed_call_traces_once_per_shape():
    """segment_ids is a keyword of the public call; packings of one shape share one compiled function."""
    model, config, _, _ = ours("sequence_classification")
    traces = []

    @jax.jit
    def logits(params, ids, seg):
        traces.append(ids.shape)
        return model(ids, params=params, segment_ids=seg).logits

    ids = np.full((2, 8), 5)
    for seg in (
        [[1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]],
        [[1, 2, 3, 4, 4, 4, 4, 4], [1] * 4 + [0] * 4],
    ):
        seg = np.array(seg)
        ids_k = np.where(seg > 0, ids, config.pad_token_id)
        got = logits(model.params, ids_k, seg)
        eager = model(ids_k, segment_ids=seg).logits
        assert got.shape == (2, 8, config.num_labels)
        np.testing.assert_allclose(np.asarray(got), np.asarray(eager), atol=ATOL, rtol=0)
        empty = ~np.asarray(np.arange(8)[None] < seg.max(-1, keepdims=True))
        assert (np.asarray(got)[empty] == 0).all()
    assert traces == [(2, 8)]


# -- compiled paths: out-of-range values are never silent ------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"input_ids": 150},
        {"input_ids": -3},
        {"token_type_ids": 2},
        {"position_ids": 40},
    ],
    ids=["id-too-large", "id-negative", "token-type", "position"],
)
def test_jitted_forward_poisons_rows_with_out_of_range_ids(encoder_model, bad):
    """Under jax.jit values cannot be checked: the row holding the bad id is NaN, the others exact."""
    config = encoder_model.config
    feed = make_inputs(config, "masked_lm", labels=False)
    feed["position_ids"] = np.broadcast_to(np.arange(7) + 2, (2, 7)).copy()
    ((name, value),) = bad.items()
    feed[name][0, 3] = value

    @jax.jit
    def run(params, f):
        return encoder_model(**f, params=params, output_hidden_states=True)

    out = run(encoder_model.params, feed)
    for leaf in [out.logits, *out.hidden_states]:
        assert np.isnan(np.asarray(leaf)[0]).all()
    clean = encoder_model(**{k: v[1:] for k, v in feed.items()}).logits
    np.testing.assert_allclose(np.asarray(out.logits)[1:], np.asarray(clean), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match=f"{name} holds"):
        encoder_model(**feed)  # eagerly: the checker's error


def test_jitted_forward_poisons_overlong_packed_sequences(encoder_model):
    limit = encoder_model.config.max_sequence_length
    ids = np.full((2, limit + 2), 5)
    seg = np.stack([np.ones(limit + 2, int), np.r_[np.ones(4, int), np.full(limit - 2, 2)]])
    out = jax.jit(lambda p, i, s: encoder_model(i, params=p, segment_ids=s).logits)(
        encoder_model.params, ids, seg
    )
    assert np.isnan(np.asarray(out)[0]).all() and np.isfinite(np.asarray(out)[1]).all()
    with pytest.raises(ValueError, match="longer than max_position_embeddings - padding_idx - 1"):
        encoder_model(ids, segment_ids=seg)


def test_float_ids_are_a_type_error_under_jit_too(encoder_model):
    with pytest.raises(TypeError, match="input_ids must hold integer ids, got a float array"):
        jax.jit(lambda i: encoder_model(i).logits)(jnp.array([[0.0, 5.0, 2.0]]))


@pytest.mark.parametrize("module", ["modeling", "losses", "training", "__init__"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module("xlmr_flax" if module == "__init__" else f"xlmr_flax.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
