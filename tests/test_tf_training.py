"""xlmr_tf as a Keras model: fit/evaluate/predict (own loss and Keras losses, XLA on and off),
MirroredStrategy, mixed precision, .keras round trip and SavedModel export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tensorflow as tf  # noqa: E402

import xlmr_tf  # noqa: E402
from tests.reference import (  # noqa: E402
    ATOL,
    assert_trees_close,
    canonical_state_dict,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEADS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _task(n: int = 32, seq: int = 8, seed: int = 0):
    """Learnable: the label is the parity of the token after <s>."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 60, size=(n, seq)).astype(np.int32)
    ids[:, 0] = 0
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}, (ids[:, 1] % 2).astype(np.int32)


@pytest.fixture(scope="module")
def train_config():
    return tiny_config(num_hidden_layers=1, num_labels=2, **NO_DROPOUT)


@pytest.mark.parametrize("jit", [False, True], ids=["eager_graph", "xla"])
@pytest.mark.parametrize("style", ["own_loss", "keras_loss"])
def test_fit_drives_loss_down(style, jit, train_config):
    keras.utils.set_random_seed(0)
    x, y = _task()
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(train_config)
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["loss"]))
    if style == "own_loss":  # labels inside the inputs, model's own (HF) loss
        model.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"], jit_compile=jit)
        history = model.fit({**x, "labels": y}, batch_size=8, epochs=12, verbose=0, callbacks=[callback])
    else:  # (inputs, y) with a Keras loss on the logits, from a tf.data pipeline
        model.compile(
            keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=jit,
        )
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history = model.fit(ds, epochs=12, verbose=0, callbacks=[callback])
    losses = history.history["loss"]
    assert seen == losses and len(losses) == 12
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
    assert "accuracy" in history.history
    if jit:  # evaluate/predict below would only add two more XLA compilations
        return
    # evaluate reports the same loss as the HF-defined loss recomputed from predict's logits
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    logits = model.predict(x, batch_size=8, verbose=0)["logits"]
    assert logits.shape == (32, 2)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert abs(result["loss"] - float(-logp[np.arange(32), y].mean())) < 1e-4
    assert result["accuracy"] == pytest.approx(float((logits.argmax(-1) == y).mean()))


