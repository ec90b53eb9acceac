"""Loading at the cost of the file (issue 19): lazy reads, one initialisation per weight, per-tensor casts.

The checkpoint is a tiny XLMRobertaForMaskedLM written once in each of the four formats by
``conversion.save_pretrained``. In every backend: a weight the checkpoint provides arrives
bit-exact and no initialiser runs for it (initialiser calls are counted), a newly added head
gets HF's initialisation for exactly its weights, and ``torch_dtype`` / ``dtype`` /
``param_dtype`` cast each tensor as it is read. ``test_every_format_in_every_backend`` is the
HF parity check of the whole route: HF's reference weights, saved in each format, loaded by each
backend, forward equal to HF's within 1e-5.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import conversion
from conversion import common
from conversion.common import LazyStateDict, LazyTensor, MappedFile
from tests.reference import ATOL, assert_trees_close, tiny_config
from xlmr import weights as W

FORMATS = ("safetensors", "pytorch", "tf", "flax")
HEAD = "masked_lm"
CONFIG = tiny_config()
CLASSIFIER = {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"}  # fmt: skip


def _random_state_dict(config, head, seed=0):
    rng = np.random.default_rng(seed)
    return {
        k: (rng.standard_normal(s) * 0.05).astype(np.float32)
        for k, s in W.expected_shapes(config, head).items()
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``{format: directory}`` of one random MaskedLM checkpoint, and its canonical weights."""
    pytest.importorskip("torch", reason="pytorch_model.bin is written with torch")
    root = tmp_path_factory.mktemp("ckpt")
    sd = _random_state_dict(CONFIG, HEAD)
    dirs = {}
    for fmt in FORMATS:
        conversion.save_pretrained(sd, CONFIG, HEAD, root / fmt, fmt)
        dirs[fmt] = root / fmt
    return dirs, sd


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# -- conversion: the lazy route ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_lazy_load_pretrained_reads_no_tensor_bytes(checkpoints, fmt, monkeypatch):
    from conversion import torch_io

    dirs, sd = checkpoints
    reads = []
    for cls, name in [
        (LazyTensor, "load"),
        (MappedFile, "read_into"),
        (MappedFile, "view"),
        (MappedFile, "read"),
    ]:
        original = getattr(cls, name)
        monkeypatch.setattr(cls, name, lambda *a, _o=original, _n=name, **k: reads.append(_n) or _o(*a, **k))
    original_to_numpy = torch_io._to_numpy
    monkeypatch.setattr(torch_io, "_to_numpy", lambda t: reads.append("torch") or original_to_numpy(t))
    config, report = conversion.load_pretrained(dirs[fmt], HEAD, lazy=True)
    assert reads == [], f"tensor data read before any materialize: {reads}"
    tensors = report.state_dict
    assert isinstance(tensors, LazyStateDict) and all(isinstance(t, LazyTensor) for t in tensors.values())
    assert list(tensors) == [k for k in W.expected_shapes(config, HEAD) if k in sd]  # the model's order
    with tensors:
        for key, tensor in tensors.items():
            np.testing.assert_array_equal(tensor.materialize(), sd[key], err_msg=key)
    assert reads and tensors == {}  # closed: the files and tensors are gone


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_materialize_is_load_transposed_and_cast(checkpoints, fmt, transpose, dtype, monkeypatch):
    monkeypatch.setattr(common, "BLOCK_BYTES", 200)  # several blocks per tensor
    monkeypatch.setattr(common, "_TILE", 8)  # several tiles per transposed block
    dirs, sd = checkpoints
    target = common.np_dtype(dtype)
    with conversion.open_state_dict(dirs[fmt], CONFIG) as tensors:
        for key, tensor in tensors.items():
            flip = transpose and len(tensor.shape) == 2
            out = tensor.materialize(transpose=flip, dtype=target, align=64)
            expected = (sd[key].T if flip else sd[key]).astype(target)
            assert out.dtype == target and out.flags.c_contiguous and out.ctypes.data % 64 == 0, key
            np.testing.assert_array_equal(
                out.view(np.uint8), np.ascontiguousarray(expected).view(np.uint8), key
            )


