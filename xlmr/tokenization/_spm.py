"""SentencePiece model files: reading them, and the `tokenizers` pipeline built from them.

Private helpers of :mod:`xlmr.tokenization` (training is in ``training.py``). The pipeline built
here is the one HF transformers' ``convert_slow_tokenizer.XLMRobertaConverter`` produces (fairseq id
layout, the model's own precompiled normalizer plus HF's strip / collapse steps, Metaspace,
``<s> A </s></s> B </s>``), written here on top of sentencepiece's own protobuf module.
"""

from __future__ import annotations

import os

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

SPIECE_UNDERLINE = "\u2581"

# fairseq's dictionary puts these four first; SentencePiece piece i then sits at id i + 1
# (its own <unk>, <s>, </s> at 0, 1, 2 are shadowed by the fairseq entries) and <mask> comes last.
FAIRSEQ_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
FAIRSEQ_OFFSET = 1

# sentencepiece_model.proto enums.
_UNIGRAM = 1
_CONTROL = 3
_USER_DEFINED = 4


def _model_pb2():
    from sentencepiece import sentencepiece_model_pb2

    return sentencepiece_model_pb2


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a SentencePiece model file, with an error naming the path when it is missing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model file not found: {path!r}")
    with open(path, "rb") as f:
        return f.read()


def parse_model_proto(data: bytes, source: str = "<bytes>"):
    """Parse serialized SentencePiece model bytes into a ``ModelProto``; ValueError naming ``source``."""
    from google.protobuf.message import DecodeError

    proto = _model_pb2().ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{source} is not a valid SentencePiece model file ({e})") from e
    if len(proto.pieces) < 3:
        raise ValueError(
            f"{source} is not a valid SentencePiece model file (it holds {len(proto.pieces)} pieces)"
        )
    return proto


def load_processor(
    data: bytes, source: str, sp_model_kwargs: dict | None = None
) -> spm.SentencePieceProcessor:
    """A SentencePieceProcessor from serialized model bytes; ValueError naming ``source`` if corrupt."""
    sp = spm.SentencePieceProcessor(**(sp_model_kwargs or {}))
    try:
        sp.LoadFromSerializedProto(data)
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{source} is not a valid SentencePiece model file ({e})") from e
    return sp


def pipeline_mismatch(backend: Tokenizer, data: bytes, source: str) -> str | None:
    """How a fast pipeline's model disagrees with the SentencePiece model ``data`` (in the fairseq layout
    ``build_backend`` gives: piece i at id i + 1 from piece 3 on, ``<mask>`` last), or None."""
    pieces = [p.piece for p in parse_model_proto(data, source).pieces]
    expected = len(pieces) + FAIRSEQ_OFFSET + 1  # fairseq's four tokens replace SentencePiece's three
    got = backend.get_vocab_size(with_added_tokens=False)
    if got != expected:
        return f"its model holds {got} tokens, the SentencePiece model's layout {expected}"
    for i in range(3, len(pieces)):
        token = backend.id_to_token(i + FAIRSEQ_OFFSET)
        if token != pieces[i]:
            return f"id {i + FAIRSEQ_OFFSET} is {token!r} there but SentencePiece piece {i} is {pieces[i]!r}"
    return None


def build_backend(proto, mask_token: str = "<mask>") -> Tokenizer:
    """The fast pipeline for a SentencePiece unigram model, as XLMRobertaConverter builds it."""
    if proto.trainer_spec.model_type != _UNIGRAM:
        raise ValueError(
            "XLMRobertaTokenizerFast needs a SentencePiece *unigram* model; this one has model_type="
            f"{proto.trainer_spec.model_type} (1=unigram, 2=bpe, 3=word, 4=char)"
        )
    vocab = [(t, 0.0) for t in FAIRSEQ_TOKENS]
    vocab += [(p.piece, p.score) for p in proto.pieces[3:]]
    vocab += [(mask_token, 0.0)]
    tok = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))

    # Control pieces are special added tokens, user-defined pieces plain added tokens (HF SpmConverter).
    spm_added = [
        AddedToken(p.piece, normalized=False, special=p.type == _CONTROL)
        for p in proto.pieces
        if p.type in (_CONTROL, _USER_DEFINED)
    ]
    if spm_added:
        tok.add_tokens(spm_added)

    charsmap = proto.normalizer_spec.precompiled_charsmap
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), SPIECE_UNDERLINE)]
    if charsmap:
        steps = [normalizers.Precompiled(charsmap)] + steps
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok
