"""``XLMRobertaTokenizerFast``: the fast tokenizer, on HF `tokenizers` (HF's ``XLMRobertaTokenizerFast``).

Truncation and padding run in ``tokenizers``, all overflow windows are returned, offsets and
``word_ids()`` come from the backend encodings (offsets repaired in ``_offsets.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as _BackendTokenizer

from .._fileio import atomic_write_text
from ._offsets import OffsetAligner
from ._spm import build_backend, load_processor, parse_model_proto, pipeline_mismatch, read_model_bytes
from ._text_inputs import _check_text, _is_pair
from .base import LARGE_INTEGER, EncodeOptions, _XLMRobertaTokenizerBase, special_token_arguments
from .batch_encoding import BatchEncoding, _to_py
from .serialization import TOKENIZER_FILE, VOCAB_FILE, _dir_file
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES, _to_added_token, _with_special
from .training import train_unigram_backend

logger = logging.getLogger(__name__)


class XLMRobertaTokenizerFast(_XLMRobertaTokenizerBase):
    """XLM-RoBERTa tokenizer on HF `tokenizers` (HF's ``XLMRobertaTokenizerFast``).

    Built from ``tokenizer_file`` (``tokenizer.json``) when given, else from the SentencePiece model
    ``vocab_file`` (the pipeline HF's converter produces: Unigram in the fairseq layout, the model's
    precompiled normalizer, Metaspace, ``<s> A </s></s> B </s>``).

    Args:
        vocab_file: SentencePiece model (``sentencepiece.bpe.model``); also what ``save_vocabulary`` writes.
        tokenizer_file: a ``tokenizer.json``.
        bos_token, eos_token, sep_token, cls_token, unk_token, pad_token, mask_token: the special tokens.
        model_max_length, padding_side, truncation_side, clean_up_tokenization_spaces: as in HF.

    Example:
        >>> from xlmr import XLMRobertaTokenizerFast
        >>> tok = XLMRobertaTokenizerFast.from_pretrained("my_tokenizer_dir")  # doctest: +SKIP
        >>> enc = tok(["Hello world!"], return_offsets_mapping=True)  # doctest: +SKIP
        >>> enc.word_ids(0)  # doctest: +SKIP
    """

    is_fast = True

    def __init__(
        self,
        vocab_file=None,
        tokenizer_file=None,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        **kwargs,
    ) -> None:
        spm_bytes = kwargs.pop("_spm_bytes", None)
        tokenizer_object = kwargs.pop("tokenizer_object", None)
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        kwargs.pop("sp_model_kwargs", None)
        if isinstance(mask_token, str):
            mask_token = AddedToken(mask_token, lstrip=True, rstrip=False, normalized=True, special=True)
        self.vocab_file = None if vocab_file is None else os.fspath(vocab_file)
        if spm_bytes is None and self.vocab_file is not None and os.path.isfile(self.vocab_file):
            spm_bytes = read_model_bytes(self.vocab_file)
        self._spm_bytes = spm_bytes
        if tokenizer_object is not None:
            backend = copy.deepcopy(tokenizer_object)
        elif tokenizer_file is not None:
            tokenizer_file = os.fspath(tokenizer_file)
            if not os.path.isfile(tokenizer_file):
                raise FileNotFoundError(f"tokenizer file not found: {tokenizer_file!r}")
            try:
                backend = _BackendTokenizer.from_file(tokenizer_file)
            except Exception as e:
                raise ValueError(f"{tokenizer_file} is not a valid tokenizers JSON file ({e})") from e
            if spm_bytes is not None:
                mismatch = pipeline_mismatch(backend, spm_bytes, self.vocab_file or "<SentencePiece model>")
                if mismatch:
                    logger.warning(
                        f"{tokenizer_file} does not belong to {self.vocab_file}: {mismatch}. The fast tokenizer "
                        f"follows {TOKENIZER_FILE}, so its ids differ from the slow tokenizer's."
                    )
        elif spm_bytes is not None:
            source = self.vocab_file or "<trained SentencePiece model>"
            proto = parse_model_proto(spm_bytes, source)
            load_processor(spm_bytes, source)  # the same corruption checks as the slow class
            backend = build_backend(proto, mask_token=str(mask_token))
        elif self.vocab_file is not None:
            read_model_bytes(self.vocab_file)  # raises FileNotFoundError naming the file
            raise AssertionError("unreachable")
        else:
            raise ValueError(
                "XLMRobertaTokenizerFast needs vocab_file (SentencePiece model) or tokenizer_file"
            )
        backend.no_truncation()
        backend.no_padding()
        self._tokenizer = backend
        super().__init__(special_token_arguments(locals()), **kwargs)
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        # Tokens recorded in a config that the backend does not hold yet, then special tokens (HF order).
        known = {repr(t) for t in self._tokenizer.get_added_tokens_decoder().values()}
        to_add = [t for _, t in sorted(added_tokens_decoder.items()) if repr(_to_added_token(t)) not in known]
        to_add = [_to_added_token(t) for t in to_add]
        encoder = set(self.added_tokens_encoder) | {str(t.content) for t in to_add}
        to_add += [t for t in self.all_special_tokens_extended if str(t.content) not in encoder]
        if to_add:
            specials = set(self.all_special_tokens)
            fixed = [_with_special(t, t.special or str(t.content) in specials) for t in to_add]
            self._tokenizer.add_tokens(fixed)
        self._refresh_ids()

    def _refresh_ids(self) -> None:
        self._all_special_ids_cache = None
        self._offset_aligner = None  # rebuilt from the (changed) added vocabulary on next use

    def _aligned(self, encodings, items, is_split_into_words: bool, split_special_tokens: bool) -> list:
        """Wrap backend encodings with repaired offsets (see ``_offsets.py``); ``items[j]`` is the batch
        item encoding j came from."""
        aligner = self.__dict__.get("_offset_aligner")
        if aligner is None:
            aligner = self._offset_aligner = OffsetAligner(self._tokenizer)
        return [
            aligner.align(enc, item, is_split_into_words, split_special_tokens)
            for enc, item in zip(encodings, items)
        ]

    @property
    def backend_tokenizer(self) -> _BackendTokenizer:
        return self._tokenizer

    # ---- vocabulary ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return dict(sorted(self._tokenizer.get_added_tokens_decoder().items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {str(t.content): i for i, t in self.added_tokens_decoder.items()}

    def get_added_vocab(self) -> dict[str, int]:
        return self.added_tokens_encoder

    def _add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        n = (
            self._tokenizer.add_special_tokens(new_tokens)
            if special_tokens
            else self._tokenizer.add_tokens(new_tokens)
        )
        self._refresh_ids()
        return n

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        unk = None
        if isinstance(tokens, str):
            idx = self._tokenizer.token_to_id(tokens)
            return idx if idx is not None else self._tokenizer.token_to_id(self.unk_token)
        out = []
        for t in tokens:
            idx = self._tokenizer.token_to_id(t)
            if idx is None:
                if unk is None:
                    unk = self._tokenizer.token_to_id(self.unk_token)
                idx = unk
            out.append(idx)
        return out

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        ids = _to_py(ids)
        if isinstance(ids, int):
            self._check_token_ids([ids])
            return self._tokenizer.id_to_token(ids)
        ids = [int(i) for i in ids]
        self._check_token_ids(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._tokenizer.id_to_token(i) for i in ids if i not in skip]

    def _is_added_id(self, index: int) -> bool:
        return 0 <= index < 2**32 and self._tokenizer.id_to_token(index) is not None

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs
    ) -> list[str]:
        """Tokens of ``text`` (as HF's fast ``tokenize``: the backend encoding's tokens)."""
        _check_text(text, "text")
        if pair is not None:
            _check_text(pair, "pair")
        return self.encode_plus(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    # ---- encoding ------------------------------------------------------------------------------

    def _set_truncation_and_padding(self, opts: EncodeOptions) -> None:
        tok = self._tokenizer
        if opts.truncation_strategy == "do_not_truncate":
            if tok.truncation is not None:
                tok.no_truncation()
        else:
            target = {
                "max_length": opts.max_length,
                "stride": opts.stride,
                "strategy": opts.truncation_strategy,
                "direction": self.truncation_side,
            }
            current = tok.truncation
            if current is None or {k: current.get(k) for k in target} != target:
                try:
                    tok.enable_truncation(**target)
                except Exception as e:
                    raise ValueError(f"invalid truncation settings {target}: {e}") from e
        if opts.padding_strategy == "do_not_pad":
            if tok.padding is not None:
                tok.no_padding()
        else:
            target = {
                "length": opts.max_length if opts.padding_strategy == "max_length" else None,
                "direction": opts.padding_side if opts.padding_side is not None else self.padding_side,
                "pad_id": self.pad_token_id,
                "pad_token": self.pad_token,
                "pad_type_id": self.pad_token_type_id,
                "pad_to_multiple_of": opts.pad_to_multiple_of,
            }
            if tok.padding != target:
                tok.enable_padding(**target)

    def _batch_encode_plus(self, batch, opts: EncodeOptions, single: bool = False) -> BatchEncoding:
        is_split_into_words, max_length = opts.is_split_into_words, opts.max_length
        has_pair = has_single = False
        for i, item in enumerate(batch):
            is_pair = _is_pair(item, is_split_into_words)
            if is_pair:
                if len(item) != 2:
                    raise ValueError(f"batch item {i} has {len(item)} parts; a pair needs exactly 2")
                _check_text(item[0], "text", i, words=is_split_into_words)
                _check_text(item[1], "text_pair", i, words=is_split_into_words)
            else:
                _check_text(item, "text", i, words=is_split_into_words)
            has_pair, has_single = has_pair or is_pair, has_single or not is_pair
        for pair, present in ((True, has_pair), (False, has_single)):
            if present:
                self._check_max_length_fits(
                    opts.truncation_strategy, max_length, opts.add_special_tokens, pair
                )
        # return_overflowing_tokens with pairs and "longest_first": tokenizers handles it (HF's fast
        # tokenizer does not refuse it, unlike the slow one).
        split = self._split_special(opts)

        def encode(track_offsets: bool):
            self._set_truncation_and_padding(opts)
            if self._tokenizer.encode_special_tokens != split:
                self._tokenizer.encode_special_tokens = split
            # encode_batch_fast skips offset tracking (same ids, masks, truncation and padding); the
            # full encodings behind offsets / word_ids() / tokens() are built only when asked for.
            run = self._tokenizer.encode_batch if track_offsets else self._tokenizer.encode_batch_fast
            try:
                encs = run(
                    batch, add_special_tokens=opts.add_special_tokens, is_pretokenized=is_split_into_words
                )
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # tokenizers reports bad settings as a Rust panic (a BaseException)
                raise ValueError(
                    f"tokenizers could not encode the batch with truncation={opts.truncation_strategy!r}, "
                    f"max_length={max_length}, stride={opts.stride}: {e}"
                ) from e
            mapping = None
            if opts.return_overflowing_tokens:
                flat, mapping = [], []
                for i, e in enumerate(encs):
                    flat.append(e)
                    flat.extend(e.overflowing)
                    mapping.extend([i] * (1 + len(e.overflowing)))
                encs = flat
            if track_offsets:
                items = [batch[i] for i in mapping] if mapping is not None else batch
                encs = self._aligned(encs, items, is_split_into_words, split)
            return encs, mapping

        encodings, mapping = encode(track_offsets=opts.return_offsets_mapping)
        lazy = encodings if opts.return_offsets_mapping else (lambda: encode(True)[0])
        n_sequences = 2 if has_pair else 1
        data: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if self._wants(opts.return_token_type_ids, "token_type_ids"):
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if self._wants(opts.return_attention_mask, "attention_mask"):
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if opts.return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if opts.return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if opts.return_length:
            data["length"] = [len(ids) for ids in data["input_ids"]]
        if opts.return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping
        if opts.verbose and max_length is None and self.model_max_length < LARGE_INTEGER:
            for ids in data["input_ids"]:
                self._eventual_warn_about_too_long_sequence(ids, max_length, opts.verbose)
        if single and opts.return_tensors is None and not opts.return_overflowing_tokens:
            data = {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
            return BatchEncoding(data, lazy, n_sequences=n_sequences)
        return BatchEncoding(data, lazy, tensor_type=opts.return_tensors, n_sequences=n_sequences)

    def _encode_plus(self, text, text_pair, opts: EncodeOptions) -> BatchEncoding:
        # HF quirk kept for equality: an empty text_pair counts as no pair.
        batch = [(text, text_pair)] if text_pair else [text]
        return self._batch_encode_plus(batch, opts, single=True)

    # ---- decoding ------------------------------------------------------------------------------

    def _decode(self, token_ids: list[int], skip_special_tokens: bool = False, **kwargs) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    # ---- files ---------------------------------------------------------------------------------

    def _save_model_files(self, save_directory: str, prefix: str) -> list[str]:
        written = super()._save_model_files(save_directory, prefix) if self.can_save_slow_tokenizer else []
        state = json.loads(self._tokenizer.to_str())
        state["truncation"] = None
        state["padding"] = None
        path = os.path.join(save_directory, prefix + TOKENIZER_FILE)
        atomic_write_text(path, json.dumps(state, ensure_ascii=False, indent=2))
        written.append(path)
        return written

    _hub_model_files = (VOCAB_FILE, TOKENIZER_FILE)

    @classmethod
    def _model_files(cls, path: str) -> tuple[str | None, str | None]:
        vocab_file = _dir_file(path, VOCAB_FILE, "SentencePiece model")
        tokenizer_file = _dir_file(path, TOKENIZER_FILE, "tokenizer file")
        if tokenizer_file is None and vocab_file is None:
            raise FileNotFoundError(f"neither {TOKENIZER_FILE} nor {VOCAB_FILE} found in {path!r}")
        return vocab_file, tokenizer_file

    # ---- training ------------------------------------------------------------------------------

    def train_new_from_iterator(
        self,
        text_iterator: Iterable[str],
        vocab_size: int,
        length: int | None = None,
        new_special_tokens=None,
        **kwargs,
    ):
        """Train a new Unigram vocabulary on ``text_iterator`` with this tokenizer's pipeline and special
        tokens (HF's ``train_new_from_iterator``: the special tokens first, in their current order)."""
        backend = train_unigram_backend(
            self._tokenizer, text_iterator, vocab_size, length, new_special_tokens, **kwargs
        )
        init = {}
        for key in SPECIAL_TOKENS_ATTRIBUTES[:-1]:
            value = self._special_tokens_map[key]
            if value is not None:
                init[key] = value
        additional = list(self._special_tokens_map["additional_special_tokens"])
        if new_special_tokens:
            additional += [_to_added_token(t) for t in new_special_tokens]
        if additional:
            init["additional_special_tokens"] = additional
        init.update(
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
        )
        return type(self)(tokenizer_object=backend, **init)