@pytest.mark.parametrize("fmt", ["safetensors", "flax", "tf"])
def test_materialize_maps_the_file_privately(checkpoints, fmt):
    """No transform, no alignment asked: the file's bytes themselves, in a map writes never reach."""
    dirs, sd = checkpoints
    before = _digest(dirs[fmt])
    with conversion.open_state_dict(dirs[fmt], CONFIG) as tensors:
        key = "roberta.embeddings.word_embeddings.weight"
        tensor = tensors[key]
        stored_transposed = tensor.base is not None
        view = tensor.materialize(transpose=stored_transposed)
        assert not view.flags.owndata and view.flags.writeable
        view += 1.0  # an optimiser updating the weight in place
        copy = tensor.materialize(transpose=stored_transposed, copy=True)
        assert copy.flags.c_contiguous and not np.shares_memory(copy, view)
    expected = sd[key].T if stored_transposed else sd[key]
    np.testing.assert_array_equal(view, expected + 1.0)
    assert _digest(dirs[fmt]) == before


def test_tied_alias_is_compared_without_reading(tmp_path, monkeypatch):
    """HF's pytorch_model.bin stores the tied LM decoder as a second name of the embeddings' storage."""
    torch = pytest.importorskip("torch")
    from conversion import torch_io

    sd = _random_state_dict(CONFIG, HEAD)
    embeddings = torch.from_numpy(sd["roberta.embeddings.word_embeddings.weight"])
    state = {k: torch.from_numpy(v) for k, v in sd.items()}
    state["roberta.embeddings.word_embeddings.weight"] = embeddings
    state["lm_head.decoder.weight"] = embeddings  # one storage, two names
    (tmp_path / "ckpt").mkdir()
    torch.save(state, tmp_path / "ckpt" / "pytorch_model.bin")
    CONFIG.copy(architectures=["XLMRobertaForMaskedLM"]).save_pretrained(tmp_path / "ckpt")
    with conversion.open_state_dict(tmp_path / "ckpt" / "pytorch_model.bin") as raw:
        pass
    reads = []
    original = torch_io._to_numpy
    monkeypatch.setattr(torch_io, "_to_numpy", lambda t: reads.append(1) or original(t))
    _, report = conversion.load_pretrained(tmp_path / "ckpt", HEAD, lazy=True)
    with report.state_dict as tensors:
        assert "lm_head.decoder.weight" not in tensors and reads == []
    assert raw == {}


