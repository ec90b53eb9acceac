"""``XLMRobertaTokenizer``: the slow tokenizer, on `sentencepiece` (HF's slow ``XLMRobertaTokenizer``).

Python truncation and one overflow window per example, as HF's slow class; many texts are encoded with
one batched SentencePiece call.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import AddedToken

from ._spm import FAIRSEQ_OFFSET, SPIECE_UNDERLINE, load_processor, read_model_bytes
from ._text_inputs import InvalidTextInputError, _check_text, _raise_for_surrogates
from .base import TRUNCATION_STRATEGIES, EncodeOptions, _XLMRobertaTokenizerBase, special_token_arguments
from .batch_encoding import BatchEncoding, _to_py
from .serialization import VOCAB_FILE, _dir_file
from .special_tokens import _added_token_dict, _to_added_token, _with_special

logger = logging.getLogger(__name__)


class XLMRobertaTokenizer(_XLMRobertaTokenizerBase):
    """XLM-RoBERTa tokenizer on `sentencepiece` (HF's slow ``XLMRobertaTokenizer``).

    Args:
        vocab_file: path to the SentencePiece model (``sentencepiece.bpe.model``).
        bos_token, eos_token, sep_token, cls_token, unk_token, pad_token, mask_token: the special tokens
            (``<mask>`` strips the whitespace on its left, as HF's).
        sp_model_kwargs: passed to ``sentencepiece.SentencePieceProcessor`` (e.g. sampling options).
        model_max_length, padding_side, truncation_side, clean_up_tokenization_spaces: as in HF.

    Example:
        >>> from xlmr import XLMRobertaTokenizer
        >>> tok = XLMRobertaTokenizer("sentencepiece.bpe.model")  # doctest: +SKIP
        >>> tok(["Hello world!", "Привет, мир"], padding=True)["input_ids"]  # doctest: +SKIP
    """

    def __init__(
        self,
        vocab_file,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        sp_model_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        spm_bytes = kwargs.pop("_spm_bytes", None)
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        if isinstance(mask_token, str):
            mask_token = AddedToken(mask_token, lstrip=True, rstrip=False, normalized=False, special=True)
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        if spm_bytes is None:
            if vocab_file is None:
                raise ValueError("XLMRobertaTokenizer needs vocab_file (a SentencePiece model file)")
            spm_bytes = read_model_bytes(vocab_file)
            source = os.fspath(vocab_file)
        else:
            source = "<trained SentencePiece model>"
        self.sp_model = load_processor(spm_bytes, source, self.sp_model_kwargs)
        self.vocab_file = None if vocab_file is None else os.fspath(vocab_file)
        self._spm_bytes = spm_bytes
        self.fairseq_offset = FAIRSEQ_OFFSET
        self.fairseq_tokens_to_ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        self.fairseq_tokens_to_ids["<mask>"] = len(self.sp_model) + self.fairseq_offset
        self.fairseq_ids_to_tokens = {v: k for k, v in self.fairseq_tokens_to_ids.items()}
        super().__init__(special_token_arguments(locals()), **kwargs)
        self._added_tokens_decoder: dict[int, AddedToken] = {}
        self._added_tokens_encoder: dict[str, int] = {}
        for idx, tok in sorted(added_tokens_decoder.items()):
            self._register_added(int(idx), _to_added_token(tok))
        # Special tokens not yet registered are added now (HF: special, not normalized).
        self._vocab_cache = None
        missing = [
            t for t in self.all_special_tokens_extended if str(t.content) not in self._added_tokens_encoder
        ]
        if missing:
            self._add_tokens(missing, special_tokens=True)
        self._update_splitter()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["sp_model"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.sp_model = load_processor(self._spm_bytes, "<pickled SentencePiece model>", self.sp_model_kwargs)

    # ---- vocabulary ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.sp_model) + self.fairseq_offset + 1  # + <mask>

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return dict(sorted(self._added_tokens_decoder.items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {str(t.content): i for i, t in sorted(self._added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return dict(self._added_tokens_encoder)

    def get_vocab(self) -> dict[str, int]:
        if self._vocab_cache is None:
            vocab = {self.convert_ids_to_tokens(i): i for i in range(self.vocab_size)}
            vocab.update(self._added_tokens_encoder)
            self._vocab_cache = vocab
        return dict(self._vocab_cache)

    def __len__(self) -> int:
        if self._vocab_cache is None:
            self.get_vocab()
        return len(self._vocab_cache)

    def _register_added(self, idx: int, tok: AddedToken) -> None:
        old = self._added_tokens_decoder.get(idx)
        if old is not None:
            self._added_tokens_encoder.pop(str(old.content), None)
        self._added_tokens_decoder[idx] = tok
        self._added_tokens_encoder[str(tok.content)] = idx

    def _add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        added = 0
        current = self.get_vocab()
        new_idx = len(current)
        specials = set(self.all_special_tokens)
        for token in new_tokens:
            if str(token) == "" or (isinstance(token, AddedToken) and token.content == ""):
                continue
            if isinstance(token, str):
                if token in self._added_tokens_encoder:
                    continue
                is_special = token in specials or special_tokens
                token = AddedToken(
                    token, rstrip=False, lstrip=False, normalized=not is_special, special=is_special
                )
            elif special_tokens:
                token = _with_special(token, True)
            if any(
                _added_token_dict(token) == _added_token_dict(t) for t in self._added_tokens_decoder.values()
            ):
                continue
            if token.content not in current:
                idx = new_idx + added
                current[token.content] = idx
                added += 1
            else:
                idx = current[token.content]
            if token.special and str(token.content) not in self.all_special_tokens:
                self._special_tokens_map["additional_special_tokens"].append(token)
            self._register_added(idx, token)
        self._vocab_cache = None
        self._update_splitter()
        return added

    def _update_splitter(self) -> None:
        contents = sorted(self._added_tokens_encoder, key=len, reverse=True)
        self._split_re = re.compile("|".join(re.escape(c) for c in contents)) if contents else None
        # Added tokens whose text is also a SentencePiece piece: HF maps such pieces to the added id.
        overrides = {}
        for content, idx in self._added_tokens_encoder.items():
            if content in self.fairseq_tokens_to_ids:
                continue
            pid = self.sp_model.PieceToId(content)
            if pid and self.sp_model.IdToPiece(pid) == content:
                overrides[pid] = idx
        self._piece_overrides = overrides
        self._unk_id = self._convert_token_to_id_with_added_voc(self.unk_token) if self.unk_token else 3
        self._cls_id, self._sep_id = self.cls_token_id, self.sep_token_id

    # ---- token <-> id --------------------------------------------------------------------------

    def _convert_token_to_id(self, token: str) -> int:
        if token in self.fairseq_tokens_to_ids:
            return self.fairseq_tokens_to_ids[token]
        spm_id = self.sp_model.PieceToId(token)
        return spm_id + self.fairseq_offset if spm_id else self.unk_token_id

    def _convert_token_to_id_with_added_voc(self, token: str) -> int:
        if token in self._added_tokens_encoder:
            return self._added_tokens_encoder[token]
        return self._convert_token_to_id(token)

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._convert_token_to_id_with_added_voc(tokens)
        return [self._convert_token_to_id_with_added_voc(t) for t in tokens]

    def _convert_id_to_token(self, index: int) -> str:
        if index in self.fairseq_ids_to_tokens:
            return self.fairseq_ids_to_tokens[index]
        if not 0 <= index - self.fairseq_offset < len(self.sp_model):
            raise self._id_error(index)
        return self.sp_model.IdToPiece(index - self.fairseq_offset)

    def _is_added_id(self, index: int) -> bool:
        return index in self._added_tokens_decoder

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        ids = _to_py(ids)
        if isinstance(ids, int):
            tok = self._added_tokens_decoder.get(ids)
            return tok.content if tok is not None else self._convert_id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        out = []
        for index in ids:
            index = int(index)
            if index in skip:
                continue
            tok = self._added_tokens_decoder.get(index)
            out.append(tok.content if tok is not None else self._convert_id_to_token(index))
        return out

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens).replace(SPIECE_UNDERLINE, " ").strip()

    # ---- segmentation --------------------------------------------------------------------------

    def _split_on_added(self, text: str, split_special_tokens: bool) -> list[tuple[str, bool]]:
        """HF's trie split: (chunk, is_added_token) with the added tokens' lstrip/rstrip/single_word."""
        if split_special_tokens or self._split_re is None:
            return [(text, False)]
        parts: list[str] = []
        flags: list[bool] = []
        pos = 0
        for m in self._split_re.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
                flags.append(False)
            parts.append(m.group())
            flags.append(True)
            pos = m.end()
        if not parts:
            return [(text, False)]
        if pos < len(text):
            parts.append(text[pos:])
            flags.append(False)
        for i, (part, is_added) in enumerate(zip(parts, flags)):
            if not is_added:
                continue
            tok = self._added_tokens_decoder[self._added_tokens_encoder[part]]
            left = parts[i - 1] if i > 0 else None
            right = parts[i + 1] if i < len(parts) - 1 else None
            if tok.rstrip and right:
                parts[i + 1] = right.lstrip()
            if tok.lstrip and left:
                parts[i - 1] = left.rstrip()
            if tok.single_word and left and left[-1] != " ":
                parts[i - 1] += part
                parts[i] = ""
                flags[i] = False
            elif tok.single_word and right and right[0] != " ":
                parts[i + 1] = part + parts[i + 1]
                parts[i] = ""
                flags[i] = False
        return [(p, f) for p, f in zip(parts, flags) if p]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs
    ) -> list[str]:
        """Pieces of ``text`` (added tokens kept whole), as HF's slow ``tokenize``."""
        tokens = self._pieces(text, "text", kwargs.pop("split_special_tokens", self.split_special_tokens))
        if pair is not None or add_special_tokens:
            ids = self.convert_tokens_to_ids(tokens)
            pair_ids = None
            if pair is not None:
                pair_ids = self.convert_tokens_to_ids(self._pieces(pair, "pair", self.split_special_tokens))
            if add_special_tokens:
                return self.convert_ids_to_tokens(self.build_inputs_with_special_tokens(ids, pair_ids))
            return tokens + ([] if pair_ids is None else self.convert_ids_to_tokens(pair_ids))
        return tokens

    def _pieces(self, text: str, name: str, split_special_tokens: bool) -> list[str]:
        _check_text(text, name)
        tokens = []
        try:
            for chunk, is_added in self._split_on_added(text, split_special_tokens):
                if is_added:
                    tokens.append(chunk)
                else:
                    tokens.extend(self.sp_model.encode(chunk, out_type=str))
        except Exception:
            _raise_for_surrogates([(name, text)])
            raise
        return tokens

    def _texts_to_ids(self, texts: Sequence[str], split_special_tokens: bool) -> list[list[int]]:
        """Ids of many texts (no special tokens): one batched SentencePiece call for every chunk."""
        plans, chunks = [], []
        for text in texts:
            plan = []
            for chunk, is_added in self._split_on_added(text, split_special_tokens):
                if is_added:
                    plan.append(self._added_tokens_encoder[chunk])
                else:
                    plan.append(None)
                    chunks.append(chunk)
            plans.append(plan)
        encoded = self.sp_model.encode(chunks, out_type=int) if chunks else []
        offset, unk, overrides = self.fairseq_offset, self._unk_id, self._piece_overrides
        out, k = [], 0
        for plan in plans:
            ids: list[int] = []
            for item in plan:
                if item is not None:
                    ids.append(item)
                    continue
                piece_ids = encoded[k]
                k += 1
                if overrides:
                    ids.extend(overrides.get(i, i + offset) if i else unk for i in piece_ids)
                else:
                    ids.extend([i + offset if i else unk for i in piece_ids])
            out.append(ids)
        return out

    def _inputs_to_ids(
        self, items: list, is_split_into_words: bool, split_special_tokens: bool
    ) -> list[list[int]]:
        """Each item (str, pre-split words, tokens, or ids) -> ids, batching all strings together."""
        results: list = [None] * len(items)
        strings, where = [], []
        for i, item in enumerate(items):
            if isinstance(item, str):
                strings.append(item)
                where.append((i, None))
            elif isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
                if is_split_into_words:
                    for j, word in enumerate(item):
                        _check_text(word, "word", j)
                    results[i] = []
                    for word in item:
                        strings.append(word)
                        where.append((i, "extend"))
                else:
                    results[i] = self.convert_tokens_to_ids(list(item))
            elif isinstance(item, (list, tuple)) and item and isinstance(item[0], (int, np.integer)):
                results[i] = [int(t) for t in item]
            elif isinstance(item, (list, tuple)) and not item:
                results[i] = []
            else:
                raise InvalidTextInputError(
                    f"input {item!r:.80} is not valid: expected a str, a list of str"
                    f"{' (pre-split words)' if is_split_into_words else ''} or a list of int"
                )
        for (i, mode), ids in zip(where, self._texts_to_ids(strings, split_special_tokens)):
            if mode is None:
                results[i] = ids
            else:
                results[i].extend(ids)
        return results

    # ---- model inputs --------------------------------------------------------------------------

    def truncate_sequences(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: str = "longest_first",
        stride: int = 0,
    ) -> tuple[list[int], list[int] | None, list[int]]:
        """HF's slow truncation: returns (ids, pair_ids, overflowing_tokens)."""
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        truncation_strategy = getattr(truncation_strategy, "value", truncation_strategy)
        if truncation_strategy not in TRUNCATION_STRATEGIES:
            raise ValueError(
                f"Unknown truncation strategy {truncation_strategy!r}; use one of {TRUNCATION_STRATEGIES}"
            )
        left = self.truncation_side == "left"
        overflowing: list[int] = []
        if truncation_strategy == "only_first" or (
            truncation_strategy == "longest_first" and pair_ids is None
        ):
            ids, overflowing = self._cut(ids, num_tokens_to_remove, stride, "first")
        elif truncation_strategy == "longest_first":
            n_pair = len(pair_ids) if pair_ids is not None else 0
            first_remove = min(abs(n_pair - len(ids)), num_tokens_to_remove)
            second_remove = num_tokens_to_remove - first_remove
            if len(ids) > n_pair:
                ids_to_move = first_remove + second_remove // 2
                pair_to_move = second_remove - second_remove // 2
            else:
                ids_to_move = second_remove // 2
                pair_to_move = first_remove + second_remove - second_remove // 2
            if left:
                ids = ids[ids_to_move:]
                pair_ids = pair_ids[pair_to_move:] if pair_ids is not None else None
            else:
                ids = ids[:-ids_to_move] if ids_to_move > 0 else ids
                pair_ids = pair_ids[:-pair_to_move] if pair_ids is not None and pair_to_move > 0 else pair_ids
        elif truncation_strategy == "only_second" and pair_ids is not None:
            pair_ids, overflowing = self._cut(pair_ids, num_tokens_to_remove, stride, "second")
        return ids, pair_ids, overflowing

    def _cut(self, ids: list[int], n: int, stride: int, which: str) -> tuple[list[int], list[int]]:
        """``ids`` without its last (first, for left truncation) ``n`` tokens, and the overflow window of
        ``n + stride`` tokens; ``ids`` unchanged (and an error logged, as HF) when it is not longer than ``n``."""
        if len(ids) <= n:
            logger.error(
                f"We need to remove {n} tokens to truncate the input but the {which} sequence has a length "
                f"{len(ids)}."
            )
            return ids, []
        window = min(len(ids), stride + n)
        if self.truncation_side == "left":
            return ids[n:], ids[:window]
        return ids[:-n], ids[-window:]

    def _prepare(self, ids: list[int], pair_ids: list[int] | None, opts: EncodeOptions) -> dict:
        """Truncate, add the special tokens and build the fields of one example (no padding)."""
        pair = pair_ids is not None
        add_special_tokens, max_length = opts.add_special_tokens, opts.max_length
        if opts.return_token_type_ids and not add_special_tokens:
            raise ValueError(
                "return_token_type_ids=True with add_special_tokens=False is undefined; set add_special_tokens=True "
                "or return_token_type_ids=None"
            )
        if opts.return_overflowing_tokens and opts.truncation_strategy == "longest_first" and pair:
            raise ValueError(
                "Not possible to return overflowing tokens for pair of sequences with the `longest_first` "
                "strategy; use truncation='only_first' or 'only_second'."
            )
        total = (
            len(ids)
            + (len(pair_ids) if pair else 0)
            + (self.num_special_tokens_to_add(pair) if add_special_tokens else 0)
        )
        overflowing: list[int] = []
        if opts.truncation_strategy != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids, overflowing = self.truncate_sequences(
                ids, pair_ids, total - max_length, opts.truncation_strategy, opts.stride
            )
        out: dict[str, Any] = {}
        if opts.return_overflowing_tokens:
            out["overflowing_tokens"] = overflowing
            out["num_truncated_tokens"] = total - max_length if max_length is not None else 0
        if add_special_tokens:
            cls, sep = self._cls_id, self._sep_id
            if pair:
                seq = [cls, *ids, sep, sep, *pair_ids, sep]
            else:
                seq = [cls, *ids, sep]
        else:
            seq = ids + pair_ids if pair else list(ids)
        out["input_ids"] = seq
        if self._wants(opts.return_token_type_ids, "token_type_ids"):
            out["token_type_ids"] = [0] * len(seq)
        if opts.return_special_tokens_mask:
            out["special_tokens_mask"] = (
                self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens else [0] * len(seq)
            )
        self._eventual_warn_about_too_long_sequence(seq, max_length, opts.verbose)
        return out

    def _encode_ids(
        self, ids: list[int], pair_ids: list[int] | None, opts: EncodeOptions, prepend_batch_axis: bool
    ) -> BatchEncoding:
        """One example's ids -> its BatchEncoding: special tokens, truncation, padding, length."""
        self._check_max_length_fits(
            opts.truncation_strategy, opts.max_length, opts.add_special_tokens, pair_ids is not None
        )
        out = self._prepare(ids, pair_ids, opts)
        return_attention_mask = self._wants(opts.return_attention_mask, "attention_mask")
        if opts.padding_strategy != "do_not_pad" or return_attention_mask:
            out = self._pad_one(
                out,
                opts.max_length,
                opts.padding_strategy,
                opts.pad_to_multiple_of,
                opts.padding_side,
                return_attention_mask,
            )
        if opts.return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=opts.return_tensors, prepend_batch_axis=prepend_batch_axis)

    def prepare_for_model(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        prepend_batch_axis: bool = False,
        **kwargs,
    ) -> BatchEncoding:
        """Add special tokens, truncate and pad already-encoded ids (HF's ``prepare_for_model``)."""
        opts = self._options(locals(), "ids", "pair_ids", "prepend_batch_axis")
        pair_ids = None if pair_ids is None else list(pair_ids)
        return self._encode_ids(list(ids), pair_ids, opts, prepend_batch_axis)

    @staticmethod
    def _refuse_offsets(opts: EncodeOptions) -> None:
        if opts.return_offsets_mapping:
            raise NotImplementedError(
                "return_offsets_mapping is not available with the slow (sentencepiece) tokenizer; use "
                "XLMRobertaTokenizerFast"
            )

    def _encode_plus(self, text, text_pair, opts: EncodeOptions) -> BatchEncoding:
        self._refuse_offsets(opts)
        items = [text] if text_pair is None else [text, text_pair]
        ids = self._inputs_to_ids(items, opts.is_split_into_words, self._split_special(opts))
        pair_ids = ids[1] if text_pair is not None else None
        return self._encode_ids(ids[0], pair_ids, opts, prepend_batch_axis=True)

    def _batch_encode_plus(self, batch, opts: EncodeOptions) -> BatchEncoding:
        self._refuse_offsets(opts)
        is_split_into_words, truncation_strategy = opts.is_split_into_words, opts.truncation_strategy
        max_length, add_special_tokens = opts.max_length, opts.add_special_tokens
        firsts, seconds = [], []
        for i, item in enumerate(batch):
            if not isinstance(item, (list, tuple)) or (
                is_split_into_words and not isinstance(item[0], (list, tuple))
            ):
                first, second = item, None
            else:
                if len(item) != 2:
                    raise ValueError(
                        f"batch item {i} is a sequence of {len(item)} elements; a pair needs exactly 2"
                    )
                first, second = item
                if not isinstance(second, (str, list, tuple)):
                    raise InvalidTextInputError(
                        f"batch item {i}: the pair's second text must be a str, got {type(second).__name__}"
                    )
            if not isinstance(first, (str, list, tuple)):
                raise InvalidTextInputError(
                    f"batch item {i} must be a str, got {type(first).__name__}: {first!r:.80}"
                )
            firsts.append(first)
            seconds.append(second)
        pair_positions = [i for i, s in enumerate(seconds) if s is not None]
        all_ids = self._inputs_to_ids(
            firsts + [seconds[i] for i in pair_positions], is_split_into_words, self._split_special(opts)
        )
        first_ids = all_ids[: len(firsts)]
        second_ids: list = [None] * len(firsts)
        for i, ids in zip(pair_positions, all_ids[len(firsts) :]):
            second_ids[i] = ids
        return_attention_mask = self._wants(opts.return_attention_mask, "attention_mask")

        simple = (
            add_special_tokens
            and not pair_positions
            and not opts.return_overflowing_tokens
            and not opts.return_special_tokens_mask
            and not opts.return_token_type_ids
            and (truncation_strategy == "do_not_truncate" or max_length is None)
        )
        if simple:  # the common case, without the per-example machinery
            cls, sep = self._cls_id, self._sep_id
            rows = [[cls, *ids, sep] for ids in first_ids]
            for row in rows:
                self._eventual_warn_about_too_long_sequence(row, max_length, opts.verbose)
            out: dict[str, list] = {"input_ids": rows}
        else:
            if any(s is not None for s in second_ids):
                self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, True)
            if any(s is None for s in second_ids):
                self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, False)
            out = {}
            for ids, pair_ids in zip(first_ids, second_ids):
                for k, v in self._prepare(ids, pair_ids, opts).items():
                    out.setdefault(k, []).append(v)
        if opts.return_length:
            out["length"] = [len(r) for r in out["input_ids"]]
        if out.get("input_ids") and (opts.padding_strategy != "do_not_pad" or return_attention_mask):
            out = self._pad_batch(
                out,
                opts.padding_strategy,
                max_length,
                opts.pad_to_multiple_of,
                opts.padding_side,
                return_attention_mask,
            )
        elif return_attention_mask and "input_ids" in out:
            out["attention_mask"] = []
        if not out:
            out = {"input_ids": []}
            if return_attention_mask:
                out["attention_mask"] = []
        return BatchEncoding(out, tensor_type=opts.return_tensors)

    # ---- decoding ------------------------------------------------------------------------------

    def _decode(
        self,
        token_ids: list[int],
        skip_special_tokens: bool = False,
        spaces_between_special_tokens: bool = True,
        **kwargs,
    ) -> str:
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        specials = set(self.all_special_tokens)
        legacy_added = set(self._added_tokens_encoder) - specials | {
            t for t in self.additional_special_tokens if self.convert_tokens_to_ids(t) >= self.vocab_size
        }
        sub_texts, current = [], []
        for token in tokens:
            if skip_special_tokens and token in specials:
                continue
            if token in legacy_added:
                if current:
                    s = self.convert_tokens_to_string(current)
                    if s:
                        sub_texts.append(s)
                    current = []
                sub_texts.append(token)
            else:
                current.append(token)
        if current:
            sub_texts.append(self.convert_tokens_to_string(current))
        return (" " if spaces_between_special_tokens else "").join(sub_texts)

    # ---- files ---------------------------------------------------------------------------------

    @classmethod
    def _model_files(cls, path: str) -> tuple[str]:
        vocab_file = _dir_file(path, VOCAB_FILE, "SentencePiece model")
        if vocab_file is None:
            raise FileNotFoundError(
                f"{VOCAB_FILE} not found in {path!r} (the slow tokenizer needs the SentencePiece model)"
            )
        return (vocab_file,)
