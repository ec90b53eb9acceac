"""The sentence-transformers reference: tiny XLM-R models built and saved by sentence-transformers.

sentence-transformers imports transformers, whose TF classes need tf-keras when Keras 3 is
installed. :func:`sentence_transformers` sets ``USE_TF=0`` only when that would fail anyway
(no tf-keras) and transformers is not imported yet, so HF's TF reference classes keep working
for the other tests of the same pytest process whenever tf-keras is there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.reference import hf_torch_model, tiny_config

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Le renard brun saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El zorro marrón salta sobre el perro perezoso.",
    "query: what is the capital of France?",
    "passage: Paris is the capital and largest city of France.",
    "Привет, как дела? Всё хорошо, спасибо.",
    "東京は日本の首都です。",
]
# Mixed lengths: one character to past max_seq_length (truncated), in no particular order.
TEXTS = [
    "Paris is the capital of France.",
    "x",
    " ".join(SENTENCES),
    "Der Fuchs",
    "Le renard brun saute. " * 3,
    "",
    "東京は日本の首都です。 Привет!",
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    "hello world",
    "El zorro marrón salta sobre el perro perezoso, otra vez y otra vez.",
    "query: capital?",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
]
MAX_POSITIONS = 40  # positions for 38 tokens
MAX_SEQ_LENGTH = 20  # truncation in the sentence-transformers models (TEXTS has longer ones)


def sentence_transformers():
    """Import sentence-transformers (skip when not installed), without breaking HF's TF classes."""
    if "transformers" not in sys.modules and importlib.util.find_spec("tf_keras") is None:
        os.environ.setdefault("USE_TF", "0")  # transformers' TF classes could not load anyway
    pytest.importorskip("torch", reason="sentence-transformers runs on PyTorch")
    return pytest.importorskip("sentence_transformers")


@dataclass(frozen=True)
class Spec:
    """One sentence-transformers model: pooling modes, Dense, Normalize, prompts."""

    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    dense: str | None = None  # torch activation class name, e.g. "Tanh"
    dense_out: int = 16
    normalize: bool = False
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None
    similarity: str | None = None
    max_seq_length: int | None = MAX_SEQ_LENGTH
    extra: tuple = field(default=())

    @property
    def name(self) -> str:
        parts = ["+".join(self.modes)]
        if not self.include_prompt:
            parts.append("noprompt")
        if self.dense:
            parts.append(f"dense-{self.dense}")
        if self.normalize:
            parts.append("norm")
        if self.prompts:
            parts.append("prompts")
        return "-".join(parts)


def train_tokenizer(directory: Path):
    from xlmr import XLMRobertaTokenizer

    return XLMRobertaTokenizer.train(SENTENCES * 10, vocab_size=150, save_directory=directory)


def build_backbone(directory: Path) -> Path:
    """A tiny HF ``XLMRobertaModel`` (perturbed random weights) and its tokenizer, HF layout."""
    tokenizer_dir = directory / "tokenizer"
    tokenizer = train_tokenizer(tokenizer_dir)
    vocab = max(len(tokenizer), tokenizer.mask_token_id + 1)
    config = tiny_config(vocab_size=vocab, max_position_embeddings=MAX_POSITIONS)
    model = hf_torch_model("base", config, seed=3)
    model.config._attn_implementation = "sdpa"
    backbone = directory / "backbone"
    model.save_pretrained(backbone)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, backbone / f.name)
    return backbone


def build_st_model(spec: Spec, backbone: Path):
    """A ``SentenceTransformer`` of ``spec`` on ``backbone`` (in memory)."""
    st = sentence_transformers()
    import torch
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    kwargs = {} if spec.max_seq_length is None else {"max_seq_length": spec.max_seq_length}
    transformer = Transformer(str(backbone), **kwargs)
    hidden = transformer.get_embedding_dimension()
    modes = spec.modes[0] if len(spec.modes) == 1 else spec.modes
    modules = [transformer, Pooling(hidden, pooling_mode=modes, include_prompt=spec.include_prompt)]
    if spec.dense:
        torch.manual_seed(7)
        activation = getattr(torch.nn, spec.dense)()
        modules.append(Dense(len(spec.modes) * hidden, spec.dense_out, activation_function=activation))
        with torch.no_grad():
            modules[-1].linear.bias.add_(0.1)
    if spec.normalize:
        modules.append(Normalize())
    return st.SentenceTransformer(
        modules=modules,
        prompts=dict(spec.prompts) or None,
        default_prompt_name=spec.default_prompt_name,
        similarity_fn_name=spec.similarity,
        device="cpu",
    )


def save_st_model(spec: Spec, backbone: Path, directory: Path) -> Path:
    model = build_st_model(spec, backbone)
    model.save(str(directory))
    return directory


def st_encode(directory, texts, **kwargs):
    """``SentenceTransformer(directory).encode(texts, **kwargs)`` (the model loaded fresh)."""
    st = sentence_transformers()
    model = st.SentenceTransformer(str(directory), device="cpu")
    return model.encode(texts, **kwargs)


def encoder_class(backend: str):
    from tests.backends import get_adapter

    get_adapter(backend)  # skips when the framework is missing
    if backend == "torch":
        from xlmr_torch import SentenceEncoder

        return SentenceEncoder
    if backend == "tf":
        from xlmr_tf import TFSentenceEncoder

        return TFSentenceEncoder
    from xlmr_flax import FlaxSentenceEncoder

    return FlaxSentenceEncoder


def assert_quantized_match(
    ours: np.ndarray, floats: np.ndarray, reference: np.ndarray, precision: str
) -> None:
    """``ours`` (from xlmr's float embeddings ``floats``) against sentence-transformers' own result.

    binary/ubinary: equal. int8/uint8: sentence-transformers' buckets come from the embeddings'
    own minimum and maximum, so each dimension's maximum lands on ``floor(range / (range / 255))``
    -- 255 or 254 depending on the last bit of the range. Embeddings equal within 1e-7 but not bit
    for bit can differ there, by one, and only there. Everything else is equal; and ``ours`` is
    exactly sentence-transformers' ``quantize_embeddings`` of ``floats``.
    """
    from sentence_transformers.util.quantization import quantize_embeddings

    np.testing.assert_array_equal(ours, quantize_embeddings(floats, precision=precision))
    assert ours.dtype == reference.dtype and ours.shape == reference.shape
    if precision in ("binary", "ubinary"):
        np.testing.assert_array_equal(ours, reference)
        return
    diff = ours.astype(np.int64) - reference.astype(np.int64)
    at_max = floats == floats.max(axis=0, keepdims=True)
    assert np.all(np.abs(diff) <= 1), diff
    assert np.all((diff == 0) | at_max), "quantized values differ away from a dimension's maximum"
