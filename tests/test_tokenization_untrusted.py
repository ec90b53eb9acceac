"""Tokenizer directories and inputs are untrusted: a catalogue of malformed cases and what each must give.

Each row is (case, setup, expected, fragment): ``setup(directory, cls)`` damages a fresh copy of a saved
tokenizer directory (or not) and returns the action to run; ``expected`` is the exception type the action
must raise with ``fragment`` in its message -- a message that names the file and the field, or the
argument and the index -- or ``WARNS``: the action succeeds and logs a warning (logger ``xlmr``) holding
``fragment``. Rows marked for one class run only with that class. Every row fails on the code before
these checks (a raw library error, a silent load or a silent wrong answer).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_tokenization import model_file
from xlmr import XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr._fileio import UnsafePathError

WARNS = "logs a warning"
CLASSES = {"slow": XLMRobertaTokenizer, "fast": XLMRobertaTokenizerFast}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A fast tokenizer's directory (both model files, the configs, an added token), saved once."""
    directory = tmp_path_factory.mktemp("saved") / "tok"
    tok = XLMRobertaTokenizerFast(model_file("small"))
    tok.add_tokens(["zzqx"])
    tok.save_pretrained(directory)
    return directory


# ---- setups: each damages a directory and returns the action ----------------------------------


def load() -> Callable:
    return lambda d, cls: lambda: cls.from_pretrained(d)


def config(file: str = "tokenizer_config.json", **fields) -> Callable:
    def setup(d: Path, cls):
        path = d / file
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(fields)
        path.write_text(json.dumps(data), encoding="utf-8")
        return lambda: cls.from_pretrained(d)

    return setup


def raw(file: str, content: bytes) -> Callable:
    def setup(d: Path, cls):
        (d / file).write_bytes(content)
        return lambda: cls.from_pretrained(d)

    return setup


def linked_out(file: str) -> Callable:
    """``file`` moved out of the directory and replaced by a symlink to it."""

    def setup(d: Path, cls):
        outside = d.parent / "outside"
        outside.mkdir()
        shutil.move(d / file, outside / file)
        (d / file).symlink_to(outside / file)
        return lambda: cls.from_pretrained(d)

    return setup


def call(fn: Callable) -> Callable:
    """``fn(tokenizer)`` on the tokenizer loaded from the undamaged directory."""
    return lambda d, cls: lambda: fn(cls.from_pretrained(d))


def foreign_tokenizer_json(edit: Callable[[dict], None] | None = None) -> Callable:
    """``tokenizer.json`` of another SentencePiece model ("full"), or the directory's own one edited."""

    def setup(d: Path, cls):
        if edit is None:
            XLMRobertaTokenizerFast(model_file("full")).save_pretrained(d.parent / "other")
            shutil.copy(d.parent / "other" / "tokenizer.json", d / "tokenizer.json")
        else:
            state = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
            edit(state)
            (d / "tokenizer.json").write_text(json.dumps(state), encoding="utf-8")
        return lambda: cls.from_pretrained(d)

    return setup


def _rename_piece(state: dict) -> None:
    state["model"]["vocab"][10][0] = "▁renamed-piece"


# ---- the catalogue ------------------------------------------------------------------------------

