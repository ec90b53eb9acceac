"""conversion/: round trips, dtypes, shards, byte-level fidelity and the xlmr-convert CLI.

These tests need no HF transformers; tests/test_conversion_hf.py checks the files against HF's
classes. Weights are random numpy arrays of the tiny config's canonical shapes.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import conversion
from conversion import cli, common, h5_io, io, msgpack_io, safetensors_io, torch_io
from tests.reference import tiny_config
from xlmr import weights as W

FORMATS = tuple(io.FORMATS)
MODULES = {"safetensors": safetensors_io, "pytorch": torch_io, "tf": h5_io, "flax": msgpack_io}
TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def config_for(head: str, **overrides):
    return tiny_config(num_labels=2 if head == "question_answering" else 3, **overrides)


def random_state_dict(config, head: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in W.expected_shapes(config, head).items()}


def assert_same(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), sorted(set(actual) ^ set(expected))
    for k in expected:
        assert actual[k].dtype == expected[k].dtype, (k, actual[k].dtype, expected[k].dtype)
        assert actual[k].shape == expected[k].shape, (k, actual[k].shape, expected[k].shape)
        assert np.array_equal(actual[k].view(np.uint8), expected[k].view(np.uint8)), f"{k} differs"


def make_checkpoint(directory: Path, head: str = "masked_lm", fmt: str = "safetensors", seed: int = 0, **cfg):
    config = config_for(head, **cfg)
    sd = random_state_dict(config, head, seed)
    conversion.save_pretrained(sd, config, head, directory, fmt)
    for name in TOKENIZER_FILES:
        (directory / name).write_bytes(f"tokenizer file {name}".encode())
    return config, sd


# -- readers and writers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["base", "masked_lm", "sequence_classification", "multiple_choice"])
def test_round_trip_through_every_format_is_bit_exact(tmp_path, head):
    config = config_for(head)
    sd = random_state_dict(config, head)
    current = sd
    for i, fmt in enumerate(["safetensors", "tf", "flax", "pytorch", "safetensors"]):
        path = conversion.save_pretrained(current, config, head, tmp_path / f"{i}_{fmt}", fmt)
        assert path.name == io.FORMATS[fmt][0]
        current = conversion.read_state_dict(path, config)
        assert_same(current, sd)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_cast_is_exact(tmp_path, fmt, dtype):
    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    expected = {k: v.astype(np_dtype) for k, v in sd.items()}
    if fmt == "tf" and dtype == "bfloat16":
        with pytest.raises(conversion.io.CheckpointError, match="bfloat16"):
            io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt, dtype=dtype)
        assert not list(tmp_path.iterdir()), "a refused write left files behind"
        return
    path = io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt, dtype=dtype)
    back = conversion.read_state_dict(path, config)
    assert_same(back, expected)
    # ...and a cast back to float32 is the exact widening of those values.
    path32 = io.write_state_dict(back, config, "masked_lm", tmp_path / "f32", fmt, dtype="float32")
    assert_same(
        conversion.read_state_dict(path32, config), {k: v.astype(np.float32) for k, v in expected.items()}
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_sharded_write_and_read(tmp_path, fmt):
    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    target = io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt, max_shard_size="20KB")
    single, index_name = io.FORMATS[fmt]
    assert target.name == index_name
    index = json.loads(target.read_text())
    shards = sorted(set(index["weight_map"].values()))
    stem, _, ext = single.rpartition(".")
    assert len(shards) > 2
    assert shards == [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{ext}" for i in range(len(shards))]
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in sd.values())
    if fmt in ("safetensors", "pytorch"):  # HF's PyTorch save_pretrained also records the parameter count
        assert index["metadata"]["total_parameters"] == sum(v.size for v in sd.values())
    assert not (tmp_path / single).exists()
    assert io.find_weight_file(tmp_path) == target
    assert_same(conversion.read_state_dict(target, config), sd)
    # Writing unsharded again replaces the shards (as HF does), leaving one weight file.
    io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [single]


def _safetensors_header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), 8 + n


def test_safetensors_files_are_the_librarys_with_aligned_data(tmp_path):
    """The library reads ours to the same tensors and metadata; the header entries are the library's
    but for the offsets; every tensor of whole 64-byte blocks starts on a 64-byte file boundary."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    config = config_for("masked_lm").copy(vocab_size=101)  # an LM bias of 404 bytes: not whole blocks
    sd = random_state_dict(config, "masked_lm")
    mixed = {**sd, "lm_head.dense.bias": sd["lm_head.dense.bias"].astype(np.float16)}
    save_file(mixed, str(tmp_path / "lib.safetensors"), metadata={"format": "pt"})
    assert _safetensors_header(tmp_path / "lib.safetensors")[1] % 64  # the library's data start elsewhere
    ours = io.write_state_dict(mixed, config, "masked_lm", tmp_path / "ours", "safetensors")
    loaded = load_file(str(ours))
    assert sorted(loaded) == sorted(k for k in mixed if k != "lm_head.decoder.weight")
    for key, value in loaded.items():
        assert value.dtype == mixed[key].dtype, key
        np.testing.assert_array_equal(value, mixed[key], err_msg=key)
    with safe_open(str(ours), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
    theirs, _ = _safetensors_header(tmp_path / "lib.safetensors")
    header, start = _safetensors_header(ours)
    assert start % 64 == 0
    strip = lambda h: {k: {f: v for f, v in e.items() if f != "data_offsets"} for k, e in h.items()}  # noqa: E731
    assert strip(header) == strip(theirs)
    entries = {k: e for k, e in header.items() if k != "__metadata__"}
    ragged = {k for k, e in entries.items() if (e["data_offsets"][1] - e["data_offsets"][0]) % 64}
    assert ragged == {k for k in loaded if mixed[k].nbytes % 64} and "lm_head.bias" in ragged  # 404 bytes
    for key, entry in entries.items():
        if key not in ragged:
            assert (start + entry["data_offsets"][0]) % 64 == 0, key
        else:  # the ragged ones come after all the others
            assert entry["data_offsets"][0] >= max(
                e["data_offsets"][1] for k, e in entries.items() if k not in ragged
            )
    # Read back by xlmr too, and the library's own file as well.
    for path in (ours, tmp_path / "lib.safetensors"):
        back = conversion.read_state_dict(path, config)
        assert sorted(back) == sorted(loaded)
        for key, value in loaded.items():
            np.testing.assert_array_equal(back[key], value, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_msgpack_bytes_match_flax_serialization(tmp_path, dtype):
    from flax import serialization

    config = config_for("sequence_classification")
    sd = {k: v.astype(dtype) for k, v in random_state_dict(config, "sequence_classification").items()}
    expected = serialization.msgpack_serialize(W.unflatten_tree(W.to_backend(sd, "flax")))
    ours = io.write_state_dict(sd, config, "sequence_classification", tmp_path, "flax")
    assert ours.read_bytes() == expected
    restored = W.from_backend(W.flatten_tree(serialization.msgpack_restore(expected)), "flax")
    assert_same(conversion.read_state_dict(ours), {k: np.asarray(v) for k, v in restored.items()})


def test_msgpack_reads_chunked_arrays_and_legacy_layer_norm_names(tmp_path):
    from flax import serialization

    config = config_for("base")
    sd = random_state_dict(config, "base")
    tree = W.unflatten_tree(W.to_backend(sd, "flax"))
    ln = tree["embeddings"]["LayerNorm"]
    ln["gamma"], ln["beta"] = ln.pop("scale"), ln.pop("bias")  # older Flax files
    big = tree["embeddings"]["word_embeddings"]["embedding"]
    flat = big.reshape(-1)
    tree["embeddings"]["word_embeddings"]["embedding"] = {  # flax's form for arrays above 2**30 bytes
        "__msgpack_chunked_array__": True,
        "shape": {"0": big.shape[0], "1": big.shape[1]},
        "chunks": {"0": flat[:1000], "1": flat[1000:]},
    }
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(serialization.msgpack_serialize(tree))
    assert_same(conversion.read_state_dict(path), sd)


def test_legacy_pytorch_gamma_beta_names_are_canonicalized(tmp_path):
    from safetensors.numpy import save_file

    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in sd.items()}  # fmt: skip
    assert legacy.keys() != sd.keys()
    save_file(legacy, str(tmp_path / "model.safetensors"))
    assert_same(conversion.read_state_dict(tmp_path / "model.safetensors"), sd)


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "flax"])
def test_untied_lm_decoder_round_trips(tmp_path, fmt):
    config = config_for("masked_lm", tie_word_embeddings=False)
    sd = random_state_dict(config, "masked_lm")
    assert "lm_head.decoder.weight" in sd
    path = io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt)
    assert_same(conversion.read_state_dict(path, config), sd)


