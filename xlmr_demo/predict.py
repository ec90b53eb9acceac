"""``xlmr-demo --model DIR``: fill-mask and classification with a user's own HF checkpoint directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._backends import DemoError, forward_fn, import_backend, load_model
from .console import say

# HF tokenizer files an XLM-R checkpoint directory may hold (either is enough).
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_model_dir(directory: Path) -> None:
    """DemoError naming what is missing from an HF checkpoint directory."""
    if not directory.exists():
        raise DemoError(f"--model {directory}: no such directory")
    if not directory.is_dir():
        raise DemoError(f"--model {directory}: not a directory")
    if not (directory / "config.json").is_file():
        raise DemoError(f"--model {directory}: no config.json (is it an HF checkpoint directory?)")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise DemoError(f"--model {directory}: no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    import conversion

    try:
        conversion.find_weight_file(directory)
    except FileNotFoundError as err:
        raise DemoError(f"--model {err}") from None


def load_tokenizer(directory: Path):
    import xlmr

    cls = (
        xlmr.XLMRobertaTokenizerFast if (directory / "tokenizer.json").is_file() else xlmr.XLMRobertaTokenizer
    )
    try:
        return cls.from_pretrained(str(directory))
    except (OSError, ValueError, RuntimeError) as err:
        raise DemoError(f"--model {directory}: cannot load the tokenizer ({err})") from None


def _load(backend: str, class_name: str, directory: Path):
    import_backend(backend)  # a missing extra is a DemoError before anything else
    try:
        return load_model(backend, class_name, directory)
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DemoError(f"--model {directory}: cannot load {class_name} in {backend}: {message}") from None


def _token_text(tokenizer, token_id: int) -> str:
    if not 0 <= token_id < len(tokenizer):  # a model vocabulary padded beyond the tokenizer's
        return f"<id {int(token_id)}>"
    piece = tokenizer.convert_ids_to_tokens([int(token_id)])[0]
    return piece.replace("\u2581", " ").strip() or piece


def fill_mask(directory: Path, backend: str, text: str, top_k: int) -> list[list[tuple[str, float]]]:
    """Top-``top_k`` ``(token, probability)`` for each ``<mask>`` of ``text``; printed as it goes."""
    tokenizer = load_tokenizer(directory)
    mask_token = tokenizer.mask_token
    if mask_token not in text:
        raise DemoError(f"--fill-mask text must contain {mask_token}, got {text!r}")
    import xlmr

    config = xlmr.XLMRobertaConfig.from_pretrained(directory)
    enc = tokenizer([text])
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    if ids.shape[1] > config.max_sequence_length:
        raise DemoError(
            f"--fill-mask text is {ids.shape[1]} tokens long; the model takes at most "
            f"{config.max_sequence_length}"
        )
    model = _load(backend, "XLMRobertaForMaskedLM", directory)
    mask = np.asarray(enc["attention_mask"], dtype=np.int64)
    logits = forward_fn(backend, model, compile=False)(ids, mask)[0]  # (seq, vocab)
    positions = np.flatnonzero(ids[0] == tokenizer.mask_token_id)
    say(f"fill-mask with {backend} ({_weights_name(directory)}): {text}")
    results = []
    for n, pos in enumerate(positions):
        probs = softmax(logits[pos])
        k = min(top_k, probs.shape[-1])
        best = np.argsort(-probs, kind="stable")[:k]
        if len(positions) > 1:
            say(f"  mask {n + 1}:")
        rows = []
        for rank, token_id in enumerate(best, start=1):
            token = _token_text(tokenizer, token_id)
            rows.append((token, float(probs[token_id])))
            say(
                f"  {rank}. {json.dumps(token, ensure_ascii=False):<24} score={probs[token_id]:.6f}  "
                f"id={int(token_id)}"
            )
        results.append(rows)
    return results


def classify(directory: Path, backend: str, texts: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    """Labels (``id2label`` from config.json) with probabilities for each text, best first."""
    import xlmr

    tokenizer = load_tokenizer(directory)
    config = xlmr.XLMRobertaConfig.from_pretrained(directory)
    model = _load(backend, "XLMRobertaForSequenceClassification", directory)
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=config.max_sequence_length)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    mask = np.asarray(enc["attention_mask"], dtype=np.int64)
    logits = forward_fn(backend, model, compile=False)(ids, mask)  # (batch, num_labels)
    say(f"classify with {backend} ({_weights_name(directory)}):")
    results = []
    for text, row in zip(texts, logits):
        probs = softmax(row)
        order = np.argsort(-probs, kind="stable")[: min(top_k, probs.shape[-1])]
        labels = [(str(config.id2label[int(i)]), float(probs[i])) for i in order]
        say(f"  {text}")
        say("    " + "  ".join(f"{label}={p:.6f}" for label, p in labels))
        results.append(labels)
    return results


def _weights_name(directory: Path) -> str:
    import conversion

    return conversion.find_weight_file(directory).name


def run_own_model(args) -> int:
    directory = Path(args.model).expanduser()
    check_model_dir(directory)
    import_backend(args.backend)  # a missing extra is reported before anything is loaded
    if args.fill_mask is not None:
        fill_mask(directory, args.backend, args.fill_mask, args.top_k)
    else:
        classify(directory, args.backend, args.classify, args.top_k)
    return 0