CFG = "tokenizer_config.json: "
STM = "special_tokens_map.json: "
CATALOGUE = [
    # config fields of the wrong type or with an impossible value
    ("model_max_length as a string", config(model_max_length="512"), TypeError, CFG + "model_max_length"),
    ("model_max_length negative", config(model_max_length=-5), ValueError, CFG + "model_max_length"),
    ("additional_special_tokens not a list", config(additional_special_tokens=5), TypeError,
     CFG + "additional_special_tokens"),
    ("an additional special token not a token", config(additional_special_tokens=["<a>", 7]), TypeError,
     CFG + "additional_special_tokens[1]"),
    ("add_prefix_space as a string", config(add_prefix_space="yes"), TypeError, CFG + "add_prefix_space"),
    ("clean_up_tokenization_spaces as a string", config(clean_up_tokenization_spaces="false"), TypeError,
     CFG + "clean_up_tokenization_spaces"),
    ("padding_side unknown", config(padding_side="middle"), ValueError, CFG + "padding_side"),
    ("model_input_names a string", config(model_input_names="input_ids"), TypeError,
     CFG + "model_input_names"),
    ("special token an int", config(mask_token=5), TypeError, CFG + "mask_token"),
    ("special token dict without content", config(bos_token={"lstrip": True}), TypeError,
     CFG + "bos_token.content"),
    ("special token flag not a bool", config(cls_token={"content": "<s>", "lstrip": "no"}), TypeError,
     CFG + "cls_token.lstrip"),
    ("added_tokens_decoder key not an id", config(added_tokens_decoder={"x": {"content": "<x>"}}), ValueError,
     CFG + "added_tokens_decoder key"),
    ("special_tokens_map token a list", config("special_tokens_map.json", pad_token=[1]), TypeError,
     STM + "pad_token"),
    ("added_tokens.json id a string", raw("added_tokens.json", b'{"<x>": "7"}'), TypeError,
     "added_tokens.json: the id of '<x>'"),
    # files that are not UTF-8 JSON objects
    ("tokenizer_config.json not UTF-8", raw("tokenizer_config.json", b'{"unk_token": "\xff"}'), ValueError,
     "tokenizer_config.json is not UTF-8"),
    ("special_tokens_map.json not UTF-8", raw("special_tokens_map.json", b"\xfe\xff{}"), ValueError,
     "special_tokens_map.json is not UTF-8"),
    ("tokenizer_config.json nested too deeply", raw("tokenizer_config.json", b"[" * 100_000), ValueError,
     "tokenizer_config.json is not valid JSON"),
    ("tokenizer_config.json a list", raw("tokenizer_config.json", b"[1, 2]"), ValueError,
     "tokenizer_config.json must hold a JSON object"),
    ("added_tokens.json a list", raw("added_tokens.json", b"[]"), ValueError,
     "added_tokens.json must hold a JSON object"),
    # files that resolve outside the directory
    ("sentencepiece.bpe.model links out", linked_out("sentencepiece.bpe.model"), UnsafePathError,
     "'sentencepiece.bpe.model' resolves to"),
    ("fast: tokenizer.json links out", linked_out("tokenizer.json"), UnsafePathError,
     "'tokenizer.json' resolves to"),
    ("tokenizer_config.json links out", linked_out("tokenizer_config.json"), UnsafePathError,
     "'tokenizer_config.json' resolves to"),
    ("special_tokens_map.json links out", linked_out("special_tokens_map.json"), UnsafePathError,
     "'special_tokens_map.json' resolves to"),
    ("added_tokens.json links out", linked_out("added_tokens.json"), UnsafePathError,
     "'added_tokens.json' resolves to"),
    # tokenizer.json that does not belong to the directory's SentencePiece model (fast only)
    ("fast: tokenizer.json of another model", foreign_tokenizer_json(), WARNS,
     "tokenizer.json does not belong to"),
    ("fast: tokenizer.json with another piece", foreign_tokenizer_json(_rename_piece), WARNS,
     "id 10 is '▁renamed-piece' there"),
    # lone surrogates in the text
    ("surrogate in a text", call(lambda t: t("a\ud800b")), ValueError,
     "text holds a lone surrogate '\\ud800' at index 1"),
    ("surrogate in a batch's text_pair", call(lambda t: t(["a", "b"], ["c", "d\udfff"])), ValueError,
     "text_pair[1] holds a lone surrogate '\\udfff' at index 1"),
    ("surrogate in a pre-split word", call(lambda t: t([["ok", "x\ud83d"]], is_split_into_words=True)),
     ValueError, "text[0][1] holds a lone surrogate '\\ud83d' at index 1"),
    ("surrogate in tokenize", call(lambda t: t.tokenize("ab\ud800")), ValueError,
     "text holds a lone surrogate '\\ud800' at index 2"),
    # ids outside the vocabulary (259 tokens from "small" + the added one)
    ("decode a negative id", call(lambda t: t.decode([5, -1])), ValueError,
     "token id -1 is out of range for a vocabulary of 260 tokens"),
    ("decode an id past the vocabulary", call(lambda t: t.decode([5, 260])), ValueError,
     "token id 260 is out of range for a vocabulary of 260 tokens"),
    ("decode a huge id", call(lambda t: t.batch_decode([[2**64]])), ValueError, f"token id {2**64} is out"),
    ("convert an id past the vocabulary", call(lambda t: t.convert_ids_to_tokens([3, 10**6])), ValueError,
     "token id 1000000 is out of range"),
    ("convert one negative id", call(lambda t: t.convert_ids_to_tokens(-3)), ValueError,
     "token id -3 is out of range"),
]  # fmt: skip


