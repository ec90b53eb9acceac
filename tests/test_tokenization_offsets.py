"""Fast-tokenizer offsets: right where HF's (``tokenizers``') are demonstrably wrong, HF's everywhere else.

Two independent references: SentencePiece's own piece offsets (its C++ normalizer tracks alignment
itself) for hand-picked texts, and ``tests/offsets_oracle.py`` (what any correct span must satisfy,
written from the definitions) over thousands of generated texts.
"""

from __future__ import annotations

import functools
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.offsets_oracle import Oracle, check_against_reference
from tests.test_tokenization import KINDS, WORDS, corpus, hf_tokenizers, model_file
from tests.test_tokenization import ours as _ours
from xlmr import XLMRobertaTokenizerFast

ours = functools.cache(_ours)

pytestmark = pytest.mark.hf


@functools.cache
def oracle(kind: str) -> Oracle:
    return Oracle(hf_tokenizers(kind)[1].backend_tokenizer)


def encode(tokenizer, text, **kw):
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, **kw)


def spans(enc, text):
    return [(text[s:e], (s, e)) for s, e in enc["offset_mapping"]]


def spm_offsets(kind: str, text: str):
    """SentencePiece's own (piece, char span) list, from the byte offsets of its encode proto."""
    import sentencepiece as spm

    proto = spm.SentencePieceProcessor(model_file=model_file(kind)).encode(text, return_type="proto")
    data = text.encode("utf-8")

    def char(b):
        return len(data[:b].decode("utf-8"))

    return [(p.piece, (char(p.begin), char(p.end))) for p in proto.pieces]


def check_sequence(kind, text, tokens, ids, got, ref) -> bool:
    """Ours satisfy the oracle; where HF's satisfy it too, ours equal HF's. Returns whether HF's fail."""
    added = set(hf_tokenizers(kind)[1].backend_tokenizer.get_added_tokens_decoder())
    return check_against_reference(oracle(kind), text, tokens, ids, got, ref, added)


# ---- the cases HF gets wrong, against SentencePiece's own offsets ------------------------------------


def test_inserted_space_piece_has_an_empty_span():
    # "▁" + "H": the "▁" the Metaspace pre-tokenizer inserts comes from no character.
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    text = "Hello world"
    got, ref = encode(fast, text), encode(hf_fast, text)
    assert fast.convert_ids_to_tokens(got.input_ids)[:2] == ["▁", "H"]
    assert ref["offset_mapping"][:2] == [(0, 1), (0, 1)]  # HF: the "▁" spans "H"
    assert got["offset_mapping"][:2] == [(0, 0), (0, 1)]
    assert [(p, o) for p, o in spm_offsets("full", text)] == list(
        zip(fast.convert_ids_to_tokens(got.input_ids), got["offset_mapping"])
    )
    # after <mask> a new piece starts with an inserted "▁" too
    text = "x<mask>y"
    got, ref = encode(fast, text), encode(hf_fast, text)
    assert ref["offset_mapping"][-2:] == [(7, 8), (7, 8)]
    assert got["offset_mapping"][-2:] == [(7, 7), (7, 8)]


def test_leading_control_characters_do_not_shift_the_offsets():
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    text = "\x1fHello"
    got, ref = encode(fast, text), encode(hf_fast, text)
    assert spans(ref, text)[1:3] == [("\x1f", (0, 1)), ("H", (1, 2))]  # HF: "H" at the control char
    assert spans(got, text)[1:] == [("H", (1, 2)), ("e", (2, 3)), ("l", (3, 4)), ("l", (4, 5)), ("o", (5, 6))]
    # SentencePiece agrees on every piece but the inserted "▁" (it hands that the removed character)
    assert (
        spm_offsets("full", text)[1:]
        == list(zip(fast.convert_ids_to_tokens(got.input_ids), got["offset_mapping"]))[1:]
    )
    # the same after a special token, in the second text of a pair and in pre-split words
    for text in ["<s>\x1f\x1fab cd", "ab\x07 <mask> x"]:
        enc = encode(fast, text)
        for (piece, span), tok in zip(spans(enc, text), fast.convert_ids_to_tokens(enc.input_ids)):
            assert piece.replace(" ", "▁") in (tok, tok.lstrip("▁"), "") or tok == "<mask>", (text, span)
    pair = fast("q", "\x1f\x1fab", return_offsets_mapping=True)
    second = [o for o, s in zip(pair["offset_mapping"], pair.sequence_ids()) if s == 1]
    assert second[1:] == [(2, 3), (3, 4)]
    words = fast(["\x1fab", "cd"], is_split_into_words=True, return_offsets_mapping=True)
    assert words["offset_mapping"][2:4] == [(1, 2), (2, 3)]


