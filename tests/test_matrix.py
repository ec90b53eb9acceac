"""backend x head: our models against HF transformers 4.57.6's PyTorch classes.

The same perturbed random weights (HF's state dict, as numpy) go into each backend through
its adapter; every output field (logits, hidden states, attentions, loss) must agree within
1e-5 on a padded batch.
"""

from __future__ import annotations

import pytest

from tests.backends import BACKENDS, get_adapter
from tests.reference import (
    ATOL,
    assert_trees_close,
    canonical_state_dict,
    head_config,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEAD_NAMES

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_hf_torch(backend, head, transformers):
    adapter = get_adapter(backend)
    pytest.importorskip("torch", reason="the HF reference runs on PyTorch")
    config = head_config(head)
    reference = hf_torch_model(head, config)
    state_dict = canonical_state_dict(reference, config, head)
    inputs = make_inputs(config, head, labels=head != "base")
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    expected = hf_torch_forward(reference, inputs, **kwargs)
    model = adapter.load(adapter.build(head, config), state_dict)
    actual = adapter.forward(model, inputs, **kwargs)
    expected.pop("past_key_values", None)
    actual.pop("past_key_values", None)
    assert set(actual) == set(expected), f"output fields {sorted(actual)} != HF's {sorted(expected)}"
    assert_trees_close(actual, expected, atol=ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_with_cross_attention_matches_hf(backend, transformers):
    """Decoder mode: causal mask plus cross-attention over encoder states."""
    import numpy as np

    adapter = get_adapter(backend)
    pytest.importorskip("torch")
    config = tiny_config(is_decoder=True, add_cross_attention=True)
    reference = hf_torch_model("causal_lm", config)
    state_dict = canonical_state_dict(reference, config, "causal_lm")
    inputs = make_inputs(config, "causal_lm")
    rng = np.random.default_rng(3)
    inputs["encoder_hidden_states"] = rng.standard_normal((2, 5, config.hidden_size)).astype(np.float32)
    enc_mask = np.ones((2, 5), dtype=np.int64)
    enc_mask[0, -1] = 0
    inputs["encoder_attention_mask"] = enc_mask
    kwargs = dict(output_hidden_states=True, output_attentions=True, use_cache=False)
    expected = hf_torch_forward(reference, inputs, **kwargs)
    model = adapter.load(adapter.build("causal_lm", config), state_dict)
    actual = adapter.forward(model, inputs, **kwargs)
    expected.pop("past_key_values", None)
    actual.pop("past_key_values", None)
    assert set(actual) == set(expected)
    assert_trees_close(actual, expected, atol=ATOL)
