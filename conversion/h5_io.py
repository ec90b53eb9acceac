"""``tf_model.h5`` (and its sharded index) <-> canonical state dict, with h5py only (no TensorFlow).

HF's TF classes save with Keras 2's ``save_weights`` HDF5 layout:

- root attributes ``layer_names`` (the model's top layers: ``roberta`` and the head module),
  ``backend`` and ``keras_version``;
- one group per layer, with attribute ``weight_names`` listing full variable names such as
  ``tfxlm_roberta_for_masked_lm/roberta/encoder/layer_._0/attention/self/query/kernel:0``, each
  stored as a dataset at ``<layer>/<weight name>``; a ``top_level_model_weights`` group.
  The LM head's group lists the word/position/token-type embeddings too (its decoder is the
  embedding layer): we store them once and hard-link them there, which readers cannot tell apart.

Sharded files (``tf_model-00001-of-00002.h5`` + ``tf_model.h5.index.json``) are flat instead:
one dataset per weight, named without the model scope, listed in the root ``layer_names``.

Names follow xlmr.weights' TF rules (kernel / gamma, beta / embeddings; dense kernels
transposed) plus the short table of exceptions below, all taken from HF's TF code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlmr import weights as W
from xlmr.config import XLMRobertaConfig
from xlmr.heads import Head

from . import common
from .common import (
    CheckpointError,
    LazyStateDict,
    LazyTensor,
    MappedFile,
    Staged,
    as_lazy,
    cast,
    index_json,
    plan_shards,
    read_checkpoint,
    shard_name,
    staging,
    tf_model_name,
)

SINGLE, INDEX = "tf_model.h5", "tf_model.h5.index.json"

# -- the exceptions to xlmr.weights' TF rules ------------------------------------------------------
# TFXLMRobertaEncoder names its layers ``layer_._{i}`` (Keras scopes cannot be bare numbers).
_LAYER = re.compile(r"^layer_\._(\d+)$")
# TFXLMRobertaEmbeddings creates the word embedding matrix with add_weight(name="weight").
_LEAF_EXCEPTIONS = {"word_embeddings": "weight"}
# TFXLMRobertaModel keeps its backbone under the ``roberta`` scope; the PyTorch model has no prefix.
_BASE_SCOPE = "roberta"
# Keras 2 keeps HDF5 attributes below this many bytes, splitting longer lists into name0, name1...
_HDF5_OBJECT_HEADER_LIMIT = 64512
KERAS_VERSION = "2.21.0"  # the tf-keras that HF 4.57's TF classes run on
# Written datasets of 1 KiB and more start at a multiple of 64 bytes (HDF5's H5Pset_alignment):
# readers see the same file, and TensorFlow / JAX can use such a dataset's bytes in place.
_ALIGNED = {"alignment_threshold": 1024, "alignment_interval": 64}


def _h5py():
    import h5py

    return h5py


def tf_name_to_canonical(name: str) -> tuple[str, bool]:
    """``roberta/encoder/layer_._0/.../kernel:0`` (model scope removed) -> canonical key, transpose."""
    parts: list[str] = []
    for part in re.sub(r":\d+$", "", name).split("/"):
        match = _LAYER.match(part)
        parts.extend(("layer", match.group(1)) if match else (part,))
    try:
        return W.from_backend_path(parts, "tf")
    except (KeyError, IndexError) as err:
        raise CheckpointError(f"TF weight {name!r} does not map onto XLM-R ({err})") from None


def canonical_to_tf_name(key: str, head: Head) -> tuple[str, bool]:
    """Canonical key -> TF weight name without the model scope (``roberta/.../kernel:0``), transpose."""
    path, transpose = W.to_backend_path(key, "tf")
    parts = list(path)
    if len(parts) >= 2 and parts[-2] in _LEAF_EXCEPTIONS:
        parts[-1] = _LEAF_EXCEPTIONS[parts[-2]]
    out: list[str] = []
    for i, part in enumerate(parts):
        if part.isdigit() and i and parts[i - 1] == "layer":
            out[-1] = f"layer_._{part}"
        else:
            out.append(part)
    if not head.prefix:
        out.insert(0, _BASE_SCOPE)
    return "/".join(out) + ":0", transpose


def strip_base_prefix(tensors: LazyStateDict) -> None:
    """A TF file holding only ``roberta/...`` weights is a TFXLMRobertaModel: canonical keys have no prefix."""
    prefix = _BASE_SCOPE + "."
    if tensors and all(k.startswith(prefix) for k in tensors):
        items = list(tensors.items())
        tensors.clear()
        tensors.update((k[len(prefix) :], v) for k, v in items)


# -- reading -------------------------------------------------------------------------------------------
def _load_attr(group, name: str) -> list[str]:
    if name in group.attrs:
        values = group.attrs[name]
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if hasattr(v, "decode") else str(v) for v in np.atleast_1d(values)]


def _dataset_loader(dset, where: str):
    def load() -> np.ndarray:
        try:
            return np.asarray(dset[()])
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{where}: cannot read data ({err})") from None

    return load


def _get(h5py, group, path: str, where: str):
    """``group[path]``, following hard links only: external links (another file), soft and
    user-defined links are refused before HDF5 follows them, at every step of the path."""
    node = group
    parts = [p for p in path.split("/") if p]
    if path.startswith("/"):
        node = group.file
    for i, part in enumerate(parts):
        if not isinstance(node, h5py.Group):
            raise KeyError(f"{'/'.join(parts[:i])} is not a group")
        link = node.get(part, getlink=True)
        if link is None:
            raise KeyError(f"'{'/'.join(parts[: i + 1])}' not found")
        if isinstance(link, h5py.ExternalLink):
            raise CheckpointError(
                f"{where}: {'/'.join(parts[: i + 1])} is an external link to {link.filename}:{link.path}; "
                "a weight file must hold its own data (refusing to read another file)"
            )
        if not isinstance(link, h5py.HardLink):
            raise CheckpointError(
                f"{where}: {'/'.join(parts[: i + 1])} is a {type(link).__name__}, not a plain (hard) link"
            )
        node = node[part]
    return node


def _check_dataset(h5py, dset, where: str, file_size: int) -> None:
    """A dataset whose bytes are this file's own, fully written, of a float type -- checked without reading it."""
    if not isinstance(dset, h5py.Dataset):
        raise CheckpointError(f"{where}: is a {type(dset).__name__}, not a dataset")
    if dset.is_virtual:
        raise CheckpointError(f"{where}: is a virtual dataset (its data lives in other files); refusing it")
    if dset.external:
        files = sorted({str(entry[0]) for entry in dset.external})
        raise CheckpointError(
            f"{where}: has external storage in {', '.join(files)}; a weight file must hold its own data"
        )
    if dset.shape is None:
        raise CheckpointError(f"{where}: is an empty (null-dataspace) dataset, not a weight")
    if dset.dtype.kind != "f" or dset.dtype.itemsize not in (2, 4, 8):
        raise CheckpointError(f"{where}: has dtype {dset.dtype}, expected float")
    nbytes = math.prod(dset.shape) * dset.dtype.itemsize
    stored = dset.id.get_storage_size()
    if nbytes and not stored:
        raise CheckpointError(
            f"{where}: declares {nbytes} bytes of data ({dset.shape} {dset.dtype}) but none was written"
        )
    if dset.chunks is None:  # contiguous (or compact): the bytes are in the file, all of them
        offset = dset.id.get_offset()
        if stored != nbytes or (offset is not None and offset + stored > file_size):
            raise CheckpointError(
                f"{where}: declares {nbytes} bytes ({dset.shape} {dset.dtype}) but the file holds "
                f"{stored} of them{'' if offset is None else f' at {offset} (file has {file_size} bytes)'}"
            )