def test_mask_span_is_the_mask_itself():
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    text = "The capital is <mask>."
    got, ref = encode(fast, text), encode(hf_fast, text)
    i = got.input_ids.index(fast.mask_token_id)
    assert text[slice(*ref["offset_mapping"][i])] == " <mask>"  # HF includes the stripped space
    assert text[slice(*got["offset_mapping"][i])] == "<mask>"


def test_composed_character_covers_its_combining_mark():
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    text = "e\u0301x"  # e + COMBINING ACUTE ACCENT normalizes to "é"
    got, ref = encode(fast, text), encode(hf_fast, text)
    assert ref["offset_mapping"][1] == (0, 1)  # HF: "é" spans "e" only, the accent belongs to no token
    assert got["offset_mapping"][1] == (0, 2)
    tokens = fast.convert_ids_to_tokens(got.input_ids)
    assert spm_offsets("full", text) == list(zip(tokens, got["offset_mapping"]))


def test_offsets_equal_hf_where_hf_is_right():
    # "…", "？", NUL and characters that turn into a real "▁" (tab, ideographic space): HF is right there.
    # (Each text starts with a space, so no "▁" is inserted.)
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    texts = [" wait…what", " why？ really？", " a ▁ b", " x\x00y", " a\tb\u3000c", " ﬁne ½", " a  b"]
    got, ref = encode(fast, texts), encode(hf_fast, texts)
    assert got["input_ids"] == ref["input_ids"]
    assert got["offset_mapping"] == ref["offset_mapping"]


# ---- generated texts against the oracle ----------------------------------------------------------------

RISKY = (
    ["\x1f", "\x00", "\x07", "\r", "\t", "\n", "\x85", "\u200b", "\u200d", "\ufeff", "\u00ad", "\ufe0f"]
    + ["\u0301", "\u0308", "e\u0301", "A\u030a", "\u1100\u1161", "\u0915\u093c", "ﬁ", "…", "？", "！", "½"]
    + ["①", "Ａ", "ﷺ", "¨", "ǅ", "㍿", "ｶﾞ", "\u3000", "\u00a0", "\u2028", "▁", " ", "  ", "🙂", "👍🏽"]
    + ["<mask>", " <mask>", "<s>", "</s>"]
)
WORD_LIST = [w for ws in WORDS.values() for w in ws] + ["Hello", "world", "The", "x", "a"]


def generated_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(rng.choice(RISKY) if rng.random() < 0.5 else rng.choice(WORD_LIST))
            if rng.random() < 0.4:
                parts.append(" ")
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_generated_texts_against_the_oracle(kind):
    _, hf_fast = hf_tokenizers(kind)
    _, fast = ours(kind)
    texts = generated_texts(1000, seed=KINDS.index(kind))
    got, ref = encode(fast, texts), encode(hf_fast, texts)
    assert got["input_ids"] == ref["input_ids"]
    hf_wrong = 0
    for text, ids, mine, theirs in zip(texts, got["input_ids"], got["offset_mapping"], ref["offset_mapping"]):
        hf_wrong += check_sequence(kind, text, fast.convert_ids_to_tokens(ids), ids, mine, theirs)
    # the generator is built around HF's failure cases: a good share of texts must exercise them
    assert 200 < hf_wrong < len(texts)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.lists(
        st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=10), st.sampled_from(RISKY)),
        max_size=6,
    ).map("".join)
)
def test_arbitrary_unicode_against_the_oracle(text):
    _, hf_fast = hf_tokenizers("small")
    _, fast = ours("small")
    got, ref = encode(fast, text), encode(hf_fast, text)
    assert got["input_ids"] == ref["input_ids"]
    tokens = fast.convert_ids_to_tokens(got["input_ids"])
    check_sequence("small", text, tokens, got["input_ids"], got["offset_mapping"], ref["offset_mapping"])


# ---- pairs, pre-split words, overflow windows, char/token maps -----------------------------------------


def test_pairs_and_pre_split_words_against_the_oracle():
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    texts = generated_texts(300, seed=7)
    pairs = list(zip(texts[::2], texts[1::2]))
    got = fast(pairs, return_offsets_mapping=True)
    ref = hf_fast(pairs, return_offsets_mapping=True)
    assert got["input_ids"] == ref["input_ids"]

    def check_part(b, keep, text):
        ids = [got["input_ids"][b][i] for i in keep]
        mine = [got["offset_mapping"][b][i] for i in keep]
        theirs = [ref["offset_mapping"][b][i] for i in keep]
        check_sequence("full", text, fast.convert_ids_to_tokens(ids), ids, mine, theirs)

    for b, pair in enumerate(pairs):
        seq = got.sequence_ids(b)
        for sid, text in enumerate(pair):
            check_part(b, [i for i, s in enumerate(seq) if s == sid], text)
    words = [t.split(" ") for t in texts[:100]]
    got = fast(words, is_split_into_words=True, return_offsets_mapping=True)
    ref = hf_fast(words, is_split_into_words=True, return_offsets_mapping=True)
    for b, ws in enumerate(words):
        word_ids = got.word_ids(b)
        for w, word in enumerate(ws):
            check_part(b, [i for i, x in enumerate(word_ids) if x == w], word)