def test_tf_refuses_an_untied_lm_decoder(tmp_path):
    config = config_for("masked_lm", tie_word_embeddings=False)
    with pytest.raises(io.CheckpointError, match="untied LM decoder"):
        io.write_state_dict(random_state_dict(config, "masked_lm"), config, "masked_lm", tmp_path, "tf")


def test_pytorch_file_stores_tied_aliases_once(tmp_path):
    import torch

    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    path = io.write_state_dict(sd, config, "masked_lm", tmp_path, "pytorch")
    raw = torch.load(path, weights_only=True)
    word = raw["roberta.embeddings.word_embeddings.weight"]
    assert raw["lm_head.decoder.weight"].untyped_storage().data_ptr() == word.untyped_storage().data_ptr()
    assert (
        raw["lm_head.decoder.bias"].untyped_storage().data_ptr()
        == raw["lm_head.bias"].untyped_storage().data_ptr()
    )


def text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def test_pytorch_format_without_torch_says_so(tmp_path, capsys, monkeypatch):
    config, _ = make_checkpoint(tmp_path / "src", "base")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pytorch_model.bin needs PyTorch \(pip install 'xlmr\[torch\]'\)"):
        io.write_state_dict(random_state_dict(config, "base"), config, "base", tmp_path / "out", "pytorch")
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "pytorch", "-q")
    assert code == 1 and err.startswith("error: reading or writing pytorch_model.bin needs PyTorch")


