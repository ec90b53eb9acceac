"""xlmr-demo: the embedded data set, the tokenizer step, a --quick end-to-end run, error messages, and the
--model route (fill-mask / classify) on tiny checkpoints in all four weight files, checked against HF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from xlmr_demo import cli
from xlmr_demo.data import LANGUAGE_NAMES, load_dataset, read_rows

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"safetensors": "model.safetensors", "pytorch": "pytorch_model.bin", "tf": "tf_model.h5",
           "flax": "flax_model.msgpack"}  # fmt: skip
BACKENDS = ("torch", "tf", "flax")


def script_of(text: str) -> set[str]:
    """Unicode scripts of the letters in ``text`` (first word of the character name: LATIN, CJK...)."""
    scripts = set()
    for ch in text:
        if unicodedata.category(ch).startswith("L"):
            name = unicodedata.name(ch, "")
            scripts.add("HAN" if name.startswith("CJK") else name.split(" ")[0])
    return scripts


# -- the data set ---------------------------------------------------------------------------------
def test_dataset_size_languages_scripts_and_split():
    train, test, labels = load_dataset()
    assert len(train) + len(test) >= 400
    assert len(labels) >= 8 and set(labels) <= set(LANGUAGE_NAMES)
    assert 0.15 <= len(test) / (len(train) + len(test)) <= 0.25
    for label in labels:  # every language has training and held-out sentences
        n_train = sum(e.label == label for e in train)
        n_test = sum(e.label == label for e in test)
        assert n_train >= 30 and n_test >= 5, (label, n_train, n_test)
    # scripts: each language's sentences are written in one main script (plus Han for Japanese)
    main_script = {}
    for label in labels:
        counts: dict[str, int] = {}
        for e in train + test:
            if e.label == label:
                for s in script_of(e.text):
                    counts[s] = counts.get(s, 0) + 1
        main_script[label] = max(counts, key=counts.get)
    assert len(set(main_script.values())) >= 4, main_script
    assert {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI", "HAN"} <= set(main_script.values())
    # confusable pairs: several languages share a script, so the script alone does not decide
    assert sum(s == "LATIN" for s in main_script.values()) >= 4
    assert main_script["ru"] == main_script["uk"] == "CYRILLIC"


def test_dataset_rows_are_clean_and_splits_disjoint():
    rows = read_rows()
    texts = [text for _, _, text in rows]
    assert len(set(texts)) == len(texts), "duplicate sentences"
    train, test, _ = load_dataset()
    assert not {e.text for e in train} & {e.text for e in test}
    for _, _, text in rows:
        assert text == text.strip() and "\t" not in text and text == unicodedata.normalize("NFC", text)
        assert 2 <= len(text) <= 200


def test_dataset_loads_from_another_directory(tmp_path):
    code = (
        "from xlmr_demo.data import load_dataset; tr, te, l = load_dataset(); print(len(tr), len(te), len(l))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    train, test, labels = load_dataset()
    assert out.stdout.split() == [str(len(train)), str(len(test)), str(len(labels))]


# -- the tokenizer step -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory):
    from xlmr_demo.pipeline import train_tokenizer

    train, _, _ = load_dataset()
    directory = tmp_path_factory.mktemp("demo_tok")
    return train_tokenizer([e.text for e in train], 1200, directory), directory


def test_tokenizer_step_on_the_data(demo_tokenizer):
    from xlmr_demo.pipeline import encode

    tok, directory = demo_tokenizer
    assert (directory / "sentencepiece.bpe.model").is_file()
    assert 700 < len(tok) <= 1200 + 4
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    train, test, _ = load_dataset()
    ids, mask = encode(tok, [e.text for e in train[:50]], 64)
    assert ids.shape == mask.shape == (50, 64) and ids.dtype == np.int32
    assert (ids[:, 0] == tok.bos_token_id).all()
    lengths = mask.sum(1)
    assert (ids[np.arange(50), lengths - 1] == tok.eos_token_id).all()
    assert ((ids == tok.pad_token_id) == (mask == 0)).all()
    # every training character is in the vocabulary: training text decodes back exactly
    for e in train:
        assert tok.unk_token_id not in tok(e.text)["input_ids"]
        assert tok.decode(tok(e.text)["input_ids"], skip_special_tokens=True) == unicodedata.normalize(
            "NFKC", e.text
        )
    # held-out text is mostly known pieces
    unknown = sum(tok(e.text)["input_ids"].count(tok.unk_token_id) for e in test)
    total = sum(len(tok(e.text)["input_ids"]) for e in test)
    assert unknown / total < 0.02


@pytest.mark.hf
def test_tokenizer_step_matches_hf(demo_tokenizer):
    transformers = pytest.importorskip("transformers")
    tok, directory = demo_tokenizer
    train, test, _ = load_dataset()
    for cls in (transformers.XLMRobertaTokenizer, transformers.XLMRobertaTokenizerFast):
        hf = cls.from_pretrained(str(directory))
        for e in train[::7] + test:
            assert tok(e.text)["input_ids"] == hf(e.text)["input_ids"], (cls.__name__, e.text)


# -- a --quick end-to-end run ----------------------------------------------------------------------------
def _env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess: a fresh HOME and TMPDIR to check writes, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTEST"))}
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"), PYTHONPATH=str(REPO),
               PYTHONDONTWRITEBYTECODE="1")  # fmt: skip
    return env


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in BACKENDS and len(cells) == 6:
            rows[cells[0]] = cells[1:]
    return rows


def test_quick_run_end_to_end(tmp_path, capsys):
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    cwd.mkdir()
    env = _env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "xlmr_demo", "--quick", "--workdir", str(work), "--seed", "1"],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=170)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in text
    assert "Training TFXLMRobertaForSequenceClassification" in text and "loss:" in text  # Keras fit progress
    rows = _table(text)
    assert set(rows) == set(BACKENDS), text
    assert [rows[b][0] for b in BACKENDS] == ["pytorch_model.bin", "model.safetensors", "flax_model.msgpack"]
    for cells in rows.values():
        accuracy, ms, first_ms, diff = (float(c) for c in cells[1:])
        assert 0.0 <= accuracy <= 1.0 and ms > 0 and first_ms > 0 and diff <= cli.AGREEMENT_LIMIT
    accuracies = {rows[b][1] for b in BACKENDS}
    assert len(accuracies) == 1  # same logits -> same predictions
    largest = float(re.search(r"Largest logit difference between backends: (\S+)", text).group(1))
    assert largest <= cli.AGREEMENT_LIMIT
    assert "OK: all backends agree" in text
    # the checkpoints are complete HF directories
    for sub, weights in (
        ("tf", "model.safetensors"),
        ("torch", "pytorch_model.bin"),
        ("flax", "flax_model.msgpack"),
    ):
        for name in (weights, "config.json", "sentencepiece.bpe.model", "tokenizer_config.json"):
            assert (work / sub / name).is_file(), f"{sub}/{name}"
    # nothing written outside the workdir: not in the working directory, HOME or TMPDIR
    for d in (cwd, tmp_path / "home", tmp_path / "tmp"):
        assert not any(d.rglob("*")), f"{d} got {sorted(map(str, d.rglob('*')))}"
    assert not (REPO / "model.safetensors").exists()

    # the kept checkpoint works with --model in another backend (in-process: no second start-up)
    code, out, err = _run_main(["--model", str(work / "torch"), "--backend", "flax", "--classify",
                                "Der Bus hatte heute Verspätung.", "--top-k", "2"], capsys)  # fmt: skip
    assert code == 0, err
    probs = [float(p) for p in re.findall(r"\b[a-z]{2}=([0-9.]+)", out)]
    assert len(probs) == 2 and 0 < probs[1] <= probs[0] < 1


def test_in_process_run_removes_its_temporary_workdir_and_fails_on_disagreement(
    tmp_path, monkeypatch, capsys
):
    # --backends subset; a limit no run can meet -> exit code 1 with the reason; the temp dir is removed
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "AGREEMENT_LIMIT", -1.0)
    code = cli.main(["--quick", "--backends", "torch", "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: backends disagree" in out
    assert set(_table(out)) == {"torch"}
    assert not any(tmp_path.iterdir()), "the temporary workdir was not removed"


# -- errors: one line, exit code 2 --------------------------------------------------------------------
def _run_main(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("backend,module", [("flax", "jax"), ("torch", "torch"), ("tf", "tensorflow")])
def test_missing_extra_is_one_clear_line(backend, module, tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "sentencepiece.bpe.model").write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    code, out, err = _run_main(
        ["--model", str(tmp_path), "--backend", backend, "--fill-mask", "a <mask>"], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"the {backend} backend needs `pip install 'xlmr[{backend}]'`" in err
    # the demo run checks its backends before training
    work = tmp_path / "work"
    code, out, err = _run_main(["--quick", "--workdir", str(work), "--backends", backend], capsys)
    assert code == 2 and f"pip install 'xlmr[{backend}]'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "/no/such/dir", "--fill-mask", "a <mask>"], "no such directory"),
        (["--model", "{tmp}", "--classify", "x"], "no config.json"),
        (["--model", "{tmp}"], "needs --fill-mask TEXT or --classify"),
        (["--fill-mask", "a <mask>"], "need --model DIR"),
        (["--backends", "torch,mxnet", "--quick"], "unknown backend(s) mxnet"),
        (["--workdir", "{tmp}/full", "--quick"], "is not empty"),
        (["--quick", "--epochs", "0", "--workdir", "{tmp}/new"], "--epochs must be at least 1"),
    ],
)
def test_usage_errors_are_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = _run_main(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_help_is_fast_and_imports_no_framework(tmp_path):
    code = (
        "import sys; from xlmr_demo import cli; cli.build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    out = subprocess.run([sys.executable, "-m", "xlmr_demo", "--help"], cwd=tmp_path, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "--fill-mask" in out.stdout and "--backends" in out.stdout


# -- --model: fill-mask and classify on tiny checkpoints in all four files, against HF -------------------
LINES = [
    "the cat sat on the mat",
    "the dog ate my homework",
    "a bird sang in the tree",
    "we walked to the station",
    "der Hund schläft im Garten",
    "le chat dort sur le canapé",
    "el perro come en la cocina",
]
MASKED = "the dog sat on the <mask>"
TO_CLASSIFY = ["the cat ate my homework", "a dog sang in the garden"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{(head, fmt): directory} with the same tiny perturbed HF weights, plus the HF models."""
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    import conversion
    import xlmr
    from tests.reference import canonical_state_dict, hf_torch_model, tiny_config

    root = tmp_path_factory.mktemp("demo_ckpt")
    tok = xlmr.XLMRobertaTokenizer.train(LINES * 4, 60, save_directory=root / "tok")
    vocab = len(tok)
    dirs, models = {}, {}
    for head, extra in (
        ("masked_lm", {}),
        ("sequence_classification", {"id2label": {0: "neg", 1: "neu", 2: "pos"}}),
    ):
        config = tiny_config(vocab_size=vocab, **extra)
        model = hf_torch_model(head, config, seed=3)
        models[head] = model
        state_dict = canonical_state_dict(model, config, head)
        for fmt in FORMATS:
            d = root / f"{head}-{fmt}"
            conversion.save_pretrained(state_dict, config, head, d, fmt)
            tok.save_pretrained(str(d))
            dirs[head, fmt] = d
    return dirs, models


