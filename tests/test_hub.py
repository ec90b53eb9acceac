"""Checkpoints by Hub name (issue 15), offline: a Hugging Face cache laid out as huggingface_hub lays it out.

The cache (tests/hub_cache.py, checked with huggingface_hub's ``scan_cache_dir`` and
``try_to_load_from_cache``) holds one tiny masked-LM repo ``org/xlmr-tiny`` at several commits.
Every weight file holds DIFFERENT random weights, so the loaded values show which file was read:

    main     config, model.safetensors W0, pytorch_model.bin W1, tf_model.h5 W2, flax_model.msgpack W3,
             tokenizer files (model_max_length 512); sub/config.json + sub/model.safetensors W10
    v1       config, pytorch_model.bin W4, tf_model.h5 W5, flax_model.msgpack W6 (no safetensors),
             tokenizer files (model_max_length 128)
    h5only   config, tf_model.h5 W7
    sharded  config, model.safetensors.index.json + two shards W8, pytorch_model.bin W9
    noweights config only

``HF_HUB_OFFLINE=1`` (conftest) and a socket guard: no test touches the network. The files asked
of huggingface_hub are recorded (``hf_hub_download`` wrapped): only the needed ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import conversion
from conversion import cli
from tests import hub_cache
from tests.backends import get_adapter
from tests.reference import make_inputs, tiny_config
from xlmr import HEAD_NAMES, HEADS, XLMRobertaConfig, XLMRobertaTokenizer, XLMRobertaTokenizerFast, _hub
from xlmr import weights as W

huggingface_hub = pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[1]
REPO = "org/xlmr-tiny"
HEAD = "masked_lm"
NATIVE = {"torch": "pytorch_model.bin", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
TOKENIZER_CONFIGS = ["tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]


def _weights(config, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = W.expected_shapes(config, HEAD)
    return {k: (0.02 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


def _weight_files(tmp: Path, config, fmt: str, weights, **kw) -> dict[str, bytes]:
    directory = tmp / f"w{id(weights)}-{fmt}"
    conversion.write_state_dict(weights, config, HEAD, directory, fmt, **kw)
    return hub_cache.directory_files(directory)


class Hub:
    """The cache fixture: its folder, the repo's weights by number, the commits by label."""

    def __init__(self, home: Path) -> None:
        from tests.test_tokenization import model_file

        self.home = home
        self.cache = home / "hub"
        tok = XLMRobertaTokenizerFast(model_file("small"), model_max_length=512)
        config = tiny_config(num_labels=3, vocab_size=len(tok), architectures=["XLMRobertaForMaskedLM"])
        self.config = config
        self.weights = {k: _weights(config, k) for k in range(11)}
        work = home / "work"
        tok.save_pretrained(work / "tok512")
        tok.model_max_length = 128
        tok.save_pretrained(work / "tok128")
        self.tokenizer_dirs = {"main": work / "tok512", "v1": work / "tok128"}
        cfg = {"config.json": config.to_json_string().encode()}
        w = self.weights
        files = lambda fmt, k, **kw: _weight_files(work, config, fmt, w[k], **kw)  # noqa: E731
        sub = {"sub/" + n: b for n, b in {**cfg, **files("safetensors", 10)}.items()}
        self.commits = {
            "main": hub_cache.add_commit(
                self.cache,
                REPO,
                {
                    **cfg,
                    **files("safetensors", 0),
                    **files("pytorch", 1),
                    **files("tf", 2),
                    **files("flax", 3),
                    **hub_cache.directory_files(work / "tok512"),
                    **sub,
                },
                label="main",
                refs=["main"],
            ),
            "v1": hub_cache.add_commit(
                self.cache,
                REPO,
                {
                    **cfg,
                    **files("pytorch", 4),
                    **files("tf", 5),
                    **files("flax", 6),
                    **hub_cache.directory_files(work / "tok128"),
                },
                label="v1",
                refs=["v1"],
            ),
            "h5only": hub_cache.add_commit(
                self.cache, REPO, {**cfg, **files("tf", 7)}, label="h5only", refs=["h5only"]
            ),
            "sharded": hub_cache.add_commit(
                self.cache,
                REPO,
                {**cfg, **files("safetensors", 8, max_shard_size=50_000), **files("pytorch", 9)},
                label="sharded",
                refs=["sharded"],
            ),
            "noweights": hub_cache.add_commit(self.cache, REPO, cfg, label="noweights", refs=["noweights"]),
        }

    def snapshot(self, revision: str = "main") -> Path:
        return hub_cache.repo_folder(self.cache, REPO) / "snapshots" / self.commits[revision]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Hub:
    return Hub(tmp_path_factory.mktemp("hf-home"))


