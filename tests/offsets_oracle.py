"""An independent check of fast-tokenizer offsets: what a correct span must satisfy.

Written from the definitions, not from ``xlmr/tokenization/_offsets.py``: the normalizer is used only as
a black box on strings (``normalize_str``), never for alignments. For one sequence text and the tokens
encoded from it (in order, without the template's special tokens), a correct ``offsets`` list satisfies:

- an added token matched in the text spans exactly its own text (``<mask>``, not ``" <mask>"``);
- the ``▁`` the Metaspace pre-tokenizer puts in front of a piece that does not start with a space
  comes from no character: standing alone it has the empty span where the piece starts;
- any other token's text (less a leading ``▁``) appears in the normalization of its span; the first
  token of a piece starts where the piece starts (or, for a piece that starts with whitespace, within
  that whitespace: which of its characters the ``▁`` points at is a convention);
- every character that normalizes to something other than whitespace, and whose removal would change the
  normalized text, is covered by some token;
- spans start in order.
"""

from __future__ import annotations

import re

SPACE = "\u2581"
RAW_ADDED = ("<s>", "</s>", "<pad>")  # split off before normalization (normalized=False)
MASK = "<mask>"  # matched in the normalized text, strips the whitespace on its left


class Oracle:
    def __init__(self, backend) -> None:
        self.normalize = backend.normalizer.normalize_str

    def norm(self, text: str) -> str:
        return self.normalize(text + "a")[:-1].replace(" ", SPACE)

    def removed(self, char: str) -> bool:
        return self.normalize(char + "a") == "a"

    def dropped(self, text: str, j: int) -> bool:
        """Character j changes nothing in the normalization (removed, or lost in context): neither in the
        whole text nor in the text up to it."""
        if self.norm(text[: j + 1]) != self.norm(text[:j]):
            return False
        return self.normalize(text[:j] + text[j + 1 :]) == self.normalize(text)

    def blank(self, char: str) -> bool:
        """Removed, or normalized to whitespace only."""
        return all(c == SPACE or (c.isspace() and c not in "\x1c\x1d\x1e\x1f") for c in self.norm(char))

    def _pieces(self, text: str):
        """(start in text, prepends ▁) for each piece that yields tokens, in order."""
        out = []
        raw_bounds, start = [], 0
        for m in re.finditer("|".join(map(re.escape, RAW_ADDED)), text):
            raw_bounds.append((start, m.start()))
            start = m.end()
        raw_bounds.append((start, len(text)))
        for a, b in raw_bounds:
            normalized = self.normalize(text[a:b])
            if not normalized:
                continue
            # sub-pieces of the normalized text around <mask>; map each back to the first source char
            subs = re.split(r"\s*" + re.escape(MASK), normalized)
            cursor = a
            for n, sub in enumerate(subs):
                if n > 0:  # skip past the next <mask> in the source
                    cursor = text.index(MASK, cursor) + len(MASK)
                if not sub:
                    continue
                first = cursor
                while first < b and self.removed(text[first]):
                    first += 1
                out.append((first, not sub.startswith((" ", SPACE))))
        return out

    def problems(self, text: str, tokens, ids, offsets, added_ids) -> list[str]:
        bad = []
        is_added = [
            i in added_ids and any(t in text[s:e] for t in RAW_ADDED + (MASK,))
            for i, (s, e) in zip(ids, offsets)
        ]
        runs, current = [], []
        for n, added in enumerate(is_added):
            if added:
                if current:
                    runs.append(current)
                current = []
            else:
                current.append(n)
        if current:
            runs.append(current)
        pieces = self._pieces(text)
        if len(pieces) != len(runs):
            return [f"{len(runs)} token runs for {len(pieces)} pieces"]
        first_of_run = {run[0]: piece for run, piece in zip(runs, pieces)}
        covered = [False] * len(text)
        last_start = 0
        for n, (token, (s, e)) in enumerate(zip(tokens, offsets)):
            where = f"token {n} {token!r} at {(s, e)}"
            if s < last_start:
                bad.append(f"{where}: starts before the previous token")
            last_start = s
            for j in range(s, e):
                covered[j] = True
            if is_added[n]:
                if text[s:e] != token:
                    bad.append(f"{where}: added token spans {text[s:e]!r}")
                continue
            piece = first_of_run.get(n)
            if piece is not None and piece[1] and token == SPACE:
                if (s, e) != (piece[0], piece[0]):
                    bad.append(f"{where}: inserted ▁ should be the empty span at {piece[0]}")
                continue
            if piece is not None and piece[1] and s != piece[0]:
                bad.append(f"{where}: first token of a piece should start at {piece[0]}")
            if (
                piece is not None
                and not piece[1]
                and not all(
                    self.blank(c) or self.dropped(text, j) for j, c in enumerate(text[piece[0] : s], piece[0])
                )
            ):
                bad.append(f"{where}: first token of a piece should start in the whitespace at {piece[0]}")
            if s == e:
                bad.append(f"{where}: empty span")
            elif token == "<unk>":
                if all(self.removed(text[j]) or self.dropped(text, j) for j in range(s, e)):
                    bad.append(f"{where}: unknown token spans only characters that normalize to nothing")
            elif token == SPACE:
                if SPACE not in self.norm(text[s:e]):
                    bad.append(f"{where}: no space in the span {text[s:e]!r}")
            else:
                core = token[1:] if token.startswith(SPACE) else token
                if core not in self.norm(text[s:e]):
                    bad.append(f"{where}: {core!r} not in the span {text[s:e]!r}")
        for j, char in enumerate(text):
            if not covered[j] and not self.blank(char) and not self.dropped(text, j):
                bad.append(f"char {j} {char!r} is covered by no token")
        return bad


def check_against_reference(oracle: Oracle, text, tokens, ids, got, ref, added_ids) -> bool:
    """Our spans satisfy the oracle; where the reference's (HF's) satisfy it too, ours equal them.
    Returns whether the reference's spans are wrong."""
    problems = oracle.problems(text, tokens, ids, got, added_ids)
    assert not problems, (text, problems, list(zip(tokens, got)))
    reference_wrong = bool(oracle.problems(text, tokens, ids, ref, added_ids))
    if not reference_wrong:
        assert list(got) == list(ref), (text, list(zip(tokens, got, ref)))
    return reference_wrong
