"""Sentence encoders of the three backends against sentence-transformers itself.

Tiny XLM-R models (perturbed random weights, a tokenizer trained here) are wrapped in
sentence-transformers' own Transformer / Pooling / Dense / Normalize modules and saved by it;
each backend's encoder loads the directory and must give ``SentenceTransformer.encode``'s
embeddings within 1e-5 on a batch of mixed lengths (some truncated), for every pooling mode,
with and without Dense and Normalize, with prompts; quantized precisions and token embeddings
too. Directories the encoders write load in sentence-transformers with the same embeddings.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.backends import BACKENDS
from tests.sentence_reference import (
    MAX_SEQ_LENGTH,
    TEXTS,
    Spec,
    assert_quantized_match,
    build_backbone,
    encoder_class,
    save_st_model,
    sentence_transformers,
    st_encode,
)

pytestmark = pytest.mark.hf

ATOL = 1e-5
PROMPTS = (("query", "query: "), ("passage", "passage: "))
SPECS = [
    Spec(("cls",)),
    Spec(("max",)),
    Spec(("mean",)),
    Spec(("mean_sqrt_len_tokens",)),
    Spec(("weightedmean",)),
    Spec(("lasttoken",)),
    Spec(("mean",), normalize=True, similarity="dot"),
    Spec(("cls", "max", "mean"), dense="Tanh", normalize=True),
    Spec(("mean", "cls", "weightedmean"), dense="GELU", dense_out=24, similarity="euclidean"),
    Spec(("mean",), prompts=PROMPTS, default_prompt_name="query", normalize=True),
    Spec(("mean", "lasttoken", "cls"), include_prompt=False, prompts=PROMPTS, dense="Identity"),
]
SPEC_IDS = [s.name for s in SPECS]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    sentence_transformers()
    return build_backbone(tmp_path_factory.mktemp("st_backbone"))


@pytest.fixture(scope="module")
def st_dirs(backbone, tmp_path_factory):
    cache = {}

    def get(spec: Spec):
        if spec not in cache:
            cache[spec] = save_st_model(spec, backbone, tmp_path_factory.mktemp(f"st_{spec.name}"))
        return cache[spec]

    return get


_ENCODERS: dict = {}


def _encoder(backend: str, directory, **kwargs):
    key = (backend, str(directory), tuple(sorted(kwargs.items())))
    if key not in _ENCODERS:
        _ENCODERS[key] = encoder_class(backend).from_pretrained(directory, **kwargs)
    return _ENCODERS[key]


def _close(ours, ref, atol=ATOL):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (ours.shape, ref.shape, ours.dtype, ref.dtype)
    np.testing.assert_allclose(ours, ref, atol=atol, rtol=0)


# -- parity with SentenceTransformer.encode --------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_embeddings_match_sentence_transformers(backend, spec, st_dirs):
    directory = st_dirs(spec)
    encoder = _encoder(backend, directory)
    prompt_kwargs = [{}]
    if spec.prompts:
        prompt_kwargs += [{"prompt_name": "passage"}, {"prompt": "Represent this: "}]
    for kwargs in prompt_kwargs:
        reference = st_encode(directory, TEXTS, batch_size=4, **kwargs)
        _close(encoder.encode(TEXTS, batch_size=4, **kwargs), reference)
    # Normalization on request, and one batch for everything: same numbers.
    _close(
        encoder.encode(TEXTS, normalize_embeddings=True),
        st_encode(directory, TEXTS, normalize_embeddings=True),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantized_precisions(backend, st_dirs):
    spec = SPECS[7]  # cls + max + mean, Dense, Normalize
    directory = st_dirs(spec)
    encoder = _encoder(backend, directory)
    floats = encoder.encode(TEXTS)
    for precision in ("int8", "uint8", "binary", "ubinary"):
        ours = encoder.encode(TEXTS, precision=precision)
        assert_quantized_match(ours, floats, st_encode(directory, TEXTS, precision=precision), precision)


@pytest.mark.parametrize("spec", [SPECS[2], SPECS[10]], ids=[SPEC_IDS[2], SPEC_IDS[10]])
@pytest.mark.parametrize("backend", BACKENDS)
def test_token_embeddings(backend, spec, st_dirs):
    directory = st_dirs(spec)
    encoder = _encoder(backend, directory)
    for kwargs in ({}, {"prompt_name": "query"} if spec.prompts else {"prompt": "query: "}):
        reference = st_encode(directory, TEXTS, output_value="token_embeddings", batch_size=5, **kwargs)
        ours = encoder.encode(TEXTS, output_value="token_embeddings", batch_size=5, **kwargs)
        assert len(ours) == len(reference)
        for i, (a, b) in enumerate(zip(ours, reference)):
            assert a.shape == tuple(b.shape), (i, a.shape, tuple(b.shape))
            np.testing.assert_allclose(a, b.numpy(), atol=ATOL, rtol=0, err_msg=f"text {i}")
        assert max(len(a) for a in ours) == MAX_SEQ_LENGTH  # truncation happened


@pytest.mark.parametrize("backend", BACKENDS)
def test_similarity_uses_the_configured_function(backend, st_dirs):
    st = sentence_transformers()
    for spec in (SPECS[2], SPECS[6], SPECS[8]):  # cosine (default), dot, euclidean
        directory = st_dirs(spec)
        encoder = _encoder(backend, directory)
        reference = st.SentenceTransformer(str(directory), device="cpu")
        assert encoder.similarity_fn_name == reference.similarity_fn_name
        emb = encoder.encode(TEXTS[:5])
        np.testing.assert_allclose(
            encoder.similarity(emb, emb[:3]), reference.similarity(emb, emb[:3]).numpy(), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            encoder.similarity_pairwise(emb[:3], emb[1:4]),
            reference.similarity_pairwise(emb[:3], emb[1:4]).numpy(),
            rtol=1e-5,
            atol=1e-5,
        )


# -- saving and loading ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_save_pretrained_loads_in_sentence_transformers(backend, st_dirs, tmp_path):
    for spec in (SPECS[7], SPECS[10]):
        directory = st_dirs(spec)
        encoder = _encoder(backend, directory)
        out = tmp_path / spec.name
        encoder.save_pretrained(out)
        kwargs = {"prompt_name": "query"} if spec.prompts else {}
        reference = st_encode(directory, TEXTS, **kwargs)
        _close(st_encode(out, TEXTS, **kwargs), reference)
        again = encoder_class(backend).from_pretrained(out)
        _close(again.encode(TEXTS, **kwargs), reference)
        assert again.prompts == encoder.prompts and again.similarity_fn_name == encoder.similarity_fn_name
        assert again.max_seq_length == encoder.max_seq_length == MAX_SEQ_LENGTH


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "tf", "flax"])
def test_any_weight_format(fmt, st_dirs, tmp_path):
    """The Transformer's weights in any of the four files: the same embeddings in every backend."""
    import conversion

    spec = SPECS[7]
    directory = st_dirs(spec)
    target = tmp_path / fmt
    shutil.copytree(directory, target)
    (target / "model.safetensors").unlink()
    conversion.convert(directory, target / "converted", to=fmt)
    for f in (target / "converted").iterdir():
        if f.name != "config.json":
            shutil.move(str(f), target / f.name)
    reference = st_encode(directory, TEXTS)
    for backend in BACKENDS:
        _close(encoder_class(backend).from_pretrained(target).encode(TEXTS), reference)