def test_h5_layout_is_keras_save_weights(tmp_path):
    import h5py

    config = config_for("token_classification")
    sd = random_state_dict(config, "token_classification")
    path = io.write_state_dict(sd, config, "token_classification", tmp_path, "tf")
    with h5py.File(path, "r") as f:
        assert text(f.attrs["layer_names"]) == ["roberta", "classifier"]
        assert text([f.attrs["backend"], f.attrs["keras_version"]]) == ["tensorflow", h5_io.KERAS_VERSION]
        assert sorted(f) == ["classifier", "roberta", "top_level_model_weights"]
        names = text(f["classifier"].attrs["weight_names"])
        assert names == ["tfxlm_roberta_for_token_classification/classifier/kernel:0",
                         "tfxlm_roberta_for_token_classification/classifier/bias:0"]  # fmt: skip
        kernel = f["classifier"][names[0]][()]
        np.testing.assert_array_equal(kernel, sd["classifier.weight"].T)
        word = "tfxlm_roberta_for_token_classification/roberta/embeddings/word_embeddings/weight:0"
        np.testing.assert_array_equal(f["roberta"][word][()], sd["roberta.embeddings.word_embeddings.weight"])
        query = (
            "tfxlm_roberta_for_token_classification/roberta/encoder/layer_._1/attention/self/query/kernel:0"
        )
        assert query in text(f["roberta"].attrs["weight_names"])
        assert len(f["top_level_model_weights"].attrs["weight_names"]) == 0


def test_base_model_tf_names_carry_the_roberta_scope(tmp_path):
    import h5py

    config = config_for("base")
    sd = random_state_dict(config, "base")
    path = io.write_state_dict(sd, config, "base", tmp_path, "tf")
    with h5py.File(path, "r") as f:
        names = text(f["roberta"].attrs["weight_names"])
    assert "tfxlm_roberta_model/roberta/pooler/dense/kernel:0" in names
    assert_same(conversion.read_state_dict(path), sd)


def test_interrupted_write_leaves_no_file_readers_pick_up(tmp_path, monkeypatch):
    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    calls = {"n": 0}
    real_cast = common.cast

    def failing_cast(array, dtype):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real_cast(array, dtype)

    for fmt, module in MODULES.items():
        monkeypatch.setattr(module, "cast", failing_cast)
        calls["n"] = 0
        with pytest.raises(KeyboardInterrupt):
            io.write_state_dict(sd, config, "masked_lm", tmp_path / fmt, fmt)
        assert list((tmp_path / fmt).iterdir()) == [], f"{fmt}: interrupted write left files"


