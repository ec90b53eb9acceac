"""LoRA adapters in PEFT's format, across frameworks: PEFT on HF transformers 4.57.6's PyTorch classes
is the reference for every number here.

- adapters PEFT trains on HF's classes load into the TF and Flax classes, unmerged and merged, with
  PEFT's logits; merged models save full checkpoints equal to PEFT's ``merge_and_unload``;
- adapters trained by Keras ``fit`` (both compile styles) and by the Flax train step load with PEFT
  (and with HF's own ``load_adapter``) onto HF's class with the trainer's logits; the base weights
  come out bit-identical, the optimizer holds state for the adapter alone, and the loss falls;
- which layers a config targets is PEFT's own answer (``inject_adapter_in_model`` on HF's class);
- xlmr_torch with PEFT: logits, saved adapters and ``merge_and_unload`` + ``save_pretrained``;
- bad input is refused, naming the field, key or module.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.backends import get_adapter
from tests.reference import (
    ATOL,
    canonical_state_dict,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEADS
from xlmr import adapters as A
from xlmr import weights as W

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.hf

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TRAINED_HEADS = ("sequence_classification", "token_classification")
TASK = {"sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS"}
TARGETS = ["query", "key", "value", "dense"]


# -- references: adapters trained with PEFT on HF's classes ------------------------------------------
def _peft_config(head: str, **overrides):
    kw = dict(
        task_type=TASK[head],
        r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        target_modules=TARGETS,
        modules_to_save=["classifier"],
    )
    kw.update(overrides)
    return peft.LoraConfig(**kw)


def peft_trained(head: str, config, peft_config, steps: int = 3, seed: int = 0):
    """``(peft model (eval), base canonical state dict)``: ``steps`` AdamW steps of PEFT on HF's class."""
    hf = hf_torch_model(head, config, seed=seed)
    base = canonical_state_dict(hf, config, head)
    model = peft.get_peft_model(hf, peft_config)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    feed = {k: torch.from_numpy(v) for k, v in make_inputs(config, head, batch=4, seed=seed + 1).items()}
    model.train()
    for _ in range(steps):
        model(**feed).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), base


def _inputs(config, head: str) -> dict[str, np.ndarray]:
    return make_inputs(config, head, seed=7, labels=False)


@pytest.fixture(scope="module", params=TRAINED_HEADS)
def peft_adapter(request, tmp_path_factory):
    """A PEFT adapter (query/key/value/dense, classifier saved) trained on HF's class, saved."""
    head = request.param
    config = tiny_config()
    model, base = peft_trained(head, config, _peft_config(head))
    directory = tmp_path_factory.mktemp(f"peft-{head}")
    model.save_pretrained(directory)
    x = _inputs(config, head)
    logits = hf_torch_forward(model, x)["logits"]
    with model.disable_adapter():
        base_logits = hf_torch_forward(model, x)["logits"]
    # The adapter must change the outputs, or the comparisons below could not fail.
    assert np.abs(logits - base_logits).max() > 0.05
    merged = {k: v.detach().numpy().copy() for k, v in model.merge_and_unload().state_dict().items()}
    return dict(head=head, config=config, dir=directory, base=base, x=x, logits=logits, merged=merged)


def _build(backend: str, head: str, config, state_dict):
    adapter = get_adapter(backend)
    return adapter.load(adapter.build(head, config), state_dict)


def _logits(backend: str, model, x) -> np.ndarray:
    return get_adapter(backend).forward(model, x)["logits"]