def test_legacy_layout_and_transformer_subfolder(st_dirs, tmp_path):
    """Older directories: legacy module names and pooling keys, max_seq_length in
    sentence_bert_config.json, the Transformer in 0_Transformer/."""
    spec = SPECS[7]
    directory = st_dirs(spec)
    target = tmp_path / "legacy"
    (target / "0_Transformer").mkdir(parents=True)
    for f in directory.iterdir():
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            shutil.copy(f, target / "0_Transformer" / f.name)
        elif f.is_dir():
            shutil.copytree(f, target / f.name)
    shutil.copy(directory / "config_sentence_transformers.json", target)
    (target / "0_Transformer" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 12, "do_lower_case": False})
    )
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": True,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (target / "modules.json").write_text(json.dumps(modules))
    reference = st_encode(target, TEXTS)
    for backend in BACKENDS:
        encoder = encoder_class(backend).from_pretrained(target)
        assert encoder.max_seq_length == 12
        _close(encoder.encode(TEXTS), reference)


def test_plain_hf_directory_is_mean_pooling(backbone):
    st = sentence_transformers()
    texts = [t[:20] for t in TEXTS]  # within the 38 positions: sentence-transformers does not truncate there
    reference = st.SentenceTransformer(str(backbone), device="cpu").encode(texts)
    for backend in BACKENDS:
        encoder = encoder_class(backend).from_pretrained(backbone)
        assert [type(m).__name__ for m in encoder.modules] == ["Pooling"]
        _close(encoder.encode(texts), reference)