def test_temporary_files_are_never_taken_for_weights(tmp_path, monkeypatch):
    """A write killed outright leaves its temporary file; no reader picks it up."""
    config = config_for("masked_lm")
    sd = random_state_dict(config, "masked_lm")
    monkeypatch.setattr(common.Staged, "abort", lambda self: None)  # as if killed: nothing cleans up
    monkeypatch.setattr(common.Staged, "commit", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    for fmt in FORMATS:
        with pytest.raises(KeyboardInterrupt):
            io.write_state_dict(sd, config, "masked_lm", tmp_path, fmt, max_shard_size="30KB")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left and all(n.startswith(".") and n.endswith(".tmp") for n in left), left
    with pytest.raises(FileNotFoundError, match="holds no weight file"):
        io.find_weight_file(tmp_path)


# -- xlmr-convert ------------------------------------------------------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("to", FORMATS)
def test_cli_converts_and_reports(tmp_path, capsys, to):
    config, sd = make_checkpoint(tmp_path / "src", "sequence_classification")
    code, out, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", to, "--quiet")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("converted ")
    assert f"{len(sd)} tensors" in lines[0]
    assert f"{sum(v.size for v in sd.values()):,} parameters" in lines[0]
    dst = tmp_path / "dst"
    assert io.find_weight_file(dst).name == io.FORMATS[to][0]
    saved = json.loads((dst / "config.json").read_text())
    assert saved["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert saved["hidden_size"] == config.hidden_size
    for name in TOKENIZER_FILES:
        assert (dst / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    assert_same(conversion.read_state_dict(dst / io.FORMATS[to][0], config), sd)


def test_cli_dtype_and_single_file_source_with_config(tmp_path, capsys):
    config, sd = make_checkpoint(tmp_path / "src", "masked_lm", "flax")
    (tmp_path / "cfg.json").write_text((tmp_path / "src" / "config.json").read_text())
    (tmp_path / "src" / "config.json").unlink()
    weight = tmp_path / "src" / "flax_model.msgpack"
    code, _, err = run_cli(capsys, weight, tmp_path / "dst", "--to", "pytorch", "--quiet")
    assert code == 1 and err.startswith("error: ") and "--config" in err
    code, out, err = run_cli(capsys, weight, tmp_path / "dst", "--to", "pytorch", "--dtype", "bfloat16",
                             "--config", tmp_path / "cfg.json", "-q")  # fmt: skip
    assert code == 0, err
    assert "cast to bfloat16" in out
    back = conversion.read_state_dict(tmp_path / "dst" / "pytorch_model.bin", config)
    assert_same(back, {k: v.astype(ml_dtypes.bfloat16) for k, v in sd.items()})
    assert json.loads((tmp_path / "dst" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    make_checkpoint(tmp_path / "src", "masked_lm", seed=0)
    make_checkpoint(tmp_path / "src2", "masked_lm", seed=1)
    assert run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "tf", "-q")[0] == 0
    before = (tmp_path / "dst" / "tf_model.h5").read_bytes()
    code, out, err = run_cli(capsys, tmp_path / "src2", tmp_path / "dst", "--to", "tf", "-q")
    assert code == 1 and out == ""
    assert (
        err.strip()
        == f"error: {tmp_path / 'dst' / 'tf_model.h5'} already exists; pass --force to overwrite it"
    )
    assert (tmp_path / "dst" / "tf_model.h5").read_bytes() == before
    code, _, err = run_cli(capsys, tmp_path / "src2", tmp_path / "dst", "--to", "tf", "-q", "--force")
    assert code == 0, err
    config = config_for("masked_lm")
    assert_same(conversion.read_state_dict(tmp_path / "dst" / "tf_model.h5", config),
                random_state_dict(config, "masked_lm", seed=1))  # fmt: skip


def test_cli_bad_inputs_give_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path / "missing", tmp_path / "dst", "--to", "tf")
    assert code == 1 and err == f"error: no such file or directory: {tmp_path / 'missing'}\n"
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, tmp_path / "empty", tmp_path / "dst", "--to", "tf")
    assert code == 1 and err.startswith("error: ") and "holds no weight file" in err and err.count("\n") == 1
    make_checkpoint(tmp_path / "src")
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "gguf")
    assert (
        code == 2 and err.startswith("error: argument --to: invalid choice: 'gguf'") and err.count("\n") == 1
    )
    assert not (tmp_path / "dst").exists()


def test_cli_config_that_does_not_fit_names_key_and_shapes(tmp_path, capsys):
    make_checkpoint(tmp_path / "src", "masked_lm")
    cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    cfg["vocab_size"] = 120
    (tmp_path / "src" / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "flax", "-q")
    assert code == 1 and err.count("\n") == 1
    assert "roberta.embeddings.word_embeddings.weight: checkpoint (99, 32) vs model (120, 32)" in err
    assert not (tmp_path / "dst" / "flax_model.msgpack").exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_cli_corrupt_source_file(tmp_path, capsys, fmt, damage):
    make_checkpoint(tmp_path / "src", "masked_lm", fmt)
    weight = tmp_path / "src" / io.FORMATS[fmt][0]
    data = weight.read_bytes()
    if damage == "truncated":
        weight.write_bytes(data[: len(data) * 2 // 3])
    else:
        weight.write_bytes(np.random.default_rng(0).bytes(len(data)))
    code, out, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "safetensors", "-q")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(weight) in err and "Traceback" not in err
    assert not (tmp_path / "dst" / "model.safetensors").exists()


def test_cli_missing_shard(tmp_path, capsys):
    config = config_for("masked_lm")
    (tmp_path / "src").mkdir()
    config.save_pretrained(tmp_path / "src")
    io.write_state_dict(random_state_dict(config, "masked_lm"), config, "masked_lm", tmp_path / "src", "flax",
                        max_shard_size="20KB")  # fmt: skip
    (tmp_path / "src" / "flax_model-00002-of-00005.msgpack").unlink()
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "tf", "-q")
    assert code == 1 and "shard flax_model-00002-of-00005.msgpack is missing" in err


def test_cli_converts_sharded_checkpoints(tmp_path, capsys):
    config, sd = make_checkpoint(tmp_path / "src", "question_answering", "tf")
    code, _, err = run_cli(
        capsys, tmp_path / "src", tmp_path / "sh", "--to", "flax", "--max-shard-size", "10KB", "-q"
    )
    assert code == 0, err
    assert io.find_weight_file(tmp_path / "sh").name == "flax_model.msgpack.index.json"
    code, _, err = run_cli(capsys, tmp_path / "sh", tmp_path / "back", "--to", "pytorch", "-q")
    assert code == 0, err
    assert_same(conversion.read_state_dict(tmp_path / "back" / "pytorch_model.bin", config), sd)


def test_cli_interrupted_conversion_leaves_nothing(tmp_path, capsys, monkeypatch):
    make_checkpoint(tmp_path / "src", "masked_lm")
    calls = {"n": 0}
    real_cast = common.cast

    def failing_cast(array, dtype):
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("disk on fire")
        return real_cast(array, dtype)

    monkeypatch.setattr(h5_io, "cast", failing_cast)
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "tf", "-q")
    assert code == 1 and err == "error: disk on fire\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no destination, no temporary directory


