"""Sentence encoders by Hub name (issues 13 + 15), offline: an HF cache laid out as huggingface_hub lays it out.

The cache (tests/hub_cache.py) holds sentence-transformers directories saved by sentence-transformers
itself, next to files an encoder must NOT fetch (the Transformer's other weight formats, Dense's
second weight file, a module folder modules.json does not list, the model card):

    org/st-tiny   main    Transformer at the root (safetensors + pytorch/tf/flax, same weights), Pooling
                          cls+mean, Dense (safetensors + pytorch), Normalize, prompts; the same directory
                          again under nested/ (for subfolder=)
                  legacy  Transformer in 0_Transformer/ with pytorch/tf/flax weights only (each backend
                          fetches its own), Dense with pytorch_model.bin only, legacy pooling keys
                  evil    modules.json naming a module path out of the repo
                  custom  modules.json naming a module xlmr does not implement
                  nodense 2_Dense/ without weights
    org/plain-tiny main   a plain HF XLM-R directory (no modules.json: mean pooling); the cache records
                          the 404s of modules.json and config_sentence_transformers.json
                  unknown the same files, the 404s not recorded

Each backend's encoder loaded by name gives the embeddings of sentence-transformers on the directory
the repo was made from (within 1e-5) and fetches exactly the files it reads. ``HF_HUB_OFFLINE=1``
and a socket guard: no test touches the network.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import conversion
from tests import hub_cache
from tests.backends import BACKENDS
from tests.sentence_reference import (
    TEXTS,
    Spec,
    build_backbone,
    encoder_class,
    save_st_model,
    sentence_transformers,
    st_encode,
)
from xlmr._fileio import UnsafePathError
from xlmr._sentence import UnsupportedModuleError

pytestmark = pytest.mark.hf
huggingface_hub = pytest.importorskip("huggingface_hub")

ATOL = 1e-5
REPO = "org/st-tiny"
PLAIN = "org/plain-tiny"
SPEC = Spec(
    ("cls", "mean"), dense="Tanh", normalize=True, prompts=(("query", "query: "), ("passage", "passage: "))
)
NATIVE = {"torch": "pytorch_model.bin", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
TOKENIZER = ["tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model", "tokenizer.json"]
MODULE_FILES = ["1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors"]


def _other_formats(directory: Path, work: Path) -> dict[str, bytes]:
    """The Transformer's weights of ``directory`` in the three other formats (the same values)."""
    files = {}
    for fmt in ("pytorch", "tf", "flax"):
        out = work / f"{directory.name}-{fmt}"
        conversion.convert(directory, out, to=fmt)
        files.update(
            {n: b for n, b in hub_cache.directory_files(out).items() if conversion.io.weight_file_format(n)}
        )
    return files


