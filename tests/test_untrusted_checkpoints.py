"""Checkpoints are untrusted: a catalogue of malformed and malicious inputs, and torn-output faults.

The catalogue (``CASES``) is one table: a builder that makes a bad checkpoint directory, the
action that meets it (``from_pretrained``'s ``conversion.load_pretrained``, or ``xlmr-convert``'s
``conversion.convert``), the exception expected and a fragment of its message (which names the
file and the key or field). Every action runs under a memory cap, so a reader that allocates
what a tiny file merely *declares* fails the row instead of the machine.

After the catalogue: stale weight files, unrelated files, float16 overflow, full disks, SIGTERM
and leftovers; then kill tests (``xlmr-convert`` killed with SIGKILL at many points of its
write, the destination checked to be the old or the new checkpoint each time).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest

import conversion
from conversion import cli, common, io
from tests.test_conversion import config_for, random_state_dict
from xlmr import XLMRobertaConfig
from xlmr import weights as W
from xlmr._fileio import UnsafePathError
from xlmr.heads import get_head

try:  # imported up front: pytorch_model.bin rows run under a memory cap
    import torch  # noqa: F401
except ImportError:  # pragma: no cover
    torch = None

# Memory caps (RLIMIT_AS, /proc), RENAME_EXCHANGE and signal exit codes are Linux's.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only fault injection")

ROOT = Path(__file__).resolve().parents[1]
EXT = {"safetensors": "safetensors", "pytorch": "bin", "tf": "h5", "flax": "msgpack"}


# -- builders --------------------------------------------------------------------------------------
def checkpoint(tmp: Path, fmt: str = "safetensors", head: str = "base", seed: int = 0, shards: bool = False,
               name: str = "ckpt", **cfg) -> Path:  # fmt: skip
    """A valid tiny checkpoint directory (config.json with ``architectures``, weights, a README)."""
    directory = tmp / name
    config = config_for(head, **cfg)
    sd = random_state_dict(config, head, seed)
    if shards:
        directory.mkdir(parents=True)
        config.copy(architectures=[get_head(head).torch_class]).save_pretrained(directory)
        io.write_state_dict(sd, config, head, directory, fmt, max_shard_size="20KB")
    else:
        conversion.save_pretrained(sd, config, head, directory, fmt)
    (directory / "README.md").write_text("my notes\n")
    return directory


def _index(directory: Path, fmt: str) -> Path:
    return directory / io.FORMATS[fmt][1]


def _edit_index(directory: Path, fmt: str, edit: Callable[[dict], None]) -> None:
    path = _index(directory, fmt)
    index = json.loads(path.read_text())
    edit(index["weight_map"])
    path.write_text(json.dumps(index))


def _first_shard(directory: Path, fmt: str) -> str:
    return sorted(json.loads(_index(directory, fmt).read_text())["weight_map"].values())[0]


def shard_outside(fmt: str, how: str):
    """An index whose first shard is ``../outside/<shard>`` (or an absolute path, or a symlink out)."""

    def build(tmp: Path) -> Path:
        d = checkpoint(tmp, fmt, shards=True)
        shard = _first_shard(d, fmt)
        (tmp / "outside").mkdir()
        shutil.move(d / shard, tmp / "outside" / shard)
        if how == "symlink":
            (d / shard).symlink_to(tmp / "outside" / shard)
            return d
        new = f"../outside/{shard}" if how == "dotdot" else str(tmp / "outside" / shard)
        _edit_index(d, fmt, lambda m: m.update({k: new for k, v in m.items() if v == shard}))
        return d

    return build


def index_entry_not_a_string(fmt: str):
    def build(tmp: Path) -> Path:
        d = checkpoint(tmp, fmt, shards=True)
        _edit_index(d, fmt, lambda m: m.update({next(iter(m)): 5}))
        return d

    return build


def index_nested(tmp: Path) -> Path:
    d = checkpoint(tmp, "safetensors", shards=True)
    _index(d, "safetensors").write_text('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return d


def index_not_utf8(tmp: Path) -> Path:
    d = checkpoint(tmp, "flax", shards=True)
    path = _index(d, "flax")
    path.write_bytes(path.read_bytes().replace(b'"weight_map"', b'"weight_map\xff\xfe"'))
    return d


def weight_file_symlink_out(tmp: Path) -> Path:
    d = checkpoint(tmp, "safetensors")
    (tmp / "elsewhere").mkdir()
    shutil.move(d / "model.safetensors", tmp / "elsewhere" / "model.safetensors")
    (d / "model.safetensors").symlink_to(tmp / "elsewhere" / "model.safetensors")
    return d


def config_symlink_out(tmp: Path) -> Path:
    d = checkpoint(tmp, "safetensors")
    shutil.move(d / "config.json", tmp / "config.json")
    (d / "config.json").symlink_to(tmp / "config.json")
    return d


def tokenizer_symlink_out(tmp: Path) -> Path:
    d = checkpoint(tmp, "safetensors")
    (tmp / "secret.txt").write_text("password=hunter2")
    (d / "tokenizer.json").symlink_to(tmp / "secret.txt")
    return d


# HDF5 ------------------------------------------------------------------------------------------------
_H5_WORD = "tfxlm_roberta_model/roberta/embeddings/word_embeddings/weight:0"


def _h5_replace(tmp: Path, make: Callable) -> Path:
    """A base-model tf_model.h5 whose word embedding dataset is replaced by ``make(group, name, shape, dtype)``."""
    import h5py

    d = checkpoint(tmp, "tf")
    with h5py.File(d / "tf_model.h5", "r+") as f:
        group = f["roberta"]
        shape, dtype = group[_H5_WORD].shape, group[_H5_WORD].dtype
        del group[_H5_WORD]
        make(h5py, tmp, group, _H5_WORD, shape, dtype)
    return d


def h5_external_link(tmp: Path) -> Path:
    def make(h5py, tmp, group, name, shape, dtype):
        with h5py.File(tmp / "secret.h5", "w") as s:
            s.create_dataset("w", data=np.full(shape, 7, dtype))
        group[name] = h5py.ExternalLink(str(tmp / "secret.h5"), "/w")

    return _h5_replace(tmp, make)


def h5_external_storage(tmp: Path) -> Path:
    def make(h5py, tmp, group, name, shape, dtype):
        nbytes = int(np.prod(shape)) * dtype.itemsize
        (tmp / "secret.txt").write_bytes((b"password=hunter2;" * nbytes)[:nbytes])
        group.create_dataset(name, shape, dtype, external=[(str(tmp / "secret.txt"), 0, nbytes)])

    return _h5_replace(tmp, make)


def h5_virtual(tmp: Path) -> Path:
    def make(h5py, tmp, group, name, shape, dtype):
        with h5py.File(tmp / "secret.h5", "w") as s:
            s.create_dataset("w", data=np.full(shape, 7, dtype))
        layout = h5py.VirtualLayout(shape, dtype)
        layout[...] = h5py.VirtualSource(str(tmp / "secret.h5"), "w", shape)
        group.create_virtual_dataset(name, layout)

    return _h5_replace(tmp, make)


def h5_unwritten_2gib(tmp: Path) -> Path:
    """170 KB on disk, 2 GiB declared: a reader that trusts the declaration allocates 2 GiB."""
    return _h5_replace(
        tmp, lambda h5py, tmp, group, name, shape, dtype: group.create_dataset(name, (2**27, 4), "f4")
    )


def h5_unwritten_right_shape(tmp: Path) -> Path:
    return _h5_replace(
        tmp, lambda h5py, tmp, group, name, shape, dtype: group.create_dataset(name, shape, dtype)
    )


def h5_soft_link(tmp: Path) -> Path:
    def make(h5py, tmp, group, name, shape, dtype):
        group.file.create_dataset("elsewhere", data=np.zeros(shape, dtype))
        group[name] = h5py.SoftLink("/elsewhere")

    return _h5_replace(tmp, make)


# safetensors ---------------------------------------------------------------------------------------
def _st_edit(
    tmp: Path, edit: Callable[[dict, bytearray], bytes | None], raw_header: bytes | None = None
) -> Path:
    """Rewrite model.safetensors with ``edit(header, data)`` applied (it may return new data bytes)."""
    d = checkpoint(tmp, "safetensors")
    path = d / "model.safetensors"
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8 : 8 + n]), bytearray(blob[8 + n :])
    new_data = edit(header, data)
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(new_data if new_data is not None else data))
    return d


def _ln(header: dict, n: int) -> str:
    return [k for k in sorted(header) if k.endswith("LayerNorm.weight")][n]


def st_overlap(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h[_ln(h, 1)].update(data_offsets=h[_ln(h, 0)]["data_offsets"]))


def st_gap(tmp: Path) -> Path:
    def edit(h, data):
        cut = h[_ln(h, 0)]["data_offsets"][1]
        for k, v in h.items():
            if k != "__metadata__" and v["data_offsets"][0] >= cut:
                v["data_offsets"] = [v["data_offsets"][0] + 8, v["data_offsets"][1] + 8]
        return data[:cut] + b"\0" * 8 + data[cut:]

    return _st_edit(tmp, edit)


def st_trailing(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: d + b"\0" * 16)


def st_shape_string(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h[_ln(h, 0)].update(shape="32"))


def st_shape_negative(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h[_ln(h, 0)].update(shape=[-4, -8]))


def st_shape_bool(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h[_ln(h, 0)].update(shape=[True, 32]))


def st_offsets_float(tmp: Path) -> Path:
    return _st_edit(
        tmp, lambda h, d: h[_ln(h, 0)].update(data_offsets=[float(x) for x in h[_ln(h, 0)]["data_offsets"]])
    )


def st_metadata_list(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h.update(__metadata__=["pt"]))


def st_metadata_int(tmp: Path) -> Path:
    return _st_edit(tmp, lambda h, d: h.update(__metadata__={"format": 1}))


def st_nested(tmp: Path) -> Path:
    return _st_edit(
        tmp, lambda h, d: None, raw_header=b'{"__metadata__": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    )


# msgpack ----------------------------------------------------------------------------------------------
def _ext(shape, dtype: str, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb([list(shape), dtype, data], use_bin_type=True))


def _mp_file(tmp: Path, tree) -> Path:
    d = checkpoint(tmp, "flax")
    (d / "flax_model.msgpack").write_bytes(msgpack.packb(tree, use_bin_type=True))
    return d


def _ln_tree(leaf) -> dict:
    return {"embeddings": {"LayerNorm": {"scale": leaf, "bias": _ext([32], "float32", bytes(128))}}}


def mp_bad_dtype(tmp: Path) -> Path:
    return _mp_file(tmp, _ln_tree(_ext([32], "float33", bytes(128))))


def mp_object_dtype(tmp: Path) -> Path:
    return _mp_file(tmp, _ln_tree(_ext([16], "object", bytes(128))))


def mp_chunked_lie(tmp: Path) -> Path:
    chunked = {
        "__msgpack_chunked_array__": True,
        "shape": {"0": 1_000_000},
        "chunks": {"0": _ext([32], "float32", bytes(128))},
    }
    return _mp_file(tmp, _ln_tree(chunked))


def mp_chunked_no_chunks(tmp: Path) -> Path:
    return _mp_file(tmp, _ln_tree({"__msgpack_chunked_array__": True, "shape": {"0": 32}}))


def mp_shape_string(tmp: Path) -> Path:
    return _mp_file(tmp, _ln_tree(_ext("ab", "float32", bytes(128))))


def mp_nested(tmp: Path) -> Path:
    tree: dict = {"x": _ext([1], "float32", bytes(4))}
    for _ in range(5000):
        tree = {"a": tree}
    d = checkpoint(tmp, "flax")
    # msgpack-python refuses to pack that deep; write the maps by hand (fixmap of one entry each).
    data = (b"\x81\xa1a" * 5000) + msgpack.packb({"x": _ext([1], "float32", bytes(4))}, use_bin_type=True)
    (d / "flax_model.msgpack").write_bytes(data)
    return d


# config.json -------------------------------------------------------------------------------------------
def config_edit(**fields):
    def build(tmp: Path) -> Path:
        d = checkpoint(tmp, "safetensors")
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(fields)
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    return build


def config_raw(data: bytes):
    def build(tmp: Path) -> Path:
        d = checkpoint(tmp, "safetensors")
        (d / "config.json").write_bytes(data)
        return d

    return build


def overflowing(tmp: Path) -> Path:
    d = tmp / "ckpt"
    config = config_for("base")
    sd = random_state_dict(config, "base")
    sd["encoder.layer.1.output.dense.weight"][3, 5] = 1e6
    conversion.save_pretrained(sd, config, "base", d, "safetensors")
    return d


# -- the catalogue --------------------------------------------------------------------------------------
def load(d: Path, tmp: Path):
    return conversion.load_pretrained(d, "base")


def convert(d: Path, tmp: Path):
    return conversion.convert(d, tmp / "out", "safetensors")


def convert_fp16(d: Path, tmp: Path):
    return conversion.convert(d, tmp / "out", "flax", dtype="float16")


Case = tuple[str, Callable[[Path], Path], Callable, type, str]
CASES: list[Case] = []
for _fmt in io.FORMATS:
    _ext_name = EXT[_fmt]
    CASES += [
        (f"{_fmt}-index-dotdot-load", shard_outside(_fmt, "dotdot"), load, UnsafePathError, "outside the checkpoint directory"),
        (f"{_fmt}-index-dotdot-convert", shard_outside(_fmt, "dotdot"), convert, UnsafePathError, "../outside/"),
        (f"{_fmt}-index-absolute", shard_outside(_fmt, "absolute"), load, UnsafePathError, "outside the checkpoint directory"),
        (f"{_fmt}-index-symlink-out", shard_outside(_fmt, "symlink"), convert, UnsafePathError, "outside the checkpoint directory"),
        (f"{_fmt}-index-entry-not-a-string", index_entry_not_a_string(_fmt), load, common.CheckpointError,
         ".index.json: weight_map["),
    ]  # fmt: skip
CASES += [
    ("index-nested-json", index_nested, load, common.CheckpointError, "model.safetensors.index.json: not a valid shard index: JSON nested"),
    ("index-not-utf8", index_not_utf8, convert, common.CheckpointError, "flax_model.msgpack.index.json: not a valid shard index: not UTF-8"),
    ("weight-file-symlink-out", weight_file_symlink_out, load, UnsafePathError, "weight file 'model.safetensors' resolves to"),
    ("config-symlink-out", config_symlink_out, convert, UnsafePathError, "config 'config.json' resolves to"),
    ("tokenizer-symlink-out", tokenizer_symlink_out, convert, UnsafePathError, "tokenizer file 'tokenizer.json'"),
    # HDF5
    ("h5-external-link", h5_external_link, load, common.CheckpointError, "word_embeddings/weight:0 is an external link"),
    ("h5-external-link-convert", h5_external_link, convert, common.CheckpointError, "is an external link to"),
    ("h5-external-storage", h5_external_storage, convert, common.CheckpointError, "word_embeddings/weight:0: has external storage"),
    ("h5-virtual-dataset", h5_virtual, load, common.CheckpointError, "word_embeddings/weight:0: is a virtual dataset"),
    ("h5-unwritten-2gib", h5_unwritten_2gib, load, common.CheckpointError, "declares 2147483648 bytes"),
    ("h5-unwritten-right-shape", h5_unwritten_right_shape, load, common.CheckpointError, "but none was written"),
    ("h5-soft-link", h5_soft_link, load, common.CheckpointError, "word_embeddings/weight:0 is a SoftLink"),
    # safetensors
    ("st-overlapping-offsets", st_overlap, load, common.CheckpointError, "overlaps"),
    ("st-gap", st_gap, load, common.CheckpointError, "leaves a gap after"),
    ("st-trailing-bytes", st_trailing, convert, common.CheckpointError, "16 bytes after the last tensor"),
    ("st-shape-string", st_shape_string, load, common.CheckpointError, "LayerNorm.weight': shape must be a list"),
    ("st-shape-negative", st_shape_negative, load, common.CheckpointError, "shape must be a list of non-negative integers"),
    ("st-shape-bool", st_shape_bool, convert, common.CheckpointError, "shape must be a list of non-negative integers"),
    ("st-offsets-float", st_offsets_float, load, common.CheckpointError, "data_offsets must be two non-negative integers"),
    ("st-metadata-list", st_metadata_list, load, common.CheckpointError, "model.safetensors: __metadata__ must be an object"),
    ("st-metadata-int", st_metadata_int, convert, common.CheckpointError, "__metadata__['format'] must be a string"),
    ("st-nested-json", st_nested, load, common.CheckpointError, "model.safetensors: corrupt safetensors header"),
    # msgpack
    ("mp-bad-dtype-name", mp_bad_dtype, load, common.CheckpointError, "embeddings/LayerNorm/scale: unsupported array dtype 'float33'"),
    ("mp-object-dtype", mp_object_dtype, convert, common.CheckpointError, "unsupported array dtype 'object'"),
    ("mp-chunked-lie", mp_chunked_lie, load, common.CheckpointError, "chunked array declares shape [1000000]"),
    ("mp-chunked-missing-key", mp_chunked_no_chunks, load, common.CheckpointError, "chunked array needs exactly"),
    ("mp-shape-string", mp_shape_string, load, common.CheckpointError, "scale: shape must be a list"),
    ("mp-deep-nesting", mp_nested, convert, common.CheckpointError, "flax_model.msgpack: msgpack data nested more than"),
    # config.json
    ("cfg-layer-norm-eps-nan", config_edit(layer_norm_eps=float("nan")), load, ValueError, "config.json: layer_norm_eps"),
    ("cfg-layer-norm-eps-inf", config_edit(layer_norm_eps=float("inf")), convert, ValueError, "config.json: layer_norm_eps"),
    ("cfg-dropout-nan", config_edit(hidden_dropout_prob=float("nan")), load, ValueError, "config.json: hidden_dropout_prob"),
    ("cfg-initializer-inf", config_edit(initializer_range=float("-inf")), load, ValueError, "config.json: initializer_range"),
    ("cfg-pad-token-id-string", config_edit(pad_token_id="1"), load, ValueError, "config.json: pad_token_id"),
    ("cfg-heads-null", config_edit(num_attention_heads=None), load, ValueError, "config.json: num_attention_heads"),
    ("cfg-classifier-dropout-string", config_edit(classifier_dropout="0.1"), load, ValueError, "config.json: classifier_dropout"),
    ("cfg-id2label-key", config_edit(id2label={"zero": "a", "1": "b"}), load, ValueError, "config.json: id2label key 'zero'"),
    ("cfg-bool-as-int", config_edit(is_decoder=1), load, ValueError, "config.json: is_decoder must be true or false"),
    ("cfg-layers-as-bool", config_edit(num_hidden_layers=True), convert, ValueError, "config.json: num_hidden_layers"),
    ("cfg-layers-float", config_edit(num_hidden_layers=2.0), load, ValueError, "config.json: num_hidden_layers"),
    ("cfg-not-utf8", config_raw(b'{"vocab_size": 99, "x": "\xff"}'), load, ValueError, "config.json is not UTF-8"),
    ("cfg-nested", config_raw(b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), convert, ValueError, "config.json is not a config"),
    ("cfg-billion-layers", config_edit(num_hidden_layers=10**9), load, ValueError, "num_hidden_layers=1000000000 is absurd"),
    ("cfg-absurd-width", config_edit(hidden_size=2**20, num_attention_heads=1, intermediate_size=2**20), convert,
     ValueError, "config.json: hidden_size=1048576 is absurd"),
    ("cfg-layers-vs-checkpoint", config_edit(num_hidden_layers=5000), load, W.WeightMismatchError,
     "config num_hidden_layers=5000 does not fit the checkpoint, which has 2 layers"),
    # --dtype float16
    ("fp16-overflow", overflowing, convert_fp16, common.CheckpointError,
     "encoder.layer.1.output.dense.weight: values up to 1e+06 are beyond the float16 range"),
]  # fmt: skip


@contextlib.contextmanager
def memory_cap(extra: int = 1536 * 2**20):
    """Address space capped at what the process has now plus ``extra``: a 2 GiB allocation fails."""
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = now + extra if hard == resource.RLIM_INFINITY else min(now + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("name, build, action, exc, fragment", CASES, ids=[c[0] for c in CASES])
def test_catalogue(tmp_path, name, build, action, exc, fragment):
    if name.startswith("pytorch-") and torch is None:
        pytest.skip("pytorch_model.bin needs torch")
    directory = build(tmp_path)
    with memory_cap(), pytest.raises(BaseException) as info:
        action(directory, tmp_path)
    assert isinstance(info.value, exc), f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert fragment in message, message
    assert "Traceback" not in message
    # The message names the file (or its directory) and nothing was written.
    assert str(tmp_path) in message, message
    assert not (tmp_path / "out").exists()


def test_catalogue_covers_every_format_and_action():
    names = {c[0] for c in CASES}
    for prefix in ("safetensors-", "pytorch-", "tf-", "flax-", "h5-", "st-", "mp-", "cfg-"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert {c[2] for c in CASES} == {load, convert, convert_fp16}


@pytest.mark.parametrize("fmt", list(io.FORMATS))
def test_cli_reports_an_escaping_shard_in_one_line(tmp_path, capsys, fmt):
    d = shard_outside(fmt, "dotdot")(tmp_path)
    assert cli.main([str(d), str(tmp_path / "out"), "--to", "safetensors", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "outside the checkpoint directory" in err


def test_root_opts_in_to_a_symlinked_layout(tmp_path):
    """Hub caches link into a blobs/ folder: ``root`` widens what may be read, nothing else does."""
    d = weight_file_symlink_out(tmp_path)
    with pytest.raises(UnsafePathError):
        conversion.load_pretrained(d, "base")
    config, report = conversion.load_pretrained(d, "base", root=tmp_path)
    assert set(report.state_dict) == set(W.expected_shapes(config, "base"))


def test_safetensors_validation_agrees_with_the_library(tmp_path):
    """Every header the catalogue breaks is refused by the safetensors library too, and a good one passes both."""
    from safetensors import safe_open

    good = checkpoint(tmp_path / "good", "safetensors") / "model.safetensors"
    with safe_open(str(good), "numpy"):
        pass
    assert set(conversion.read_state_dict(good)) == set(W.expected_shapes(config_for("base"), "base"))
    for build in (st_overlap, st_gap, st_trailing, st_shape_string, st_shape_negative, st_shape_bool,
                  st_offsets_float, st_metadata_list, st_metadata_int, st_nested):  # fmt: skip
        path = build(tmp_path / build.__name__) / "model.safetensors"
        with pytest.raises(Exception, match="Error while deserializing header"):
            safe_open(str(path), "numpy")
        with pytest.raises(common.CheckpointError):
            conversion.read_state_dict(path)


# -- float16 overflow --------------------------------------------------------------------------------------
def test_allow_overflow_writes_inf(tmp_path, capsys):
    d = overflowing(tmp_path)
    code = cli.main([str(d), str(tmp_path / "out"), "--to", "flax", "--dtype", "float16", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "values up to 1e+06" in err and "--allow-overflow" in err
    assert not (tmp_path / "out").exists()
    code = cli.main(
        [str(d), str(tmp_path / "out"), "--to", "flax", "--dtype", "float16", "--allow-overflow", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    back = conversion.read_state_dict(tmp_path / "out")
    assert np.isinf(back["encoder.layer.1.output.dense.weight"][3, 5])
    # bfloat16 holds 1e6: no complaint.
    assert conversion.convert(d, tmp_path / "bf", "safetensors", dtype="bfloat16").tensors > 0


# -- stale weights, unrelated files ---------------------------------------------------------------------------
def test_save_pretrained_removes_stale_weights_of_other_formats_and_keeps_other_files(tmp_path, caplog):
    old = checkpoint(tmp_path, "safetensors", head="base", seed=1, name="out")
    (old / "logs").mkdir()
    (old / "logs" / "train.txt").write_text("epoch 1\n")
    (old / "tokenizer.json").write_text("{}")
    config = config_for("base", intermediate_size=41)
    sd = random_state_dict(config, "base", seed=2)
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        conversion.save_pretrained(sd, config, "base", old, "flax")
    names = sorted(p.name for p in old.iterdir())
    assert names == ["README.md", "config.json", "flax_model.msgpack", "logs", "tokenizer.json"]
    assert (old / "logs" / "train.txt").read_text() == "epoch 1\n"
    assert any("removing model.safetensors" in r.getMessage() for r in caplog.records)
    cfg, report = conversion.load_pretrained(old, "base")
    assert cfg.intermediate_size == 41
    np.testing.assert_array_equal(report.state_dict["pooler.dense.weight"], sd["pooler.dense.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directory left


def test_convert_refuses_to_remove_other_weights_without_force(tmp_path, capsys):
    src = checkpoint(tmp_path, "safetensors", seed=1, name="src", intermediate_size=41)
    old = checkpoint(tmp_path, "flax", seed=2, name="dst")
    before = (old / "flax_model.msgpack").read_bytes()
    code = cli.main([str(src), str(old), "--to", "tf", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "flax_model.msgpack (flax weights) is in the destination" in err and "--force" in err
    assert (old / "flax_model.msgpack").read_bytes() == before
    assert cli.main([str(src), str(old), "--to", "tf", "-q", "--force"]) == 0
    assert sorted(p.name for p in old.iterdir()) == ["README.md", "config.json", "tf_model.h5"]
    assert conversion.load_pretrained(old, "base")[0].intermediate_size == 41


def test_convert_in_place_keeps_the_source(tmp_path):
    d = checkpoint(tmp_path, "safetensors")
    before = (d / "model.safetensors").read_bytes()
    conversion.convert(d, d, "flax")
    assert sorted(p.name for p in d.iterdir()) == [
        "README.md",
        "config.json",
        "flax_model.msgpack",
        "model.safetensors",
    ]
    assert (d / "model.safetensors").read_bytes() == before


def test_convert_replaces_the_tokenizer_set_whole(tmp_path):
    src = checkpoint(tmp_path, "safetensors", name="src")
    (src / "sentencepiece.bpe.model").write_bytes(b"new spm")
    dst = checkpoint(tmp_path, "tf", name="dst")
    (dst / "tokenizer.json").write_text("stale fast tokenizer of another model")
    (dst / "sentencepiece.bpe.model").write_bytes(b"old spm")
    conversion.convert(src, dst, "flax", force=True)
    assert (dst / "sentencepiece.bpe.model").read_bytes() == b"new spm"
    assert not (dst / "tokenizer.json").exists()
    assert (dst / "README.md").exists()


# -- faults while writing: the old checkpoint survives whole ---------------------------------------------------
class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, path, room: int):
        self._f = open(path, "wb")  # noqa: SIM115
        self.room = room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("fmt", ["pytorch", "safetensors", "flax"])
def test_full_disk_while_writing_weights_names_the_file_and_keeps_the_old_checkpoint(
    tmp_path, monkeypatch, fmt
):
    old = checkpoint(tmp_path, "safetensors", seed=1, name="out")
    before = _snapshot(old)
    monkeypatch.setattr(common, "writable", lambda path: _FullDisk(path, 20_000), raising=False)
    config = config_for("base")
    with pytest.raises(OSError) as info:
        conversion.save_pretrained(random_state_dict(config, "base", 2), config, "base", old, fmt)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).endswith(f"{old / io.FORMATS[fmt][0]}'"), str(info.value)
    assert _snapshot(old) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_while_writing_config_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = checkpoint(tmp_path, "tf", seed=1, name="out")
    before = _snapshot(old)
    import xlmr.config

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    src = checkpoint(tmp_path, "safetensors", seed=2, name="src")
    monkeypatch.setattr(xlmr.config, "atomic_write_text", full)
    with pytest.raises(OSError, match="No space left on device"):
        conversion.convert(src, old, "flax", force=True)
    assert _snapshot(old) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_full_disk_while_copying_a_tokenizer_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = checkpoint(tmp_path, "tf", seed=1, name="out")
    before = _snapshot(old)
    src = checkpoint(tmp_path, "safetensors", seed=2, name="src")
    (src / "tokenizer.json").write_text("{}")

    def full(a, b, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(b))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        conversion.convert(src, old, "flax", force=True)
    assert info.value.filename == str(old / "tokenizer.json")
    assert _snapshot(old) == before


def test_leftovers_of_a_killed_run_are_removed_and_a_cut_swap_is_undone(tmp_path):
    from xlmr._fileio import remove_leftovers

    old = checkpoint(tmp_path, "safetensors", name="out")
    dead = 2**22 + 12345  # beyond pid_max on most systems: no such process
    (tmp_path / f".out.xlmr-tmp-{dead}-abc123").mkdir()
    (tmp_path / f".out.xlmr-tmp-{os.getpid()}-live12").mkdir()  # a live writer's: left alone
    (tmp_path / ".other.xlmr-tmp-1-abc").mkdir()  # another destination's
    conversion.save_pretrained(*_tiny_model(3), old, "safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.xlmr-tmp-1-abc",
        f".out.xlmr-tmp-{os.getpid()}-live12",
        "out",
    ]
    # The fallback swap (two renames) killed between them: the destination is missing.
    os.rename(old, tmp_path / f".out.xlmr-old-{dead}-xyz789")
    (tmp_path / f".out.xlmr-tmp-{dead}-new456").mkdir()
    remove_leftovers(old)
    assert (old / "README.md").exists() and conversion.load_pretrained(old, "base")
    assert not list(tmp_path.glob(f".out.xlmr-*-{dead}-*"))


def _tiny_model(seed: int):
    config = config_for("base")
    return random_state_dict(config, "base", seed), config, "base"


# -- signals and kills ------------------------------------------------------------------------------------------
# The child runs xlmr-convert with its file operations and per-tensor casts traced: before each, it
# prints the event and waits for a line on stdin, so the parent can stop it at exactly that point.
_TRACED_CHILD = r"""
import os, shutil, sys
sys.path.insert(0, sys.argv[1])
from conversion import cli, common, h5_io, msgpack_io, safetensors_io, torch_io
import xlmr._fileio as F