def test_cli_rejects_a_file_that_reads_back_wrong(tmp_path, capsys, monkeypatch):
    """The check after writing catches a writer bug before anything is moved into place."""
    make_checkpoint(tmp_path / "src", "masked_lm")
    real = msgpack_io._write_array

    def corrupting(f, array):
        real(f, -array if array.ndim == 2 and array.shape[0] == 32 and array.shape[1] == 32 else array)

    monkeypatch.setattr(msgpack_io, "_write_array", corrupting)
    code, _, err = run_cli(capsys, tmp_path / "src", tmp_path / "dst", "--to", "flax", "-q")
    assert code == 1 and "reads back with different values" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_python_dash_m_conversion(tmp_path):
    make_checkpoint(tmp_path / "src", "base")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "conversion", str(tmp_path / "src"), str(tmp_path / "dst"),
                           "--to", "flax"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("converted ") and "(flax, base)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "conversion", str(tmp_path / "src"), str(tmp_path / "dst"),
                           "--to", "flax"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_bench_quick_runs():
    from bench import bench_conversion

    rows = bench_conversion.run(quick=True)
    assert rows
    for row in rows:
        assert set(row) == {"benchmark", "backend", "xlmr", "hf", "unit", "ratio", "notes"}
        assert row["unit"] in ("s", "x checkpoint size")
    memory = [r for r in rows if r["unit"] == "x checkpoint size"]
    assert memory and all(r["xlmr"] > 0 for r in memory)