def _legacy(st_dir: Path, target: Path, weights: dict[str, bytes]) -> Path:
    """``st_dir`` as older sentence-transformers wrote it: the Transformer in 0_Transformer/ without
    safetensors (pytorch/tf/flax weights), legacy pooling keys, Dense in pytorch_model.bin only."""
    inner = target / "0_Transformer"
    inner.mkdir(parents=True)
    for f in st_dir.iterdir():
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            shutil.copy(f, inner / f.name)
        elif f.is_dir():
            shutil.copytree(f, target / f.name)
    shutil.copy(st_dir / "config_sentence_transformers.json", target)
    (inner / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 12, "do_lower_case": False})
    )
    for name, data in weights.items():
        (inner / name).write_bytes(data)
    (inner / "model.safetensors").unlink()
    import torch
    from safetensors.torch import load_file

    dense = target / "2_Dense"
    torch.save(load_file(dense / "model.safetensors"), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}
        )
    )
    kinds = [("0_Transformer", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense"),
             ("3_Normalize", "Normalize")]  # fmt: skip
    modules = [{"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{k}"}
               for i, (p, k) in enumerate(kinds)]  # fmt: skip
    (target / "modules.json").write_text(json.dumps(modules))
    return target


class Cache:
    def __init__(self, home: Path) -> None:
        self.cache = home / "hub"
        work = home / "work"
        self.backbone = build_backbone(work)
        self.st_dir = save_st_model(SPEC, self.backbone, work / "st")
        weights = _other_formats(self.st_dir, work)
        self.legacy_dir = _legacy(self.st_dir, work / "legacy", weights)
        st = hub_cache.directory_files(self.st_dir)
        extra = {
            **weights,
            "2_Dense/pytorch_model.bin": _torch_copy(self.st_dir / "2_Dense" / "model.safetensors"),
            "9_Unused/config.json": b"{}",
        }
        main = {**st, **extra, **{"nested/" + n: b for n, b in st.items()}}
        modules = json.loads((self.st_dir / "modules.json").read_text())
        evil = [dict(modules[0]), dict(modules[1], path="../../../outside")]
        custom = [
            *modules[:2],
            {"idx": 2, "name": "2", "path": "2_Bow", "type": "sentence_transformers.models.BoW"},
        ]
        no_dense = {n: b for n, b in st.items() if not n.startswith("2_Dense/") or n.endswith("config.json")}
        self.commits = {
            "main": hub_cache.add_commit(self.cache, REPO, main, label="main", refs=["main"]),
            "legacy": hub_cache.add_commit(
                self.cache, REPO, hub_cache.directory_files(self.legacy_dir), label="legacy", refs=["legacy"]
            ),
            "evil": hub_cache.add_commit(
                self.cache, REPO, {**st, "modules.json": json.dumps(evil).encode()}, label="evil", refs=["evil"]
            ),
            "custom": hub_cache.add_commit(
                self.cache, REPO, {**st, "modules.json": json.dumps(custom).encode()}, label="custom",
                refs=["custom"],
            ),
            "nodense": hub_cache.add_commit(self.cache, REPO, no_dense, label="nodense", refs=["nodense"]),
        }  # fmt: skip
        plain = hub_cache.directory_files(self.backbone)
        known = hub_cache.add_commit(self.cache, PLAIN, plain, label="plain", refs=["main"])
        hub_cache.add_no_exist(
            self.cache, PLAIN, known, ["modules.json", "config_sentence_transformers.json"]
        )
        hub_cache.add_commit(self.cache, PLAIN, plain, label="plain-unknown", refs=["unknown"])


def _torch_copy(safetensors_file: Path) -> bytes:
    import io

    import torch
    from safetensors.torch import load_file

    buffer = io.BytesIO()
    torch.save(load_file(safetensors_file), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Cache:
    sentence_transformers()
    return Cache(tmp_path_factory.mktemp("hf-home-st"))


@pytest.fixture(autouse=True)
def offline(cache, monkeypatch):
    hub_cache.go_offline(monkeypatch, cache.cache)


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    return hub_cache.record_fetches(monkeypatch)


@pytest.fixture(scope="module")
def reference(cache):
    """sentence-transformers' embeddings of the directories the repos were made from."""
    return {
        "main": st_encode(cache.st_dir, TEXTS),
        "main-query": st_encode(cache.st_dir, TEXTS, prompt_name="query"),
        "legacy": st_encode(cache.legacy_dir, TEXTS),
    }


def _close(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (ours.shape, ref.shape)
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def _main_files(prefix: str = "") -> list[str]:
    names = ["modules.json", "config_sentence_transformers.json", "config.json", "sentence_bert_config.json",
             "model.safetensors", *TOKENIZER, *MODULE_FILES]  # fmt: skip
    return [prefix + n for n in names]


# -- loading by name -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_encoder_loads_by_name_fetching_only_what_it_reads(backend, cache, reference, fetched):
    cls = encoder_class(backend)
    encoder = cls.from_pretrained(REPO)
    assert fetched == _main_files()
    _close(encoder.encode(TEXTS), reference["main"])
    _close(encoder.encode(TEXTS, prompt_name="query"), reference["main-query"])
    local = cls.from_pretrained(cache.st_dir)  # the same directory, loaded as a local path
    _close(encoder.encode(TEXTS), local.encode(TEXTS))
    assert encoder.prompts == local.prompts and encoder.max_seq_length == local.max_seq_length
    assert encoder.name_or_path == REPO and encoder.model.name_or_path == REPO
    assert encoder.model.config.name_or_path == REPO and encoder.tokenizer.name_or_path == REPO
    assert local.name_or_path == str(cache.st_dir)


@pytest.mark.parametrize("backend", BACKENDS)
def test_legacy_layout_by_revision_fetches_the_backends_own_weights(backend, cache, reference, fetched):
    cls = encoder_class(backend)
    for name, kwargs in ((REPO + "@legacy", {}), (REPO, {"revision": "legacy"})):
        fetched.clear()
        encoder = cls.from_pretrained(name, **kwargs)
        t = "0_Transformer/"
        assert fetched == [
            "modules.json", "config_sentence_transformers.json", t + "config.json", t + "sentence_bert_config.json",
            t + NATIVE[backend], *(t + n for n in TOKENIZER), "1_Pooling/config.json", "2_Dense/config.json",
            "2_Dense/pytorch_model.bin",
        ]  # fmt: skip
        assert encoder.max_seq_length == 12 and encoder.name_or_path == REPO
        _close(encoder.encode(TEXTS), reference["legacy"])


def test_subfolder_commit_hash_cache_dir_and_local_files_only(
    cache, reference, fetched, monkeypatch, tmp_path
):
    cls = encoder_class("torch")
    _close(cls.from_pretrained(REPO, subfolder="nested").encode(TEXTS), reference["main"])
    assert fetched == _main_files("nested/")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # cache_dir= wins over the environment
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    fetched.clear()
    encoder = cls.from_pretrained(
        REPO, revision=cache.commits["legacy"], cache_dir=cache.cache, local_files_only=True
    )
    assert fetched[-1] == "2_Dense/pytorch_model.bin" and "0_Transformer/pytorch_model.bin" in fetched
    _close(encoder.encode(TEXTS), reference["legacy"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plain_hf_repo_is_mean_pooling(backend, cache, reference, fetched, caplog):
    texts = [t[:20] for t in TEXTS]  # within the 38 positions: sentence-transformers does not truncate there
    plain = sentence_transformers().SentenceTransformer(str(cache.backbone), device="cpu").encode(texts)
    with caplog.at_level(logging.WARNING, logger="xlmr.sentence"):
        encoder = encoder_class(backend).from_pretrained(PLAIN)
    assert fetched == ["config.json", "model.safetensors", "tokenizer_config.json", "special_tokens_map.json",
                       "sentencepiece.bpe.model"]  # fmt: skip
    assert [type(m).__name__ for m in encoder.modules] == ["Pooling"] and "modules.json" not in caplog.text
    _close(encoder.encode(texts), plain)
    # Offline, a cache that does not know whether the repo has a modules.json: mean pooling, with a warning.
    with caplog.at_level(logging.WARNING, logger="xlmr.sentence"):
        encoder = encoder_class(backend).from_pretrained(PLAIN + "@unknown")
    assert "modules.json of Hub repo org/plain-tiny (revision unknown)" in caplog.text
    _close(encoder.encode(texts), plain)


# -- errors --------------------------------------------------------------------------------------------
def test_a_name_missing_from_the_cache_says_offline_which_repo_and_which_file(cache):
    cls = encoder_class("torch")
    with pytest.raises(FileNotFoundError) as err:
        cls.from_pretrained("org/missing")
    message = str(err.value)
    assert "offline (HF_HUB_OFFLINE=1): config.json of Hub repo org/missing (revision main)" in message
    assert str(cache.cache) in message and "'org/missing' is no local directory" in message
    with pytest.raises(FileNotFoundError, match=r"offline .*Hub repo org/st-tiny \(revision nope\)"):
        cls.from_pretrained(REPO + "@nope")
    with pytest.raises(FileNotFoundError) as err:
        cls.from_pretrained(REPO + "@nodense")
    message = str(err.value)
    assert "offline (HF_HUB_OFFLINE=1): 2_Dense/model.safetensors or 2_Dense/pytorch_model.bin" in message
    assert "Hub repo org/st-tiny (revision nodense)" in message


def test_untrusted_module_paths_and_unknown_modules_fetch_nothing_more(cache, fetched):
    cls = encoder_class("torch")
    with pytest.raises(UnsafePathError, match="module path '../../../outside'"):
        cls.from_pretrained(REPO + "@evil")
    with pytest.raises(UnsupportedModuleError, match="'sentence_transformers.models.BoW'"):
        cls.from_pretrained(REPO + "@custom")
    # Both refused on reading modules.json: nothing else was fetched.
    assert fetched == ["modules.json", "config_sentence_transformers.json"] * 2


def test_conflicting_revisions_and_unknown_hub_arguments(cache):
    cls = encoder_class("torch")
    with pytest.raises(ValueError, match="names revision 'legacy' but revision='main'"):
        cls.from_pretrained(REPO + "@legacy", revision="main")


# -- xlmr embed ----------------------------------------------------------------------------------------
def test_xlmr_embed_takes_a_hub_name(cache, tmp_path, capsys):
    from xlmr import cli_embed

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(t.replace("\n", " ") for t in TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    argv = [str(source), "-o", str(out), "--model", REPO + "@legacy", "--backend", "flax", "-q"]
    assert cli_embed.main(argv) == 0, capsys.readouterr().err
    expected = encoder_class("flax").from_pretrained(REPO, revision="legacy").encode(TEXTS)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6, rtol=0)
    assert (
        cli_embed.main([str(source), "-o", str(tmp_path / "missing.npy"), "--model", "org/missing", "-q"])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("error: offline (HF_HUB_OFFLINE=1): config.json of Hub repo org/missing")
    assert err.count("\n") == 1


# -- the sentence-embedding pipeline -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_sentence_embedding_pipeline_takes_a_hub_name(backend, cache, reference, fetched):
    import xlmr

    encoder_class(backend)
    embed = xlmr.pipeline("sentence-embedding", REPO, backend=backend, revision="legacy")
    assert fetched[-1] == "2_Dense/pytorch_model.bin" and "0_Transformer/" + NATIVE[backend] in fetched
    assert len(fetched) == 12 and embed.encoder.name_or_path == REPO
    _close(embed(TEXTS, return_tensors=True), reference["legacy"])
    fetched.clear()
    embed = xlmr.pipeline("sentence-embedding", REPO, backend=backend)
    assert fetched == _main_files()
    _close(embed(TEXTS, prompt_name="query", return_tensors=True), reference["main-query"])


def test_hub_arguments_reach_hf_hub_download_and_404s_are_skipped(cache, reference, monkeypatch, caplog):
    """Online (a stand-in for the network serving the cache): token, force_download and the revision
    reach every request; files a repo lacks (404) are skipped without a warning."""
    from huggingface_hub.errors import EntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def remote(repo_id, filename, **kwargs):
        calls.append((filename, kwargs))
        name = "/".join(p for p in (kwargs["subfolder"], filename) if p)
        found = huggingface_hub.try_to_load_from_cache(
            repo_id, name, cache_dir=kwargs["cache_dir"], revision=kwargs["revision"]
        )
        if not isinstance(found, str):
            raise EntryNotFoundError(f"404 Client Error: Entry Not Found for url: {name}")
        return found

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", remote)
    encoder = encoder_class("flax").from_pretrained(
        REPO, revision="legacy", token="hf_x", force_download=True
    )
    _close(encoder.encode(TEXTS), reference["legacy"])
    asked = [c[0] for c in calls]
    # The Transformer: safetensors (404), its index (404), then flax's own file; Dense: safetensors (404), then torch.
    t = "0_Transformer/"
    assert asked[4:8] == [t + "model.safetensors", t + "model.safetensors.index.json", t + "flax_model.msgpack",
                          t + "tokenizer_config.json"]  # fmt: skip
    assert asked[-2:] == ["2_Dense/model.safetensors", "2_Dense/pytorch_model.bin"]
    for _, kwargs in calls:
        assert (
            kwargs["revision"] == "legacy" and kwargs["token"] == "hf_x" and kwargs["force_download"] is True
        )
        assert kwargs["local_files_only"] is False and Path(kwargs["cache_dir"]) == cache.cache
    calls.clear()
    with caplog.at_level(logging.WARNING, logger="xlmr.sentence"):
        encoder_class("flax").from_pretrained(PLAIN + "@unknown")  # no modules.json: a 404, no warning
    assert "modules.json" not in caplog.text
    assert [c[0] for c in calls][:2] == ["modules.json", "config_sentence_transformers.json"]
