"""xlmr_torch training behaviour: gradients, dropout, checkpointing, half precision, compile, resizing.

Numerical expectations come from HF transformers 4.57.6 (same weights, same inputs).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import xlmr_torch  # noqa: E402
from tests.backends import torch_adapter as A  # noqa: E402
from tests.reference import (  # noqa: E402
    assert_trees_close,
    head_config,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEAD_NAMES  # noqa: E402
from xlmr_torch.training import train_step  # noqa: E402

pytestmark = pytest.mark.hf


def _scalar_objective(out) -> torch.Tensor:
    if "loss" in out:
        return out.loss
    return (out.last_hidden_state**2).mean() + out.pooler_output.sum()


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_gradients_reach_every_parameter(head):
    config = head_config(head)
    model = A.from_hf(hf_torch_model(head, config), head, config)
    feed = A.to_torch(make_inputs(config, head, labels=head != "base"))
    _scalar_objective(model(**feed)).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_gradients_reach_cross_attention_and_relative_tables():
    config = tiny_config(is_decoder=True, add_cross_attention=True, position_embedding_type="relative_key")
    model = A.from_hf(hf_torch_model("causal_lm", config), "causal_lm", config)
    feed = A.to_torch(make_inputs(config, "causal_lm"))
    feed["encoder_hidden_states"] = torch.randn(2, 4, config.hidden_size)
    model(**feed).loss.backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    # With relative positions the absolute table exists (HF keeps it, checkpoints hold it) but is unused.
    assert dead == ["roberta.embeddings.position_embeddings.weight"], dead


def test_loss_gradients_match_hf():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf_model = hf_torch_model("masked_lm", config)
    model = A.from_hf(hf_model, "masked_lm", config)
    feed = A.to_torch(make_inputs(config, "masked_lm"))
    model(**feed).loss.backward()
    hf_model(**feed).loss.backward()
    ours = {k: p.grad.numpy() for k, p in model.named_parameters()}
    theirs = {k: p.grad.numpy() for k, p in hf_model.named_parameters() if k in ours}
    assert set(theirs) == set(ours)
    assert_trees_close(ours, theirs, atol=1e-5)


def test_dropout_in_train_mode_only():
    config = tiny_config()
    model = A.from_hf(hf_torch_model("sequence_classification", config), "sequence_classification", config)
    feed = A.to_torch(make_inputs(config, "sequence_classification", labels=False))
    with torch.no_grad():
        model.eval()
        a, b = model(**feed).logits, model(**feed).logits
        model.train()
        c, d = model(**feed).logits, model(**feed).logits
    assert torch.equal(a, b)
    assert not torch.allclose(c, d) and not torch.allclose(a, c)


def _grads_and_saved_bytes(model, feed, checkpointing: bool):
    model.zero_grad(set_to_none=True)
    if checkpointing:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**feed).loss
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}, sum(saved)


def test_gradient_checkpointing_same_grads_less_memory():
    config = tiny_config(num_hidden_layers=4)
    model = A.from_hf(hf_torch_model("masked_lm", config), "masked_lm", config).train()
    feed = A.to_torch(make_inputs(config, "masked_lm", seq=16))
    plain, plain_bytes = _grads_and_saved_bytes(model, feed, checkpointing=False)
    ckpt, ckpt_bytes = _grads_and_saved_bytes(model, feed, checkpointing=True)
    assert model.is_gradient_checkpointing
    for key in plain:
        torch.testing.assert_close(ckpt[key], plain[key], atol=1e-6, rtol=1e-5, msg=key)
    assert ckpt_bytes < 0.6 * plain_bytes, (ckpt_bytes, plain_bytes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("position_embedding_type", ["absolute", "relative_key"])
def test_half_precision_fully_padded_row_no_nan(dtype, position_embedding_type):
    config = tiny_config(is_decoder=True, position_embedding_type=position_embedding_type)
    hf_model = hf_torch_model("causal_lm", config)
    model = A.from_hf(hf_model, "causal_lm", config).to(dtype)
    inputs = make_inputs(config, "causal_lm", batch=3)
    inputs["attention_mask"][2] = 0
    feed = A.to_torch(inputs)
    expected = hf_torch_forward(hf_model, {k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
    for output_attentions in (False, True):  # SDPA and eager
        with torch.no_grad():
            out = model(**feed, output_attentions=output_attentions, use_cache=False)
        assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
        if output_attentions:
            assert all(torch.isfinite(a).all() for a in out.attentions)
        # The unpadded row stays close to HF's float32 answer.
        np.testing.assert_allclose(out.logits[0].float().numpy(), expected["logits"][0], atol=0.1)


@pytest.mark.slow
def test_compile_matches_hf():
    """torch.compile of a tiny model gives HF's eager outputs.

    Marked slow: compiling took about 70 s on the 2-core development machine.
    """
    config = tiny_config()
    hf_model = hf_torch_model("masked_lm", config)
    model = A.from_hf(hf_model, "masked_lm", config)
    inputs = make_inputs(config, "masked_lm")
    compiled = torch.compile(model)
    start = time.perf_counter()
    actual = A.forward(compiled, inputs)
    elapsed = time.perf_counter() - start
    assert_trees_close(actual, hf_torch_forward(hf_model, inputs))
    assert elapsed < 300, f"compile took {elapsed:.0f} s"


def test_resize_token_embeddings_matches_hf():
    config = tiny_config()
    hf_model = hf_torch_model("masked_lm", config)
    model = A.from_hf(hf_model, "masked_lm", config)
    inputs = make_inputs(config, "masked_lm", labels=False)  # ids < 99 (resizing updates config)
    old = model.get_input_embeddings().weight.detach().clone()
    new_embeddings = model.resize_token_embeddings(120)
    hf_model.resize_token_embeddings(120, mean_resizing=False)
    assert model.config.vocab_size == 120 and new_embeddings.num_embeddings == 120
    assert torch.equal(model.get_input_embeddings().weight[:99], old)
    assert model.lm_head.decoder.weight is model.get_input_embeddings().weight
    assert model.lm_head.decoder.bias is model.lm_head.bias and model.lm_head.bias.shape == (120,)
    expected = hf_torch_forward(hf_model, inputs)["logits"]
    actual = A.forward(model, inputs)["logits"]
    assert actual.shape == expected.shape == (2, 7, 120)
    assert_trees_close(actual[..., :99], expected[..., :99])
    with torch.no_grad():
        model(torch.tensor([[0, 119, 2]]))  # the new id is usable
    model.resize_token_embeddings(50)
    assert model.lm_head.decoder.weight.shape == (50, config.hidden_size) and model.config.vocab_size == 50
    assert model.resize_token_embeddings(61, pad_to_multiple_of=8).num_embeddings == 64


def test_resize_untied_decoder_keeps_rows():
    config = tiny_config(tie_word_embeddings=False)
    model = xlmr_torch.XLMRobertaForMaskedLM(config)
    old = model.lm_head.decoder.weight.detach().clone()
    model.resize_token_embeddings(110)
    assert model.lm_head.decoder.weight is not model.get_input_embeddings().weight
    assert torch.equal(model.lm_head.decoder.weight[:99], old)


def test_train_step_matches_hf_loss_and_updates():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf_model = hf_torch_model("token_classification", config)
    model = A.from_hf(hf_model, "token_classification", config)
    inputs = make_inputs(config, "token_classification")
    expected = hf_torch_forward(hf_model, inputs)["loss"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    feed = A.to_torch(inputs)
    before = model.classifier.weight.detach().clone()
    losses = [train_step(model, feed, optimizer) for _ in range(5)]
    assert abs(losses[0] - float(expected)) < 1e-5
    assert losses[-1] < losses[0]
    assert not torch.equal(before, model.classifier.weight)
    with pytest.raises(ValueError, match="no loss"):
        train_step(model, {"input_ids": feed["input_ids"]}, optimizer)


# -- packed rows (segment_ids) through train_step ---------------------------------------------------
PACKED_LENGTHS = ([5, 3, 6], [13])  # two rows of 15: three sequences then padding; one sequence
PACKED_ROW = 15


def _packed_and_padded(config, head: str, seed: int = 0) -> tuple[dict, dict]:
    """The same sequences and labels as a packed batch and as a padded batch (numpy)."""
    rng = np.random.default_rng(seed)
    lengths = [n for row in PACKED_LENGTHS for n in row]
    sequences = []
    for n in lengths:
        ids = rng.integers(3, config.vocab_size, size=n)
        ids[0], ids[-1] = config.bos_token_id, config.eos_token_id
        sequences.append(ids)
    padded_ids = np.full((len(lengths), max(lengths)), config.pad_token_id, np.int64)
    packed_ids = np.full((len(PACKED_LENGTHS), PACKED_ROW), config.pad_token_id, np.int64)
    segment_ids = np.zeros_like(packed_ids)
    if head == "sequence_classification":
        labels = rng.integers(0, config.num_labels, size=len(lengths))
        padded_labels, packed_labels = labels, np.full_like(packed_ids, -100)
    else:
        padded_labels = np.full_like(padded_ids, -100)
        packed_labels = np.full_like(packed_ids, -100)
    i = 0
    for r, row in enumerate(PACKED_LENGTHS):
        pos = 0
        for k, n in enumerate(row, start=1):
            padded_ids[i, :n] = sequences[i]
            packed_ids[r, pos : pos + n] = sequences[i]
            segment_ids[r, pos : pos + n] = k
            if head == "sequence_classification":
                packed_labels[r, k - 1] = labels[i]
            else:
                token_labels = rng.integers(0, config.num_labels, size=n)
                token_labels[0] = -100
                padded_labels[i, :n] = token_labels
                packed_labels[r, pos : pos + n] = token_labels
            pos += n
            i += 1
    padded = {"input_ids": padded_ids, "attention_mask": (padded_ids != config.pad_token_id).astype(np.int64)}
    packed = {"input_ids": packed_ids, "segment_ids": segment_ids}
    return dict(packed, labels=packed_labels), dict(padded, labels=padded_labels)


@pytest.mark.parametrize("head", ["sequence_classification", "token_classification"])
def test_train_step_on_packed_batch_equals_padded(head):
    """One optimizer step on the packed batch: same loss and same updated weights as on the padded batch."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = A.from_hf(hf_torch_model(head, config), head, config)
    twin = A.from_hf(hf_torch_model(head, config), head, config)
    packed, padded = _packed_and_padded(config, head)
    losses = []
    for m, batch in ((model, packed), (twin, padded)):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        losses.append(train_step(m, A.to_torch(batch), optimizer, max_grad_norm=1.0))
    assert abs(losses[0] - losses[1]) <= 1e-5, losses
    after = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, after[name], atol=1e-5, rtol=0, msg=name)


