"""The ``sentence-embedding`` pipeline (``xlmr.pipeline``, ``xlmr run``) against sentence-transformers itself.

Tiny XLM-R models saved by sentence-transformers (tests/sentence_reference.py): the pipeline of each
backend must give ``SentenceTransformer.encode``'s embeddings within 1e-5 (float32; quantized
precisions exactly) with every option it takes, on a batch of mixed lengths, from a directory, a
sentence encoder or a bare ``XLMRobertaModel``; ``xlmr run sentence-embedding`` prints the same as
JSON lines. Bad input gets errors that name the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xlmr
from tests.backends import BACKENDS
from tests.reference import tiny_config
from tests.sentence_reference import (
    TEXTS,
    Spec,
    build_backbone,
    encoder_class,
    save_st_model,
    sentence_transformers,
    st_encode,
)

pytestmark = pytest.mark.hf

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5
PROMPTS = (("query", "query: "), ("passage", "passage: "))
DENSE = Spec(("cls", "max", "mean"), dense="Tanh", prompts=PROMPTS)
NORMALIZED = Spec(("mean",), prompts=PROMPTS, default_prompt_name="query", normalize=True)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    sentence_transformers()
    root = tmp_path_factory.mktemp("st_pipeline")
    backbone = build_backbone(root)
    return {
        "backbone": backbone,
        "dense": save_st_model(DENSE, backbone, root / "dense"),
        "normalized": save_st_model(NORMALIZED, backbone, root / "normalized"),
    }


def _close(ours, reference) -> None:
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sentence_embedding_matches_sentence_transformers(backend, dirs):
    encoder_class(backend)  # skips when the framework is missing
    directory = dirs["dense"]
    embed = xlmr.pipeline("sentence-embedding", str(directory), backend=backend)
    assert embed.backend == backend and embed.encoder.name_or_path == str(directory)
    rows = embed(TEXTS)
    assert isinstance(rows, list) and all(isinstance(r, list) and isinstance(r[0], float) for r in rows)
    _close(rows, st_encode(directory, TEXTS))
    # Every option, per call, against encode's own arguments; batch_size changes nothing.
    options = dict(prompt_name="passage", normalize_embeddings=True, batch_size=3)
    got = embed(TEXTS, return_tensors=True, **options)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (len(TEXTS), 16)
    _close(got, st_encode(directory, TEXTS, **options))
    _close(embed(TEXTS, prompt="Represent this: "), st_encode(directory, TEXTS, prompt="Represent this: "))
    _close(
        embed(TEXTS, truncate_dim=8, normalize_embeddings=True),
        st_encode(directory, TEXTS, truncate_dim=8, normalize_embeddings=True),
    )
    for precision in ("binary", "ubinary"):
        got = embed(TEXTS, precision=precision, return_tensors=True)
        reference = st_encode(directory, TEXTS, precision=precision)
        assert got.dtype == reference.dtype
        np.testing.assert_array_equal(got, reference)
        assert embed(TEXTS, precision=precision) == reference.tolist()  # lists of ints
    # One string: one list (return_tensors: one (dim,) array), as encode gives one 1-D embedding.
    single = embed(TEXTS[2])
    assert isinstance(single, list) and len(single) == 16
    _close(single, st_encode(directory, TEXTS[2]))
    assert embed(TEXTS[2], return_tensors=True).shape == (16,)
    assert embed([]) == [] and embed([], return_tensors=True).shape == (0, 16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_options_at_construction_are_defaults_for_every_call(backend, dirs):
    encoder_class(backend)
    directory = dirs["normalized"]  # default_prompt_name "query", Normalize
    embed = xlmr.pipeline(
        "sentence-embedding", directory, backend=backend, prompt_name="passage", batch_size=2, packed=False
    )
    assert not embed.encoder.packed
    _close(embed(TEXTS), st_encode(directory, TEXTS, prompt_name="passage"))
    _close(embed(TEXTS, prompt_name="query"), st_encode(directory, TEXTS, prompt_name="query"))
    default = xlmr.pipeline("sentence-embedding", directory, backend=backend)
    _close(default(TEXTS), st_encode(directory, TEXTS))  # the model's default prompt


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_encoder_or_a_bare_model_object(backend, dirs):
    cls = encoder_class(backend)
    encoder = cls.from_pretrained(dirs["dense"])
    embed = xlmr.pipeline("sentence-embedding", encoder)
    assert embed.encoder is encoder and embed.backend == backend
    _close(embed(TEXTS, prompt_name="query"), st_encode(dirs["dense"], TEXTS, prompt_name="query"))
    # A bare XLMRobertaModel and its tokenizer: mean pooling, as sentence-transformers makes a plain model.
    plain = cls.from_pretrained(dirs["backbone"])
    texts = [
        t[:20] for t in TEXTS
    ]  # within the backbone's positions (sentence-transformers does not truncate)
    reference = sentence_transformers().SentenceTransformer(str(dirs["backbone"]), device="cpu").encode(texts)
    bare = xlmr.pipeline("sentence-embedding", plain.model, tokenizer=plain.tokenizer)
    _close(bare(texts), reference)
    _close(
        bare(texts, normalize_embeddings=True), reference / np.linalg.norm(reference, axis=1, keepdims=True)
    )


# -- the xlmr command ------------------------------------------------------------------------------
def _xlmr(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "xlmr.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)  # fmt: skip


def test_xlmr_run_sentence_embedding_prints_json_lines(dirs, tmp_path):
    directory = str(dirs["dense"])
    texts = TEXTS[:4]
    proc = _xlmr("run", "sentence-embedding", "--model", directory, "--option", "prompt_name=query",
                 "--option", "normalize_embeddings=true", "--batch-size", "2", *texts)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    _close(lines, st_encode(directory, texts, prompt_name="query", normalize_embeddings=True))
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    proc = _xlmr(
        "run", "sentence-embedding", "--model", directory, "--backend", "flax", "--input", str(source)
    )
    assert proc.returncode == 0, proc.stderr
    _close([json.loads(line) for line in proc.stdout.splitlines()], st_encode(directory, texts))
    proc = _xlmr("run", "sentence-embedding", "--model", directory, "--option", "prompt_name=questions", "x")
    assert proc.returncode == 1 and "'questions'" in proc.stderr and "'query'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input_is_named(dirs):
    import xlmr_torch

    directory = dirs["dense"]
    embed = xlmr.pipeline("sentence-embedding", directory)
    with pytest.raises(TypeError, match="sentence-embedding: item 2 must be a string, got int"):
        embed(["a", "b", 3])
    with pytest.raises(TypeError, match="expected a string or a list of them, got dict"):
        embed({"text": "a"})
    with pytest.raises(
        ValueError, match="prompt_name 'questions' is not one of this model's prompts: .*'query'"
    ):
        embed("a", prompt_name="questions")
    with pytest.raises(ValueError, match="prompt_name 'questions'"):
        xlmr.pipeline("sentence-embedding", directory, prompt_name="questions")
    with pytest.raises(ValueError, match="precision 'int4' is not supported"):
        embed("a", precision="int4")
    with pytest.raises(ValueError, match="truncate_dim must be a positive integer"):
        embed("a", truncate_dim=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        embed("a", batch_size=0)
    with pytest.raises(TypeError, match=r"sentence-embedding got unexpected options \['normalize'\]"):
        embed("a", normalize=True)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        xlmr.pipeline("sentence-embedding", directory / "missing")
    with pytest.raises(ValueError, match="do not pass tokenizer="):
        xlmr.pipeline("sentence-embedding", directory, tokenizer=embed.tokenizer)
    with pytest.raises(ValueError, match="backend='flax', but the encoder is an xlmr_torch encoder"):
        xlmr.pipeline("sentence-embedding", embed.encoder, backend="flax")
    with pytest.raises(ValueError, match="packed=True, but the encoder was built with packed=False"):
        xlmr.pipeline("sentence-embedding", xlmr_torch.SentenceEncoder.from_pretrained(directory, packed=False),
                      packed=True)  # fmt: skip
    masked_lm = xlmr_torch.XLMRobertaForMaskedLM(tiny_config())
    with pytest.raises(ValueError, match="needs a XLMRobertaModel model .*is a XLMRobertaForMaskedLM"):
        xlmr.pipeline("sentence-embedding", masked_lm, tokenizer=embed.tokenizer)
    with pytest.raises(ValueError, match="needs tokenizer="):
        xlmr.pipeline("sentence-embedding", xlmr_torch.XLMRobertaModel(tiny_config()))
    with pytest.raises(TypeError, match="got int"):
        xlmr.pipeline("sentence-embedding", 42)
