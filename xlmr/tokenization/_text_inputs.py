"""Checks of the text a tokenizer is called with, and the names its errors give to the arguments:
``text`` / ``text_pair`` for one example, ``text[i]`` / ``text_pair[i]`` for batch item i, and one more
index for a pre-split word."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class InvalidTextInputError(TypeError, ValueError):
    """Text input of the wrong type (a TypeError; also a ValueError, which is what HF raises)."""


def _check_text(t, name: str, index: int | None = None, words: bool = False) -> None:
    where = f"{name}[{index}]" if index is not None else name
    if words:
        if not isinstance(t, (list, tuple)) or not all(isinstance(w, str) for w in t):
            raise InvalidTextInputError(
                f"{where} must be a list of str (pre-split words) when is_split_into_words=True, got "
                f"{type(t).__name__}: {t!r:.80}"
            )
    elif not isinstance(t, str):
        raise InvalidTextInputError(f"{where} must be a str, got {type(t).__name__}: {t!r:.80}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _raise_for_surrogates(named: Iterable[tuple[str, Any]]) -> None:
    """After an encoding failure: ValueError naming the argument, the example and the character index of
    a lone surrogate in the input, if there is one (sentencepiece and tokenizers refuse such text with
    messages that name neither)."""
    for name, value in named:
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise ValueError(
                    f"{name} holds a lone surrogate {found.group()!r} at index {found.start()}: text must be "
                    "valid Unicode (a surrogate code point has no UTF-8 encoding)"
                )
        elif isinstance(value, (list, tuple)):
            _raise_for_surrogates((f"{name}[{i}]", v) for i, v in enumerate(value))


def _batch_item_names(batch: list, is_split_into_words: bool) -> Iterable[tuple[str, Any]]:
    """``("text[i]", first), ("text_pair[i]", second)`` for the items of a batch."""
    for i, item in enumerate(batch):
        if _is_pair(item, is_split_into_words):
            yield from ((f"text[{i}]", item[0]), (f"text_pair[{i}]", item[1]))
        else:
            yield f"text[{i}]", item


def _is_pair(item, is_split_into_words: bool) -> bool:
    """Whether a batch item is a ``(text, text_pair)`` pair (of word lists, with pre-split words)."""
    return isinstance(item, (list, tuple)) and (
        not is_split_into_words or (bool(item) and isinstance(item[0], (list, tuple)))
    )