def test_overflow_windows_keep_the_offsets_of_the_whole_text():
    _, hf_fast = hf_tokenizers("full")
    _, fast = ours("full")
    contexts = ["\x1f" + " ".join(corpus(5, seed=s)) + " e\u0301 <mask>." for s in range(4)]
    questions = ["Where?"] * len(contexts)
    kw = dict(truncation="only_second", max_length=24, stride=6, return_overflowing_tokens=True)
    windows = fast(questions, contexts, return_offsets_mapping=True, **kw)
    ref = hf_fast(questions, contexts, return_offsets_mapping=True, **kw)
    whole = fast(questions, contexts, return_offsets_mapping=True)
    whole_ref = hf_fast(questions, contexts, return_offsets_mapping=True)
    assert windows["input_ids"] == ref["input_ids"]
    for w, b in enumerate(windows["overflow_to_sample_mapping"]):
        seq, seq_whole = windows.sequence_ids(w), whole.sequence_ids(b)
        mine = [
            (i, o) for i, o, s in zip(windows["input_ids"][w], windows["offset_mapping"][w], seq) if s == 1
        ]
        theirs = [(i, o) for i, o, s in zip(ref["input_ids"][w], ref["offset_mapping"][w], seq) if s == 1]
        full = [
            (i, o) for i, o, s in zip(whole["input_ids"][b], whole["offset_mapping"][b], seq_whole) if s == 1
        ]
        full_ref = [
            (i, o)
            for i, o, s in zip(whole_ref["input_ids"][b], whole_ref["offset_mapping"][b], seq_whole)
            if s == 1
        ]
        # locate the window in the whole text by HF's (id, span) run, then compare our spans
        starts = [k for k in range(len(full_ref)) if full_ref[k : k + len(theirs)] == theirs]
        assert len(starts) == 1
        assert mine == full[starts[0] : starts[0] + len(mine)]
    assert len(windows["input_ids"]) > len(contexts)


def test_char_and_token_maps_follow_the_offsets():
    _, fast = ours("full")
    text = "\x1fHello e\u0301 <mask> world"
    enc = fast(text, return_offsets_mapping=True)
    for i, span in enumerate(enc["offset_mapping"]):
        if enc.sequence_ids()[i] is None:
            assert enc.token_to_chars(i) is None
            continue
        assert tuple(enc.token_to_chars(i)) == span
    for c in range(len(text)):
        i = enc.char_to_token(c)
        if i is not None:
            s, e = enc["offset_mapping"][i]
            assert s <= c < e
            assert enc.char_to_word(c) == enc.word_ids()[i]
    covered = {c for s, e in enc["offset_mapping"] for c in range(s, e)}
    assert {c for c in range(len(text)) if enc.char_to_token(c) is not None} == covered
    assert enc.char_to_token(0) is None  # the removed control character belongs to no token
    assert text[slice(*enc.word_to_chars(enc.char_to_word(1)))] == "Hello"
    # lazily built encodings (offsets not asked for) are repaired the same way, and survive pickling
    lazy = fast(text)
    assert [tuple(lazy.token_to_chars(i) or ()) for i in range(len(lazy["input_ids"]))] == [
        () if s is None else span for span, s in zip(enc["offset_mapping"], enc.sequence_ids())
    ]
    again = pickle.loads(pickle.dumps(enc))
    assert again.encodings[0].offsets == enc["offset_mapping"]
    assert again.char_to_token(1) == enc.char_to_token(1)


def test_added_tokens_reach_the_repair():
    # A token added after the tokenizer was first used (here one that strips spaces on both sides) gets
    # its own text as its span, and the piece after it starts with an inserted "▁".
    from xlmr.tokenization import AddedToken

    tok = XLMRobertaTokenizerFast(model_file("full"))
    text = "go [SEP2] now"
    tok(text, return_offsets_mapping=True)
    tok.add_tokens([AddedToken("[SEP2]", lstrip=True, rstrip=True)])
    enc = encode(tok, text)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    i = tokens.index("[SEP2]")
    assert text[slice(*enc["offset_mapping"][i])] == "[SEP2]"
    assert "".join(tokens[i + 1 :]).startswith("▁n")
    assert enc["offset_mapping"][i + 1][0] == text.index("now")
    if tokens[i + 1] == "▁":
        assert enc["offset_mapping"][i + 1] == (text.index("now"),) * 2
