"""conversion/ against HF transformers 4.57.6: our files load in HF's PT / TF / Flax classes and
reproduce the HF PyTorch reference; HF's own files read back to the same canonical dict, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import conversion
from conversion import io
from tests.reference import (
    ATOL,
    canonical_state_dict,
    hf_torch_forward,
    hf_torch_model,
    make_inputs,
    tiny_config,
)
from xlmr import HEADS

pytestmark = pytest.mark.hf

HEAD_NAMES = tuple(HEADS)
FIELDS = ("logits", "start_logits", "end_logits", "last_hidden_state", "pooler_output")


def _config(head: str):
    extra = {"is_decoder": True} if head == "causal_lm" else {}
    return tiny_config(num_labels=2 if head == "question_answering" else 3, **extra)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Per head: config, HF PT model saved by HF (safetensors), canonical dict, inputs, reference outputs."""
    import transformers

    transformers.logging.set_verbosity_error()
    out = {}
    for head in HEAD_NAMES:
        config = _config(head)
        model = hf_torch_model(head, config)
        hf_dir = tmp_path_factory.mktemp(f"hf_pt_{head}")
        model.save_pretrained(hf_dir)
        inputs = make_inputs(config, head, labels=False)
        ref = hf_torch_forward(model, inputs)
        out[head] = dict(config=config, model=model, hf_dir=hf_dir, inputs=inputs,
                         sd=canonical_state_dict(model, config, head),
                         ref={k: ref[k] for k in FIELDS if k in ref})  # fmt: skip
    return out


def _hf_class(head: str, backend: str):
    import transformers

    return getattr(transformers, HEADS[head].class_name(backend))


def _assert_outputs(out, ref: dict, where: str) -> None:
    assert ref
    for field, expected in ref.items():
        actual = np.asarray(out[field])
        assert actual.shape == expected.shape, f"{where}.{field}: shape {actual.shape} != {expected.shape}"
        err = float(np.max(np.abs(actual - expected)))
        assert err <= ATOL, f"{where}.{field}: max abs error {err:.3g} > {ATOL}"


def _assert_bit_exact(actual: dict, expected: dict, where: str) -> None:
    assert set(actual) == set(expected), f"{where}: keys differ: {sorted(set(actual) ^ set(expected))}"
    for k, v in expected.items():
        assert actual[k].dtype == v.dtype and actual[k].shape == v.shape, f"{where}: {k}"
        assert np.array_equal(actual[k].view(np.uint32), v.view(np.uint32)), f"{where}: {k} differs"


