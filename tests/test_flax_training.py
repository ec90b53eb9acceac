"""Flax backend: losses and gradients against HF PyTorch, the optax train step, data parallelism."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

from tests.backends.flax_adapter import flax_class, ours  # noqa: E402
from tests.reference import ATOL, make_inputs, tiny_config  # noqa: E402
from xlmr import HEADS  # noqa: E402
from xlmr.weights import flatten_tree  # noqa: E402
from xlmr_flax.losses import compute_loss, loss_fn  # noqa: E402
from xlmr_flax.training import (  # noqa: E402
    create_optimizer,
    make_data_parallel_train_step,
    make_mesh,
    make_train_step,
    replicate,
    shard_batch,
)

LOSS_HEADS = [h for h in HEADS if HEADS[h].loss is not None]


def _torch_loss_and_grads(pt_model, batch):
    import torch

    pt_model.zero_grad()
    feed = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    loss = pt_model(**feed, return_dict=True).loss
    loss.backward()
    grads = {
        name: p.grad.detach().numpy().copy() for name, p in pt_model.named_parameters() if p.grad is not None
    }
    pt_model.zero_grad()
    return float(loss.detach()), grads


@pytest.mark.hf
@pytest.mark.parametrize("head", LOSS_HEADS)
def test_loss_and_gradients_match_hf_torch(head):
    """jax.value_and_grad of our head loss == HF PyTorch's loss.backward(), same weights and batch."""
    pytest.importorskip("torch")
    model, config, pt_model, _ = ours(head)
    batch = make_inputs(config, head)
    expected_loss, expected = _torch_loss_and_grads(pt_model, batch)

    # Eager value_and_grad: the primitive ops compile once for all heads (a jit per head costs more here).
    loss, grads = jax.value_and_grad(lambda p: compute_loss(model, batch, params=p)[0])(model.params)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5, atol=ATOL)
    actual = model.canonical_state_dict(grads)
    assert set(actual) == set(expected)
    # Some gradients are exactly zero in exact arithmetic (softmax ignores a shift of the key bias, of
    # the bias shared by all choices, of all span logits): float noise in both frameworks. Those must
    # stay at noise level; every other gradient must agree to 1e-4 of its own scale.
    noise = 1e-6 * max(float(np.abs(v).max()) for v in expected.values())
    for key, value in expected.items():
        if float(np.abs(value).max()) <= noise:
            assert float(np.abs(actual[key]).max()) <= noise, key
            continue
        err = float(np.abs(actual[key] - value).max()) / float(np.abs(value).max())
        assert err <= 1e-4, f"{key}: relative error {err:.2e}"


@pytest.mark.hf
@pytest.mark.parametrize(
    "problem, labels",
    [
        ("regression", np.array([0.5, -1.25], np.float32)),
        ("multi_label_classification", np.array([[1, 0, 1], [0, 0, 1]], np.float32)),
        ("single_label_classification", np.array([2, -100])),
    ],
)
def test_sequence_classification_problem_types_match_hf_torch(problem, labels):
    pytest.importorskip("torch")
    from tests.reference import hf_torch_forward

    num_labels = 1 if problem == "regression" else 3
    model, config, pt_model, _ = ours("sequence_classification", num_labels=num_labels)
    pt_model.config.problem_type = None  # HF PyTorch stores the problem type it inferred last time
    batch = {**make_inputs(config, "sequence_classification", labels=False), "labels": labels}
    expected = hf_torch_forward(pt_model, batch)["loss"]
    # problem_type None: inferred from num_labels and the label dtype, as HF does.
    assert config.problem_type is None
    loss, _ = compute_loss(model, batch)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5, atol=ATOL)


def test_loss_edge_cases():
    config = tiny_config(num_labels=4)  # the logits' four classes
    logits = np.zeros((1, 3, 4), np.float32)
    all_ignored = {"labels": np.full((1, 3), -100)}
    assert float(loss_fn("masked_lm", {"logits": logits}, all_ignored, config)) == 0.0
    with pytest.raises(ValueError, match=r"labels contain 7, outside \[0, 4\)"):
        loss_fn("token_classification", {"logits": logits}, {"labels": np.array([[1, 7, -100]])}, config)
    with pytest.raises(ValueError, match="start_positions and end_positions"):
        loss_fn(
            "question_answering", {"start_logits": logits[..., 0], "end_logits": logits[..., 0]}, {}, config
        )
    with pytest.raises(ValueError, match="has no loss"):
        loss_fn("base", {}, {}, config)
    # Causal LM shifts: only labels[:, 1:] count, uniform logits give log(vocab).
    shifted = {"labels": np.array([[3, -100, 1]])}
    np.testing.assert_allclose(
        float(loss_fn("causal_lm", {"logits": logits}, shifted, config)), np.log(4), rtol=1e-6
    )