def _raw_span(dset, mapped: MappedFile, userblock: int) -> tuple[MappedFile, int] | None:
    """Where a contiguous, unfiltered, native-byte-order dataset's bytes lie in the file (else None).

    Such a dataset (what Keras and this package write) is a plain C-order block, checked by
    :func:`_check_dataset` to lie inside the file, so it can be read with ``pread`` or mapped
    instead of going through HDF5.
    """
    offset = dset.id.get_offset()
    if offset is None or dset.chunks is not None or not dset.dtype.isnative:
        return None
    return mapped, userblock + offset


def open_files(paths: list[Path]) -> LazyStateDict:
    h5py = _h5py()
    out = LazyStateDict()
    for path in paths:
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise CheckpointError(f"{path}: not a readable HDF5 file ({err})") from None
        out.add_closer(f.close)
        mapped = MappedFile(path)
        out.add_closer(mapped.close)
        file_size = Path(path).stat().st_size
        try:
            names = _load_attr(f, "layer_names")
            if not names:
                raise CheckpointError(f"{path}: no 'layer_names' attribute: not a Keras / HF TF weight file")
            entries = []
            first = _get(h5py, f, names[0], f"{path}: {names[0]}")
            if isinstance(first, h5py.Dataset):  # a shard: flat datasets
                entries = [(name, _get(h5py, f, name, f"{path}: {name}")) for name in names]
            else:
                for layer in names:
                    group = _get(h5py, f, layer, f"{path}: {layer}")
                    if not isinstance(group, h5py.Group):
                        raise CheckpointError(f"{path}: layer {layer} is not a group")
                    for weight in _load_attr(group, "weight_names"):
                        # The first scope is the model's name (it varies); HF drops it too.
                        dset = _get(h5py, group, weight, f"{path}: {layer}/{weight}")
                        entries.append(("/".join(weight.split("/")[1:]), dset))
        except KeyError as err:
            out.close()
            raise CheckpointError(f"{path}: listed weight or layer is missing ({err})") from None
        except BaseException:
            out.close()
            raise
        for native, dset in entries:
            key, transpose = tf_name_to_canonical(native)
            if key in out:  # the LM head's group lists the embeddings again
                continue
            try:
                _check_dataset(h5py, dset, f"{path}: {native}", file_size)
            except BaseException:
                out.close()
                raise
            span = _raw_span(dset, mapped, f.userblock_size)
            lazy = LazyTensor(dset.shape, dset.dtype, _dataset_loader(dset, f"{path}: {native}"), native=native,
                              span=span, identity=None if span is None else (id(mapped), span[1]))  # fmt: skip
            out[key] = lazy.transposed() if transpose else lazy
    strip_base_prefix(out)
    return out