@pytest.fixture(autouse=True)
def offline(hub, monkeypatch):
    """HF_HUB_CACHE = the fixture's cache, HF_HUB_OFFLINE=1, and no socket may connect."""
    hub_cache.go_offline(monkeypatch, hub.cache)


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The repo file names asked of ``hf_hub_download`` and found, in order (subfolder joined)."""
    return hub_cache.record_fetches(monkeypatch)


def _backbone_equal(model, expected: dict[str, np.ndarray], head: str) -> None:
    """Every weight the model shares with the checkpoint holds the checkpoint's exact value."""
    got = model.canonical_state_dict()
    want = W.adapt_prefix(expected, head)
    shared = sorted(set(got) & set(want))
    assert len(shared) >= len(W.backbone_shapes(tiny_config(), add_pooling_layer=False))
    for key in shared:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _model_class(backend: str, head: str):
    adapter = get_adapter(backend)
    module = __import__(f"xlmr_{adapter.NAME}")
    return getattr(module, HEADS[head].class_name(backend))


# -- the cache is huggingface_hub's ------------------------------------------------------------
def test_the_cache_is_laid_out_as_huggingface_hub_lays_it_out(hub):
    info = huggingface_hub.scan_cache_dir(hub.cache)
    assert not info.warnings, info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO and repo.repo_type == "model"
    assert {r.commit_hash: set(r.refs) for r in repo.revisions} == {c: {n} for n, c in hub.commits.items()}
    main = hub.snapshot("main")
    assert huggingface_hub.try_to_load_from_cache(REPO, "model.safetensors", cache_dir=hub.cache) == str(
        main / "model.safetensors"
    )
    assert huggingface_hub.try_to_load_from_cache(
        REPO, "pytorch_model.bin", cache_dir=hub.cache, revision="v1"
    ) == str(hub.snapshot("v1") / "pytorch_model.bin")
    assert huggingface_hub.try_to_load_from_cache(REPO, "config.json", cache_dir=hub.cache, revision="v1")
    assert (
        huggingface_hub.try_to_load_from_cache(REPO, "model.safetensors", cache_dir=hub.cache, revision="v1")
        is None
    )
    assert huggingface_hub.try_to_load_from_cache(
        REPO, "sub/model.safetensors", cache_dir=hub.cache, revision=hub.commits["main"]
    ) == str(main / "sub" / "model.safetensors")
    assert (main / "config.json").is_symlink() and (main / "config.json").resolve().parent.name == "blobs"


# -- models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_every_torch_head_loads_by_name_reading_config_and_safetensors_only(hub, fetched, head):
    cls = _model_class("torch", head)
    model = cls.from_pretrained(REPO)
    assert fetched == ["config.json", "model.safetensors"]
    _backbone_equal(model, hub.weights[0], head)
    assert model.name_or_path == REPO and model.config.name_or_path == REPO
    assert model.config.to_dict()["_name_or_path"] == REPO


# (name, kwargs, revision label, weight number per backend, files fetched per backend)
CASES = {
    "main": (REPO, {}, {b: 0 for b in NATIVE}, lambda b: ["config.json", "model.safetensors"]),
    "at-v1": (REPO + "@v1", {}, {"torch": 4, "tf": 5, "flax": 6}, lambda b: ["config.json", NATIVE[b]]),
    "revision-v1": (REPO, {"revision": "v1"}, {"torch": 4, "tf": 5, "flax": 6}, lambda b: ["config.json", NATIVE[b]]),
    "any-other": (REPO + "@h5only", {}, {b: 7 for b in NATIVE}, lambda b: ["config.json", "tf_model.h5"]),
    "sharded": (REPO, {"revision": "sharded"}, {b: 8 for b in NATIVE}, None),  # files: from the index
    "subfolder": (REPO, {"subfolder": "sub"}, {b: 10 for b in NATIVE},
                  lambda b: ["sub/config.json", "sub/model.safetensors"]),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["torch", "tf", "flax"])
