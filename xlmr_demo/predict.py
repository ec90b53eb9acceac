"""``xlmr-demo --model DIR``: fill-mask and classification with a user's own HF checkpoint directory.

Both run through the task pipelines (``xlmr.pipeline``); this module only checks the directory,
turns problems into one-line :class:`DemoError` messages and prints the results.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._backends import DemoError, import_backend
from .console import say

# HF tokenizer files an XLM-R checkpoint directory may hold (either is enough).
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")


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
    """The fast tokenizer of the directory (built from ``sentencepiece.bpe.model`` when it has no tokenizer.json)."""
    import xlmr

    try:
        return xlmr.XLMRobertaTokenizerFast.from_pretrained(str(directory))
    except (OSError, ValueError, RuntimeError) as err:
        raise DemoError(f"--model {directory}: cannot load the tokenizer ({err})") from None


def _pipeline(task: str, directory: Path, backend: str, tokenizer):
    import_backend(backend)  # a missing extra is a DemoError before anything else
    import xlmr

    try:
        return xlmr.pipeline(task, directory, backend=backend, tokenizer=tokenizer)
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DemoError(f"--model {directory}: cannot run {task} in {backend}: {message}") from None


def _token_text(tokenizer, token_id: int) -> str:
    if not 0 <= token_id < len(tokenizer):  # a model vocabulary padded beyond the tokenizer's
        return f"<id {int(token_id)}>"
    piece = tokenizer.convert_ids_to_tokens([int(token_id)])[0]
    return piece.replace("\u2581", " ").strip() or piece


def fill_mask(directory: Path, backend: str, text: str, top_k: int) -> list[list[tuple[str, float]]]:
    """Top-``top_k`` ``(token, probability)`` for each ``<mask>`` of ``text``; printed as it goes."""
    tokenizer = load_tokenizer(directory)
    if tokenizer.mask_token not in text:
        raise DemoError(f"--fill-mask text must contain {tokenizer.mask_token}, got {text!r}")
    fill = _pipeline("fill-mask", directory, backend, tokenizer)
    try:
        result = fill(text, top_k=top_k)
    except ValueError as err:
        raise DemoError(f"--fill-mask {err}") from None
    per_mask = result if result and isinstance(result[0], list) else [result]
    say(f"fill-mask with {backend} ({_weights_name(directory)}): {text}")
    results = []
    for n, predictions in enumerate(per_mask):
        if len(per_mask) > 1:
            say(f"  mask {n + 1}:")
        rows = []
        for rank, p in enumerate(predictions, start=1):
            token = _token_text(tokenizer, p["token"])
            rows.append((token, p["score"]))
            say(
                f"  {rank}. {json.dumps(token, ensure_ascii=False):<24} score={p['score']:.6f}  id={p['token']}"
            )
        results.append(rows)
    return results


def classify(directory: Path, backend: str, texts: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    """Labels (``id2label`` from config.json) with probabilities for each text, best first."""
    classifier = _pipeline("text-classification", directory, backend, load_tokenizer(directory))
    try:
        predictions = classifier(list(texts), top_k=top_k, function_to_apply="softmax", truncation=True)
    except ValueError as err:
        raise DemoError(f"--classify {err}") from None
    say(f"classify with {backend} ({_weights_name(directory)}):")
    results = []
    for text, labels in zip(texts, predictions):
        rows = [(str(p["label"]), p["score"]) for p in labels]
        say(f"  {text}")
        say("    " + "  ".join(f"{label}={p:.6f}" for label, p in rows))
        results.append(rows)
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