# -- torch -----------------------------------------------------------------------------------------------
def _torch_recorder():
    """A TorchFunctionMode recording the tensors that in-place initialisers fill (off the meta device)."""
    import torch

    from xlmr_torch import loading

    class Recorder(torch.overrides.TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.filled = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") in loading._NoInit.OPS:
                tensor = args[0] if args else kwargs.get("tensor")
                if isinstance(tensor, torch.Tensor) and not tensor.is_meta:
                    self.filled.append(tensor.data_ptr())
            return func(*args, **kwargs)

    return Recorder()


def _named_by_pointer(model):
    return {p.data_ptr(): name for name, p in model.named_parameters()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_initialises_only_the_new_head(checkpoints, fmt):
    torch = pytest.importorskip("torch")
    import xlmr_torch

    dirs, sd = checkpoints
    with _torch_recorder() as recorder:
        model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(dirs[fmt])
    assert recorder.filled == []  # every weight came from the file
    ours = model.canonical_state_dict()
    for key, value in sd.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)

    with _torch_recorder() as recorder:
        clf = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(dirs[fmt])
    names = _named_by_pointer(clf)
    assert {names[ptr] for ptr in recorder.filled} == CLASSIFIER
    ours = clf.canonical_state_dict()
    for key, value in sd.items():
        if key.startswith("roberta."):
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    # HF's _init_weights: N(0, initializer_range) weights, zero biases.
    for name in ("dense", "out_proj"):
        layer = getattr(clf.classifier, name)
        assert torch.count_nonzero(layer.bias) == 0
        assert 0.01 < float(layer.weight.detach().std()) < 0.03


def test_torch_dtype_cast_per_tensor(checkpoints, monkeypatch):
    torch = pytest.importorskip("torch")
    import xlmr_torch

    dirs, sd = checkpoints
    asked = []
    original = LazyTensor.materialize
    monkeypatch.setattr(
        LazyTensor, "materialize", lambda self, **k: asked.append(k["dtype"]) or original(self, **k)
    )
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"], torch_dtype=torch.bfloat16)
    # Read as 16-bit values (bfloat16 bits in an int16 carrier), not cast after a float32 copy.
    assert asked and {np.dtype(d).itemsize for d in asked} == {2}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    for key, param in model.named_parameters():
        expected = torch.from_numpy(sd[key]).to(torch.bfloat16)
        assert torch.equal(param.detach(), expected), key
    # A bfloat16 file into the default float32 model: each tensor widened as it is read.
    conversion.convert(
        dirs["safetensors"], dirs["safetensors"].parent / "bf16", "safetensors", dtype="bfloat16"
    )
    wide = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"].parent / "bf16")
    for key, param in wide.named_parameters():
        expected = torch.from_numpy(sd[key]).to(torch.bfloat16).float()
        assert param.dtype == torch.float32 and torch.equal(param.detach(), expected), key


def test_torch_weights_view_the_file_privately(checkpoints, tmp_path):
    """Float32 safetensors weights are the mapped file: writing them, or replacing the file, is safe."""
    torch = pytest.importorskip("torch")
    import shutil

    import xlmr_torch

    dirs, sd = checkpoints
    directory = tmp_path / "ckpt"
    shutil.copytree(dirs["safetensors"], directory)
    before = _digest(directory)
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(directory)
    weight = model.roberta.embeddings.word_embeddings.weight
    assert weight.untyped_storage().nbytes() == weight.numel() * 4  # a view of its own bytes, not a copy
    with torch.no_grad():
        weight.add_(1.0)
    assert _digest(directory) == before
    # save_pretrained replaces the directory by rename: the loaded model keeps its values.
    model.save_pretrained(directory)
    key = "roberta.embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(weight.detach().numpy(), sd[key] + 1.0)
    again = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(directory)
    np.testing.assert_array_equal(again.canonical_state_dict()[key], sd[key] + 1.0)


def _mapping_of(address: int) -> str:
    """The path of the file mapped at ``address`` in this process ("" for anonymous memory)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 else ""
    raise AssertionError(f"address {address:#x} is not mapped")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
@pytest.mark.parametrize("fmt", ["safetensors", "tf"])
@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_aligned_weights_are_the_mapped_file(checkpoints, backend, fmt):
    """xlmr writes safetensors and tf_model.h5 with 64-byte-aligned tensors, so TF and XLA take the
    file's pages as the weights themselves: the embedding matrix's buffer lies in the map of the
    file (a copy, anonymous memory, is what a tensor the framework cannot use in place gets). A dense
    kernel too where the file stores it in the framework's layout (tf_model.h5); from PyTorch's
    layout (safetensors) it is a transposed copy. Values are exact."""
    dirs, sd = checkpoints
    files = {"safetensors": "model.safetensors", "tf": "tf_model.h5"}
    if backend == "tf":
        pytest.importorskip("tensorflow")
        import tensorflow as tf

        import xlmr_tf

        model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs[fmt])
        layer = model.roberta.encoder.layer[0]
        buffers = [  # the buffers themselves, no copy
            np.from_dlpack(tf.convert_to_tensor(v.value))
            for v in (model.roberta.embeddings.word_embeddings.embeddings, layer.intermediate.dense.kernel)
        ]
        values = model.canonical_state_dict()
    else:
        pytest.importorskip("jax")
        import xlmr_flax

        model = xlmr_flax.FlaxXLMRobertaForMaskedLM.from_pretrained(dirs[fmt])
        roberta = model.params["roberta"]
        arrays = [roberta["embeddings"]["word_embeddings"]["embedding"],
                  roberta["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"]]  # fmt: skip
        buffers = [np.asarray(a) for a in arrays]
        assert [b.ctypes.data for b in buffers] == [a.unsafe_buffer_pointer() for a in arrays]
        values = xlmr_flax.loading.params_to_state_dict(model.params)
    path = str(dirs[fmt] / files[fmt])
    assert _mapping_of(buffers[0].ctypes.data) == path
    assert (_mapping_of(buffers[1].ctypes.data) == path) == (fmt == "tf")
    for name, value in sd.items():
        np.testing.assert_array_equal(values[name], value, err_msg=name)


# -- tf ----------------------------------------------------------------------------------------------------
def _keras_initializer_calls(monkeypatch):
    keras = pytest.importorskip("keras")
    calls = []
    for cls in (keras.initializers.TruncatedNormal, keras.initializers.Zeros, keras.initializers.Ones):
        original = cls.__call__

        def record(self, shape, dtype=None, _original=original, _name=cls.__name__, **kwargs):
            calls.append((_name, tuple(shape)))
            return _original(self, shape, dtype=dtype, **kwargs)

        monkeypatch.setattr(cls, "__call__", record)
    return calls


@pytest.mark.parametrize("fmt", FORMATS)
def test_tf_initialises_only_the_new_head(checkpoints, fmt, monkeypatch):
    pytest.importorskip("tensorflow")
    import xlmr_tf

    dirs, sd = checkpoints
    calls = _keras_initializer_calls(monkeypatch)
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs[fmt])
    assert calls == []  # every variable was created from the file
    ours = model.canonical_state_dict()
    assert set(ours) == set(sd)
    for key, value in sd.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)

    clf = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(dirs[fmt])
    hidden, labels = CONFIG.hidden_size, CONFIG.num_labels
    assert sorted(calls) == sorted(
        [("TruncatedNormal", (hidden, hidden)), ("Zeros", (hidden,)),
         ("TruncatedNormal", (hidden, labels)), ("Zeros", (labels,))]
    )  # fmt: skip
    ours = clf.canonical_state_dict()
    for key, value in sd.items():
        if key.startswith("roberta."):
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    kernel = np.asarray(clf.classifier.dense.kernel)
    assert 0.01 < kernel.std() < 0.03 and not np.any(np.asarray(clf.classifier.out_proj.bias))


def test_tf_dtype_policy_casts_per_tensor(checkpoints, monkeypatch):
    tf = pytest.importorskip("tensorflow")
    import ml_dtypes

    import xlmr_tf
    from tests.reference import make_inputs

    dirs, sd = checkpoints
    asked = []
    original = LazyTensor.materialize
    monkeypatch.setattr(
        LazyTensor, "materialize", lambda self, **k: asked.append(k["dtype"]) or original(self, **k)
    )
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"], dtype="bfloat16")
    assert asked and {d.name for d in asked} == {"bfloat16"}
    assert {v.dtype for v in model.weights if "seed_generator" not in v.path} == {"bfloat16"}
    for key, (variable, transposed) in xlmr_tf.loading.variable_map(model).items():
        value = np.asarray(variable.value.numpy())
        expected = (sd[key].T if transposed else sd[key]).astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(value.view(np.uint16), expected.view(np.uint16), err_msg=key)
    inputs = make_inputs(CONFIG, HEAD, labels=False)
    full = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"])
    low = model(**inputs).logits
    assert low.dtype == tf.bfloat16
    np.testing.assert_allclose(
        np.asarray(tf.cast(low, tf.float32)), np.asarray(full(**inputs).logits), atol=0.05
    )


def test_tf_failed_load_leaves_keras_clean(checkpoints, monkeypatch):
    keras = pytest.importorskip("keras")
    import xlmr_tf

    dirs, _ = checkpoints
    original = LazyTensor.materialize

    def fail_on_layer_1(self, **kwargs):
        if ".layer.1." in self.native or "layer_._1" in self.native:
            raise OSError("disk went away")
        return original(self, **kwargs)

    monkeypatch.setattr(LazyTensor, "materialize", fail_on_layer_1)
    with pytest.raises(OSError, match="disk went away"):
        xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"])
    monkeypatch.setattr(LazyTensor, "materialize", original)
    with keras.StatelessScope():  # leaving it initialises what waits: nothing of the failed model
        keras.layers.Dense(3).build((None, 4))
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(dirs["safetensors"])
    assert model.canonical_state_dict().keys() == W.expected_shapes(CONFIG, HEAD).keys()


# -- flax --------------------------------------------------------------------------------------------------
def _jax_normal_calls(monkeypatch):
    """Shapes jax.random.normal is asked for, outside jax.eval_shape (shape checks run no initialiser)."""
    jax = pytest.importorskip("jax")
    from jax._src import random as jax_random  # what jax.nn.initializers.normal calls

    calls, depth = [], [0]
    real_eval_shape, real_normal = jax.eval_shape, jax_random.normal

    def eval_shape(*args, **kwargs):
        depth[0] += 1
        try:
            return real_eval_shape(*args, **kwargs)
        finally:
            depth[0] -= 1

    def normal(key, shape=(), *args, **kwargs):
        if not depth[0]:
            calls.append(tuple(shape))
        return real_normal(key, shape, *args, **kwargs)

    monkeypatch.setattr(jax, "eval_shape", eval_shape)
    monkeypatch.setattr(jax_random, "normal", normal)
    return calls


@pytest.mark.parametrize("fmt", FORMATS)
def test_flax_initialises_only_the_new_head(checkpoints, fmt, monkeypatch):
    jax = pytest.importorskip("jax")
    import xlmr_flax

    dirs, sd = checkpoints
    calls = _jax_normal_calls(monkeypatch)
    model = xlmr_flax.FlaxXLMRobertaForMaskedLM.from_pretrained(dirs[fmt])
    assert calls == []
    ours = xlmr_flax.loading.params_to_state_dict(model.params)
    for key, value in sd.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)

    clf = xlmr_flax.FlaxXLMRobertaForSequenceClassification.from_pretrained(dirs[fmt], seed=3)
    hidden, labels = CONFIG.hidden_size, CONFIG.num_labels
    assert sorted(calls) == sorted([(hidden, hidden), (hidden, labels)])  # the two new kernels only
    # The values a full init with the model's key gives those leaves (HF's from_pretrained fills
    # from one): the same random stream; compiled vs op-by-op arithmetic may differ in the last bit.
    full = W.flatten_tree(clf.init_weights(jax.random.PRNGKey(3), clf.input_shape))
    flat = W.flatten_tree(clf.params)
    for path in [p for p in flat if p[0] == "classifier"]:
        np.testing.assert_allclose(np.asarray(flat[path]), np.asarray(full[path]), rtol=1e-6, atol=0)
    ours = xlmr_flax.loading.params_to_state_dict(clf.params)
    for key, value in sd.items():
        if key.startswith("roberta."):
            np.testing.assert_array_equal(ours[key], value, err_msg=key)


@pytest.mark.parametrize(
    "head, new_modules",
    [
        ("base", {("pooler",)}),
        ("multiple_choice", {("roberta", "pooler"), ("classifier",)}),
        ("token_classification", {("classifier",)}),
        ("question_answering", {("qa_outputs",)}),
        ("masked_lm", {("lm_head",)}),
    ],
)
def test_flax_new_head_values_are_a_full_inits(checkpoints, head, new_modules, tmp_path):
    """Every head module a checkpoint lacks gets the values a full init with the model's seed gives
    it (the modules run alone, on the random stream of their path); the rest is the file's."""
    jax = pytest.importorskip("jax")
    import xlmr_flax
    from tests.backends.flax_adapter import flax_class

    dirs, _ = checkpoints
    source = dirs["safetensors"]
    if head == "masked_lm":  # a checkpoint without the LM head
        xlmr_flax.FlaxXLMRobertaModel.from_pretrained(source, add_pooling_layer=False).save_pretrained(
            tmp_path
        )
        source = tmp_path
    options = {"num_labels": 2} if head == "question_answering" else {}
    model = flax_class(head).from_pretrained(source, seed=5, **options)
    full = W.flatten_tree(model.init_weights(jax.random.PRNGKey(5), model.input_shape))
    kept = W.flatten_tree(xlmr_flax.FlaxXLMRobertaModel.from_pretrained(dirs["safetensors"]).params)
    flat = W.flatten_tree(model.params)
    new = {p for p in flat if any(p[: len(m)] == m for m in new_modules)}
    assert new and set(full) == set(flat)
    for path, value in flat.items():
        if path in new:
            np.testing.assert_allclose(
                np.asarray(value), np.asarray(full[path]), rtol=1e-6, atol=0, err_msg=str(path)
            )
        else:  # the checkpoint's value, not the init's
            stored = kept[path[1:] if path[0] == "roberta" else path]
            np.testing.assert_array_equal(np.asarray(value), np.asarray(stored), err_msg=str(path))


@pytest.mark.parametrize(
    "missing",
    [
        ("pooler", "dense", "kernel"),  # a head module: it runs alone
        ("embeddings", "token_type_embeddings", "embedding"),  # outside the layers: a one-layer model
        ("encoder", "layer", "1", "output", "dense", "kernel"),  # in a layer: the whole model
    ],
)
def test_flax_init_weights_fills_a_missing_leaf_as_a_full_init(missing):
    """Whichever route fills a missing leaf, its value is the full init's and the rest is kept."""
    jax = pytest.importorskip("jax")
    import xlmr_flax

    model = xlmr_flax.FlaxXLMRobertaModel(CONFIG, seed=7)
    full = W.flatten_tree(model.init_weights(jax.random.PRNGKey(7), model.input_shape))
    given = {p: np.asarray(v) + 1.0 for p, v in full.items() if p != missing}  # not the init's values
    filled = W.flatten_tree(
        model.init_weights(jax.random.PRNGKey(7), model.input_shape, W.unflatten_tree(given))
    )
    assert set(filled) == set(full)
    np.testing.assert_allclose(np.asarray(filled[missing]), np.asarray(full[missing]), rtol=1e-6, atol=0)
    for path, value in given.items():
        np.testing.assert_array_equal(np.asarray(filled[path]), value, err_msg=str(path))


def test_flax_param_dtype_casts_per_tensor(checkpoints, monkeypatch):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import ml_dtypes

    import xlmr_flax
    from tests.reference import make_inputs

    dirs, sd = checkpoints
    asked = []
    original = LazyTensor.materialize
    monkeypatch.setattr(
        LazyTensor, "materialize", lambda self, **k: asked.append(k["dtype"]) or original(self, **k)
    )
    model = xlmr_flax.FlaxXLMRobertaForSequenceClassification.from_pretrained(
        dirs["flax"], param_dtype=jnp.bfloat16
    )
    assert asked and {np.dtype(d).name for d in asked} == {"bfloat16"}
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.params)} == {jnp.dtype(jnp.bfloat16)}
    ours = xlmr_flax.loading.params_to_state_dict(model.params)
    for key, value in sd.items():
        if key.startswith("roberta."):
            np.testing.assert_array_equal(ours[key], value.astype(ml_dtypes.bfloat16).astype(np.float32), key)
    logits = model(**make_inputs(CONFIG, "sequence_classification", labels=False)).logits
    assert logits.shape == (2, CONFIG.num_labels) and bool(jnp.all(jnp.isfinite(logits)))