def _rows():
    for case, setup, expected, fragment in CATALOGUE:
        for name in CLASSES:
            if case.startswith(("fast:", "slow:")) and not case.startswith(name):
                continue
            yield pytest.param(name, setup, expected, fragment, id=f"{name}: {case.split(': ')[-1]}")


@pytest.mark.parametrize(("which", "setup", "expected", "fragment"), list(_rows()))
def test_catalogue(which, setup, expected, fragment, saved, tmp_path, caplog):
    directory = tmp_path / "tok"
    shutil.copytree(saved, directory)
    action = setup(directory, CLASSES[which])
    if expected == WARNS:
        with caplog.at_level(logging.WARNING, logger="xlmr"):
            action()
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("xlmr")]
        assert any(fragment in m for m in messages), messages
        # both files are named
        assert any(str(directory / "sentencepiece.bpe.model") in m for m in messages), messages
    else:
        with pytest.raises(expected) as info:
            action()
        assert fragment in str(info.value), str(info.value)


def test_the_undamaged_directory_loads_quietly(saved, caplog):
    with caplog.at_level(logging.WARNING, logger="xlmr"):
        for cls in CLASSES.values():
            tok = cls.from_pretrained(saved)
            assert tok.decode(tok("héllo zzqx")["input_ids"], skip_special_tokens=True) == "héllo zzqx"
    assert not [r for r in caplog.records if r.name.startswith("xlmr")]


def test_a_symlink_inside_the_directory_and_an_hf_cache_snapshot_load(saved, tmp_path):
    # A link to a file in the same directory is fine; so is HF's cache layout, whose snapshot files
    # link into the repo's blobs/ folder.
    inside = tmp_path / "inside"
    shutil.copytree(saved, inside)
    (inside / "sentencepiece.bpe.model").rename(inside / "model.bin")
    (inside / "sentencepiece.bpe.model").symlink_to("model.bin")
    XLMRobertaTokenizer.from_pretrained(inside)
    repo = tmp_path / "models--org--xlmr"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in saved.iterdir():
        shutil.copy(f, repo / "blobs" / f.name)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", f.name))
    for cls in CLASSES.values():
        assert (
            cls.from_pretrained(snapshot)("héllo")["input_ids"]
            == cls.from_pretrained(saved)("héllo")["input_ids"]
        )


def test_config_file_names_are_never_opened(saved, tmp_path):
    # HF wrote the saving machine's absolute paths into these keys; they are ignored, not followed.
    directory = tmp_path / "tok"
    shutil.copytree(saved, directory)
    cfg = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.update(vocab_file="/etc/passwd", tokenizer_file="../../outside/tokenizer.json")
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    for cls in CLASSES.values():
        assert (
            cls.from_pretrained(directory)("héllo")["input_ids"]
            == cls.from_pretrained(saved)("héllo")["input_ids"]
        )