def open_checkpoint(path: Path, root=None) -> LazyStateDict:
    # HF's h5 index names weights with the model scope first; the shards store them without it.
    return common.open_checkpoint(
        path, open_files, index_name=lambda n: "/".join(n.split("/")[1:]), root=root
    )


def read(path: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(open_checkpoint, path)


# -- writing ---------------------------------------------------------------------------------------------
def _save_attr(group, name: str, values: list[str]) -> None:
    data = [v.encode("utf8") for v in values]
    chunks = 1
    while any(
        np.asarray(c).nbytes > _HDF5_OBJECT_HEADER_LIMIT for c in np.array_split(np.asarray(data), chunks)
    ):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, chunk in enumerate(np.array_split(np.asarray(data), chunks)):
            group.attrs[f"{name}{i}"] = chunk


def _tf_order(keys: list[str], head: Head) -> list[str]:
    """Keys in TF's ``model.weights`` order: encoder, pooler, embeddings (word, type, position, norm), head."""
    emb_order = ["word_embeddings", "token_type_embeddings", "position_embeddings", "LayerNorm"]

    def rank(key: str):
        bare = key[len(head.prefix) + 1 :] if head.prefix and key.startswith(head.prefix + ".") else key
        section = bare.split(".", 1)[0]
        if key.split(".", 1)[0] in head.head_modules:
            return (3, 0 if key == "lm_head.bias" else 1)
        if section == "embeddings":
            module = bare.split(".")[1]
            return (2, emb_order.index(module) if module in emb_order else 9)
        return ({"encoder": 0, "pooler": 1}.get(section, 0), 0)

    return sorted(keys, key=lambda k: rank(k))  # stable: canonical order inside each rank


def _layers(keys: list[str], config: XLMRobertaConfig, head: Head) -> list[tuple[str, list[str]]]:
    """``[(layer name, its canonical keys)]`` in ``model.layers`` order."""
    backbone = [k for k in keys if k.split(".", 1)[0] not in head.head_modules]
    # HF's multiple-choice and token-classification files also list the head's weightless Dropout
    # layer, under a name Keras numbers per process (``dropout_7`` in a fresh one, ``dropout_21``
    # after two other models), so a file naming it loads with an "unexpected layer" warning in
    # most processes. Those classes ignore a missing ``dropout`` (_keys_to_ignore_on_load_missing),
    # so we leave the empty group out and the file loads cleanly everywhere.
    layers = [(_BASE_SCOPE, backbone)]
    for module in head.head_modules:
        own = [k for k in keys if k.split(".", 1)[0] == module]
        if module == "lm_head":  # the LM head's decoder is the embedding layer: Keras lists its weights here
            own += [k for k in backbone if ".embeddings." in f".{k}"]
        layers.append((module, own))
    return layers


def _check_tf_dict(tensors: Mapping, config: XLMRobertaConfig, head: Head, dtype) -> None:
    if "lm_head.decoder.weight" in tensors:
        raise CheckpointError(
            "tf_model.h5 cannot hold an untied LM decoder (tie_word_embeddings=False): HF's TF LM head always "
            "uses the word embeddings; write safetensors, pytorch or flax instead"
        )
    for key, t in tensors.items():
        if (dtype or t.dtype).name == "bfloat16":
            raise CheckpointError(
                f"tf_model.h5 cannot store bfloat16 ({key}): HDF5 has no bfloat16 type; use --dtype float32 or float16"
            )


def stage(state_dict: Mapping, config: XLMRobertaConfig, head: Head, target: Path, *, dtype=None,
          max_shard_size=None, progress=None) -> Staged:  # fmt: skip
    h5py = _h5py()
    target = Path(target)
    tensors = {k: as_lazy(v) for k, v in W.resolve_ties(state_dict, config, head).items()}
    _check_tf_dict(tensors, config, head, dtype)
    keys = _tf_order(list(tensors), head)
    scope = tf_model_name(head)
    names = {k: canonical_to_tf_name(k, head) for k in keys}  # key -> (name without scope, transpose)

    def tf_array(staged: Staged, key: str) -> np.ndarray:
        array = cast(tensors[key].load(), dtype)
        staged.record(key, array)
        if progress:
            progress(array.nbytes)
        return np.ascontiguousarray(array.T) if names[key][1] else array

    def write_keras_file(staged: Staged) -> None:
        layers = _layers(keys, config, head)
        with h5py.File(staged.add(target), "w", **_ALIGNED) as f:
            _save_attr(f, "layer_names", [name for name, _ in layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
            written: dict[str, str] = {}  # canonical key -> dataset path holding it
            for layer, own in sorted(layers):
                group = f.create_group(layer)
                weight_names = [f"{scope}/{names[k][0]}" for k in own]
                _save_attr(group, "weight_names", weight_names)
                for key, weight in zip(own, weight_names):
                    if key in written:
                        group[weight] = f[written[key]]  # hard link: same dataset, stored once
                        continue
                    array = tf_array(staged, key)
                    group.create_dataset(weight, array.shape, dtype=array.dtype)[...] = array
                    written[key] = f"{layer}/{weight}"
                    del array
            _save_attr(f.create_group("top_level_model_weights"), "weight_names", [])

    def write_shards(staged: Staged, shards: list[list[str]]) -> None:
        staged.target = target.parent / INDEX
        weight_map, total = {}, 0
        for i, block in enumerate(shards):
            name = shard_name(SINGLE, i, len(shards))
            with h5py.File(staged.add(target.parent / name), "w", **_ALIGNED) as f:
                for key in sorted(block, key=lambda k: names[k][0]):
                    array = tf_array(staged, key)
                    f.create_dataset(names[key][0], array.shape, dtype=array.dtype)[...] = array
                    total += array.nbytes
                    del array
                _save_attr(f, "layer_names", sorted(names[k][0] for k in block))
            weight_map.update({f"{scope}/{names[k][0]}": name for k in block})
        staged.add(staged.target).write_text(index_json(weight_map, total))

    def body(staged: Staged) -> None:
        shards = None
        if max_shard_size:
            sizes = [(k, tensors[k].size * (dtype or tensors[k].dtype).itemsize) for k in keys]
            shards = plan_shards(sizes, max_shard_size)
        if shards and len(shards) > 1:
            write_shards(staged, shards)
        else:
            write_keras_file(staged)

    return staging(target, "tf", body)


def write(state_dict, config, head, target: Path, **kwargs) -> Path:
    return stage(state_dict, config, head, target, **kwargs).commit()