def _hf_ids(directory: Path, texts: list[str]):
    import transformers

    tok = transformers.XLMRobertaTokenizer.from_pretrained(str(directory))
    return tok, tok(texts, padding=True, return_tensors="pt")


def _parse_fill(out: str) -> list[tuple[int, float]]:
    return [(int(i), float(s)) for s, i in re.findall(r"^\s+\d+\. .*score=([0-9.]+)\s+id=(\d+)$", out, re.M)]


@pytest.mark.hf
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fill_mask_matches_hf(fmt, backend, checkpoints, capsys):
    import torch

    dirs, models = checkpoints
    directory = dirs["masked_lm", fmt]
    assert (directory / FORMATS[fmt]).is_file()
    code, out, err = _run_main(["--model", str(directory), "--backend", backend, "--fill-mask", MASKED,
                                "--top-k", "3"], capsys)  # fmt: skip
    assert code == 0, err
    assert f"fill-mask with {backend} ({FORMATS[fmt]})" in out
    got = _parse_fill(out)
    # independent computation: HF's tokenizer and HF's XLMRobertaForMaskedLM on the same weights
    tok, enc = _hf_ids(directory, [MASKED])
    with torch.no_grad():
        logits = models["masked_lm"](**enc).logits[0]
    pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0])
    probs = torch.softmax(logits[pos].double(), -1)
    top = torch.topk(probs, 3)
    assert [i for i, _ in got] == top.indices.tolist()
    np.testing.assert_allclose([s for _, s in got], top.values.numpy(), atol=2e-6)
    token = tok.convert_ids_to_tokens(top.indices[0].item()).replace("\u2581", "").strip()
    assert f'1. "{token}"' in out


