"""The realistic benchmark corpus: short queries and heavy-tailed passages in twelve languages.

2,000 texts built from the 600 embedded sentences of ``xlmr_demo/data/langid.tsv`` (twelve
languages, four scripts), deterministic for a seed:

- 1,000 **queries**: one sentence each;
- 1,000 **passages**: several sentences of one language, the count drawn from a log-normal
  distribution (median 6 sentences, sigma 0.9: a heavy tail of long documents), truncated at
  512 tokens like a model with xlm-roberta-base's positions would truncate them;

shuffled together, as a retrieval corpus mixes them. Tokenized with an XLM-R SentencePiece unigram
model (8,000 pieces) trained here on the same sentences -- no real XLM-R model is available
offline; its ids are valid for any vocabulary size above 8,000, so the xlm-roberta-base shape
runs them. ``describe()`` reports the length distribution and the padding fraction of HF-style
batching (batches of 32 in corpus order, padded to the longest).
"""

from __future__ import annotations

import functools
import tempfile

import numpy as np

MAX_TOKENS = 512  # xlm-roberta-base: max_position_embeddings 514 minus pad_token_id + 1
N_TEXTS = 2000


def _sentences() -> list[tuple[str, str]]:
    from xlmr_demo.data import read_rows

    return [(label, text) for _, label, text in read_rows()]


def make_texts(n: int = N_TEXTS, seed: int = 0) -> list[str]:
    """Half single-sentence queries, half log-normal-length passages, shuffled."""
    rng = np.random.default_rng(seed)
    sentences = _sentences()
    by_lang: dict[str, list[str]] = {}
    for label, text in sentences:
        by_lang.setdefault(label, []).append(text)
    langs = sorted(by_lang)
    texts = []
    for _ in range(n // 2):
        texts.append(sentences[rng.integers(len(sentences))][1])
    for _ in range(n - n // 2):
        pool = by_lang[langs[rng.integers(len(langs))]]
        count = max(2, int(round(rng.lognormal(mean=np.log(6), sigma=0.9))))
        picks = rng.integers(len(pool), size=count)
        sep = "" if pool[0][-1] in "。！？" else " "
        texts.append(sep.join(pool[i] for i in picks))
    order = rng.permutation(len(texts))
    return [texts[i] for i in order]


@functools.lru_cache(maxsize=2)
def tokenizer():
    """A fast XLM-R tokenizer (8,000-piece unigram model) trained on the embedded sentences."""
    from xlmr import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    directory = tempfile.mkdtemp(prefix="xlmr-bench-tok-")
    XLMRobertaTokenizer.train([t for _, t in _sentences()] * 4, vocab_size=8000, save_directory=directory)
    return XLMRobertaTokenizerFast.from_pretrained(directory)


def corpus(n: int = N_TEXTS, seed: int = 0) -> tuple[list[str], list[list[int]]]:
    """``(texts, token ids)``: ids with ``<s>``/``</s>``, truncated to :data:`MAX_TOKENS`."""
    texts = make_texts(n, seed)
    ids = tokenizer()(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    return texts, ids


def naive_batches(ids: list[list[int]], batch_size: int = 32) -> list[list[int]]:
    """HF model cards' batching: ``batch_size`` texts in corpus order (index lists)."""
    return [list(range(i, min(i + batch_size, len(ids)))) for i in range(0, len(ids), batch_size)]


def sorted_batches(texts: list[str], batch_size: int = 32) -> list[list[int]]:
    """sentence-transformers' batching: texts sorted by length, longest first, then ``batch_size``
    at a time. Like ``SentenceTransformer.encode`` it sorts by *character* length -- in a
    multilingual corpus a poor proxy for the token length."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def padding_fraction(ids: list[list[int]], batches: list[list[int]]) -> float:
    """Share of the computed (batch x longest) token slots that are padding."""
    real = sum(len(ids[i]) for b in batches for i in b)
    slots = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
    return 1.0 - real / slots


def describe(n: int = N_TEXTS, seed: int = 0) -> dict:
    texts, ids = corpus(n, seed)
    lengths = np.array([len(x) for x in ids])
    half = n // 2
    return {
        "texts": n,
        "tokens": int(lengths.sum()),
        "length_percentiles": {p: int(np.percentile(lengths, p)) for p in (10, 50, 90, 99)},
        "max": int(lengths.max()),
        "truncated_at_512": int((lengths >= MAX_TOKENS).sum()),
        "queries_median": int(np.median(sorted(lengths)[:half])),
        "padding_naive": padding_fraction(ids, naive_batches(ids)),
        "padding_sorted_by_chars": padding_fraction(ids, sorted_batches(texts)),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2))
