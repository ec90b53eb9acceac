"""``xlmr-embed`` / ``xlmr embed``: lines in, a .npy of the encoder's embeddings out, atomically."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.backends import BACKENDS
from tests.sentence_reference import build_backbone, encoder_class
from xlmr import cli_embed

pytestmark = pytest.mark.hf
ROOT = Path(__file__).resolve().parent.parent
LINES = ["Paris is the capital of France.", "", "東京は日本の首都です。", "hello world  "]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A sentence-transformers directory written by xlmr: mean pooling, Normalize-free, prompts."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("embed")
    encoder = encoder_class("torch").from_pretrained(build_backbone(root))
    encoder.prompts = {"query": "query: ", "passage": "passage: "}
    encoder.save_pretrained(root / "st")
    return root / "st"


def _run(argv, capsys, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = cli_embed.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_to_npy(backend, model_dir, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_bytes("\r\n".join(LINES).encode("utf-8") + b"\r\n")
    out = tmp_path / "emb.npy"
    argv = [
        source,
        "-o",
        out,
        "--model",
        model_dir,
        "--backend",
        backend,
        "--prompt-name",
        "query",
        "--normalize",
    ]
    code, stdout, err = _run([*argv, "--batch-size", "2"], capsys)
    assert code == 0, err
    expected = (
        encoder_class(backend)
        .from_pretrained(model_dir)
        .encode(LINES, prompt_name="query", normalize_embeddings=True)
    )
    got = np.load(out)
    assert got.shape == expected.shape == (4, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert stdout.startswith("embedded 4 texts (") and " tokens) in " in stdout and "texts/s" in stdout
    assert f"{backend} -> {out}" in stdout and "(4, 32) float32" in stdout
    assert "Encoding" in err  # the progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "texts.txt"]  # no temporary left


def test_stdin_precision_and_quiet(model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "q.npy"
    data = "\n".join(LINES).encode("utf-8")  # no final newline: still four lines
    code, stdout, err = _run(
        ["-o", out, "--model", model_dir, "--precision", "ubinary", "-q"], capsys, data, monkeypatch
    )
    assert code == 0, err
    expected = encoder_class("torch").from_pretrained(model_dir).encode(LINES, precision="ubinary")
    np.testing.assert_array_equal(np.load(out), expected)
    assert err == ""


def test_empty_input(model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "empty.npy"
    code, stdout, err = _run(["-", "-o", out, "--model", model_dir], capsys, b"", monkeypatch)
    assert code == 0, err
    assert np.load(out).shape == (0, 32) and "embedded 0 texts" in stdout


def test_errors_leave_the_output_alone(model_dir, tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    out = tmp_path / "old.npy"
    np.save(out, np.arange(3))
    cases = [
        (["--model", model_dir, "--prompt-name", "questions"], 1, "'query'"),
        (["--model", tmp_path / "nope"], 1, "no such model directory"),
        (["--model", model_dir, "--batch-size", "0"], 1, "--batch-size"),
        (["--model", model_dir, "--backend", "mxnet"], 2, "invalid choice"),
    ]
    for extra, status, fragment in cases:
        code, _, err = _run([source, "-o", out, "--overwrite", *extra], capsys)
        assert code == status and fragment in err and err.count("\n") == 1, (extra, err)
        np.testing.assert_array_equal(np.load(out), np.arange(3))
    code, _, err = _run([tmp_path / "missing.txt", "-o", out, "--model", model_dir, "--overwrite"], capsys)
    assert code == 1 and "no such input file" in err
    code, _, err = _run([source, "-o", tmp_path / "no" / "x.npy", "--model", model_dir], capsys)
    assert code == 1 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npy", "t.txt"]


def test_an_existing_output_is_replaced_only_when_asked(model_dir, tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    out = tmp_path / "old.npy"
    np.save(out, np.arange(3))
    code, _, err = _run([source, "-o", out, "--model", model_dir], capsys)
    assert code == 1 and f"output {out} exists; pass --overwrite" in err
    np.testing.assert_array_equal(np.load(out), np.arange(3))
    code, _, err = _run([source, "-o", out, "--model", model_dir, "--overwrite", "-q"], capsys)
    assert code == 0, err
    expected = encoder_class("torch").from_pretrained(model_dir).encode(["a", "b"])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_mountable_and_lazy():
    """``add_arguments``/``run`` mount as a subcommand; ``--help`` imports no framework."""
    import argparse

    parser = argparse.ArgumentParser(prog="xlmr")
    sub = parser.add_subparsers(dest="command")
    cli_embed.add_arguments(sub.add_parser("embed"))
    args = parser.parse_args(["embed", "in.txt", "-o", "out.npy", "--model", "m", "--backend", "flax"])
    assert args.command == "embed" and args.backend == "flax" and args.batch_size == 32
    code = (
        "import sys\nfrom xlmr.cli_embed import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not {'torch', 'tensorflow', 'jax'} & set(sys.modules), sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--prompt-name" in proc.stdout