def test_flax_shapes_checked_against_eval_shape_before_reading():
    pytest.importorskip("jax")
    import xlmr_flax

    def unreadable():
        raise AssertionError("read before the shapes were checked")

    model = xlmr_flax.FlaxXLMRobertaForMaskedLM(CONFIG, _do_init=False)
    tensors = {k: LazyTensor(s, np.float32, unreadable) for k, s in W.expected_shapes(CONFIG, HEAD).items()}
    tensors["roberta.encoder.layer.1.output.dense.weight"] = LazyTensor((32, 36), np.float32, unreadable)
    with pytest.raises(W.WeightMismatchError, match=r"layer.1.output.dense.weight: checkpoint \(36, 32\) vs model \(37, 32\)"):  # fmt: skip
        xlmr_flax.loading.params_from_checkpoint(model, tensors)


# -- HF parity: every format into every backend ----------------------------------------------------------
@pytest.mark.hf
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", ["torch", "tf", "flax"])
def test_every_format_in_every_backend(backend, fmt, tmp_path):
    pytest.importorskip("transformers")
    from tests.backends import get_adapter
    from tests.reference import canonical_state_dict, hf_torch_forward, hf_torch_model, make_inputs

    adapter = get_adapter(backend)
    config = tiny_config()
    reference = hf_torch_model(HEAD, config)
    sd = canonical_state_dict(reference, config, HEAD)
    conversion.save_pretrained(sd, config, HEAD, tmp_path, fmt)
    cls = {
        "torch": "XLMRobertaForMaskedLM",
        "tf": "TFXLMRobertaForMaskedLM",
        "flax": "FlaxXLMRobertaForMaskedLM",
    }
    module = __import__(f"xlmr_{backend}")
    model = getattr(module, cls[backend]).from_pretrained(tmp_path)
    inputs = make_inputs(config, HEAD, labels=False)
    expected = hf_torch_forward(reference, inputs, output_hidden_states=True)
    assert_trees_close(adapter.forward(model, inputs, output_hidden_states=True), expected, atol=ATOL)