# -- PEFT (HF PyTorch) -> TF / Flax -------------------------------------------------------------------
@pytest.mark.parametrize("merged", [False, True], ids=["unmerged", "merged"])
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_peft_adapter_loads_with_peft_logits(peft_adapter, backend, merged):
    ref = peft_adapter
    model = _build(backend, ref["head"], ref["config"], ref["base"])
    model.load_adapter(str(ref["dir"]))
    assert model.active_adapters() == ["default"]
    if merged:
        model.merge_adapter()
        with pytest.raises(ValueError, match="No adapter loaded"):
            model.active_adapters()
    np.testing.assert_allclose(_logits(backend, model, ref["x"]), ref["logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "tf", "flax"])
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_merged_adapter_saves_peft_merged_checkpoint(peft_adapter, backend, fmt, tmp_path):
    """merge_adapter + save_pretrained writes PEFT's merge_and_unload weights, in each format."""
    import conversion

    ref = peft_adapter
    model = _build(backend, ref["head"], ref["config"], ref["base"])
    model.load_adapter(str(ref["dir"]))
    model.merge_adapter()
    model.save_pretrained(tmp_path / "merged", format=fmt)
    saved = conversion.read_state_dict(tmp_path / "merged")
    assert set(saved) == set(W.expected_shapes(ref["config"], ref["head"]))  # the model's keys, no LoRA
    for key, value in saved.items():
        np.testing.assert_allclose(value, ref["merged"][key], atol=1e-6, rtol=0, err_msg=key)


@pytest.mark.parametrize("fmt", ["tf", "flax"])
def test_merge_into_checkpoint_needs_no_framework(peft_adapter, fmt, tmp_path):
    """conversion.adapters.merge_into_checkpoint: numpy only, PEFT's merge_and_unload weights."""
    import conversion
    from conversion.adapters import merge_into_checkpoint

    ref = peft_adapter
    hf_torch_model(ref["head"], ref["config"]).save_pretrained(tmp_path / "base")  # the adapter's base
    merge_into_checkpoint(tmp_path / "base", ref["dir"], tmp_path / "merged", fmt)
    saved = conversion.read_state_dict(tmp_path / "merged")
    assert set(saved) == set(W.expected_shapes(ref["config"], ref["head"]))
    for key, value in saved.items():
        np.testing.assert_allclose(value, ref["merged"][key], atol=1e-6, rtol=0, err_msg=key)


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_rslora_rank_pattern_and_regex_targets(backend, tmp_path):
    head = "sequence_classification"
    config = tiny_config()
    pc = _peft_config(
        head,
        target_modules=r".*\.(query|value|intermediate\.dense)",
        use_rslora=True,
        rank_pattern={"value": 2},
        alpha_pattern={"intermediate.dense": 3},
    )
    model, base = peft_trained(head, config, pc)
    model.save_pretrained(tmp_path)
    x = _inputs(config, head)
    ours = _build(backend, head, config, base)
    ours.load_adapter(str(tmp_path))
    np.testing.assert_allclose(
        _logits(backend, ours, x), hf_torch_forward(model, x)["logits"], atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_bin_adapter_and_state_dict_sources(backend, tmp_path):
    """adapter_model.bin (read with weights_only) and peft_config + adapter_state_dict load alike."""
    head = "token_classification"
    config = tiny_config()
    model, base = peft_trained(head, config, _peft_config(head))
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").is_file()
    x = _inputs(config, head)
    expected = hf_torch_forward(model, x)["logits"]
    from_bin = _build(backend, head, config, base)
    from_bin.load_adapter(str(tmp_path))
    np.testing.assert_allclose(_logits(backend, from_bin, x), expected, atol=ATOL, rtol=0)
    from_dict = _build(backend, head, config, base)
    state = peft.get_peft_model_state_dict(model)  # torch tensors, PEFT's keys
    from_dict.load_adapter(peft_config=model.peft_config["default"], adapter_state_dict=state)
    np.testing.assert_allclose(_logits(backend, from_dict, x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_switching_disabling_and_deleting_adapters(peft_adapter, backend, tmp_path):
    """HF's PeftAdapterMixin semantics: one active adapter; disabled = the base model exactly."""
    ref = peft_adapter
    head, config = ref["head"], ref["config"]
    other, _ = peft_trained(head, config, _peft_config(head, r=2, target_modules=["value"]), seed=0)
    other.save_pretrained(tmp_path)
    other_logits = hf_torch_forward(other, ref["x"])["logits"]
    model = _build(backend, head, config, ref["base"])
    base_logits = _logits(backend, model, ref["x"])
    model.load_adapter(str(ref["dir"]))
    model.load_adapter(str(tmp_path), adapter_name="other")
    assert model.active_adapters() == ["default"] and set(model.peft_config) == {"default", "other"}
    np.testing.assert_allclose(_logits(backend, model, ref["x"]), ref["logits"], atol=ATOL, rtol=0)
    model.set_adapter("other")
    np.testing.assert_allclose(_logits(backend, model, ref["x"]), other_logits, atol=ATOL, rtol=0)
    model.disable_adapters()
    np.testing.assert_array_equal(_logits(backend, model, ref["x"]), base_logits)
    model.enable_adapters()
    np.testing.assert_allclose(_logits(backend, model, ref["x"]), other_logits, atol=ATOL, rtol=0)
    # The adapter's weights come back as PEFT saved them (canonical keys, PyTorch layouts).
    from safetensors.numpy import load_file

    saved = A.strip_prefix(load_file(str(ref["dir"] / A.WEIGHTS_NAME)))
    got = model.get_adapter_state_dict("default")
    assert set(got) == set(saved)
    for key in saved:
        np.testing.assert_array_equal(got[key], saved[key], err_msg=key)
    with pytest.raises(ValueError, match="Adapter with name nope not found"):
        model.set_adapter("nope")
    with pytest.raises(ValueError, match="already exists"):
        model.load_adapter(str(tmp_path), adapter_name="other")
    model.delete_adapter(["other", "default"])
    np.testing.assert_array_equal(_logits(backend, model, ref["x"]), base_logits)
    with pytest.raises(ValueError, match="No adapter loaded"):
        model.enable_adapters()


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_add_adapter_takes_peft_and_dict_configs_and_starts_as_the_base_model(backend, tmp_path):
    config = tiny_config()
    head = "sequence_classification"
    model = _build(backend, head, config, canonical_state_dict(hf_torch_model(head, config), config, head))
    x = _inputs(config, head)
    base_logits = _logits(backend, model, x)
    model.add_adapter(peft.LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"]))
    model.add_adapter({"peft_type": "LORA", "r": 2, "target_modules": ["key"]}, adapter_name="from_dict")
    assert model.active_adapters() == ["from_dict"]  # add_adapter activates, as HF's
    # B starts at zero. (Flax runs an eager call without an adapter as one compiled program and
    # one with an adapter operation by operation: equal up to float32 rounding.)
    np.testing.assert_allclose(_logits(backend, model, x), base_logits, atol=1e-6, rtol=0)
    model.set_adapter("default")
    np.testing.assert_allclose(_logits(backend, model, x), base_logits, atol=1e-6, rtol=0)
    assert sorted(model.peft_config["default"].target_modules) == ["query", "value"]
    assert {k.rpartition(".lora_")[0] for k in A.lora_keys(model.get_adapter_state_dict("from_dict"))} == {
        f"roberta.encoder.layer.{i}.attention.self.key" for i in range(config.num_hidden_layers)
    }
    with pytest.raises(ValueError, match="an adapter is saved in PEFT's format, safetensors or pytorch"):
        model.save_pretrained(tmp_path / "x", format="tf")


# -- Keras fit / Flax train step -> PEFT (HF PyTorch) -------------------------------------------------
def _task(n: int = 32, seq: int = 8, seed: int = 0):
    """Learnable: the label is the parity of the token after <s>."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 60, size=(n, seq)).astype(np.int32)
    ids[:, 0] = 0
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}, (ids[:, 1] % 2).astype(np.int32)


def _lora_for_training(head: str = "sequence_classification") -> A.LoraConfig:
    return A.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"],
        modules_to_save=["classifier"], task_type=TASK[head],
    )  # fmt: skip


def _peft_loads_it(head: str, config, directory, x, expected: np.ndarray) -> None:
    """PEFT's PeftModel and HF's own load_adapter, on HF's class with the same base weights, give
    ``expected`` logits (within 1e-5)."""
    feed = {k: v.astype(np.int64) for k, v in x.items()}
    with_peft = peft.PeftModel.from_pretrained(hf_torch_model(head, config), str(directory)).eval()
    np.testing.assert_allclose(hf_torch_forward(with_peft, feed)["logits"], expected, atol=ATOL, rtol=0)
    hf = hf_torch_model(head, config)
    hf.load_adapter(str(directory))
    np.testing.assert_allclose(hf_torch_forward(hf.eval(), feed)["logits"], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("style", "jit"), [("own_loss", True), ("keras_loss", False)])
def test_keras_fit_trains_the_adapter_alone_and_peft_loads_it(style, jit, tmp_path):
    keras = pytest.importorskip("keras")
    import xlmr_tf

    head = "sequence_classification"
    config = tiny_config(num_hidden_layers=1, num_labels=2, **NO_DROPOUT)
    base = canonical_state_dict(hf_torch_model(head, config), config, head)
    x, y = _task()
    keras.utils.set_random_seed(0)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(config)
    model.load_canonical_state_dict(base)
    model.add_adapter(_lora_for_training())
    adapter_size = sum(v.size for v in model.get_adapter_state_dict().values())
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == adapter_size
    if style == "own_loss":
        model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit)
        history = model.fit({**x, "labels": y}, batch_size=8, epochs=16, verbose=0)
    else:
        model.compile(
            keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        history = model.fit(x, y, batch_size=8, epochs=16, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.6 * losses[0], losses
    after = model.canonical_state_dict()
    for key, value in base.items():
        if key.startswith("classifier."):  # modules_to_save: trained
            assert not np.array_equal(after[key], value), key
        else:  # frozen: bit-identical
            np.testing.assert_array_equal(after[key], value, err_msg=key)
    # Adam's state: two moments per adapter weight (plus Keras' step counter and learning rate).
    moments = sum(int(np.prod(v.shape)) for v in model.optimizer.variables if len(v.shape))
    assert moments == 2 * adapter_size
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [A.CONFIG_NAME, A.WEIGHTS_NAME]
    ours = np.asarray(model(x, training=False).logits)
    _peft_loads_it(head, config, tmp_path, x, ours)


@pytest.mark.parametrize("head", TRAINED_HEADS)
def test_flax_train_step_trains_the_adapter_alone_and_peft_loads_it(head, tmp_path):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import xlmr_flax
    from xlmr_flax.training import make_train_step

    config = tiny_config(num_hidden_layers=1, num_labels=2, **NO_DROPOUT)
    base = canonical_state_dict(hf_torch_model(head, config), config, head)
    x, y = _task()
    if head == "token_classification":  # every token labelled with the parity of the first word
        y = np.repeat(y[:, None], x["input_ids"].shape[1], axis=1)
    model = getattr(xlmr_flax, HEADS[head].flax_class)(config)
    model.load_canonical_state_dict(base)
    model.add_adapter(_lora_for_training(head))
    params_before = model.canonical_state_dict()
    optimizer = optax.adam(1e-2)
    step = make_train_step(model, optimizer)
    adapter, opt_state = model.adapter_params, optimizer.init(model.adapter_params)
    adapter_size = sum(v.size for v in jax.tree_util.tree_leaves(adapter))
    assert (
        sum(v.size for v in jax.tree_util.tree_leaves(opt_state)) == 2 * adapter_size + 1
    )  # moments + count
    rng, losses = jax.random.PRNGKey(0), []
    for epoch in range(16):
        epoch_losses = []
        for i in range(0, 32, 8):
            batch = {**{k: v[i : i + 8] for k, v in x.items()}, "labels": y[i : i + 8]}
            adapter, opt_state, loss = step(adapter, opt_state, batch, jax.random.fold_in(rng, epoch * 4 + i))
            epoch_losses.append(float(loss))
        losses.append(float(np.mean(epoch_losses)))
    assert np.isfinite(losses).all() and losses[-1] < 0.6 * losses[0], losses
    model.adapter_params = adapter
    after = model.canonical_state_dict()
    for key, value in params_before.items():  # model.params is never updated: the base, bit for bit
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [A.CONFIG_NAME, A.WEIGHTS_NAME]
    ours = np.asarray(model(**x).logits)
    _peft_loads_it(head, config, tmp_path, x, ours)


def test_flax_data_parallel_step_trains_the_adapter():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import xlmr_flax
    from xlmr_flax.training import make_data_parallel_train_step, make_mesh, make_train_step, shard_batch

    if len(jax.devices()) < 2:
        pytest.skip("needs two devices (XLA_FLAGS=--xla_force_host_platform_device_count=2, see conftest)")
    config = tiny_config(num_hidden_layers=1, num_labels=2, **NO_DROPOUT)
    model = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config)
    model.add_adapter(_lora_for_training().copy(lora_dropout=0.0, init_lora_weights=False))
    x, y = _task(8)
    batch = {**x, "labels": y}
    optimizer = optax.sgd(0.1)
    one = make_train_step(model, optimizer)(
        model.adapter_params, optimizer.init(model.adapter_params), batch, None
    )
    mesh = make_mesh(jax.devices()[:2])
    step = make_data_parallel_train_step(model, optimizer, mesh)
    two = step(model.adapter_params, optimizer.init(model.adapter_params), shard_batch(batch, mesh), None)
    np.testing.assert_allclose(float(two[2]), float(one[2]), atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(two[0]), jax.tree_util.tree_leaves(one[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


# -- target matching: PEFT's own answer --------------------------------------------------------------
_MATCH_CASES = [
    (
        "sequence_classification",
        dict(target_modules=TARGETS, modules_to_save=["classifier"], task_type="SEQ_CLS"),
    ),
    ("token_classification", dict(target_modules=TARGETS, modules_to_save=["classifier"])),
    ("masked_lm", dict(target_modules=r".*\.(query|value)")),
    ("base", dict(target_modules=["dense"], exclude_modules=["pooler.dense"])),
    ("base", dict(target_modules=["query"], layers_to_transform=[1])),
    ("base", dict(target_modules=["query"], layers_to_transform=[0], layers_pattern="layer")),
    ("masked_lm", dict(target_modules="all-linear")),
    ("sequence_classification", dict(target_modules="all-linear", task_type="SEQ_CLS")),
    ("token_classification", dict(target_modules="all-linear")),
    ("base", dict(target_modules=["attention.self.query", "layer.1.output.dense"])),
    ("question_answering", dict(target_modules=["key", "qa_outputs"], exclude_modules=r".*layer\.0\..*")),
]


@pytest.mark.parametrize(
    ("head", "kwargs"), _MATCH_CASES, ids=[f"{h}-{i}" for i, (h, _) in enumerate(_MATCH_CASES)]
)
def test_target_modules_match_as_peft_does(head, kwargs):
    config = tiny_config(num_labels=2 if head == "question_answering" else 3)
    pc = peft.LoraConfig(r=2, **kwargs)
    hf = hf_torch_model(head, config)
    peft.inject_adapter_in_model(pc, hf)
    theirs = sorted(n.removesuffix(".lora_A") for n, _ in hf.named_modules() if n.endswith(".lora_A"))
    assert theirs, "PEFT targeted nothing: the case tests nothing"
    ours = A.plan_adapter(A.LoraConfig.coerce(peft.LoraConfig(r=2, **kwargs)), config, head)
    assert sorted(ours.targets) == theirs


@pytest.mark.parametrize(
    ("targets", "peft_refuses", "message"),
    [
        (["qkv"], True, r"target_modules \['qkv'\] match no layer of XLMRobertaModel"),
        (["LayerNorm"], True, r"match 'embeddings.LayerNorm' of XLMRobertaModel, which is a LayerNorm"),
        (["output"], True, r"match 'encoder.layer.0.attention.output' .* a container module"),
        # PEFT has LoRA for embeddings; xlmr does not (refused, not ignored).
        (["word_embeddings"], False, r"'embeddings.word_embeddings' .* an embedding \(LoRA on embeddings"),
    ],
)
def test_targets_that_are_not_dense_layers_are_refused_naming_the_module(targets, peft_refuses, message):
    config = tiny_config()
    if peft_refuses:
        with pytest.raises(ValueError):
            peft.inject_adapter_in_model(
                peft.LoraConfig(r=2, target_modules=targets), hf_torch_model("base", config)
            )
    with pytest.raises(A.AdapterError, match=message):
        A.plan_adapter(A.LoraConfig(target_modules=targets), config, "base")


# -- bad input -----------------------------------------------------------------------------------------
def _copy_adapter(src, dst, **config_changes):
    shutil.copytree(src, dst)
    path = dst / A.CONFIG_NAME
    cfg = json.loads(path.read_text())
    cfg.update(config_changes)
    path.write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_adapter_for_another_head_names_the_key(peft_adapter, backend):
    ref = peft_adapter
    other = "token_classification" if ref["head"] == "sequence_classification" else "sequence_classification"
    config = ref["config"]
    model = get_adapter(backend).build(other, config)
    key = "classifier.dense.weight" if ref["head"] == "sequence_classification" else "classifier.weight"
    with pytest.raises(A.AdapterError, match=rf"unexpected keys .*base_model\.model\.{key}"):
        model.load_adapter(str(ref["dir"]))
    with pytest.raises(ValueError, match="No adapter loaded"):  # nothing half-attached
        model.active_adapters()


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_adapter_for_another_hidden_size_names_key_and_shapes(peft_adapter, backend):
    ref = peft_adapter
    config = tiny_config(hidden_size=48, num_attention_heads=4)
    model = get_adapter(backend).build(ref["head"], config)
    with pytest.raises(
        A.AdapterError,
        match=r"misshapen .*base_model\.model\.\S+\.lora_A\.weight: adapter \(4, 32\) vs model \(4, 48\)",
    ):
        model.load_adapter(str(ref["dir"]))


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_targets_matching_no_layer_are_refused(peft_adapter, backend, tmp_path):
    ref = peft_adapter
    model = get_adapter(backend).build(ref["head"], ref["config"])
    bad = _copy_adapter(ref["dir"], tmp_path / "a", target_modules=["qkv_proj"])
    with pytest.raises(A.AdapterError, match=r"target_modules \['qkv_proj'\] match no layer"):
        model.load_adapter(str(bad))
    with pytest.raises(A.AdapterError, match=r"target_modules \['nope'\] match no layer"):
        model.add_adapter(A.LoraConfig(target_modules=["nope"]))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(use_dora=True), r"unsupported field use_dora=true \(DoRA"),
        (dict(lora_bias=True), r"unsupported field lora_bias=true"),
        (dict(layer_replication=[[0, 1]]), r"unsupported field layer_replication"),
        (dict(bias="all"), r"bias='all' is not supported"),
        (dict(init_lora_weights="pissa"), r"init_lora_weights='pissa' is not supported .*rewrites the base"),
        (dict(fan_in_fan_out=True), r"fan_in_fan_out=true"),
        (dict(some_future_option={"x": 1}), r"unsupported field some_future_option="),
        (dict(r=0), r"r must be a positive integer, got 0"),
        (dict(lora_dropout=1.5), r"lora_dropout must be a probability"),
        (dict(peft_type="IA3"), r"unsupported PEFT type 'IA3'"),
    ],
)
def test_unsupported_config_fields_are_named(peft_adapter, changes, message, tmp_path):
    bad = _copy_adapter(peft_adapter["dir"], tmp_path / "a", **changes)
    with pytest.raises(A.AdapterError, match=message):
        A.LoraConfig.from_pretrained(bad)
    # Fields PEFT may add in later versions load while unset.
    ok = _copy_adapter(peft_adapter["dir"], tmp_path / "b", some_future_option=None, another_one=False)
    assert A.LoraConfig.from_pretrained(ok).r == 4


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_real_ia3_and_dora_adapters_are_refused(backend, tmp_path):
    head = "sequence_classification"
    config = tiny_config()
    ia3 = peft.get_peft_model(
        hf_torch_model(head, config),
        peft.IA3Config(
            task_type="SEQ_CLS", target_modules=["key", "value", "dense"], feedforward_modules=["dense"]
        ),
    )
    ia3.save_pretrained(tmp_path / "ia3")
    dora = peft.get_peft_model(hf_torch_model(head, config), _peft_config(head, use_dora=True))
    dora.save_pretrained(tmp_path / "dora")
    model = get_adapter(backend).build(head, config)
    with pytest.raises(A.AdapterError, match="unsupported PEFT type 'IA3'"):
        model.load_adapter(str(tmp_path / "ia3"))
    with pytest.raises(A.AdapterError, match="use_dora=true"):
        model.load_adapter(str(tmp_path / "dora"))


def test_adapter_config_outside_the_directory_is_refused(peft_adapter, tmp_path):
    import conversion.adapters as adapter_io
    from xlmr._fileio import UnsafePathError

    adapter = tmp_path / "a"
    adapter.mkdir()
    shutil.copy(peft_adapter["dir"] / A.WEIGHTS_NAME, adapter / A.WEIGHTS_NAME)
    (tmp_path / "elsewhere.json").write_text((peft_adapter["dir"] / A.CONFIG_NAME).read_text())
    (adapter / A.CONFIG_NAME).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafePathError, match="adapter config"):
        adapter_io.load_adapter(adapter)


def test_keras_save_with_an_unmerged_adapter_is_refused(tmp_path):
    pytest.importorskip("keras")
    import xlmr_tf

    model = xlmr_tf.TFXLMRobertaForSequenceClassification(tiny_config())
    model.add_adapter(A.LoraConfig(target_modules=["query"]))
    with pytest.raises(ValueError, match="would leave out the attached LoRA adapter"):
        model.save(str(tmp_path / "m.keras"))


# -- xlmr_torch with PEFT ------------------------------------------------------------------------------
def test_peft_on_xlmr_torch_matches_peft_on_hf(peft_adapter, tmp_path):
    """An adapter PEFT trained on HF's class runs on xlmr_torch through PEFT with HF's logits; one
    PEFT trains on xlmr_torch runs on HF's class; merge_and_unload() saves through save_pretrained."""
    import xlmr_torch

    ref = peft_adapter
    head, config = ref["head"], ref["config"]
    cls = getattr(xlmr_torch, HEADS[head].torch_class)
    model = cls(config)
    model.load_canonical_state_dict(ref["base"])
    with_adapter = peft.PeftModel.from_pretrained(model, str(ref["dir"])).eval()
    np.testing.assert_allclose(
        hf_torch_forward(with_adapter, ref["x"])["logits"], ref["logits"], atol=ATOL, rtol=0
    )

    # Made on xlmr_torch (B random: not the identity), loaded on HF's class.
    hf_cls = getattr(transformers, HEADS[head].torch_class)
    hf_torch_model(head, config, seed=3).save_pretrained(str(tmp_path / "base"))
    ours = cls.from_pretrained(str(tmp_path / "base"))
    trained = peft.get_peft_model(ours, _peft_config(head, lora_dropout=0.0, init_lora_weights=False)).eval()
    trained.save_pretrained(tmp_path / "adapter")
    expected = hf_torch_forward(trained, ref["x"])["logits"]
    with trained.disable_adapter():
        assert np.abs(hf_torch_forward(trained, ref["x"])["logits"] - expected).max() > 0.05
    on_hf = peft.PeftModel.from_pretrained(
        hf_cls.from_pretrained(str(tmp_path / "base")), str(tmp_path / "adapter")
    )
    np.testing.assert_allclose(
        hf_torch_forward(on_hf.eval(), ref["x"])["logits"], expected, atol=ATOL, rtol=0
    )

    merged = trained.merge_and_unload()
    assert type(merged) is cls
    for fmt in ("safetensors", "pytorch"):  # what HF's class reads
        merged.save_pretrained(str(tmp_path / fmt), format=fmt)
        reloaded = hf_cls.from_pretrained(str(tmp_path / fmt)).eval()
        np.testing.assert_allclose(
            hf_torch_forward(reloaded, ref["x"])["logits"], expected, atol=ATOL, rtol=0
        )


def test_peft_adapter_from_xlmr_torch_records_its_base_model(tmp_path):
    """PEFT writes model.name_or_path (set by from_pretrained) as base_model_name_or_path."""
    import xlmr_torch

    config = tiny_config()
    xlmr_torch.XLMRobertaForSequenceClassification(config).save_pretrained(str(tmp_path / "base"))
    model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(str(tmp_path / "base"))
    peft.get_peft_model(model, _peft_config("sequence_classification")).save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / A.CONFIG_NAME).read_text())
    assert saved["base_model_name_or_path"] == str(tmp_path / "base")