# -- training ---------------------------------------------------------------------------------------
def _toy_task(config, n=16, seq=6, seed=0):
    """Sequence classification: label 1 iff token 7 occurs in the sequence (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(8, config.vocab_size, size=(n, seq))
    labels = rng.integers(0, 2, size=n)
    ids[labels == 1, rng.integers(1, seq, size=int(labels.sum()))] = 7
    ids[:, 0] = config.bos_token_id
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}


@pytest.fixture(scope="module")
def toy():
    """A one-layer classifier, its task, an optimizer and its jitted train step (compiled once)."""
    config = tiny_config(num_labels=2, num_hidden_layers=1)
    model = flax_class("sequence_classification")(config, seed=0)
    optimizer = create_optimizer(3e-3, weight_decay=0.01)
    return model, optimizer, make_train_step(model, optimizer), _toy_task(config)


def test_jitted_train_step_drives_loss_down(toy):
    model, optimizer, step, batch = toy
    params, opt_state = model.params, optimizer.init(model.params)
    rng = jax.random.PRNGKey(0)
    losses = []
    for i in range(25):
        params, opt_state, loss = step(params, opt_state, batch, jax.random.fold_in(rng, i))
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
    assert step._cache_size() == 1
    # The trained params still fit the model and classify the training batch.
    model_logits = model(batch["input_ids"], params=params).logits
    assert (np.asarray(model_logits).argmax(-1) == batch["labels"]).mean() >= 0.9


def test_data_parallel_step_equals_single_device(toy):
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices (tests/conftest.py sets --xla_force_host_platform_device_count=2)")
    model, optimizer, single, batch = toy
    opt_state = optimizer.init(model.params)
    rng = jax.random.PRNGKey(1)  # dropout on: the sharded step must draw the same masks
    p1, s1, loss1 = single(model.params, opt_state, batch, rng)

    mesh = make_mesh(jax.devices()[:2])
    step = make_data_parallel_train_step(model, optimizer, mesh)
    params, state = replicate((model.params, opt_state), mesh)
    sharded = shard_batch(batch, mesh)
    assert len(sharded["input_ids"].sharding.device_set) == 2
    assert sharded["input_ids"].addressable_shards[0].data.shape == (8, 6)
    p2, s2, loss2 = step(params, state, sharded, rng)
    np.testing.assert_allclose(float(loss2), float(loss1), rtol=1e-6)
    for path, value in flatten_tree(p1).items():
        np.testing.assert_allclose(
            np.asarray(flatten_tree(p2)[path]), np.asarray(value), atol=1e-6, err_msg="/".join(path)
        )
    assert p2["classifier"]["out_proj"]["kernel"].sharding.is_fully_replicated
    with pytest.raises(ValueError, match="batch size 3, which 2 devices cannot split"):
        shard_batch({"input_ids": np.zeros((3, 4), "i4")}, mesh)


def test_dropout_follows_the_rng(toy):
    model, _, _, batch = toy
    a = compute_loss(model, batch, dropout_rng=jax.random.PRNGKey(0), train=True)[0]
    b = compute_loss(model, batch, dropout_rng=jax.random.PRNGKey(0), train=True)[0]
    c = compute_loss(model, batch, dropout_rng=jax.random.PRNGKey(1), train=True)[0]
    d = compute_loss(model, batch)[0]
    assert float(a) == float(b) and float(a) != float(c) and float(a) != float(d)
    assert jnp.isfinite(d)


# -- packed batches through the train step ----------------------------------------------------------
def _packed_and_padded(config, head: str, seed: int = 0):
    """The same four sequences as one padded batch and as two packed rows, with their labels."""
    rng = np.random.default_rng(seed)
    lengths = ([5, 3, 6], [9])
    seqs = [rng.integers(3, config.vocab_size, size=n) for row in lengths for n in row]
    for s in seqs:
        s[0], s[-1] = config.bos_token_id, config.eos_token_id
    longest, row = max(len(s) for s in seqs), 15
    padded = {"input_ids": np.full((len(seqs), longest), config.pad_token_id), "attention_mask": None}
    padded["attention_mask"] = np.zeros_like(padded["input_ids"])
    packed = {"input_ids": np.full((2, row), config.pad_token_id), "segment_ids": np.zeros((2, row), int)}
    if head == "sequence_classification":
        labels = rng.integers(0, config.num_labels, size=len(seqs))
        padded["labels"], packed["labels"] = labels, np.full((2, row), -100)
    else:
        padded["labels"], packed["labels"] = np.full((len(seqs), longest), -100), np.full((2, row), -100)
    it = iter(range(len(seqs)))
    for r, row_lengths in enumerate(lengths):
        pos = 0
        for k, n in enumerate(row_lengths, start=1):
            i = next(it)
            padded["input_ids"][i, :n], padded["attention_mask"][i, :n] = seqs[i], 1
            packed["input_ids"][r, pos : pos + n], packed["segment_ids"][r, pos : pos + n] = seqs[i], k
            if head == "sequence_classification":
                packed["labels"][r, k - 1] = padded["labels"][i]
            else:
                token_labels = rng.integers(0, config.num_labels, size=n)
                padded["labels"][i, :n] = packed["labels"][r, pos : pos + n] = token_labels
            pos += n
    return packed, padded


@pytest.mark.parametrize("head", ["sequence_classification", "token_classification"])
def test_packed_train_step_equals_padded(head):
    """make_train_step on packed rows: the same loss and the same update as on the padded batch."""
    config = tiny_config(num_hidden_layers=1)
    model = flax_class(head)(config, seed=1)
    optimizer = optax.sgd(1.0)  # the update is minus the gradient
    step = make_train_step(model, optimizer)
    packed, padded = _packed_and_padded(config, head)
    results = [step(model.params, optimizer.init(model.params), b, None) for b in (padded, packed)]
    (p_pad, _, loss_pad), (p_packed, _, loss_packed) = results
    np.testing.assert_allclose(float(loss_packed), float(loss_pad), atol=ATOL, rtol=0)
    for path, value in flatten_tree(p_pad).items():
        np.testing.assert_allclose(
            np.asarray(flatten_tree(p_packed)[path]),
            np.asarray(value),
            atol=ATOL,
            rtol=0,
            err_msg="/".join(path),
        )


def test_packed_sequence_classification_takes_single_label_slots_only():
    config = tiny_config(num_labels=1)
    model = flax_class("sequence_classification")(config)
    packed, _ = _packed_and_padded(tiny_config(), "sequence_classification")
    with pytest.raises(ValueError, match="single-label classification only.*this call is regression"):
        compute_loss(model, {**packed, "labels": np.zeros((2, 15), np.float32)})
    model = flax_class("sequence_classification")(tiny_config())
    with pytest.raises(ValueError, match=r"labels has shape \(4,\); with segment_ids .* expects .*\(2, 15\)"):
        compute_loss(model, {**packed, "labels": np.array([0, 1, 2, 0])})


# -- compiled paths: out-of-range values are never silent ------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"labels": np.array([7] + [0] * 15)},
            "labels contain 7, outside [0, 2) (use -100 to ignore a position)",
        ),
        (
            {"input_ids": ("set", 150)},
            "input_ids holds token id 150, outside [0, vocab_size=99) (largest 150, smallest 0)",
        ),
        (
            {"input_ids": ("set", -4)},
            "input_ids holds token id -4, outside [0, vocab_size=99) (largest ",
        ),
        ({"token_type_ids": np.full((16, 6), 3)}, "token_type_ids holds 3, outside [0, type_vocab_size=2)"),
    ],
    ids=["label", "id-too-large", "id-negative", "token-type"],
)
def test_train_step_checks_values_with_checkify(toy, change, message):
    """Checked: the compiled step raises the eager checker's text; the caller's params are untouched."""
    model, optimizer, step, batch = toy
    batch = dict(batch)
    for name, value in change.items():
        if isinstance(value, tuple):
            value = batch[name].copy()
            value[3, 2] = change[name][1]
        batch[name] = value
    with pytest.raises(ValueError) as eager:  # what the eager checker says
        compute_loss(model, batch)
    assert str(eager.value).startswith(message)
    params, opt_state = model.params, optimizer.init(model.params)
    with pytest.raises(ValueError) as err:
        step(params, opt_state, batch, jax.random.PRNGKey(0))
    assert str(err.value).startswith(str(eager.value)), (str(err.value), str(eager.value))
    # Poisoned instead when the checks are off: the loss is NaN, never a finite number.
    unchecked = make_train_step(model, optimizer, check=False)
    assert np.isnan(float(unchecked(params, opt_state, batch, None)[2]))


def test_train_step_checks_packed_sequence_lengths(toy):
    model, optimizer, step, _ = toy
    limit = model.config.max_sequence_length
    batch = {
        "input_ids": np.full((2, limit + 1), 9),
        "segment_ids": np.stack([np.r_[np.ones(3, int), np.full(limit - 2, 2)], np.ones(limit + 1, int)]),
        "labels": np.full((2, limit + 1), -100),
    }
    message = f"segment_ids row 1 packs sequence 1 of {limit + 1} tokens, longer than "
    with pytest.raises(ValueError, match=message):
        step(model.params, optimizer.init(model.params), batch, None)
    with pytest.raises(ValueError, match=message):
        model(batch["input_ids"], segment_ids=batch["segment_ids"])


def test_jitted_loss_is_nan_on_out_of_range_labels():
    """Poisoned: your own jax.jit of loss_fn cannot raise, so the loss is NaN."""
    config = tiny_config()
    logits = np.zeros((1, 3, 3), np.float32)
    run = jax.jit(lambda lab: loss_fn("token_classification", {"logits": logits}, {"labels": lab}, config))
    assert np.isnan(float(run(np.array([[1, 3, -100]]))))
    assert np.isnan(float(run(np.array([[1, -2, -100]]))))
    np.testing.assert_allclose(float(run(np.array([[1, 2, -100]]))), np.log(3), rtol=1e-6)