def test_own_loss_without_labels_says_what_is_missing(train_config):
    x, _ = _task(8)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(train_config)
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="needs labels in the input dict"):
        model.fit(x, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_step_is_finite(policy):
    config = tiny_config(num_hidden_layers=1, **NO_DROPOUT)
    x = make_inputs(config, "masked_lm")
    try:
        keras.mixed_precision.set_global_policy(policy)
        model = xlmr_tf.TFXLMRobertaForMaskedLM(config)
        model.compile(keras.optimizers.Adam(1e-3))
        history = model.fit(x, batch_size=2, epochs=1, verbose=0)
        out = model(x)
        assert out.logits.dtype == policy.split("_")[1]
        assert out.loss.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(out.loss.numpy())


_DISTRIBUTED = textwrap.dedent(
    """
    import json, os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import xlmr_tf
    from tests.reference import tiny_config
    config = tiny_config(num_hidden_layers=1, num_labels=2, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 60, size=(16, 8)).astype(np.int32); ids[:, 0] = 0
    x = {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": (ids[:, 1] % 2).astype(np.int32)}
    keras.utils.set_random_seed(0)
    init = xlmr_tf.TFXLMRobertaForSequenceClassification(config).build_model().canonical_state_dict()

    def run(strategy):
        with strategy.scope():
            model = xlmr_tf.TFXLMRobertaForSequenceClassification(config)
            model.load_canonical_state_dict(init)
            model.compile(keras.optimizers.SGD(0.5))
        hist = model.fit(x, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return model.canonical_state_dict(), hist.history["loss"]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one_sd, one_loss = run(tf.distribute.get_strategy())
    two_sd, two_loss = run(mirrored)
    diff = max(float(np.abs(one_sd[k] - two_sd[k]).max()) for k in one_sd)
    moved = max(float(np.abs(one_sd[k] - init[k]).max()) for k in one_sd)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "diff": diff, "moved": moved,
                      "one": one_loss, "two": two_loss}))
    """
)


def test_mirrored_strategy_two_cpus_matches_one_device():
    proc = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["moved"] > 1e-3  # training changed the weights...
    assert result["diff"] < 1e-5, result  # ...identically on one device and on two replicas
    np.testing.assert_allclose(result["two"], result["one"], atol=1e-5)


# -- serialisation / serving ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qa_ref():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    config = tiny_config(num_labels=2)
    ref = hf_torch_model("question_answering", config)
    return config, ref, canonical_state_dict(ref, config, "question_answering")


@pytest.mark.hf
def test_keras_save_and_load_model_round_trip(qa_ref, tmp_path):
    config, ref, sd = qa_ref
    model = xlmr_tf.TFXLMRobertaForQuestionAnswering(config).load_canonical_state_dict(sd)
    model.compile(keras.optimizers.Adam(1e-3))
    path = tmp_path / "qa.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is xlmr_tf.TFXLMRobertaForQuestionAnswering and loaded.config == config
    assert loaded.optimizer is not None
    inputs = make_inputs(config, "question_answering")
    out = {k: np.asarray(v) for k, v in loaded(**inputs).items()}
    assert_trees_close(out, hf_torch_forward(ref, inputs), atol=ATOL)


@pytest.mark.hf
@pytest.mark.parametrize("route", ["helper", "model_export"])
def test_saved_model_export_serves_hf_outputs(route, qa_ref, tmp_path):
    config, ref, sd = qa_ref
    model = xlmr_tf.TFXLMRobertaForQuestionAnswering(config).load_canonical_state_dict(sd)
    target = tmp_path / "serving"
    if route == "helper":
        xlmr_tf.export_saved_model(model, target)
    else:
        model.export(str(target))
    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    inputs = make_inputs(config, "question_answering", labels=False)
    out = serve(
        input_ids=tf.constant(inputs["input_ids"], tf.int32),
        attention_mask=tf.constant(inputs["attention_mask"], tf.int32),
    )
    assert set(out) == {"start_logits", "end_logits"}
    expected = hf_torch_forward(ref, {k: inputs[k] for k in ("input_ids", "attention_mask")})
    for name in ("start_logits", "end_logits"):
        np.testing.assert_allclose(out[name].numpy(), expected[name], atol=ATOL, rtol=0)
    with pytest.raises(FileExistsError):
        xlmr_tf.export_saved_model(model, target)


# -- packed batches (segment_ids) through fit -----------------------------------------------------------
def _packed_and_padded(head: str, config):
    """The same sequences as one padded batch and as packed rows, with labels in both layouts."""
    from tests.test_packing import LENGTHS, _pack, _padded, _sequences

    sequences = _sequences(config, seed=3)
    rng = np.random.default_rng(4)
    padded, packed = _padded(config, sequences), _pack(config, sequences)
    if head == "sequence_classification":
        labels = rng.integers(0, config.num_labels, size=len(sequences))
        padded["labels"] = labels
        packed["labels"] = np.full(packed["input_ids"].shape, -100, np.int64)
        it = iter(labels)
        for r, lengths in enumerate(LENGTHS):
            for k in range(len(lengths)):
                packed["labels"][r, k] = next(it)
    else:
        padded["labels"] = np.full(padded["input_ids"].shape, -100, np.int64)
        packed["labels"] = np.full(packed["input_ids"].shape, -100, np.int64)
        it = iter(range(len(sequences)))
        for r, lengths in enumerate(LENGTHS):
            pos = 0
            for n in lengths:
                lab = rng.integers(0, config.num_labels, size=n)
                padded["labels"][next(it), 1:n] = lab[1:]
                packed["labels"][r, pos + 1 : pos + n] = lab[1:]
                pos += n
    return padded, packed


def _one_sgd_step(head: str, config, init, batch, style: str, jit: bool):
    """One full-batch SGD(lr=1) step through model.fit: (loss, accuracy, weights after the step)."""
    model = getattr(xlmr_tf, HEADS[head].tf_class)(config).load_canonical_state_dict(init)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    rows = len(batch["input_ids"])
    if style == "own_loss":
        model.compile(keras.optimizers.SGD(1.0), metrics=metrics, jit_compile=jit)
        history = model.fit(batch, batch_size=rows, epochs=1, shuffle=False, verbose=0)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(keras.optimizers.SGD(1.0), loss=loss, metrics=metrics, jit_compile=jit)
        x = {k: v for k, v in batch.items() if k != "labels"}
        history = model.fit(x, batch["labels"], batch_size=rows, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"][0], history.history["accuracy"][0], model.canonical_state_dict()


@pytest.mark.hf
@pytest.mark.parametrize(
    "head, style, jit",
    [
        ("sequence_classification", "own_loss", False),
        ("sequence_classification", "keras_loss", False),
        ("sequence_classification", "own_loss", True),
        ("token_classification", "own_loss", False),
        ("token_classification", "keras_loss", True),
    ],
)
def test_packed_fit_step_equals_padded(head, style, jit):
    """model.fit on packed rows: the same loss, metric and update as on the padded batch (both compile
    styles; a Keras loss ignores the -100 slots / padding targets through sample weights)."""
    config = tiny_config(num_labels=3, **NO_DROPOUT)
    init = canonical_state_dict(hf_torch_model(head, config), config, head)
    padded, packed = _packed_and_padded(head, config)
    loss_padded, acc_padded, after_padded = _one_sgd_step(head, config, init, padded, style, jit)
    loss_packed, acc_packed, after_packed = _one_sgd_step(head, config, init, packed, style, jit)
    assert abs(loss_packed - loss_padded) <= ATOL, (loss_packed, loss_padded)
    fresh = getattr(xlmr_tf, HEADS[head].tf_class)(config).load_canonical_state_dict(init)
    assert abs(loss_padded - float(fresh(**padded).loss)) <= ATOL  # the model's own loss, either style
    assert acc_packed == pytest.approx(acc_padded)
    moved = max(float(np.abs(after_padded[k] - init[k]).max()) for k in init)
    assert moved > 1e-3
    for key, value in after_padded.items():  # SGD(lr=1): weight differences are gradient differences
        np.testing.assert_allclose(after_packed[key], value, atol=ATOL, rtol=0, err_msg=key)


@pytest.mark.parametrize("style", ["own_loss", "keras_loss"])
def test_xla_fit_checks_ids_and_labels_before_the_step(style, train_config):
    """jit_compile=True: XLA drops graph asserts, so fit checks each batch before the compiled step."""
    x, y = _task(8)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(train_config).build_model()
    if style == "own_loss":
        model.compile(keras.optimizers.SGD(0.1), jit_compile=True)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=True)
    before = model.canonical_state_dict()
    bad_ids = dict(x, input_ids=np.where(x["input_ids"] == 5, train_config.vocab_size, x["input_ids"]))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"input_ids holds an id outside \[0, vocab_size=99\)"
    ):
        model.fit(bad_ids, y, batch_size=8, epochs=1, verbose=0)
    bad_y = y.copy()
    bad_y[3] = train_config.num_labels
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels contain a class id outside \[0, 2\)"):
        model.fit(x, bad_y, batch_size=8, epochs=1, verbose=0)
    after = model.canonical_state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)  # no step ran
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # good batches still train


