"""Training: a new SentencePiece model for ``XLMRobertaTokenizer.train`` (both classes), and a new
Unigram vocabulary on a fast tokenizer's own pipeline for ``train_new_from_iterator``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable

import sentencepiece as spm
from tokenizers import AddedToken
from tokenizers import Tokenizer as _BackendTokenizer
from tokenizers.trainers import UnigramTrainer


def _sentences(texts: Iterable[str]):
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"training text #{i} is a {type(text).__name__}, expected str")
        for line in text.splitlines():
            if line.strip():
                yield line


def train_spm_model(texts: Iterable[str], vocab_size: int, **spm_kwargs) -> bytes:
    """Train a SentencePiece unigram model the way XLM-R's was set up; returns the serialized model.

    fairseq's special ids (unk=0, bos=1, eos=2, no pad) and NFKC normalization as in XLM-R's model, no byte
    fallback, ``hard_vocab_limit=False`` so a small corpus yields a smaller vocabulary instead of failing.
    Logging is off. Extra keyword arguments go to ``SentencePieceTrainer.train``.
    """
    if not isinstance(vocab_size, int) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an int >= 8, got {vocab_size!r}")
    options = {
        "model_type": "unigram",
        "vocab_size": vocab_size,
        "byte_fallback": False,
        "normalization_rule_name": "nmt_nfkc",
        "character_coverage": 0.9995,
        "unk_id": 0,
        "bos_id": 1,
        "eos_id": 2,
        "pad_id": -1,
        "hard_vocab_limit": False,
        "num_threads": max(1, os.cpu_count() or 1),
        "minloglevel": 2,
        "train_extremely_large_corpus": False,
    }
    options.update(spm_kwargs)
    sentences = list(_sentences(texts))
    if not sentences:
        raise ValueError("cannot train a SentencePiece model on an empty corpus (no non-blank text given)")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=buf, **options)
    return buf.getvalue()


def train_unigram_backend(
    backend: _BackendTokenizer,
    text_iterator: Iterable[str],
    vocab_size: int,
    length: int | None = None,
    new_special_tokens=None,
    **kwargs,
) -> _BackendTokenizer:
    """A copy of ``backend`` (a Unigram pipeline) with a vocabulary trained on ``text_iterator``: its added
    tokens first, in their order, then ``new_special_tokens``; the post-processor's ids follow them."""
    state = json.loads(backend.to_str())
    added = state.pop("added_tokens")
    post = state.pop("post_processor")
    model = state["model"]
    if model["type"] != "Unigram":
        raise ValueError(
            f"train_new_from_iterator supports a Unigram model, this tokenizer has {model['type']}"
        )
    unk_token = None
    if model.get("unk_id") is not None:
        unk_token = model["vocab"][model["unk_id"]][0]
        model["unk_id"] = 0
        model["vocab"] = [[unk_token, 0.0]]
    state["truncation"] = None
    state["padding"] = None
    backend = _BackendTokenizer.from_str(json.dumps(state))
    special = []
    for tok in added:
        tok.pop("special", None)
        tok.pop("id", None)
        special.append(AddedToken(**tok))
    if new_special_tokens:
        special.extend(new_special_tokens)
    if unk_token is not None:
        kwargs["unk_token"] = unk_token
    trainer = UnigramTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False, **kwargs)
    backend.train_from_iterator(text_iterator, length=length, trainer=trainer)
    if post is not None:
        trained = json.loads(backend.to_str())
        for spec in post.get("special_tokens", {}).values():
            ids = []
            for token in spec["tokens"]:
                idx = backend.token_to_id(token)
                if idx is None:
                    raise ValueError(f"post-processor token {token!r} is missing from the trained vocabulary")
                ids.append(idx)
            spec["ids"] = ids
        trained["post_processor"] = post
        backend = _BackendTokenizer.from_str(json.dumps(trained))
    return backend