# -- encode's arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_encode_arguments(backend, st_dirs):
    directory = st_dirs(SPECS[7])
    encoder = _encoder(backend, directory)
    dim = encoder.get_embedding_dimension()
    full = encoder.encode(TEXTS)
    single = encoder.encode(TEXTS[2])
    assert single.shape == (dim,)
    _close(single, full[2])
    empty = encoder.encode([])
    assert empty.shape == (0, dim) and empty.dtype == np.float32
    _close(encoder.encode(np.array(TEXTS)), full)
    _close(encoder.encode(tuple(TEXTS), batch_size=1), full)
    tensor = encoder.encode(TEXTS, convert_to_tensor=True)
    _close(np.asarray(tensor), full)
    rows = encoder.encode(TEXTS, convert_to_numpy=False)
    assert len(rows) == len(TEXTS) and np.asarray(rows[0]).shape == (dim,)
    truncated = encoder.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    _close(truncated, st_encode(directory, TEXTS, truncate_dim=8, normalize_embeddings=True))
    assert encoder.last_stats.texts == len(TEXTS) and encoder.last_stats.tokens > len(TEXTS)
    both = encoder.encode(TEXTS[:3], output_value=None)
    assert set(both[0]) == {"sentence_embedding", "token_embeddings", "input_ids"}
    _close(both[1]["sentence_embedding"], full[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs(backend, st_dirs):
    encoder = _encoder(backend, st_dirs(SPECS[9]))
    with pytest.raises(TypeError, match=r"sentences\[2\] is a int"):
        encoder.encode(["a", "b", 3])
    with pytest.raises(TypeError, match=r"sentences\[0\] is a NoneType"):
        encoder.encode([None])
    with pytest.raises(ValueError, match="'passage'.*'query'|'query'.*'passage'") as err:
        encoder.encode(["a"], prompt_name="questions")
    assert "questions" in str(err.value)
    with pytest.raises(ValueError, match="precision"):
        encoder.encode(["a"], precision="int4")
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_route_equals_padded_route(backend, st_dirs):
    """With the backbone's ``segment_ids`` the encoder packs rows; the padded route gives the same."""
    directory = st_dirs(SPECS[8])
    cls = encoder_class(backend)
    padded = cls.from_pretrained(directory, packed=False)
    assert not padded.packed
    if not padded._supports_packing():
        with pytest.raises(ValueError, match="segment_ids"):
            cls.from_pretrained(directory, packed=True)
        pytest.skip(f"{backend}'s XLMRobertaModel does not take segment_ids yet")
    packed = cls.from_pretrained(directory, packed=True)
    texts = TEXTS * 3
    _close(packed.encode(texts, batch_size=2), padded.encode(texts, batch_size=2))
    stats = packed.last_stats
    assert stats.tokens == padded.last_stats.tokens and stats.slots < 1.1 * stats.tokens, stats


def _tree(directory) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_pretrained_replaces_the_directory_as_a_whole(backend, st_dirs, backbone, tmp_path, caplog):
    """Saving over an earlier sentence-transformers directory: as the models' save_pretrained, the
    directory is replaced whole; its stale weights, tokenizer files, module folders and JSON go, other
    entries (a README, logs) stay."""
    import logging

    out = tmp_path / "out"
    _encoder(backend, st_dirs(SPECS[7])).save_pretrained(out)  # Pooling, Dense, Normalize; safetensors
    assert (out / "2_Dense" / "model.safetensors").is_file()
    (out / "README.md").write_text("my notes\n")
    (out / "logs").mkdir()
    (out / "logs" / "train.txt").write_text("epoch 1\n")
    plain = _encoder(backend, backbone)  # mean pooling only
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        plain.save_pretrained(out, format="pytorch")  # a format sentence-transformers reads, not safetensors
    weight = "pytorch_model.bin"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["1_Pooling", "README.md", "config.json", "config_sentence_transformers.json", "logs",
                            "modules.json", "sentence_bert_config.json", "sentencepiece.bpe.model",
                            "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", weight])  # fmt: skip
    assert (out / "README.md").read_text() == "my notes\n" and (
        out / "logs" / "train.txt"
    ).read_text() == "epoch 1\n"
    assert "removing model.safetensors" in caplog.text  # the stale weights are named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directory left
    texts = [
        t[:20] for t in TEXTS
    ]  # within the backbone's positions (sentence-transformers does not truncate)
    _close(st_encode(out, texts), plain.encode(texts))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("failure", ["OSError in the layout files", "Ctrl-C after the weights"])
def test_a_failure_mid_save_leaves_the_previous_directory_intact(
    backend, failure, st_dirs, monkeypatch, tmp_path
):
    import xlmr._sentence as S

    out = tmp_path / "out"
    encoder = _encoder(backend, st_dirs(SPECS[7]))
    encoder.save_pretrained(out)
    before = _tree(out)
    other = _encoder(backend, st_dirs(SPECS[10]))
    if failure.startswith("OSError"):
        real = S.write_layout

        def failing(directory, layout, **kwargs):
            real(directory, layout, **kwargs)  # everything written but the rename into place
            raise OSError(28, "No space left on device", str(directory / "modules.json"))

        monkeypatch.setattr(S, "write_layout", failing)
        with pytest.raises(OSError) as err:
            other.save_pretrained(out)
        assert err.value.filename == str(out / "modules.json")  # named where it was going
    else:
        real_save = type(other)._save_model

        def interrupted(self, directory, format):
            real_save(self, directory, format)
            raise KeyboardInterrupt

        monkeypatch.setattr(type(other), "_save_model", interrupted)
        with pytest.raises(KeyboardInterrupt):
            other.save_pretrained(out, format="pytorch")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.undo()
    _close(encoder_class(backend).from_pretrained(out).encode(TEXTS), encoder.encode(TEXTS))