# -- files written by xlmr load in HF ----------------------------------------------------------------------
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_xlmr_files_load_in_hf_torch(references, tmp_path, head):
    import torch

    r = references[head]
    for fmt, shard in (("safetensors", None), ("pytorch", None), ("safetensors", "20KB")):
        directory = tmp_path / f"{fmt}_{shard}"
        io.save_pretrained(r["sd"], r["config"], head, directory, fmt)
        if shard:
            io.write_state_dict(r["sd"], r["config"], head, directory, fmt, max_shard_size=shard)
            assert io.find_weight_file(directory).name.endswith(".index.json")
        model, info = _hf_class(head, "torch").from_pretrained(directory, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        with torch.no_grad():
            out = model.eval()(**{k: torch.from_numpy(v) for k, v in r["inputs"].items()})
        _assert_outputs(
            {k: v.numpy() for k, v in out.items() if hasattr(v, "numpy")}, r["ref"], f"pt/{fmt}/{shard}"
        )


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_xlmr_tf_files_load_in_hf_tf(references, tmp_path, head):
    r = references[head]
    shards = (None, "20KB") if head in ("masked_lm", "multiple_choice") else (None,)
    for shard in shards:
        directory = tmp_path / f"tf_{shard}"
        io.save_pretrained(r["sd"], r["config"], head, directory, "tf")
        if shard:
            io.write_state_dict(r["sd"], r["config"], head, directory, "tf", max_shard_size=shard)
            assert io.find_weight_file(directory).name == "tf_model.h5.index.json"
        model, info = _hf_class(head, "tf").from_pretrained(directory, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        out = model(**r["inputs"], training=False)
        _assert_outputs(out, r["ref"], f"tf/{shard}")


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_xlmr_flax_files_load_in_hf_flax(references, tmp_path, head):
    r = references[head]
    shards = (None, "20KB") if head in ("masked_lm", "token_classification") else (None,)
    for shard in shards:
        directory = tmp_path / f"flax_{shard}"
        io.save_pretrained(r["sd"], r["config"], head, directory, "flax")
        if shard:
            io.write_state_dict(r["sd"], r["config"], head, directory, "flax", max_shard_size=shard)
            assert io.find_weight_file(directory).name == "flax_model.msgpack.index.json"
        model = _hf_class(head, "flax").from_pretrained(directory)
        out = model(**r["inputs"], train=False)
        _assert_outputs(out, r["ref"], f"flax/{shard}")


# -- files written by HF read back bit for bit -------------------------------------------------------------
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_hf_torch_files_read_back_bit_exact(references, tmp_path, head):
    r = references[head]
    _assert_bit_exact(
        conversion.read_state_dict(r["hf_dir"] / "model.safetensors", r["config"]), r["sd"], "safetensors"
    )
    r["model"].save_pretrained(tmp_path / "bin", safe_serialization=False)
    _assert_bit_exact(
        conversion.read_state_dict(tmp_path / "bin" / "pytorch_model.bin", r["config"]), r["sd"], "bin"
    )
    for safe in (True, False):
        directory = tmp_path / f"sharded_{safe}"
        r["model"].save_pretrained(directory, safe_serialization=safe, max_shard_size="20KB")
        index = io.find_weight_file(directory)
        assert index.name.endswith(".index.json")
        _assert_bit_exact(conversion.read_state_dict(index, r["config"]), r["sd"], f"sharded {index.name}")


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_hf_tf_files_read_back_bit_exact(references, tmp_path, head):
    r = references[head]
    model = _hf_class(head, "tf").from_pretrained(r["hf_dir"], from_pt=True)
    model.save_pretrained(tmp_path / "h5")
    read = conversion.read_state_dict(tmp_path / "h5" / "tf_model.h5")
    _assert_bit_exact(read, r["sd"], "tf_model.h5")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    _assert_bit_exact(
        conversion.read_state_dict(tmp_path / "sharded" / "tf_model.h5.index.json"), r["sd"], "tf shards"
    )
    if head == "masked_lm":  # HF TF's safetensors files use TF names; they read back too
        model.save_pretrained(tmp_path / "safe", safe_serialization=True)
        _assert_bit_exact(
            conversion.read_state_dict(tmp_path / "safe" / "model.safetensors"), r["sd"], "tf safetensors"
        )


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_hf_flax_files_read_back_bit_exact(references, tmp_path, head):
    r = references[head]
    model = _hf_class(head, "flax").from_pretrained(r["hf_dir"], from_pt=True)
    model.save_pretrained(tmp_path / "msgpack")
    _assert_bit_exact(
        conversion.read_state_dict(tmp_path / "msgpack" / "flax_model.msgpack"), r["sd"], "msgpack"
    )
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    path = tmp_path / "sharded" / "flax_model.msgpack.index.json"
    _assert_bit_exact(conversion.read_state_dict(path), r["sd"], "flax shards")
    if head == "sequence_classification":
        model.save_pretrained(tmp_path / "safe", safe_serialization=True)
        _assert_bit_exact(
            conversion.read_state_dict(tmp_path / "safe" / "model.safetensors"), r["sd"], "flax safetensors"
        )


@pytest.mark.parametrize("to", ["tf", "flax"])
def test_cli_output_loads_in_hf(references, tmp_path, capsys, to):
    """xlmr-convert from HF's own PyTorch directory into a directory HF's TF / Flax class opens."""
    from conversion import cli

    r = references["sequence_classification"]
    assert cli.main([str(r["hf_dir"]), str(tmp_path / "out"), "--to", to, "-q"]) == 0, capsys.readouterr().err
    model = _hf_class("sequence_classification", to).from_pretrained(tmp_path / "out")
    out = model(**r["inputs"], **({"training": False} if to == "tf" else {"train": False}))
    _assert_outputs(out, r["ref"], f"cli/{to}")