def test_packed_sequence_classification_labels_are_checked():
    config = tiny_config(num_labels=3)
    model = xlmr_torch.XLMRobertaForSequenceClassification(config).eval()
    packed, _ = _packed_and_padded(config, "sequence_classification")
    feed = A.to_torch(packed)
    with torch.no_grad():
        assert torch.isfinite(model(**feed).loss)
        with pytest.raises(
            ValueError, match=r"one label per sequence slot, shape \(batch, seq\) = \(2, 15\)"
        ):
            model(**dict(feed, labels=feed["labels"][:, :4]))
        stray = feed["labels"].clone()
        stray[1, 5] = 1  # row 1 packs one sequence: slot 5 is empty
        with pytest.raises(ValueError, match="past its row's last packed sequence"):
            model(**dict(feed, labels=stray))
    # Float labels would be multi-label, num_labels=1 regression: neither has slots.
    for labels_config, labels, kind in (
        (tiny_config(num_labels=3), feed["labels"].float(), "multi_label_classification"),
        (tiny_config(num_labels=1), feed["labels"], "regression"),
    ):
        fresh = xlmr_torch.XLMRobertaForSequenceClassification(labels_config).eval()
        with torch.no_grad(), pytest.raises(ValueError, match=f"single-label classification only.*{kind}"):
            fresh(**dict(feed, labels=labels))