@pytest.mark.hf
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_classify_matches_hf(fmt, backend, checkpoints, capsys):
    import torch

    dirs, models = checkpoints
    directory = dirs["sequence_classification", fmt]
    code, out, err = _run_main(
        ["--model", str(directory), "--backend", backend, "--classify", *TO_CLASSIFY], capsys
    )
    assert code == 0, err
    got = [dict((k, float(v)) for k, v in re.findall(r"(neg|neu|pos)=([0-9.]+)", line))
           for line in out.splitlines() if "=" in line]  # fmt: skip
    assert len(got) == 2 and all(len(g) == 3 for g in got)
    _, enc = _hf_ids(directory, TO_CLASSIFY)
    with torch.no_grad():
        probs = torch.softmax(models["sequence_classification"](**enc).logits.double(), -1).numpy()
    for row, expected in zip(got, probs):
        np.testing.assert_allclose([row["neg"], row["neu"], row["pos"]], expected, atol=2e-6)
    # labels are printed best first
    first = [re.findall(r"(neg|neu|pos)=", line)[0] for line in out.splitlines() if "=" in line]
    assert first == [["neg", "neu", "pos"][i] for i in probs.argmax(-1)]


def test_fill_mask_without_mask_token_is_an_error(checkpoints, capsys):
    dirs, _ = checkpoints
    code, out, err = _run_main(["--model", str(dirs["masked_lm", "safetensors"]), "--backend", "torch",
                                "--fill-mask", "no mask here"], capsys)  # fmt: skip
    assert code == 2 and "must contain <mask>" in err and "Traceback" not in err


@pytest.mark.slow
def test_full_default_demo_reaches_the_accuracy_floor(tmp_path):
    out = subprocess.run([sys.executable, "-m", "xlmr_demo", "--workdir", str(tmp_path / "w")], cwd=tmp_path,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    rows = _table(out.stdout)
    assert all(float(r[1]) >= cli.ACCURACY_FLOOR for r in rows.values())
