"""Character offsets for the fast tokenizer, with ``tokenizers``' known alignment defects repaired.

``tokenizers`` (and so HF's ``XLMRobertaTokenizerFast``) reports offsets that point at the wrong
characters in five situations. Each repair changes a span only in its situation; everywhere else the
offsets are ``tokenizers``' own, so they equal HF's. When normalization leaves a text unchanged (most
text), only repairs 2 and 3 can apply, and only at the start of a piece.

1. Leading removed characters. When a segment (the text, a pre-split word, or the text after a
   ``normalized=False`` added token such as ``<s>``) starts with characters the normalizer deletes
   (``"\x1f"`` and other controls), every span of that segment is shifted left by their number:
   ``"\x1fHello"`` puts ``H`` at ``(0, 1)``, the control character. The spans are shifted back.
2. Stripped added tokens. ``<mask>`` strips the whitespace on its left (``lstrip=True``) and its span
   includes that whitespace: ``" <mask>"``. The span is narrowed to the token's own text.
3. The ``▁`` that the Metaspace pre-tokenizer inserts in front of each piece has no source character.
   When the model makes it a token of its own, ``tokenizers`` gives it the span of the next character
   (``"Hello"``: ``▁`` and ``H`` both at ``(0, 1)``). It gets the empty span where it was inserted,
   ``(0, 0)``, as SentencePiece itself reports.
4. Composed characters. A character composed from several (``"e\u0301"`` -> ``"é"``) gets the span of
   its first source character only, and the combining mark belongs to no token. The span is extended
   over uncovered characters that change the normalization of the span.
5. Expansions followed by a removed character. The last piece of a character that expands to several
   (``"ǅ"`` -> ``"Dž"``, ``"ﷺ"``) is given the span of a removed character after it (``"ǅ\x1f"``). A
   token whose span cannot have produced it takes the span of the token before it, when that one can.

Known limit: an overflow window that starts inside the expansion of a single character into several
words (``"ﷺ"``) can take that window's first ``▁`` for an inserted one.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["AlignedEncoding", "OffsetAligner"]

_PROBE = "a"  # appended before normalizing a span, so trailing-whitespace stripping does not apply


class AlignedEncoding:
    """A ``tokenizers.Encoding`` with repaired ``offsets``; the char/token maps follow those offsets and
    every other attribute is the wrapped encoding's."""

    __slots__ = ("_encoding", "offsets", "ids")

    def __init__(self, encoding, offsets: list[tuple[int, int]], ids: list[int] | None = None) -> None:
        self._encoding = encoding
        self.offsets = offsets
        self.ids = encoding.ids if ids is None else ids

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in AlignedEncoding.__slots__:
            raise AttributeError(name)
        return getattr(self._encoding, name)

    def __len__(self) -> int:
        return len(self._encoding)

    def __repr__(self) -> str:
        return f"AlignedEncoding(num_tokens={len(self)})"

    def __getstate__(self):
        return {"encoding": self._encoding, "offsets": self.offsets}

    def __setstate__(self, state) -> None:
        self._encoding = state["encoding"]
        self.offsets = state["offsets"]
        self.ids = self._encoding.ids

    def token_to_chars(self, token_index: int):
        if self._encoding.token_to_chars(token_index) is None:
            return None
        return self.offsets[token_index]

    def char_to_token(self, char_pos: int, sequence_index: int = 0):
        seq_ids = self._encoding.sequence_ids
        for i, (start, end) in enumerate(self.offsets):
            if seq_ids[i] == sequence_index and start <= char_pos < end:
                return i
        return None

    def char_to_word(self, char_pos: int, sequence_index: int = 0):
        i = self.char_to_token(char_pos, sequence_index)
        return None if i is None else self._encoding.word_ids[i]

    def word_to_chars(self, word_index: int, sequence_index: int = 0):
        seq_ids, word_ids = self._encoding.sequence_ids, self._encoding.word_ids
        spans = [
            span
            for i, span in enumerate(self.offsets)
            if word_ids[i] == word_index and seq_ids[i] == sequence_index
        ]
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)