def test_bench_loading_quick_smoke():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pytest.importorskip("jax")
    from bench import bench_loading

    rows = bench_loading.run(quick=True)
    assert {r["backend"] for r in rows} == {"torch", "tf", "flax"} and len(rows) == 6
    for row in rows:
        assert set(row) == {"benchmark", "backend", "xlmr", "hf", "unit", "ratio", "notes"}
        assert row["xlmr"] > 0 and row["unit"] in ("s", "x checkpoint size")


@pytest.mark.parametrize("fmt", FORMATS)
def test_sharded_checkpoints_load_tensor_by_tensor(checkpoints, fmt, tmp_path):
    torch = pytest.importorskip("torch")
    import xlmr_torch

    _, sd = checkpoints
    target = conversion.write_state_dict(sd, CONFIG, HEAD, tmp_path, fmt, max_shard_size=20_000)
    CONFIG.copy(architectures=["XLMRobertaForMaskedLM"]).save_pretrained(tmp_path)
    assert target.name.endswith(".index.json") and len(list(tmp_path.glob("*-of-*"))) > 2
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, torch_dtype=torch.float16)
    for key, param in model.named_parameters():
        assert torch.equal(param.detach(), torch.from_numpy(sd[key]).half()), key


def test_torch_partly_new_module_keeps_its_checkpoint_weight(tmp_path):
    """HF's _init_weights for a module runs on its new weight only; the one from the file stays."""
    torch = pytest.importorskip("torch")
    import xlmr_torch

    sd = _random_state_dict(CONFIG, "sequence_classification")
    del sd["classifier.dense.bias"]
    conversion.save_pretrained(sd, CONFIG, "sequence_classification", tmp_path, "safetensors")
    with _torch_recorder() as recorder:
        model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path)
    assert {_named_by_pointer(model)[ptr] for ptr in recorder.filled} == {"classifier.dense.bias"}
    assert torch.count_nonzero(model.classifier.dense.bias) == 0
    np.testing.assert_array_equal(
        model.classifier.dense.weight.detach().numpy(), sd["classifier.dense.weight"]
    )
