"""Packed rows (``segment_ids``) in every backend: each output equals running each sequence alone.

The reference is HF transformers 4.57.6's PyTorch class running every sequence on its own,
unpadded. Packed layout (documented in README "Padding-free execution"):

- per-token outputs (``last_hidden_state``, masked-LM / token-classification logits, QA start/end
  logits, ``hidden_states``) keep the packed (batch, seq, ...) layout;
- per-sequence outputs (``pooler_output``, sequence-classification logits) are (batch, seq, ...)
  *slots*: slot ``[b, k - 1]`` holds sequence ``k`` of row ``b``; slots past a row's last sequence
  are zero;
- ``attentions`` are block-diagonal (batch, heads, seq, seq).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends import BACKENDS, get_adapter
from tests.reference import ATOL, canonical_state_dict, head_config, hf_torch_forward, hf_torch_model

pytestmark = pytest.mark.hf

PACKABLE = ("base", "masked_lm", "sequence_classification", "token_classification", "question_answering")
PER_TOKEN = ("last_hidden_state", "logits", "start_logits", "end_logits")
PER_SEQUENCE = {"base": ("pooler_output",), "sequence_classification": ("logits",)}

# Two rows: three sequences then padding; one sequence filling the row but for one pad.
LENGTHS = ([5, 3, 6], [13])
ROW = 15


def _sequences(config, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for lengths in LENGTHS:
        for n in lengths:
            ids = rng.integers(3, config.vocab_size, size=n)
            ids[0], ids[-1] = config.bos_token_id, config.eos_token_id
            out.append(ids.astype(np.int64))
    return out


def _pack(config, sequences: list[np.ndarray]) -> dict[str, np.ndarray]:
    ids = np.full((len(LENGTHS), ROW), config.pad_token_id, np.int64)
    seg = np.zeros((len(LENGTHS), ROW), np.int64)
    it = iter(sequences)
    for r, lengths in enumerate(LENGTHS):
        pos = 0
        for k, n in enumerate(lengths, start=1):
            ids[r, pos : pos + n] = next(it)
            seg[r, pos : pos + n] = k
            pos += n
    return {"input_ids": ids, "segment_ids": seg}


def _alone(reference, sequences, **kwargs) -> list[dict]:
    return [hf_torch_forward(reference, {"input_ids": s[None]}, **kwargs) for s in sequences]


def _check(head: str, packed: dict, alone: list[dict], config) -> None:
    it = iter(alone)
    for r, lengths in enumerate(LENGTHS):
        pos = 0
        for k, n in enumerate(lengths):
            ref = next(it)
            for field in PER_TOKEN:
                if field in ref and not (field == "logits" and head == "sequence_classification"):
                    got = packed[field][r, pos : pos + n]
                    np.testing.assert_allclose(
                        got, ref[field][0], atol=ATOL, rtol=0, err_msg=f"{field} r{r} s{k}"
                    )
            for field in PER_SEQUENCE.get(head, ()):
                np.testing.assert_allclose(
                    packed[field][r, k], ref[field][0], atol=ATOL, rtol=0, err_msg=f"{field} r{r} s{k}"
                )
            for layer, hidden in enumerate(ref.get("hidden_states", ())):
                got = packed["hidden_states"][layer][r, pos : pos + n]
                np.testing.assert_allclose(
                    got, hidden[0], atol=ATOL, rtol=0, err_msg=f"hidden_states[{layer}]"
                )
            for layer, attn in enumerate(ref.get("attentions", ())):
                block = packed["attentions"][layer][r, :, pos : pos + n, pos : pos + n]
                np.testing.assert_allclose(block, attn[0], atol=ATOL, rtol=0, err_msg=f"attentions[{layer}]")
                rest = packed["attentions"][layer][r, :, pos : pos + n].sum(-1) - block.sum(-1)
                np.testing.assert_allclose(rest, 0.0, atol=ATOL, err_msg=f"attentions[{layer}] off-block")
            pos += n
        for field in PER_SEQUENCE.get(head, ()):
            np.testing.assert_array_equal(
                packed[field][r, len(lengths) :], 0.0, err_msg=f"{field} empty slots"
            )


def _setup(head: str):
    config = head_config(head)
    reference = hf_torch_model(head, config)
    return config, reference, canonical_state_dict(reference, config, head)


@pytest.mark.parametrize("head", PACKABLE)
@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_equals_alone(backend, head):
    adapter = get_adapter(backend)
    config, reference, state_dict = _setup(head)
    sequences = _sequences(config)
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    alone = _alone(reference, sequences, **kwargs)
    model = adapter.load(adapter.build(head, config), state_dict)
    packed = adapter.forward(model, _pack(config, sequences), **kwargs)
    _check(head, packed, alone, config)


@pytest.mark.parametrize("head", PACKABLE)
@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_equals_alone_compiled(backend, head):
    """The same under torch.compile, tf.function(jit_compile=True) and jax.jit."""
    adapter = get_adapter(backend)
    config, reference, state_dict = _setup(head)
    sequences = _sequences(config, seed=1)
    alone = _alone(reference, sequences)
    model = adapter.load(adapter.build(head, config), state_dict)
    packed = adapter.forward_compiled(model, _pack(config, sequences))
    _check(head, packed, alone, config)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_token_types_and_explicit_mask(backend):
    """token_type_ids default to zeros per sequence; an explicit attention_mask of the real tokens is the same."""
    adapter = get_adapter(backend)
    config, reference, state_dict = _setup("token_classification")
    sequences = _sequences(config, seed=2)
    inputs = _pack(config, sequences)
    model = adapter.load(adapter.build("token_classification", config), state_dict)
    plain = adapter.forward(model, inputs)
    with_mask = adapter.forward(
        model, dict(inputs, attention_mask=(inputs["segment_ids"] > 0).astype(np.int64))
    )
    with_types = adapter.forward(model, dict(inputs, token_type_ids=np.zeros_like(inputs["input_ids"])))
    np.testing.assert_allclose(with_mask["logits"], plain["logits"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(with_types["logits"], plain["logits"], atol=ATOL, rtol=0)


BAD = [
    ("descending", {"segment_ids": np.array([[1, 1, 2, 2, 1, 0]])}, "each row must number its sequences"),
    ("gap", {"segment_ids": np.array([[1, 1, 3, 3, 0, 0]])}, "each row must number its sequences"),
    ("shape", {"segment_ids": np.array([[1, 1, 2, 2, 0]])}, "segment_ids has shape (1, 5)"),
    ("float", {"segment_ids": np.array([[1.0, 1, 1, 1, 1, 1]])}, "segment_ids must hold integer ids"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_segment_ids(backend, case):
    _, extra, fragment = case
    adapter = get_adapter(backend)
    config = head_config("base")
    model = adapter.build("base", config)
    ids = np.full((1, 6), 5, np.int64)
    with pytest.raises((ValueError, TypeError)) as err:
        adapter.forward(model, dict({"input_ids": ids}, **extra))
    assert fragment in str(err.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_ids_refused_where_they_make_no_sense(backend):
    adapter = get_adapter(backend)
    ids = np.full((1, 6), 5, np.int64)
    seg = np.array([[1, 1, 1, 2, 2, 2]])
    too_long = head_config("base")
    long_ids = np.full((1, too_long.max_sequence_length + 2), 5, np.int64)
    cases = [
        ("causal_lm", head_config("causal_lm"), ids, seg, "does not take packed inputs"),
        ("base", head_config("base", position_embedding_type="relative_key"), ids, seg, "absolute position"),
        (
            "base",
            too_long,
            long_ids,
            np.ones_like(long_ids),
            "longer than max_position_embeddings - padding_idx - 1",
        ),
    ]
    for head, config, input_ids, segment_ids, fragment in cases:
        model = adapter.build(head, config)
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            adapter.forward(model, {"input_ids": input_ids, "segment_ids": segment_ids})


def _padded(config, sequences: list[np.ndarray]) -> dict[str, np.ndarray]:
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), config.pad_token_id, np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("head", ["sequence_classification", "token_classification"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_loss_and_gradients_equal_padded(backend, head):
    """Packed training: loss and every gradient equal the padded batch of the same sequences."""
    adapter = get_adapter(backend)
    config = head_config(head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    reference = hf_torch_model(head, config)
    state_dict = canonical_state_dict(reference, config, head)
    sequences = _sequences(config, seed=3)
    rng = np.random.default_rng(4)
    padded, packed = _padded(config, sequences), _pack(config, sequences)
    if head == "sequence_classification":
        labels = rng.integers(0, config.num_labels, size=len(sequences))
        padded["labels"] = labels
        slots = np.full(packed["input_ids"].shape, -100, np.int64)
        it = iter(labels)
        for r, lengths in enumerate(LENGTHS):
            for k in range(len(lengths)):
                slots[r, k] = next(it)
        packed["labels"] = slots
    else:
        token_labels = [rng.integers(0, config.num_labels, size=len(s)) for s in sequences]
        padded["labels"] = np.full(padded["input_ids"].shape, -100, np.int64)
        for i, lab in enumerate(token_labels):
            padded["labels"][i, : len(lab)] = lab
            padded["labels"][i, 0] = -100
        packed["labels"] = np.full(packed["input_ids"].shape, -100, np.int64)
        it = iter(padded["labels"])
        for r, lengths in enumerate(LENGTHS):
            pos = 0
            for n in lengths:
                packed["labels"][r, pos : pos + n] = next(it)[:n]
                pos += n
    model = adapter.load(adapter.build(head, config), state_dict)
    loss_padded, grads_padded = adapter.loss_and_grads(model, padded)
    loss_packed, grads_packed = adapter.loss_and_grads(model, packed)
    assert abs(loss_packed - loss_padded) <= ATOL, (loss_packed, loss_padded)
    assert set(grads_packed) == set(grads_padded)
    for name, g in grads_padded.items():
        np.testing.assert_allclose(grads_packed[name], g, atol=ATOL, rtol=0, err_msg=name)