def test_base_model_loads_by_name_revision_and_subfolder_in_every_backend(hub, fetched, backend, case):
    name, kwargs, number, files = CASES[case]
    if case == "sharded":  # the index and the shards it lists; pytorch_model.bin is there too, never read
        index = json.loads((hub.snapshot("sharded") / "model.safetensors.index.json").read_text())
        shards = sorted(set(index["weight_map"].values()))
        assert len(shards) >= 2
        files = lambda b: ["config.json", "model.safetensors.index.json", *shards]  # noqa: E731
    model = _model_class(backend, "base").from_pretrained(name, **kwargs)
    assert fetched == files(backend)
    _backbone_equal(model, hub.weights[number[backend]], "base")
    assert model.name_or_path == REPO and model.config.name_or_path == REPO


def test_a_commit_hash_and_cache_dir_argument(hub, fetched, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # cache_dir= wins over the environment
    cls = _model_class("torch", HEAD)
    model = cls.from_pretrained(REPO, revision=hub.commits["v1"], cache_dir=hub.cache)
    assert fetched == ["config.json", "pytorch_model.bin"]
    _backbone_equal(model, hub.weights[4], HEAD)


def test_hf_home_is_honoured_when_hf_hub_cache_is_unset(hub, fetched, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(hub.home))
    model = _model_class("torch", HEAD).from_pretrained(REPO + "@v1")
    _backbone_equal(model, hub.weights[4], HEAD)


def test_the_base_class_picks_the_head_from_a_hub_config(hub, fetched):
    import xlmr_torch

    model = xlmr_torch.XLMRobertaPreTrainedModel.from_pretrained(REPO, revision="v1")
    assert type(model).__name__ == "XLMRobertaForMaskedLM"
    assert fetched == ["config.json", "config.json", "pytorch_model.bin"]
    _backbone_equal(model, hub.weights[4], HEAD)


def test_config_by_name_fetches_config_json_only(hub, fetched):
    config = XLMRobertaConfig.from_pretrained(REPO + "@v1", num_labels=5)
    assert fetched == ["config.json"]
    assert config.num_labels == 5 and config.name_or_path == REPO
    assert config == XLMRobertaConfig.from_pretrained(hub.snapshot("v1"), num_labels=5)


def test_a_local_path_is_recorded_as_given_and_not_written_to_config_json(hub, tmp_path):
    cls = _model_class("torch", HEAD)
    model = cls.from_pretrained(REPO)
    model.save_pretrained(tmp_path / "saved")
    assert "_name_or_path" not in json.loads((tmp_path / "saved" / "config.json").read_text())  # as HF
    again = cls.from_pretrained(str(tmp_path / "saved"))
    assert again.name_or_path == str(tmp_path / "saved") == again.config.name_or_path
    assert cls(tiny_config()).name_or_path == ""  # built from a config: HF's empty name
    # A snapshot folder given as a path loads too (its files link into blobs/, inside the repo folder).
    _backbone_equal(cls.from_pretrained(hub.snapshot("v1")), hub.weights[4], HEAD)


# -- tokenizers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [XLMRobertaTokenizer, XLMRobertaTokenizerFast], ids=["slow", "fast"])
def test_tokenizers_load_by_name_and_revision_fetching_tokenizer_files_only(hub, fetched, cls):
    model_files = ["sentencepiece.bpe.model"] + (["tokenizer.json"] if cls is XLMRobertaTokenizerFast else [])
    text = "héllo wörld, Привет"
    for name, kwargs, revision in [
        (REPO, {}, "main"),
        (REPO + "@v1", {}, "v1"),
        (REPO, {"revision": "v1"}, "v1"),
    ]:
        fetched.clear()
        tok = cls.from_pretrained(name, **kwargs)
        # added_tokens.json is optional and absent: asked for, not found (not recorded).
        assert fetched == ["tokenizer_config.json", "special_tokens_map.json", *model_files]
        local = cls.from_pretrained(hub.tokenizer_dirs[revision])
        assert tok.model_max_length == {"main": 512, "v1": 128}[revision] == local.model_max_length
        assert tok(text)["input_ids"] == local(text)["input_ids"]
        assert tok.name_or_path == REPO


# -- pipelines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_a_pipeline_takes_a_hub_name(hub, fetched, backend, tmp_path):
    import xlmr

    get_adapter(backend)
    fill = xlmr.pipeline("fill-mask", REPO + "@v1", backend=backend, top_k=3)
    native = NATIVE[backend]
    assert fetched == [
        "config.json",
        native,
        *TOKENIZER_CONFIGS[:2],
        "sentencepiece.bpe.model",
        "tokenizer.json",
    ]
    assert fill.model.name_or_path == REPO and fill.tokenizer.name_or_path == REPO
    assert fill.tokenizer.model_max_length == 128  # v1's tokenizer
    # The same pipeline on a plain directory holding v1's files (its own weight file only).
    local = tmp_path / "v1"
    local.mkdir()
    for name in ("config.json", native, "sentencepiece.bpe.model", "tokenizer.json", *TOKENIZER_CONFIGS[:2]):
        (local / name).write_bytes((hub.snapshot("v1") / name).read_bytes())
    expected = xlmr.pipeline("fill-mask", str(local), backend=backend, top_k=3)
    text = "héllo <mask> wörld"
    got, want = fill(text), expected(text)
    assert [r["token"] for r in got] == [r["token"] for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-6)
    fetched.clear()
    classify = xlmr.pipeline("feature-extraction", REPO, backend=backend, tokenizer=REPO + "@v1")
    assert fetched == ["config.json", "model.safetensors", *TOKENIZER_CONFIGS[:2], "sentencepiece.bpe.model",
                       "tokenizer.json"]  # fmt: skip
    assert classify.tokenizer.model_max_length == 128


# -- xlmr-convert -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "number", "weights"),
    [
        ([REPO], 0, ["model.safetensors"]),
        ([REPO + "@v1"], 4, ["pytorch_model.bin"]),
        ([REPO, "--revision", "v1"], 4, ["pytorch_model.bin"]),
        ([REPO, "--subfolder", "sub"], 10, ["sub/model.safetensors"]),
    ],
)
def test_xlmr_convert_takes_hub_names(hub, fetched, tmp_path, capsys, argv, number, weights):
    dst = tmp_path / "out"
    assert cli.main([argv[0], str(dst), "--to", "flax", "-q", *argv[1:]]) == 0, capsys.readouterr().err
    sub = "sub/" if "sub" in argv else ""
    tokenizer = [] if sub else ["tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model",
                                "tokenizer.json"]  # fmt: skip
    assert fetched == [sub + "config.json", *weights, *tokenizer]
    back = conversion.read_state_dict(dst / "flax_model.msgpack", hub.config)
    assert back.keys() == hub.weights[number].keys()
    for key, value in hub.weights[number].items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert sorted(p.name for p in dst.iterdir()) == sorted(
        ["config.json", "flax_model.msgpack", *([] if sub else ["tokenizer_config.json", "special_tokens_map.json",
                                                               "sentencepiece.bpe.model", "tokenizer.json"])]
    )  # fmt: skip