def test_saved_model_export_holds_no_erfc(train_config, tmp_path):
    """Issue 15: tf2onnx cannot convert Erfc (tf.nn.gelu's exact form); the export has none."""
    from tensorflow.core.protobuf import saved_model_pb2

    model = xlmr_tf.TFXLMRobertaForSequenceClassification(train_config)
    xlmr_tf.export_saved_model(model, tmp_path / "serving")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "serving" / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert "Erf" in ops and "Erfc" not in ops


_DISTRIBUTED_UNBUILT = textwrap.dedent(
    """
    import os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import xlmr_tf
    from tests.reference import tiny_config
    config = tiny_config(num_hidden_layers=1, num_labels=2)
    ids = np.random.default_rng(0).integers(3, 60, size=(16, 8)).astype(np.int32)
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = xlmr_tf.TFXLMRobertaForSequenceClassification(config)  # not built: Keras builds it
        model.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
    history = model.fit({"input_ids": ids, "labels": ids[:, 1] % 2}, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"]).all() and "accuracy" in history
    try:
        model.fit({"input_ids": ids, "labels": ids[:, 1] % 2 + 5}, batch_size=8, verbose=0)
    except tf.errors.InvalidArgumentError as err:
        assert "outside [0, 2)" in str(err)
        print("ok")
    """
)


def test_mirrored_strategy_builds_an_unbuilt_model_with_integer_ids():
    """Keras averages a distributed batch to build the model, turning ids into floats; xlmr_tf builds
    from the first replica's part instead, so the integer-ids check holds (and labels are checked)."""
    proc = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED_UNBUILT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