def test_span_loss_refuses_packed_rows():
    config = tiny_config(num_labels=2)
    qa = xlmr_torch.XLMRobertaForQuestionAnswering(config).eval()
    packed, _ = _packed_and_padded(config, "token_classification")
    feed = {k: torch.from_numpy(v) for k, v in packed.items() if k != "labels"}
    with torch.no_grad():
        assert qa(**feed).start_logits.shape == (2, PACKED_ROW)  # inference on packed rows is fine
        with pytest.raises(ValueError, match="question_answering loss does not take packed rows"):
            qa(**feed, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3]))


def test_train_step_on_compiled_model_refuses_bad_labels():
    """A torch.compile module in train_step: out-of-range labels raise, and no weight moves.

    The aot_eager backend traces the same graph (assert included) without inductor's code
    generation, which takes most of a minute for a training graph on a small CPU; inductor itself
    is covered by tests/test_torch_errors.py.
    """
    config = tiny_config()
    model = xlmr_torch.XLMRobertaForTokenClassification(config)
    compiled = torch.compile(model, dynamic=False, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.classifier.weight.detach().clone()
    labels = torch.zeros(2, 6, dtype=torch.long)
    labels[1, 4] = config.num_labels
    batch = {"input_ids": torch.full((2, 6), 5), "labels": labels}
    with pytest.raises(RuntimeError, match=r"labels holds a value outside \[0, num_labels=3\)"):
        train_step(compiled, batch, optimizer)
    assert torch.equal(model.classifier.weight, before)
