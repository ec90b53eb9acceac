"""xlmr_torch decoder mode and attention variants against HF transformers 4.57.6.

KV-cache decoding, cross-attention, the SDPA path, and relative position embeddings; every
expected value comes from HF's PyTorch classes (1e-5, float32).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.backends import torch_adapter as A  # noqa: E402
from tests.reference import (  # noqa: E402
    ATOL,
    assert_trees_close,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
    to_numpy_tree,
)

pytestmark = pytest.mark.hf

SEQ = 7


def _decoder(cross: bool, **overrides):
    config = tiny_config(is_decoder=True, add_cross_attention=cross, **overrides)
    hf_model = hf_torch_model("causal_lm", config)
    return config, hf_model, A.from_hf(hf_model, "causal_lm", config)


def _encoder_inputs(cross: bool, config) -> dict:
    if not cross:
        return {}
    gen = torch.Generator().manual_seed(5)
    states = torch.randn(2, 5, config.hidden_size, generator=gen)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, -2:] = 0
    return {"encoder_hidden_states": states, "encoder_attention_mask": mask}


def _ids(config) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(3, config.vocab_size, (2, SEQ), generator=gen)
    ids[:, 0] = config.bos_token_id
    return ids


@pytest.mark.parametrize("cross", [False, True], ids=["self_only", "cross_attention"])
def test_kv_cache_decoding_matches_hf_full_pass(cross):
    config, hf_model, model = _decoder(cross)
    ids, enc = _ids(config), _encoder_inputs(cross, config)
    with torch.no_grad():
        expected = hf_model(ids, use_cache=True, **enc)
    expected_logits = expected.logits.numpy()
    # A 3-token prefix, then one token at a time; the mask covers cached + new positions.
    steps = [(0, 3)] + [(t, t + 1) for t in range(3, SEQ)]
    past = None
    for i, (start, stop) in enumerate(steps):
        mask = torch.ones(2, stop, dtype=torch.long)
        with torch.no_grad():
            out = model(
                ids[:, start:stop],
                attention_mask=mask,
                past_key_values=past,
                output_attentions=i % 2 == 1,  # alternate eager and SDPA paths
                **enc,
            )
        assert_trees_close(out.logits.numpy(), expected_logits[:, start:stop], path=f"logits[{start}:{stop}]")
        past = out.past_key_values
    assert len(past) == config.num_hidden_layers
    assert all(len(layer) == (4 if cross else 2) for layer in past)
    assert tuple(past[0][0].shape) == (2, config.num_attention_heads, SEQ, config.head_dim)
    # HF's legacy view of a self-attention-only cache pads each layer with (None, None).
    hf_past = tuple(
        tuple(t for t in layer if t is not None) for layer in expected.past_key_values.to_legacy_cache()
    )
    assert_trees_close(to_numpy_tree(past), to_numpy_tree(hf_past), path="past_key_values")


def test_accepts_hf_cache_objects():
    """Any object with ``to_legacy_cache()`` (HF's EncoderDecoderCache) is a valid past."""
    config, hf_model, model = _decoder(cross=True)
    ids, enc = _ids(config), _encoder_inputs(True, config)
    empty = transformers.EncoderDecoderCache(
        transformers.DynamicCache(config=hf_model.config), transformers.DynamicCache(config=hf_model.config)
    )
    with torch.no_grad():
        full = hf_model(ids, use_cache=False, **enc).logits.numpy()
        first = model(ids[:, :-1], past_key_values=empty, **enc)  # an empty cache is no cache
        assert_trees_close(first.logits.numpy(), full[:, :-1])
        prefix = hf_model(ids[:, :-1], use_cache=True, **enc)
        cache = prefix.past_key_values
        assert hasattr(cache, "to_legacy_cache")
        out = model(ids[:, -1:], past_key_values=cache, **enc)
    assert_trees_close(out.logits.numpy(), full[:, -1:])


def test_use_cache_defaults():
    config, _, model = _decoder(cross=False)
    ids = _ids(config)
    with torch.no_grad():
        assert model(ids).past_key_values is not None  # config.use_cache, decoder
        assert model(ids, use_cache=False).past_key_values is None
        assert model(ids, labels=ids).past_key_values is None  # labels: no cache, as HF
    encoder = A.build("base", tiny_config())
    with torch.no_grad():
        assert encoder(ids, use_cache=True).past_key_values is None  # encoders never cache


@pytest.mark.parametrize("cross", [False, True], ids=["self_only", "cross_attention"])
def test_decoder_sdpa_path_matches_hf_on_padded_batch(cross):
    config, hf_model, model = _decoder(cross)
    inputs = make_inputs(config, "causal_lm")
    feed = {**A.to_torch(inputs), **_encoder_inputs(cross, config)}
    with torch.no_grad():
        expected = hf_model(**feed, use_cache=False)
        actual = model(**feed, use_cache=False)  # no attentions asked: SDPA
    assert_trees_close(actual.logits.numpy(), expected.logits.numpy())
    assert_trees_close(actual.loss.numpy(), expected.loss.numpy())


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_positions_encoder_match_hf(kind):
    config = tiny_config(position_embedding_type=kind)
    hf_model = hf_torch_model("masked_lm", config)
    model = A.from_hf(hf_model, "masked_lm", config)
    assert hasattr(model.roberta.encoder.layer[0].attention.self, "distance_embedding")
    inputs = make_inputs(config, "masked_lm")
    kwargs = dict(output_attentions=True, output_hidden_states=True)
    expected = hf_torch_forward(hf_model, inputs, **kwargs)
    assert_trees_close(A.forward(model, inputs, **kwargs), expected)  # eager path
    fast = A.forward(model, inputs)  # SDPA path, relative logits through the mask
    assert_trees_close(fast, {k: expected[k] for k in ("loss", "logits")})


def test_relative_positions_decoder_cache_matches_hf():
    """Incremental decoding with relative positions equals HF's full (cache-free) pass."""
    config, hf_model, model = _decoder(cross=False, position_embedding_type="relative_key_query")
    ids = _ids(config)
    with torch.no_grad():
        expected = hf_model(ids, use_cache=False).logits.numpy()
        past = None
        for t in range(SEQ):
            out = model(ids[:, t : t + 1], past_key_values=past)
            assert_trees_close(out.logits.numpy(), expected[:, t : t + 1], path=f"step {t}")
            past = out.past_key_values


def test_sdpa_and_eager_paths_match_hf_with_padding():
    """Fully padded row included: both paths give HF's (uniform-attention) answer."""
    config = tiny_config()
    hf_model = hf_torch_model("base", config)
    model = A.from_hf(hf_model, "base", config)
    inputs = make_inputs(config, "base", batch=3, labels=False)
    inputs["attention_mask"][2] = 0
    expected = hf_torch_forward(hf_model, inputs, output_attentions=True)
    assert_trees_close(A.forward(model, inputs, output_attentions=True), expected, atol=ATOL)
    fast = A.forward(model, inputs)
    assert_trees_close(fast, {k: expected[k] for k in ("last_hidden_state", "pooler_output")}, atol=ATOL)
    assert np.isfinite(fast["last_hidden_state"]).all()