def hook(name, fn):
    def traced(*args, **kwargs):
        sys.stdout.write("@" + name + "\n")
        sys.stdout.flush()
        if not sys.stdin.readline():
            os._exit(3)
        return fn(*args, **kwargs)
    return traced

for module in (h5_io, msgpack_io, safetensors_io, torch_io):
    module.cast = hook("cast", module.cast)
common.writable = hook("open", common.writable)
for name in ("replace", "rename", "link", "mkdir"):
    setattr(os, name, hook(name, getattr(os, name)))
shutil.copyfile = hook("copyfile", shutil.copyfile)
F._fsync_path = hook("fsync", F._fsync_path)
F._rmtree = hook("rmtree", F._rmtree)
if os.environ.get("XLMR_TEST_NO_EXCHANGE"):
    F.exchange_paths = lambda a, b: False
F.exchange_paths = hook("exchange", F.exchange_paths)
sys.exit(cli.main(sys.argv[2:]))
"""


def _child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def run_until(argv: list[str], stop_at: int | None, sig: int = signal.SIGKILL, env: dict | None = None):
    """Run the traced child; at event ``stop_at`` (0-based) send ``sig`` instead of letting it go on.

    Returns (events seen, return code, stderr).
    """
    proc = subprocess.Popen([sys.executable, "-c", _TRACED_CHILD, str(ROOT), *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _child_env())  # fmt: skip
    events: list[str] = []
    try:
        while True:
            line = proc.stdout.readline()
            if not line:
                break
            if not line.startswith("@"):  # the summary line
                continue
            events.append(line.strip()[1:])
            if stop_at is not None and len(events) - 1 == stop_at:
                proc.send_signal(sig)
                if sig != signal.SIGKILL:
                    proc.stdin.write("\n")  # let it run into the handler
                    proc.stdin.flush()
                    stop_at = None
                    continue
                break
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stdin.close()
    proc.stdout.close()
    proc.stderr.close()
    return events, proc.returncode, err


def _state(directory: Path, candidates: dict[str, tuple]) -> str:
    """Which of ``candidates`` ({name: (config, state dict)}) the checkpoint at ``directory`` is."""
    config = XLMRobertaConfig.from_pretrained(directory)
    _, report = conversion.load_pretrained(directory, "base")
    for name, (cfg, sd) in candidates.items():
        if config.intermediate_size == cfg.intermediate_size and all(
            np.array_equal(report.state_dict[k], sd[k]) for k in sd
        ):
            return name
    raise AssertionError(f"{directory} is neither checkpoint")


def _kill_scenario(tmp_path: Path, size: str = "tiny"):
    """Source (safetensors, intermediate 41) and an old destination (flax, intermediate 37) with a README."""
    if size == "tiny":
        src = checkpoint(tmp_path, "safetensors", seed=5, name="src", intermediate_size=41)
        (src / "sentencepiece.bpe.model").write_bytes(b"spm of the new model")
        new_cfg = config_for("base", intermediate_size=41)
        new = (new_cfg, random_state_dict(new_cfg, "base", 5))
    else:
        src, new = _base_checkpoint(tmp_path / "src")
    dst = checkpoint(tmp_path, "flax", seed=6, name="dst")
    old_cfg = config_for("base")
    return src, dst, {"old": (old_cfg, random_state_dict(old_cfg, "base", 6)), "new": new}


def _check_after_kill(tmp_path: Path, dst: Path, models: dict, argv: list[str], size: str = "tiny") -> str:
    state = _state(dst, models)
    assert (dst / "README.md").read_text() == "my notes\n"
    spm = dst / "sentencepiece.bpe.model"
    assert (spm.exists() and spm.read_bytes() == b"spm of the new model") == (
        state == "new" and size == "tiny"
    )
    names = {p.name for p in dst.iterdir()}
    weights = {n for n in names if io.weight_file_format(n)}
    assert weights == ({"flax_model.msgpack"} if state == "old" else {"tf_model.h5"}), names
    # The next run cleans up what the kill left and completes.
    assert cli.main(argv) == 0
    assert _state(dst, models) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"], sorted(os.listdir(tmp_path))
    return state


def _spread(n_events: int, count: int, must: list[int]) -> list[int]:
    picks = set(np.linspace(0, n_events - 1, count).round().astype(int).tolist()) | set(must)
    return sorted(p for p in picks if 0 <= p < n_events)


def test_kill_at_every_stage_of_a_conversion_leaves_old_or_new(tmp_path):
    """SIGKILL at points spread over a whole conversion (and every step of the swap)."""
    src, dst, models = _kill_scenario(tmp_path)
    argv = [str(src), str(dst), "--to", "tf", "--force", "-q"]
    backup = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(dst, backup)
    events, code, err = run_until(argv, None)
    assert code == 0, err
    # Every file-system step (directory made, file committed, config written, tokenizer copied,
    # README carried over, fsync, the exchange, the old version removed) and 8 of the tensor writes.
    casts = [i for i, e in enumerate(events) if e == "cast"]
    steps = [i for i, e in enumerate(events) if e != "cast"]
    points = sorted({*steps, *(casts[j] for j in _spread(len(casts), 8, []))})
    seen = {}
    for k in points:
        shutil.rmtree(dst)
        shutil.copytree(backup, dst)
        _, code, _ = run_until(argv, k)
        assert code == -signal.SIGKILL
        seen[k] = (events[k], _check_after_kill(tmp_path, dst, models, argv))
    assert {s for _, s in seen.values()} == {"old", "new"}, seen
    assert len(seen) >= 20, seen


@pytest.mark.slow
def test_kill_at_every_single_event_of_a_tiny_conversion(tmp_path):
    src, dst, models = _kill_scenario(tmp_path)
    argv = [str(src), str(dst), "--to", "tf", "--force", "-q"]
    backup = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(dst, backup)
    events, code, err = run_until(argv, None)
    assert code == 0, err
    states = []
    for k in range(len(events)):
        shutil.rmtree(dst)
        shutil.copytree(backup, dst)
        run_until(argv, k)
        states.append(_check_after_kill(tmp_path, dst, models, argv))
    print("kill points:", list(zip(events, states)))
    assert states[0] == "old" and states[-1] == "new"
    assert states == sorted(states, key=["old", "new"].index)  # old until the swap, new from then on


def test_kill_between_the_renames_of_the_fallback_swap(tmp_path):
    """Without RENAME_EXCHANGE a kill can fall between two renames; the next run puts the old one back."""
    src, dst, models = _kill_scenario(tmp_path)
    argv = [str(src), str(dst), "--to", "tf", "--force", "-q"]
    env = dict(_child_env(), XLMR_TEST_NO_EXCHANGE="1")
    events, code, err = run_until(argv, None, env=env)
    assert code == 0, err
    shutil.rmtree(dst)
    dst = checkpoint(tmp_path, "flax", seed=6, name="dst")
    second_rename = [i for i, e in enumerate(events) if e == "rename"][1]
    _, code, _ = run_until(argv, second_rename, env=env)
    assert code == -signal.SIGKILL
    assert not dst.exists()  # the window the fallback has
    from xlmr._fileio import remove_leftovers

    remove_leftovers(dst)  # what the next run does first
    assert _state(dst, models) == "old"
    _check_after_kill(tmp_path, dst, models, argv)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_clean_up(tmp_path, sig, code):
    src, dst, models = _kill_scenario(tmp_path)
    argv = [str(src), str(dst), "--to", "tf", "--force", "-q"]
    events, rc, err = run_until(argv, None)
    assert rc == 0, err
    shutil.rmtree(dst)
    dst = checkpoint(tmp_path, "flax", seed=6, name="dst")
    middle = [i for i, e in enumerate(events) if e == "cast"][5]
    _, rc, err = run_until(argv, middle, sig=sig)
    assert rc == code, err
    assert err.strip().startswith("error: ") and "no file was replaced" in err
    assert _state(dst, models) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


def test_sigterm_in_a_library_save_cleans_up_and_still_dies_by_sigterm(tmp_path):
    code = (
        "import sys, os, signal, numpy as np\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from conversion import common\n"
        "from tests.test_conversion import config_for, random_state_dict\n"
        "import conversion\n"
        "real = common.cast\n"
        "def cast(a, d):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(a, d)\n"
        "from conversion import safetensors_io\n"
        "safetensors_io.cast = cast\n"
        "c = config_for('base')\n"
        f"conversion.save_pretrained(random_state_dict(c, 'base'), c, 'base', {str(tmp_path / 'out')!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(), cwd=ROOT
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- base size (slow) ----------------------------------------------------------------------------------------------
BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1)  # fmt: skip


def _base_checkpoint(directory: Path):
    """An xlm-roberta-base-shaped random checkpoint (~1.1 GB model.safetensors), written tensor by tensor."""
    from conversion.common import LazyTensor

    config = XLMRobertaConfig(**BASE, architectures=["XLMRobertaModel"])
    shapes = W.expected_shapes(config, "base")

    def sample(key, shape):
        seed = int.from_bytes(key.encode()[-8:].rjust(8, b"\0"), "little") % 2**32
        return lambda: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * 0.02

    lazy = {k: LazyTensor(s, np.float32, sample(k, s)) for k, s in shapes.items()}
    conversion.save_pretrained(lazy, config, "base", directory, "safetensors")
    (directory / "README.md").write_text("my notes\n")

    class Expected(dict):  # compare a few tensors only: the point is which model, not every byte
        pass

    picks = ["embeddings.LayerNorm.weight", "encoder.layer.11.output.dense.bias", "pooler.dense.bias"]
    return directory, (config, Expected({k: sample(k, shapes[k])() for k in picks}))


def _staged_bytes(dst: Path) -> int:
    """Bytes written so far into ``dst``'s temporary directories."""
    total = 0
    for stage in dst.parent.glob(f".{dst.name}.xlmr-tmp-*"):
        for path in stage.rglob("*"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size if path.is_file() else 0
    return total


@pytest.mark.slow
def test_kill_a_base_size_conversion_at_many_moments(tmp_path):
    src, dst, models = _kill_scenario(tmp_path, "base")
    argv = [str(src), str(dst), "--to", "tf", "--force", "-q"]
    backup = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(dst, backup)
    env = _child_env()
    proc = subprocess.run(
        [sys.executable, "-m", "conversion", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    expected = (dst / "tf_model.h5").stat().st_size
    states = []
    # Killed when the temporary directory holds this fraction of the new file (1.0: written, being
    # checked or swapped), whatever the machine's speed.
    for fraction in (0.02, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0):
        shutil.rmtree(dst)
        shutil.copytree(backup, dst)
        child = subprocess.Popen([sys.executable, "-m", "conversion", *argv], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while child.poll() is None and _staged_bytes(dst) < fraction * expected:
            time.sleep(0.005)
        child.kill()
        child.wait()
        states.append((fraction, child.returncode, _check_after_kill(tmp_path, dst, models, argv, "base")))
    # And at exact points of the swap, through the traced child.
    events, code, err = run_until(argv, None)
    assert code == 0, err
    last_cast = max(i for i, e in enumerate(events) if e == "cast")
    steps = {e: i for i, e in reversed(list(enumerate(events))) if i > last_cast}  # first of each kind
    for k in sorted(
        {steps["replace"], steps["link"], steps["exchange"] - 1, steps["exchange"], steps["rmtree"]}
    ):
        shutil.rmtree(dst)
        shutil.copytree(backup, dst)
        run_until(argv, k)
        states.append((events[k], None, _check_after_kill(tmp_path, dst, models, argv, "base")))
    print("kill points:", states)
    assert {s for *_, s in states} >= {"old", "new"}
    assert sum(rc == -signal.SIGKILL for _, rc, _ in states[:7]) >= 6  # killed mid-write, not after


# -- destinations that cannot be swapped ---------------------------------------------------------------------------
def test_destination_whose_parent_is_not_writable_is_updated_in_place(tmp_path, monkeypatch, caplog):
    import tempfile

    import xlmr._fileio as F

    old = checkpoint(tmp_path, "flax", seed=1, name="out")
    real = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(F.tempfile, "mkdtemp", mkdtemp)
    sd, config, head = _tiny_model(4)
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        conversion.save_pretrained(sd, config, head, old, "safetensors")
    assert any("cannot be replaced as a whole" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in old.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    _, report = conversion.load_pretrained(old, "base")
    np.testing.assert_array_equal(report.state_dict["pooler.dense.bias"], sd["pooler.dense.bias"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_symlinked_destination_keeps_its_link(tmp_path):
    real = checkpoint(tmp_path, "flax", seed=1, name="real")
    (tmp_path / "link").symlink_to(real)
    sd, config, head = _tiny_model(4)
    target = conversion.save_pretrained(sd, config, head, tmp_path / "link", "safetensors")
    assert target == tmp_path / "link" / "model.safetensors"
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link").resolve() == real
    assert sorted(p.name for p in real.iterdir()) == ["README.md", "config.json", "model.safetensors"]
