"""Special tokens: the ``bos_token`` ... ``mask_token`` attributes, their ids, and adding tokens.

``SpecialTokensMixin`` (HF's name for the same part of its tokenizers) keeps one ``AddedToken`` per
attribute and answers ``special_tokens_map``, ``all_special_ids`` and friends from it; the tokenizer it
is mixed into supplies ``convert_tokens_to_ids`` and ``_add_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tokenizers import AddedToken

SPECIAL_TOKENS_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
)

_ADDED_TOKEN_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def _to_added_token(value, *, special: bool = True, **defaults) -> AddedToken:
    """A str, an AddedToken or a serialized AddedToken dict -> AddedToken."""
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, Mapping):
        fields = {k: value[k] for k in _ADDED_TOKEN_FLAGS if k in value}
        fields.setdefault("special", special)
        return AddedToken(value["content"], **fields)
    if isinstance(value, str):
        opts = {"normalized": not special, "special": special}
        opts.update(defaults)
        return AddedToken(value, **opts)
    raise TypeError(f"a token must be a str or an AddedToken, got {type(value).__name__}: {value!r}")


def _with_special(tok: AddedToken, special: bool) -> AddedToken:
    """A copy of ``tok`` with its ``special`` flag set to ``special`` (the other flags kept)."""
    return AddedToken(
        tok.content,
        single_word=tok.single_word,
        lstrip=tok.lstrip,
        rstrip=tok.rstrip,
        normalized=tok.normalized,
        special=special,
    )


def _added_token_dict(tok: AddedToken, with_special: bool = True) -> dict:
    d = {
        "content": tok.content,
        "lstrip": tok.lstrip,
        "normalized": tok.normalized,
        "rstrip": tok.rstrip,
        "single_word": tok.single_word,
    }
    if with_special:
        d["special"] = tok.special
    return d


def _token_property(key: str) -> property:
    return property(
        lambda self: self._get_special(key),
        lambda self, value: self._set_special(key, value),
        doc=f"The {key.replace('_', ' ')} (str), or None.",
    )


def _id_property(key: str) -> property:
    return property(lambda self: self._special_id(key), doc=f"The id of the {key.replace('_', ' ')}.")


class SpecialTokensMixin:
    """The special-token attributes of a tokenizer, as HF's ``SpecialTokensMixin``."""

    pad_token_type_id = 0

    def _init_special_tokens(self, tokens: dict[str, Any], additional_special_tokens) -> None:
        self._special_tokens_map: dict[str, Any] = {k: None for k in SPECIAL_TOKENS_ATTRIBUTES}
        self._special_tokens_map["additional_special_tokens"] = []
        for key, value in tokens.items():
            if value is not None:
                self._special_tokens_map[key] = _to_added_token(value, special=True)
        if additional_special_tokens:
            self._special_tokens_map["additional_special_tokens"] = [
                _to_added_token(t, special=True) for t in additional_special_tokens
            ]

    def _get_special(self, key: str) -> str | None:
        tok = self._special_tokens_map[key]
        return None if tok is None else str(tok.content)

    def _set_special(self, key: str, value) -> None:
        self._special_tokens_map[key] = None if value is None else _to_added_token(value, special=True)

    # One property per attribute, in the order of SPECIAL_TOKENS_ATTRIBUTES.
    bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token = map(
        _token_property, SPECIAL_TOKENS_ATTRIBUTES[:-1]
    )

    @property
    def additional_special_tokens(self) -> list[str]:
        return [str(t.content) for t in self._special_tokens_map["additional_special_tokens"]]

    @additional_special_tokens.setter
    def additional_special_tokens(self, value) -> None:
        self._special_tokens_map["additional_special_tokens"] = [_to_added_token(t) for t in (value or [])]

    def _special_id(self, key: str) -> int | None:
        tok = self._get_special(key)
        return None if tok is None else self.convert_tokens_to_ids(tok)

    bos_token_id, eos_token_id, unk_token_id, sep_token_id, pad_token_id, cls_token_id, mask_token_id = map(
        _id_property, SPECIAL_TOKENS_ATTRIBUTES[:-1]
    )

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.additional_special_tokens)

    def _present_special_tokens(self) -> Iterator[tuple[str, Any]]:
        """``(attribute, AddedToken or list of them)`` for every attribute that is set, in HF's order."""
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = self._special_tokens_map[key]
            if value if key == "additional_special_tokens" else value is not None:
                yield key, value

    @property
    def special_tokens_map(self) -> dict[str, str | list[str]]:
        return {
            key: [str(t.content) for t in value] if isinstance(value, list) else str(value.content)
            for key, value in self._present_special_tokens()
        }

    @property
    def special_tokens_map_extended(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, list) else value
            for key, value in self._present_special_tokens()
        }

    @property
    def all_special_tokens_extended(self) -> list[AddedToken]:
        seen, out = set(), []
        for value in self.special_tokens_map_extended.values():
            for tok in value if isinstance(value, list) else [value]:
                if str(tok.content) not in seen:
                    seen.add(str(tok.content))
                    out.append(tok)
        return out

    @property
    def all_special_tokens(self) -> list[str]:
        return [str(t.content) for t in self.all_special_tokens_extended]

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_special_tokens(
        self, special_tokens_dict: dict, replace_additional_special_tokens: bool = True
    ) -> int:
        """Set special-token attributes (``{"mask_token": "<mask>", "additional_special_tokens": [...]}``) and
        add those not yet in the vocabulary; returns how many were added."""
        if not special_tokens_dict:
            return 0
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key not in SPECIAL_TOKENS_ATTRIBUTES:
                raise ValueError(
                    f"{key!r} is not a special-token attribute; expected one of {SPECIAL_TOKENS_ATTRIBUTES}"
                )
            if key == "additional_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise TypeError(f"additional_special_tokens must be a list, got {type(value).__name__}")
                toks = [_to_added_token(t, special=True, normalized=False) for t in value]
                if not replace_additional_special_tokens:
                    toks = [t for t in toks if str(t.content) not in self.additional_special_tokens]
                if replace_additional_special_tokens and toks:
                    self._special_tokens_map[key] = list(toks)
                else:
                    self._special_tokens_map[key].extend(toks)
                to_add += toks
            else:
                tok = _to_added_token(value, special=True, normalized=False)
                self._special_tokens_map[key] = tok
                to_add.append(tok)
        return self.add_tokens(to_add, special_tokens=True)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Add tokens (str or AddedToken) to the vocabulary; returns how many were new."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        for t in new_tokens:
            if not isinstance(t, (str, AddedToken)):
                raise TypeError(f"Token {t!r} is not a str or AddedToken but a {type(t).__name__}")
        return self._add_tokens(list(new_tokens), special_tokens=special_tokens)
