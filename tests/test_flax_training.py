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
    config = tiny_config()
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