class OffsetAligner:
    """Repairs the offsets of a backend tokenizer's encodings (see the module docstring).

    Built from the backend's normalizer and added vocabulary; rebuild it when tokens are added.
    """

    def __init__(self, backend) -> None:
        normalizer = backend.normalizer
        self._normalize = normalizer.normalize_str if normalizer is not None else (lambda s: s)
        replacement = getattr(backend.pre_tokenizer, "replacement", None)
        self._space = replacement if isinstance(replacement, str) and replacement else "\u2581"
        added = backend.get_added_tokens_decoder()
        self._added = {i: str(t.content) for i, t in added.items()}
        self._vocab = [""] * backend.get_vocab_size(with_added_tokens=True)
        for token, i in backend.get_vocab(with_added_tokens=True).items():
            self._vocab[i] = token
        self._stripped = {i: t for i, t in added.items() if t.lstrip or t.rstrip}
        raw = [t for t in added.values() if not t.normalized and t.content]
        self._raw_patterns = {
            flag: _split_pattern([t for t in raw if not (flag and t.special)]) for flag in (False, True)
        }
        self._removed_cache: dict[str, bool] = {}
        self._blank_cache: dict[str, bool] = {}

    # ---- per-character / per-span facts from the normalizer -----------------------------------------

    def _is_removed(self, char: str) -> bool:
        hit = self._removed_cache.get(char)
        if hit is None:
            hit = self._normalize(char + _PROBE) == _PROBE
            if len(self._removed_cache) < 65536:
                self._removed_cache[char] = hit
        return hit

    def _normalized(self, text: str) -> str:
        return self._normalize(text + _PROBE)[: -len(_PROBE)].replace(" ", self._space)

    def _shifts(self, text: str, split_special_tokens: bool) -> list[tuple[int, int, int]]:
        """(start, end, k) for each segment of ``text`` that starts with k > 0 removed characters."""
        pattern = self._raw_patterns[split_special_tokens]
        bounds = [(0, len(text))]
        if pattern is not None:
            bounds, start = [], 0
            for m in pattern.finditer(text):
                bounds.append((start, m.start(1)))
                start = m.end(1)
            bounds.append((start, len(text)))
        out = []
        for a, b in bounds:
            k = 0
            while a + k < b and self._is_removed(text[a + k]):
                k += 1
            if 0 < k < b - a:
                out.append((a, b, k))
        return out

    # ---- the repair ------------------------------------------------------------------------------------

    def align(
        self, encoding, texts, is_split_into_words: bool, split_special_tokens: bool
    ) -> AlignedEncoding:
        """``texts``: the batch item the encoding came from (a text, a pair, words, or a pair of words)."""
        if is_split_into_words:
            pair = bool(texts) and isinstance(texts[0], (list, tuple))
        else:
            pair = isinstance(texts, (list, tuple))
        sequences = list(texts) if pair else [texts]
        offsets, ids, seq_ids = encoding.offsets, encoding.ids, encoding.sequence_ids
        word_ids = encoding.word_ids if is_split_into_words else None
        for sid, sequence in enumerate(sequences):
            # a sequence's tokens are contiguous (<s> A </s></s> B </s>, padding on either side)
            try:
                first = seq_ids.index(sid)
            except ValueError:
                continue
            last = len(seq_ids) - seq_ids[::-1].index(sid)
            if word_ids is None:
                self._align_group(sequence, range(first, last), offsets, ids, split_special_tokens)
                continue
            groups: dict[int, list[int]] = {}
            for i in range(first, last):
                groups.setdefault(word_ids[i], []).append(i)
            for wid, members in groups.items():
                self._align_group(sequence[wid], members, offsets, ids, split_special_tokens)
        return AlignedEncoding(encoding, offsets, ids)

    def _blank(self, char: str) -> bool:
        """Removed by the normalizer, or normalized to whitespace only."""
        hit = self._blank_cache.get(char)
        if hit is None:
            hit = all(c == self._space or _is_whitespace(c) for c in self._normalized(char))
            if len(self._blank_cache) < 65536:
                self._blank_cache[char] = hit
        return hit

    def _is_added(self, text: str, s: int, e: int, token_id: int) -> bool:
        """Whether the token is an added token matched in the text (its span holds the token's text);
        the model's own ``<unk>`` shares an added token's id."""
        content = self._added.get(token_id)
        return content is not None and content in text[s:e]

    def _align_group(self, text, members, offsets, ids, split_special_tokens) -> None:
        added = self._added
        if self._normalize(text) == text:
            # Normalization changes nothing (most text): tokenizers' alignment is exact, and only stripped
            # added tokens and the "▁" inserted at the start of each piece need repair.
            span = (
                ids[members.start : members.stop] if isinstance(members, range) else [ids[i] for i in members]
            )
            starts = [0]
            for n in [n for n, token_id in enumerate(span) if token_id in added]:
                i = members[n]
                s, e = offsets[i]
                if self._is_added(text, s, e, ids[i]):
                    offsets[i] = self._strip_added(text, s, e, ids[i])
                    starts.append(n + 1)
            for n in starts:
                if n < len(members):
                    self._inserted_space(text, members, n, offsets, ids)
            return
        # 1. leading removed characters shift a whole segment left
        for a, b, k in self._shifts(text, split_special_tokens):
            for i in members:
                s, e = offsets[i]
                if a <= s < b:
                    offsets[i] = (s + k, min(e + k, len(text)))
        space, vocab = self._space, self._vocab
        after_added = True  # the group starts a piece, as does the text after an added token
        for n, i in enumerate(members):
            s, e = offsets[i]
            if ids[i] in added and self._is_added(text, s, e, ids[i]):
                offsets[i] = self._strip_added(text, s, e, ids[i])  # 2.
                after_added = True
                continue
            first, after_added = after_added, False
            token, raw = vocab[ids[i]], text[s:e]
            if raw == token or (" " in raw and raw.replace(" ", space) == token):
                continue  # the span is the token's own text (most tokens)
            if s == e or (first and token[0] == space and raw == token[1:]):
                continue  # an inserted "▁" merged with the piece's first characters
            prev = None if first else offsets[members[n - 1]]
            nxt, nxt_end = offsets[members[n + 1]] if n + 1 < len(members) else (None, None)
            # 3. the "▁" put in front of a piece comes from no character
            if token == space and prev is None:
                self._inserted_space(text, members, n, offsets, ids)
                continue
            # 4. characters that compose into this token's last character (or, when the next token is in
            # view, any uncovered character that changes the normalization of the span)
            end = e
            if nxt is None:
                base = self._normalized(raw)
                while end < min(len(text), e + 4):
                    longer = self._normalized(text[s : end + 1])
                    if len(longer) != len(base) or longer == base:
                        break
                    end += 1
            elif nxt > e:
                current = None
                while end < nxt and not self._blank(text[end]):
                    current = current or self._normalized(text[s:end])
                    longer = self._normalized(text[s : end + 1])
                    if longer == current:
                        break
                    end, current = end + 1, longer
            if end > e:
                offsets[i] = (s, end)
            # 5. a piece of an expanded character given the span of a character removed after it
            if prev is not None and not self._produces(text, (s, end), prev, token, ids[i], nxt_end):
                if ids[i] in added or self._produces(text, prev, None, token, ids[i], nxt_end):
                    offsets[i] = prev

    def _strip_added(self, text: str, s: int, e: int, token_id: int) -> tuple[int, int]:
        """Step 2: an added token spans its own text only (not the whitespace it strips)."""
        content = self._added[token_id]
        if text[s:e] == content:
            return s, e
        tok = self._stripped.get(token_id)
        at = text.rfind(content, s, e) if tok is not None and tok.lstrip else text.find(content, s, e)
        return at, at + len(content)

    def _inserted_space(self, text, members, n, offsets, ids) -> None:
        """Step 3 for the token ``members[n]``, which starts a piece: a "▁" that comes from no character
        gets the empty span where it was inserted (where the next token starts)."""
        i = members[n]
        if self._vocab[ids[i]] != self._space:
            return
        s, e = offsets[i]
        raw = text[s:e]
        if not raw or raw[0] in (" ", self._space) or self._normalized(raw).startswith(self._space):
            return  # a real space (or a character normalized to one)
        nxt = offsets[members[n + 1]][0] if n + 1 < len(members) else s
        p = nxt if nxt >= s else s
        offsets[i] = (p, p)

    def _produces(self, text: str, span, prev, token: str, token_id: int, right: int | None) -> bool:
        """Whether the characters in ``span`` can have produced ``token`` (``right``: where the next
        token ends, the context that decides whether a mark survives normalization)."""
        s, e = span
        if token_id in self._added:  # the model's <unk>: its text is unknown, but it is not nothing
            if all(self._is_removed(c) for c in text[s:e]):
                return False
            left = min(prev[0], max(0, s - 4))  # graphemes reach back: "⬤\u200c\u0746"
            right = max(e, min(len(text), e + 4) if right is None else right)
            return self._normalized(text[left:right]) != self._normalized(text[left:s] + text[e:right])
        raw = text[s:e]
        if token == self._space:
            return " " in raw or self._space in raw or self._space in self._normalized(raw)
        core = token[1:] if token.startswith(self._space) else token
        return core in raw or core in self._normalized(raw)  # (most spans are their own normalization)


def _is_whitespace(char: str) -> bool:
    """Rust's ``char::is_whitespace`` (what ``tokenizers`` strips around added tokens)."""
    return char.isspace() and char not in "\x1c\x1d\x1e\x1f"


def _split_pattern(tokens) -> re.Pattern | None:
    """Leftmost-longest matcher of added tokens split off before normalization (group 1 spans the
    match with the whitespace the token strips)."""
    if not tokens:
        return None
    alternatives = []
    for t in sorted(tokens, key=lambda t: len(t.content), reverse=True):
        left = r"\s*" if t.lstrip else ""
        right = r"\s*" if t.rstrip else ""
        alternatives.append(f"{left}{re.escape(t.content)}{right}")
    return re.compile("(" + "|".join(alternatives) + ")")