def test_xlmr_convert_in_a_fresh_process_reads_hf_home(hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(hub.home), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "conversion", REPO + "@h5only", str(tmp_path / "out"), "--to", "safetensors"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    back = conversion.read_state_dict(tmp_path / "out" / "model.safetensors")
    np.testing.assert_array_equal(
        back["roberta.embeddings.word_embeddings.weight"],
        hub.weights[7]["roberta.embeddings.word_embeddings.weight"],
    )


# -- missing files: say offline, the repo and the file ---------------------------------------------
def _loaders():
    import xlmr_torch

    return {
        "model": lambda name, **kw: xlmr_torch.XLMRobertaModel.from_pretrained(name, **kw),
        "config": lambda name, **kw: XLMRobertaConfig.from_pretrained(name, **kw),
        "slow tokenizer": lambda name, **kw: XLMRobertaTokenizer.from_pretrained(name, **kw),
        "fast tokenizer": lambda name, **kw: XLMRobertaTokenizerFast.from_pretrained(name, **kw),
    }


@pytest.mark.parametrize("what", ["model", "config", "slow tokenizer", "fast tokenizer"])
def test_a_name_missing_from_the_cache_says_offline_which_repo_and_which_file(hub, what):
    load = _loaders()[what]
    file = "sentencepiece.bpe.model" if "tokenizer" in what else "config.json"
    with pytest.raises(FileNotFoundError) as err:
        load("org/missing")
    message = str(err.value)
    assert "offline (HF_HUB_OFFLINE=1)" in message and "Hub repo org/missing (revision main)" in message
    assert file in message and str(hub.cache) in message and "'org/missing' is no local directory" in message
    with pytest.raises(FileNotFoundError, match=r"offline .*Hub repo org/xlmr-tiny \(revision nope\)"):
        load(REPO + "@nope")


def test_missing_weights_name_every_file_looked_for(hub):
    with pytest.raises(FileNotFoundError) as err:
        _loaders()["model"](REPO, revision="noweights")
    message = str(err.value)
    assert "offline (HF_HUB_OFFLINE=1)" in message and "(revision noweights)" in message
    for name in (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "flax_model.msgpack",
    ):
        assert name in message


def test_local_files_only_is_offline_too(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(
        FileNotFoundError, match=r"offline \(local_files_only=True\): config.json of Hub repo org/x"
    ):
        _loaders()["model"]("org/x", local_files_only=True)
    _backbone_equal(_loaders()["model"](REPO, local_files_only=True), hub.weights[0], "base")


def test_xlmr_convert_reports_a_missing_name_in_one_line(hub, tmp_path, capsys):
    assert cli.main(["org/missing", str(tmp_path / "out"), "--to", "tf"]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: offline (HF_HUB_OFFLINE=1): config.json of Hub repo org/missing")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "out").exists()


def test_conflicting_revisions_and_unknown_hub_arguments_are_errors(hub):
    with pytest.raises(ValueError, match="names revision 'v1' but revision='main'"):
        _loaders()["model"](REPO + "@v1", revision="main")
    with pytest.raises(TypeError, match="unexpected Hub argument"):
        _hub.resolve_model(REPO, proxies={})


def test_paths_that_are_not_repo_ids_keep_their_local_errors(tmp_path):
    import xlmr_torch

    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        xlmr_torch.XLMRobertaModel.from_pretrained(str(tmp_path / "nowhere"))
    for name in ("a/b/c", "./relative", "../up", "bad--name", "x@"):
        assert not _hub.is_hub_name(name)
    assert _hub.is_hub_name("xlm-roberta-base") and _hub.is_hub_name("FacebookAI/xlm-roberta-base@v1.0")


# -- the cache is untrusted too --------------------------------------------------------------------
def test_a_snapshot_link_or_shard_name_pointing_out_of_the_repo_is_refused(hub, tmp_path):
    from xlmr._fileio import UnsafePathError

    secret = tmp_path / "secret.safetensors"
    secret.write_bytes((hub.snapshot("main") / "model.safetensors").read_bytes())
    evil = "org/evil"
    commit = hub_cache.add_commit(
        hub.cache, evil, {"config.json": hub.config.to_json_string().encode()}, label="evil", refs=["main"]
    )
    snapshot = hub_cache.repo_folder(hub.cache, evil) / "snapshots" / commit
    (snapshot / "model.safetensors").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="outside the checkpoint directory"):
        _loaders()["model"](evil)
    index = {"metadata": {}, "weight_map": {"roberta.embeddings.word_embeddings.weight": "../../../secret"}}
    hub_cache.add_commit(
        hub.cache, evil, {"config.json": hub.config.to_json_string().encode(),
                          "model.safetensors.index.json": json.dumps(index).encode()},
        label="evil-index", refs=["index"],
    )  # fmt: skip
    with pytest.raises(UnsafePathError, match="shard name '../../../secret'"):
        _loaders()["model"](evil + "@index")


# -- the Hub arguments reach huggingface_hub (a stand-in for the network) ----------------------------
def test_hub_arguments_reach_hf_hub_download_and_a_404_moves_to_the_next_format(hub, monkeypatch):
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def remote(repo_id, filename, **kwargs):
        """The Hub as the cache holds it: a file the revision lacks is a 404."""
        calls.append((filename, kwargs))
        if repo_id != REPO:
            raise RepositoryNotFoundError(f"404 Client Error: Repository Not Found for url: {repo_id}")
        name = "/".join(p for p in (kwargs["subfolder"], filename) if p)
        found = huggingface_hub.try_to_load_from_cache(
            repo_id, name, cache_dir=kwargs["cache_dir"], revision=kwargs["revision"]
        )
        if not isinstance(found, str):
            raise EntryNotFoundError(f"404 Client Error: Entry Not Found for url: {name}")
        return found

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", remote)
    import xlmr_flax

    model = xlmr_flax.FlaxXLMRobertaModel.from_pretrained(
        REPO, revision="v1", token="hf_x", force_download=True
    )
    _backbone_equal(model, hub.weights[6], "base")
    assert [c[0] for c in calls] == ["config.json", "model.safetensors", "model.safetensors.index.json",
                                     "flax_model.msgpack"]  # fmt: skip
    for _, kwargs in calls:
        assert kwargs["revision"] == "v1" and kwargs["token"] == "hf_x" and kwargs["force_download"] is True
        assert kwargs["local_files_only"] is False and Path(kwargs["cache_dir"]) == hub.cache
    with pytest.raises(
        FileNotFoundError, match="'org/private' is neither a local directory nor a Hub repo.*token="
    ):
        xlmr_flax.FlaxXLMRobertaModel.from_pretrained("org/private")
    with pytest.raises(
        FileNotFoundError, match=r"Hub repo org/xlmr-tiny \(revision noweights\) holds no weight file"
    ):
        xlmr_flax.FlaxXLMRobertaModel.from_pretrained(REPO, revision="noweights")


def test_no_connection_and_nothing_cached_says_so(hub, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def unreachable(repo_id, filename, **kwargs):
        if filename == "config.json":
            return huggingface_hub.try_to_load_from_cache(REPO, filename, cache_dir=kwargs["cache_dir"])
        raise LocalEntryNotFoundError(
            "Connection error, and we cannot find the requested files in the disk cache."
        )

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(FileNotFoundError) as err:
        _loaders()["model"](REPO)
    message = str(err.value)
    assert (
        message.startswith("a weight file (looked for model.safetensors, ")
        and "could not be fetched" in message
    )
    assert "Connection error" in message and "Hub repo org/xlmr-tiny (revision main)" in message


def test_the_weight_file_table_is_conversions():
    assert _hub.WEIGHT_FILES == conversion.FORMATS


# -- PEFT: the base model's name is recorded, and AutoPeftModel rebuilds it ------------------------------
def test_peft_records_the_base_path_and_auto_peft_model_rebuilds_it(tmp_path):
    """An adapter trained with PEFT on an xlmr_torch classifier loaded from a local directory: PEFT
    writes that directory as ``base_model_name_or_path``, and ``AutoPeftModelForSequenceClassification``
    (which rebuilds the base with transformers' Auto classes) gives the xlmr PEFT model's logits."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import xlmr_torch

    torch.manual_seed(0)
    config = tiny_config(num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base_dir = tmp_path / "base"
    xlmr_torch.XLMRobertaForSequenceClassification(config).save_pretrained(base_dir)
    model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(str(base_dir))
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    peft_model = peft.get_peft_model(model, lora)
    batch = {k: torch.from_numpy(v) for k, v in make_inputs(config, "sequence_classification").items()}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(3):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    saved = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(base_dir)  # PEFT reads model.__dict__["name_or_path"]
    card = (adapter_dir / "README.md").read_text()  # and config.to_dict()["_name_or_path"] for the card
    assert f"base_model: {base_dir}" in card

    rebuilt = peft.AutoPeftModelForSequenceClassification.from_pretrained(str(adapter_dir)).eval()
    assert type(rebuilt.base_model.model).__module__.startswith("transformers.")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = peft_model(**inputs).logits.numpy()
        actual = rebuilt(**inputs).logits.numpy()
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(
        float(p.detach().abs().max()) > 0 for p in lora_b
    )  # the adapter moved: not the base alone
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_xlmr_convert_to_onnx_takes_a_hub_name(hub, fetched, tmp_path, capsys):
    """``--to onnx`` from ``org/name@v1`` (no safetensors there: torch's own pytorch_model.bin, W4) gives a
    graph that ONNX Runtime runs as HF's class loaded from the same snapshot."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    transformers = pytest.importorskip("transformers")

    dst = tmp_path / "onnx"
    assert cli.main([REPO + "@v1", str(dst), "--to", "onnx", "-q"]) == 0, capsys.readouterr().err
    assert fetched == [
        "config.json",
        "pytorch_model.bin",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "sentencepiece.bpe.model",
        "tokenizer.json",
    ]
    feed = make_inputs(hub.config, HEAD, batch=3, seq=10, seed=3, labels=False)
    session = ort.InferenceSession(str(dst / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, feed)
    reference = transformers.XLMRobertaForMaskedLM.from_pretrained(hub.snapshot("v1")).eval()
    with torch.no_grad():
        expected = reference(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
