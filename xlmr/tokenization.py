"""XLM-RoBERTa tokenizers: slow (sentencepiece) and fast (tokenizers), one shared base.

Both follow HF transformers 4.57's calling conventions and outputs (``XLMRobertaTokenizer`` and
``XLMRobertaTokenizerFast``): the fairseq id layout (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
SentencePiece piece i at i + 1, ``<mask>`` last), ``<s> A </s>`` / ``<s> A </s></s> B </s>``,
padding / truncation / overflow, and HF's directory layout for save / load. The slow class follows HF's
slow tokenizer (python truncation, one overflow window per example), the fast class HF's fast one
(truncation and padding in ``tokenizers``, all overflow windows, offsets, ``word_ids()``); its offsets
are HF's except where HF's point at the wrong characters (repaired in ``xlmr._offsets``).

Only numpy, sentencepiece and tokenizers are imported here; ``return_tensors="pt"/"tf"/"jax"`` imports
the framework when asked.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
import warnings
from collections import UserDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import AddedToken
from tokenizers import Tokenizer as _BackendTokenizer

from ._offsets import OffsetAligner
from ._tokenization_spm import (
    FAIRSEQ_OFFSET,
    SPIECE_UNDERLINE,
    build_backend,
    load_processor,
    parse_model_proto,
    read_model_bytes,
    train_spm_model,
)

logger = logging.getLogger(__name__)

__all__ = ["AddedToken", "BatchEncoding", "XLMRobertaTokenizer", "XLMRobertaTokenizerFast"]

VOCAB_FILE = "sentencepiece.bpe.model"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

VERY_LARGE_INTEGER = int(1e30)  # HF's "no model_max_length" sentinel
LARGE_INTEGER = int(1e20)

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
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("only_first", "only_second", "longest_first", "do_not_truncate")
TENSOR_TYPES = ("np", "pt", "tf", "jax")


class InvalidTextInputError(TypeError, ValueError):
    """Text input of the wrong type (a TypeError; also a ValueError, which is what HF raises)."""


# --------------------------------------------------------------------------------------------------
# Tensors and BatchEncoding
# --------------------------------------------------------------------------------------------------


def _flatten_len(value) -> int:
    if isinstance(value, (list, tuple)):
        return sum(_flatten_len(v) for v in value) if value else 0
    return 1


def _as_tensor(value, tensor_type: str):
    """Convert a (nested) list of ints to ``tensor_type``, importing the framework only here."""
    empty = _flatten_len(value) == 0
    if tensor_type == "np":
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
            if len({len(v) for v in value}) > 1:
                out = np.empty(len(value), dtype=object)
                for i, v in enumerate(value):
                    out[i] = np.asarray(v)
                return out
        return np.asarray(value, dtype=np.int64 if empty else None)
    if tensor_type == "pt":
        import torch

        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            return torch.from_numpy(np.array(value))
        return torch.tensor(value, dtype=torch.int64 if empty else None)
    if tensor_type == "tf":
        import tensorflow as tf

        return tf.constant(value, dtype=tf.int32 if empty else None)
    if tensor_type == "jax":
        import jax.numpy as jnp

        return jnp.array(value, dtype=jnp.int32 if empty else None)
    raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {tensor_type!r}")


def _check_tensor_type(tensor_type) -> str | None:
    if tensor_type is None:
        return None
    value = getattr(tensor_type, "value", tensor_type)
    if value not in TENSOR_TYPES:
        raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {tensor_type!r}")
    return value


def _is_tensor(value, tensor_type: str) -> bool:
    if tensor_type == "np":
        return isinstance(value, np.ndarray)
    return type(value).__module__.split(".")[0] in {"torch", "tensorflow", "jax", "jaxlib"} and hasattr(
        value, "shape"
    )


class BatchEncoding(UserDict):
    """The output of a tokenizer call: a dict (``enc["input_ids"]``, ``enc.input_ids``) plus, for the fast
    tokenizer, the backend encodings behind ``tokens()``, ``word_ids()``, ``sequence_ids()``,
    ``char_to_token()`` ... (as HF's ``BatchEncoding``).

    Args:
        data: the named fields.
        encoding: backend ``tokenizers.Encoding`` objects (fast tokenizer only).
        tensor_type: ``"np"``, ``"pt"``, ``"tf"``, ``"jax"`` or None (python lists).
        prepend_batch_axis: wrap each field in a batch of one before converting to tensors.
        n_sequences: number of sequences per example (1, or 2 for pairs).

    Example:
        >>> enc = tokenizer(["hello world"], return_tensors="np")  # doctest: +SKIP
        >>> enc.input_ids.shape  # doctest: +SKIP
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encoding=None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
        n_sequences: int | None = None,
    ) -> None:
        super().__init__(data)
        if encoding is not None and not callable(encoding) and not isinstance(encoding, (list, tuple)):
            encoding = [encoding]
        # `encoding` may be a zero-argument callable producing the encodings on first use (the fast
        # tokenizer encodes without offset tracking and builds full encodings only when asked).
        self._enc_store = encoding
        if n_sequences is None and encoding and not callable(encoding):
            n_sequences = encoding[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type=tensor_type, prepend_batch_axis=prepend_batch_axis)

    @property
    def _encodings(self):
        store = self.__dict__.get("_enc_store")
        if callable(store):
            store = store()
            self._enc_store = store
        return store

    @property
    def n_sequences(self) -> int | None:
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self.__dict__.get("_enc_store") is not None

    @property
    def encodings(self):
        return self._encodings

    def __getitem__(self, item):
        if isinstance(item, str):
            return self.data[item]
        if self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: self.data[key][item] for key in self.data}
        raise KeyError(
            f"Invalid key {item!r}. Only a field name (str), an int (backend Encoding, fast tokenizer only) or "
            "a slice are accepted."
        )

    def __getattr__(self, item: str):
        if item.startswith("__") or item in ("data", "_enc_store", "_n_sequences"):
            raise AttributeError(item)
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {item!r}") from None

    def __getstate__(self):
        return {"data": self.data, "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state):
        self.data = state["data"]
        self._enc_store = state["encodings"]
        self._n_sequences = state.get("n_sequences")

    def _need_encodings(self, what: str):
        if not self._encodings:
            raise ValueError(
                f"{what}() is only available on the output of the fast tokenizer (XLMRobertaTokenizerFast)"
            )
        return self._encodings

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._need_encodings("tokens")[batch_index].tokens

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._need_encodings("sequence_ids")[batch_index].sequence_ids

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._need_encodings("word_ids")[batch_index].word_ids

    def words(self, batch_index: int = 0) -> list[int | None]:
        return self.word_ids(batch_index)

    def _batch_and_index(self, what, batch_or_index, index):
        encs = self._need_encodings(what)
        if index is not None:
            return encs[batch_or_index], index
        if len(encs) > 1:
            raise ValueError(f"{what}() needs a batch index when the batch holds more than one example")
        return encs[0], batch_or_index

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        enc, i = self._batch_and_index("token_to_sequence", batch_or_token_index, token_index)
        return enc.token_to_sequence(i)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int:
        enc, i = self._batch_and_index("token_to_word", batch_or_token_index, token_index)
        return enc.token_to_word(i)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ):
        enc, i = self._batch_and_index("word_to_tokens", batch_or_word_index, word_index)
        return enc.word_to_tokens(i, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None):
        enc, i = self._batch_and_index("token_to_chars", batch_or_token_index, token_index)
        return enc.token_to_chars(i)

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        enc, i = self._batch_and_index("char_to_token", batch_or_char_index, char_index)
        return enc.char_to_token(i, sequence_index)

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0):
        enc, i = self._batch_and_index("word_to_chars", batch_or_word_index, word_index)
        return enc.word_to_chars(i, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        enc, i = self._batch_and_index("char_to_word", batch_or_char_index, char_index)
        return enc.char_to_word(i, sequence_index)

    def convert_to_tensors(
        self, tensor_type: str | None = None, prepend_batch_axis: bool = False
    ) -> BatchEncoding:
        tensor_type = _check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            if _is_tensor(value, tensor_type):
                continue
            try:
                self.data[key] = _as_tensor(value, tensor_type)
            except (ValueError, TypeError) as e:
                if key == "overflowing_tokens":
                    raise ValueError(
                        "Unable to create a tensor of overflowing tokens of different lengths; use the fast "
                        "tokenizer (one row per window) or return_tensors=None"
                    ) from e
                raise ValueError(
                    f"Unable to create a tensor for field {key!r}: its rows have different lengths or nesting. "
                    "Use padding=True (and truncation=True) to get rectangular batches."
                ) from e
        return self

    def to(self, device, *, non_blocking: bool = False) -> BatchEncoding:
        """Move torch tensors to ``device`` (other values are left as they are)."""
        self.data = {
            k: v.to(device=device, non_blocking=non_blocking) if hasattr(v, "to") and callable(v.to) else v
            for k, v in self.data.items()
        }
        return self


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _to_added_token(value, *, special: bool = True, **defaults) -> AddedToken:
    """A str, an AddedToken or a serialized AddedToken dict -> AddedToken."""
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, Mapping):
        fields = {
            k: value[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in value
        }
        fields.setdefault("special", special)
        return AddedToken(value["content"], **fields)
    if isinstance(value, str):
        opts = {"normalized": not special, "special": special}
        opts.update(defaults)
        return AddedToken(value, **opts)
    raise TypeError(f"a token must be a str or an AddedToken, got {type(value).__name__}: {value!r}")


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


def _atomic_write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_json(path: str, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"))


def _check_text(t, name: str, index: int | None = None, words: bool = False) -> None:
    where = f"{name}[{index}]" if index is not None else name
    if words:
        if not isinstance(t, (list, tuple)) or not all(isinstance(w, str) for w in t):
            raise InvalidTextInputError(
                f"{where} must be a list of str (pre-split words) when is_split_into_words=True, got "
                f"{type(t).__name__}: {t!r:.80}"
            )
    elif not isinstance(t, str):
        raise InvalidTextInputError(f"{where} must be a str, got {type(t).__name__}: {t!r:.80}")


class _XLMRobertaTokenizerBase:
    """Everything the two XLM-R tokenizers share: special tokens, strategies, padding, tensors, the
    calling conventions, decoding glue and save / load. Subclasses implement the segmentation."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    is_fast = False

    def __init__(
        self,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        additional_special_tokens=None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        model_input_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        for side_name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{side_name} must be 'right' or 'left', got {side!r}")
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.split_special_tokens = bool(split_special_tokens)
        if model_input_names is not None:
            self.model_input_names = list(model_input_names)
        self.deprecation_warnings: dict[str, bool] = {}
        self.name_or_path = kwargs.pop("name_or_path", "")
        # Keys HF writes that carry nothing for us.
        for key in ("tokenizer_class", "extra_special_tokens", "auto_map", "processor_class", "legacy"):
            kwargs.pop(key, None)
        self._extra_init_kwargs = {k: v for k, v in kwargs.items() if _jsonable(v)}
        self._special_tokens_map: dict[str, Any] = {k: None for k in SPECIAL_TOKENS_ATTRIBUTES}
        self._special_tokens_map["additional_special_tokens"] = []
        values = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "sep_token": sep_token,
            "cls_token": cls_token,
            "unk_token": unk_token,
            "pad_token": pad_token,
            "mask_token": mask_token,
        }
        for key, value in values.items():
            if value is not None:
                self._special_tokens_map[key] = _to_added_token(value, special=True)
        if additional_special_tokens:
            self._special_tokens_map["additional_special_tokens"] = [
                _to_added_token(t, special=True) for t in additional_special_tokens
            ]

    # ---- special tokens ------------------------------------------------------------------------

    def _get_special(self, key: str) -> str | None:
        tok = self._special_tokens_map[key]
        return None if tok is None else str(tok.content)

    def _set_special(self, key: str, value) -> None:
        self._special_tokens_map[key] = None if value is None else _to_added_token(value, special=True)

    bos_token = property(lambda s: s._get_special("bos_token"), lambda s, v: s._set_special("bos_token", v))
    eos_token = property(lambda s: s._get_special("eos_token"), lambda s, v: s._set_special("eos_token", v))
    unk_token = property(lambda s: s._get_special("unk_token"), lambda s, v: s._set_special("unk_token", v))
    sep_token = property(lambda s: s._get_special("sep_token"), lambda s, v: s._set_special("sep_token", v))
    pad_token = property(lambda s: s._get_special("pad_token"), lambda s, v: s._set_special("pad_token", v))
    cls_token = property(lambda s: s._get_special("cls_token"), lambda s, v: s._set_special("cls_token", v))
    mask_token = property(
        lambda s: s._get_special("mask_token"), lambda s, v: s._set_special("mask_token", v)
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

    bos_token_id = property(lambda s: s._special_id("bos_token"))
    eos_token_id = property(lambda s: s._special_id("eos_token"))
    unk_token_id = property(lambda s: s._special_id("unk_token"))
    sep_token_id = property(lambda s: s._special_id("sep_token"))
    pad_token_id = property(lambda s: s._special_id("pad_token"))
    cls_token_id = property(lambda s: s._special_id("cls_token"))
    mask_token_id = property(lambda s: s._special_id("mask_token"))
    pad_token_type_id = 0

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.additional_special_tokens)

    @property
    def special_tokens_map(self) -> dict[str, str | list[str]]:
        out = {}
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = self._special_tokens_map[key]
            if key == "additional_special_tokens":
                if value:
                    out[key] = [str(t.content) for t in value]
            elif value is not None:
                out[key] = str(value.content)
        return out

    @property
    def special_tokens_map_extended(self) -> dict[str, Any]:
        out = {}
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = self._special_tokens_map[key]
            if key == "additional_special_tokens":
                if value:
                    out[key] = list(value)
            elif value is not None:
                out[key] = value
        return out

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

    # ---- sizes, special-token layout -----------------------------------------------------------

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 4 if pair else 2

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``<s> A </s>`` or ``<s> A </s></s> B </s>``."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep + sep + list(token_ids_1) + sep

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 for a special token, 0 for a sequence token."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
            special = set(self.all_special_ids)
            return [1 if t in special else 0 for t in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """XLM-R does not use token types: all zeros, as long as the built input."""
        if token_ids_1 is None:
            return [0] * (len(token_ids_0) + 2)
        return [0] * (len(token_ids_0) + len(token_ids_1) + 4)

    # ---- strategies ----------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if not self.deprecation_warnings.get(key, False):
            logger.warning(message)
        self.deprecation_warnings[key] = True

    def _get_padding_truncation_strategies(
        self, padding=False, truncation=None, max_length=None, pad_to_multiple_of=None, verbose=True
    ) -> tuple[str, str, int | None]:
        """HF's resolution of ``padding`` / ``truncation`` / ``max_length`` into strategies, with a clear
        ValueError for an unknown strategy."""
        if max_length is not None and (
            not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool)
        ):
            raise TypeError(
                f"max_length must be an int or None, got {type(max_length).__name__}: {max_length!r}"
            )
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0
        ):
            raise ValueError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        if max_length is not None and padding is False and truncation is None:
            if verbose:
                self._warn_once(
                    "Truncation-not-explicitly-activated",
                    "Truncation was not explicitly activated but `max_length` is provided a specific value, please"
                    " use `truncation=True` to explicitly truncate examples to max length. Defaulting to"
                    " 'longest_first' truncation strategy.",
                )
            truncation = "longest_first"

        padding = getattr(padding, "value", padding)
        if padding is False or padding is None:
            padding_strategy = "do_not_pad"
        elif padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`.",
                    stacklevel=3,
                )
            padding_strategy = "longest"
        elif isinstance(padding, str) and padding in PADDING_STRATEGIES:
            padding_strategy = padding
        else:
            raise ValueError(
                f"Unknown padding strategy {padding!r}; use True, False or one of {PADDING_STRATEGIES}"
            )

        truncation = getattr(truncation, "value", truncation)
        if truncation is False or truncation is None:
            truncation_strategy = "do_not_truncate"
        elif truncation is True:
            truncation_strategy = "longest_first"
        elif isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
            truncation_strategy = truncation
        else:
            raise ValueError(
                f"Unknown truncation strategy {truncation!r}; use True, False or one of {TRUNCATION_STRATEGIES}"
            )

        if max_length is None:
            if padding_strategy == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    if verbose:
                        self._warn_once(
                            "Asking-to-pad-to-max_length",
                            "Asking to pad to max_length but no maximum length is provided and the model has no"
                            " predefined maximum length. Default to no padding.",
                        )
                    padding_strategy = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation_strategy != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    if verbose:
                        self._warn_once(
                            "Asking-to-truncate-to-max_length",
                            "Asking to truncate to max_length but no maximum length is provided and the model has"
                            " no predefined maximum length. Default to no truncation.",
                        )
                    truncation_strategy = "do_not_truncate"
                else:
                    max_length = self.model_max_length

        if padding_strategy != "do_not_pad" and (self.pad_token is None or (self.pad_token_id or 0) < 0):
            raise ValueError(
                "Asking to pad but the tokenizer has no padding token; set tokenizer.pad_token first"
            )
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"Truncation and padding are both activated but truncation length ({max_length}) is not a multiple "
                f"of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding_strategy, truncation_strategy, max_length

    def _check_max_length_fits(self, truncation_strategy, max_length, add_special_tokens, pair: bool) -> None:
        if truncation_strategy == "do_not_truncate" or max_length is None or not add_special_tokens:
            return
        need = self.num_special_tokens_to_add(pair=pair)
        if max_length < need:
            raise ValueError(
                f"max_length={max_length} is smaller than the {need} special tokens a "
                f"{'pair' if pair else 'single sequence'} needs; use max_length >= {need}"
            )

    def _eventual_warn_about_too_long_sequence(self, ids, max_length, verbose) -> None:
        if max_length is None and len(ids) > self.model_max_length and verbose and self.model_max_length != 0:
            self._warn_once(
                "sequence-length-is-longer-than-the-specified-maximum",
                "Token indices sequence length is longer than the specified maximum sequence length for this "
                f"model ({len(ids)} > {self.model_max_length}). Running this sequence through the model will "
                "result in indexing errors",
            )

    # ---- calling conventions -------------------------------------------------------------------

    def __call__(
        self,
        text=None,
        text_pair=None,
        text_target=None,
        text_pair_target=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        **kwargs,
    ) -> BatchEncoding:
        """Tokenize a string, a list of strings, a pair ``(text, text_pair)``, a batch of pairs, or pre-split
        words (``is_split_into_words=True``), as HF's tokenizer ``__call__``."""
        opts = dict(
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
            verbose=verbose,
            split_special_tokens=kwargs.pop("split_special_tokens", self.split_special_tokens),
        )
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {sorted(kwargs)}")
        if text is None and text_target is None:
            raise InvalidTextInputError("You need to specify either `text` or `text_target` (got None).")
        encodings = self._call_one(text, text_pair, **opts) if text is not None else None
        if text_target is None:
            return encodings
        targets = self._call_one(text_target, text_pair_target, **opts)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _call_one(self, text, text_pair=None, *, is_split_into_words=False, **opts) -> BatchEncoding:
        def valid(t) -> bool:
            if isinstance(t, str):
                return True
            if isinstance(t, (list, tuple)):
                if len(t) == 0 or isinstance(t[0], str):
                    return True
                if isinstance(t[0], (list, tuple)):
                    return len(t[0]) == 0 or isinstance(t[0][0], str)
            return False

        for name, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and not valid(value):
                raise InvalidTextInputError(
                    f"{name} must be a str (one example), a list of str (a batch, or one pre-split example) or a "
                    f"list of lists of str (a batch of pre-split examples); got {type(value).__name__}"
                    + (f" of {type(value[0]).__name__}" if isinstance(value, (list, tuple)) and value else "")
                )
        if is_split_into_words:
            is_batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            is_batched = isinstance(text, (list, tuple))
        if is_batched:
            if isinstance(text_pair, str):
                raise InvalidTextInputError(
                    "when tokenizing a batch, text_pair must be a list or tuple with the same length as text, "
                    "not a str"
                )
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(
                    f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: "
                    f"{len(text_pair)}."
                )
            batch = list(zip(text, text_pair)) if text_pair is not None else list(text)
            return self.batch_encode_plus(batch, is_split_into_words=is_split_into_words, **opts)
        return self.encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **opts)

    def encode_plus(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
        **kwargs,
    ) -> BatchEncoding:
        """Encode one example (a text or a pair)."""
        padding_strategy, truncation_strategy, max_length = self._get_padding_truncation_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        _check_tensor_type(return_tensors)
        self._check_side(padding_side)
        self._check_stride(stride)
        return self._encode_plus(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            verbose=verbose,
            **kwargs,
        )

    def batch_encode_plus(
        self,
        batch_text_or_text_pairs,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
        **kwargs,
    ) -> BatchEncoding:
        """Encode a batch of texts or of ``(text, text_pair)`` pairs."""
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise InvalidTextInputError(
                f"batch_text_or_text_pairs must be a list or tuple, got {type(batch_text_or_text_pairs).__name__}"
            )
        padding_strategy, truncation_strategy, max_length = self._get_padding_truncation_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        _check_tensor_type(return_tensors)
        self._check_side(padding_side)
        self._check_stride(stride)
        return self._batch_encode_plus(
            list(batch_text_or_text_pairs),
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            verbose=verbose,
            **kwargs,
        )

    @staticmethod
    def _check_side(padding_side) -> None:
        if padding_side is not None and padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")

    @staticmethod
    def _check_stride(stride) -> None:
        if not isinstance(stride, (int, np.integer)) or isinstance(stride, bool) or stride < 0:
            raise ValueError(f"stride must be an int >= 0, got {stride!r}")

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """Ids of one text (or pair), ``<s> ... </s>`` included unless ``add_special_tokens=False``."""
        return self.encode_plus(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # ---- padding -------------------------------------------------------------------------------

    def _pad_one(
        self,
        inputs: dict,
        max_length,
        padding_strategy,
        pad_to_multiple_of,
        padding_side,
        return_attention_mask,
    ):
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        ids = inputs["input_ids"]
        if padding_strategy == "longest":
            max_length = len(ids)
        if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of != 0:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if return_attention_mask and "attention_mask" not in inputs:
            inputs["attention_mask"] = [1] * len(ids)
        if padding_strategy != "do_not_pad" and len(ids) != max_length:
            diff = max_length - len(ids)
            if diff > 0:
                side = padding_side if padding_side is not None else self.padding_side
                fill = {
                    "input_ids": self.pad_token_id,
                    "attention_mask": 0,
                    "token_type_ids": self.pad_token_type_id,
                    "special_tokens_mask": 1,
                }
                for key, value in fill.items():
                    if key in inputs and (key != "attention_mask" or return_attention_mask):
                        pad = [value] * diff
                        inputs[key] = inputs[key] + pad if side == "right" else pad + inputs[key]
        return inputs

    def pad(
        self,
        encoded_inputs,
        padding=True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad one encoding or a batch of them (dict of lists, or list of dicts) as HF's ``pad``."""
        if (
            isinstance(encoded_inputs, (list, tuple))
            and encoded_inputs
            and isinstance(encoded_inputs[0], Mapping)
        ):
            encoded_inputs = {key: [ex[key] for ex in encoded_inputs] for key in encoded_inputs[0]}
        if "input_ids" not in encoded_inputs:
            raise ValueError(f"pad() needs 'input_ids' in its input, got keys {list(encoded_inputs.keys())}")
        encoded_inputs = {k: _to_py(v) for k, v in dict(encoded_inputs).items()}
        required = encoded_inputs["input_ids"]
        if not required:
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs, tensor_type=return_tensors)
        padding_strategy, _, max_length = self._get_padding_truncation_strategies(
            padding=padding, max_length=max_length, verbose=verbose
        )
        self._check_side(padding_side)
        if not isinstance(required[0], (list, tuple)):
            out = self._pad_one(
                encoded_inputs,
                max_length,
                padding_strategy,
                pad_to_multiple_of,
                padding_side,
                return_attention_mask,
            )
            return BatchEncoding(out, tensor_type=return_tensors)
        return BatchEncoding(
            self._pad_batch(
                encoded_inputs,
                padding_strategy,
                max_length,
                pad_to_multiple_of,
                padding_side,
                return_attention_mask,
            ),
            tensor_type=return_tensors,
        )

    def _pad_batch(
        self,
        batch: dict,
        padding_strategy,
        max_length,
        pad_to_multiple_of,
        padding_side,
        return_attention_mask,
    ):
        n = len(batch["input_ids"])
        for key, value in batch.items():
            if isinstance(value, list) and len(value) != n:
                raise ValueError(f"field {key!r} has {len(value)} rows but input_ids has {n}")
        if padding_strategy == "longest":
            max_length = max((len(r) for r in batch["input_ids"]), default=0)
            padding_strategy = "max_length"
        out: dict[str, list] = {}
        for i in range(n):
            row = {k: v[i] for k, v in batch.items()}
            row = self._pad_one(
                row, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask
            )
            for k, v in row.items():
                out.setdefault(k, []).append(v)
        return out

    # ---- decoding ------------------------------------------------------------------------------

    def decode(
        self,
        token_ids,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs,
    ) -> str:
        """Ids (list, numpy, torch, tf or jax) back to text."""
        token_ids = _to_py(token_ids)
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if not isinstance(token_ids, list) or not all(isinstance(t, int) for t in token_ids):
            raise TypeError(f"decode() expects an int or a flat list of ints, got {token_ids!r:.80}")
        text = self._decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    def batch_decode(
        self,
        sequences,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs,
    ) -> list[str]:
        return [
            self.decode(
                seq,
                skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                **kwargs,
            )
            for seq in _to_py(sequences)
        ]

    @staticmethod
    def clean_up_tokenization(out_string: str) -> str:
        """HF's English-centric clean-up of spaces before punctuation and contractions."""
        for a, b in (
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ):
            out_string = out_string.replace(a, b)
        return out_string

    # ---- save / load ---------------------------------------------------------------------------

    def _tokenizer_config(self) -> dict:
        cfg = dict(self._extra_init_kwargs)
        cfg.update(
            {
                "added_tokens_decoder": {
                    str(i): _added_token_dict(t) for i, t in sorted(self.added_tokens_decoder.items())
                },
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                "extra_special_tokens": {},
                "model_max_length": self.model_max_length,
                "sp_model_kwargs": dict(getattr(self, "sp_model_kwargs", {})),
                "tokenizer_class": "XLMRobertaTokenizer",
            }
        )
        if self.padding_side != "right":
            cfg["padding_side"] = self.padding_side
        if self.truncation_side != "right":
            cfg["truncation_side"] = self.truncation_side
        if self.split_special_tokens:
            cfg["split_special_tokens"] = True
        for key, value in self.special_tokens_map.items():
            cfg[key] = value
        return cfg

    def _special_tokens_map_json(self) -> dict:
        out = {}
        for key, value in self.special_tokens_map_extended.items():
            if key == "additional_special_tokens":
                out[key] = [_added_token_dict(t, with_special=False) for t in value]
            elif (
                value.lstrip
                or value.rstrip
                or value.single_word
                or (value.normalized and key == "mask_token")
            ):
                out[key] = _added_token_dict(value, with_special=False)
            else:
                out[key] = str(value.content)
        return out

    def save_pretrained(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None, **kwargs
    ) -> tuple[str, ...]:
        """Write HF's tokenizer layout (``sentencepiece.bpe.model``, ``tokenizer.json`` for the fast class,
        ``tokenizer_config.json``, ``special_tokens_map.json``) to ``save_directory``; files are written
        atomically. Returns the written paths."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise NotADirectoryError(f"save_directory {save_directory!r} is a file, not a directory")
        os.makedirs(save_directory, exist_ok=True)
        prefix = (filename_prefix + "-") if filename_prefix else ""
        written = []
        cfg_path = os.path.join(save_directory, prefix + TOKENIZER_CONFIG_FILE)
        _atomic_write_json(cfg_path, self._tokenizer_config())
        written.append(cfg_path)
        stm_path = os.path.join(save_directory, prefix + SPECIAL_TOKENS_MAP_FILE)
        _atomic_write_json(stm_path, self._special_tokens_map_json())
        written.append(stm_path)
        added = {str(t.content): i for i, t in self.added_tokens_decoder.items() if i >= self.vocab_size}
        if added:
            path = os.path.join(save_directory, prefix + ADDED_TOKENS_FILE)
            _atomic_write_json(path, added)
            written.append(path)
        written += list(self._save_model_files(save_directory, prefix))
        return tuple(written)

    @staticmethod
    def _read_pretrained_dir(path) -> tuple[str, dict]:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"tokenizer directory not found: {path!r} (xlmr loads only local directories, never from a hub)"
            )
        if not os.path.isdir(path):
            raise NotADirectoryError(f"from_pretrained expects a directory, got the file {path!r}")
        kwargs: dict[str, Any] = {}
        cfg_path = os.path.join(path, TOKENIZER_CONFIG_FILE)
        if os.path.isfile(cfg_path):
            kwargs.update(_read_json(cfg_path))
        stm_path = os.path.join(path, SPECIAL_TOKENS_MAP_FILE)
        if os.path.isfile(stm_path):
            for key, value in _read_json(stm_path).items():
                if key in SPECIAL_TOKENS_ATTRIBUTES:
                    kwargs[key] = value
        return path, kwargs

    @staticmethod
    def _split_added_tokens_kwargs(kwargs: dict, path: str) -> dict[int, AddedToken]:
        decoder = {}
        for idx, spec in (kwargs.pop("added_tokens_decoder", None) or {}).items():
            decoder[int(idx)] = _to_added_token(spec)
        added_path = os.path.join(path, ADDED_TOKENS_FILE)
        if os.path.isfile(added_path):
            for content, idx in _read_json(added_path).items():
                if int(idx) not in decoder:
                    decoder[int(idx)] = AddedToken(content, normalized=True, special=False)
        # Special tokens written as dicts become AddedTokens carrying their flags.
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = kwargs.get(key)
            if isinstance(value, Mapping):
                kwargs[key] = _to_added_token(value)
            elif key == "additional_special_tokens" and isinstance(value, list):
                kwargs[key] = [_to_added_token(v) if isinstance(v, Mapping) else v for v in value]
        for key in ("vocab_file", "tokenizer_file", "__type"):
            kwargs.pop(key, None)
        return decoder

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )

    # ---- training ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        save_directory: str | os.PathLike | None = None,
        **spm_kwargs,
    ):
        """Train a SentencePiece unigram model on ``texts`` (XLM-R set-up: fairseq special ids, NFKC,
        no byte fallback) and return a tokenizer of this class built on it. With ``save_directory`` the
        tokenizer is also saved there (HF layout). Quiet; a few seconds for a few MB of text.

        Example:
            >>> tok = XLMRobertaTokenizer.train(["hello world", "привет мир"] * 50, vocab_size=40)  # doctest: +SKIP
        """
        data = train_spm_model(texts, vocab_size, **spm_kwargs)
        tok = cls._from_spm_bytes(data)
        if save_directory is not None:
            tok.save_pretrained(save_directory)
            tok = cls.from_pretrained(save_directory)
        return tok


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def _to_py(obj):
    """numpy / torch / tf / jax values -> python ints and lists."""
    if isinstance(obj, (list, tuple)):
        return [_to_py(o) for o in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if hasattr(obj, "numpy") and callable(obj.numpy):  # torch / tf tensors
        return obj.numpy().tolist()
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):  # jax arrays
        return np.asarray(obj).tolist()
    return obj


# --------------------------------------------------------------------------------------------------
# Slow tokenizer (sentencepiece)
# --------------------------------------------------------------------------------------------------


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
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            sep_token=sep_token,
            cls_token=cls_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
            **kwargs,
        )
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

    @classmethod
    def _from_spm_bytes(cls, data: bytes, **kwargs):
        return cls(None, _spm_bytes=data, **kwargs)

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
                token = AddedToken(
                    token.content,
                    single_word=token.single_word,
                    lstrip=token.lstrip,
                    rstrip=token.rstrip,
                    normalized=token.normalized,
                    special=True,
                )
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
            raise IndexError(f"token id {index} is out of range for a vocabulary of {self.vocab_size}")
        return self.sp_model.IdToPiece(index - self.fairseq_offset)

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
        _check_text(text, "text")
        split_special = kwargs.pop("split_special_tokens", self.split_special_tokens)
        tokens = []
        for chunk, is_added in self._split_on_added(text, split_special):
            if is_added:
                tokens.append(chunk)
            else:
                tokens.extend(self.sp_model.encode(chunk, out_type=str))
        if pair is not None or add_special_tokens:
            ids = self.convert_tokens_to_ids(tokens)
            pair_ids = None if pair is None else self.convert_tokens_to_ids(self.tokenize(pair, **kwargs))
            if add_special_tokens:
                return self.convert_ids_to_tokens(self.build_inputs_with_special_tokens(ids, pair_ids))
            return tokens + ([] if pair_ids is None else self.convert_ids_to_tokens(pair_ids))
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
            if len(ids) > num_tokens_to_remove:
                window = min(len(ids), stride + num_tokens_to_remove)
                if left:
                    overflowing, ids = ids[:window], ids[num_tokens_to_remove:]
                else:
                    overflowing, ids = ids[-window:], ids[:-num_tokens_to_remove]
            else:
                logger.error(
                    f"We need to remove {num_tokens_to_remove} tokens to truncate the input but the first sequence "
                    f"has a length {len(ids)}."
                )
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
            if len(pair_ids) > num_tokens_to_remove:
                window = min(len(pair_ids), stride + num_tokens_to_remove)
                if left:
                    overflowing, pair_ids = pair_ids[:window], pair_ids[num_tokens_to_remove:]
                else:
                    overflowing, pair_ids = pair_ids[-window:], pair_ids[:-num_tokens_to_remove]
            else:
                logger.error(
                    f"We need to remove {num_tokens_to_remove} tokens to truncate the input but the second "
                    f"sequence has a length {len(pair_ids)}."
                )
        return ids, pair_ids, overflowing

    def _prepare(
        self,
        ids: list[int],
        pair_ids: list[int] | None,
        add_special_tokens: bool,
        truncation_strategy: str,
        max_length: int | None,
        stride: int,
        return_token_type_ids: bool | None,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        verbose: bool,
    ) -> dict:
        pair = pair_ids is not None
        if return_token_type_ids and not add_special_tokens:
            raise ValueError(
                "return_token_type_ids=True with add_special_tokens=False is undefined; set add_special_tokens=True "
                "or return_token_type_ids=None"
            )
        if return_overflowing_tokens and truncation_strategy == "longest_first" and pair:
            raise ValueError(
                "Not possible to return overflowing tokens for pair of sequences with the `longest_first` "
                "strategy; use truncation='only_first' or 'only_second'."
            )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        total = (
            len(ids)
            + (len(pair_ids) if pair else 0)
            + (self.num_special_tokens_to_add(pair) if add_special_tokens else 0)
        )
        overflowing: list[int] = []
        if truncation_strategy != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids, overflowing = self.truncate_sequences(
                ids, pair_ids, total - max_length, truncation_strategy, stride
            )
        out: dict[str, Any] = {}
        if return_overflowing_tokens:
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
        if return_token_type_ids:
            out["token_type_ids"] = [0] * len(seq)
        if return_special_tokens_mask:
            out["special_tokens_mask"] = (
                self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens else [0] * len(seq)
            )
        self._eventual_warn_about_too_long_sequence(seq, max_length, verbose)
        return out

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
        padding_strategy, truncation_strategy, max_length = self._get_padding_truncation_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, pair_ids is not None)
        out = self._prepare(
            list(ids),
            None if pair_ids is None else list(pair_ids),
            add_special_tokens,
            truncation_strategy,
            max_length,
            stride,
            return_token_type_ids,
            return_overflowing_tokens,
            return_special_tokens_mask,
            verbose,
        )
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if padding_strategy != "do_not_pad" or return_attention_mask:
            out = self._pad_one(
                out, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask
            )
        if return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

    def _encode_plus(
        self,
        text,
        text_pair=None,
        *,
        add_special_tokens,
        padding_strategy,
        truncation_strategy,
        max_length,
        stride,
        is_split_into_words,
        pad_to_multiple_of,
        padding_side,
        return_tensors,
        verbose,
        return_token_type_ids=None,
        return_attention_mask=None,
        return_overflowing_tokens=False,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        split_special_tokens=None,
    ) -> BatchEncoding:
        if return_offsets_mapping:
            raise NotImplementedError(
                "return_offsets_mapping is not available with the slow (sentencepiece) tokenizer; use "
                "XLMRobertaTokenizerFast"
            )
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        items = [text] if text_pair is None else [text, text_pair]
        ids = self._inputs_to_ids(items, is_split_into_words, split)
        pair_ids = ids[1] if text_pair is not None else None
        self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, pair_ids is not None)
        out = self._prepare(
            ids[0],
            pair_ids,
            add_special_tokens,
            truncation_strategy,
            max_length,
            stride,
            return_token_type_ids,
            return_overflowing_tokens,
            return_special_tokens_mask,
            verbose,
        )
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if padding_strategy != "do_not_pad" or return_attention_mask:
            out = self._pad_one(
                out, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask
            )
        if return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=True)

    def _batch_encode_plus(
        self,
        batch,
        *,
        add_special_tokens,
        padding_strategy,
        truncation_strategy,
        max_length,
        stride,
        is_split_into_words,
        pad_to_multiple_of,
        padding_side,
        return_tensors,
        verbose,
        return_token_type_ids=None,
        return_attention_mask=None,
        return_overflowing_tokens=False,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        split_special_tokens=None,
    ) -> BatchEncoding:
        if return_offsets_mapping:
            raise NotImplementedError(
                "return_offsets_mapping is not available with the slow (sentencepiece) tokenizer; use "
                "XLMRobertaTokenizerFast"
            )
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
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
            firsts + [seconds[i] for i in pair_positions], is_split_into_words, split
        )
        first_ids = all_ids[: len(firsts)]
        second_ids: list = [None] * len(firsts)
        for i, ids in zip(pair_positions, all_ids[len(firsts) :]):
            second_ids[i] = ids
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        simple = (
            add_special_tokens
            and not pair_positions
            and not return_overflowing_tokens
            and not return_special_tokens_mask
            and not return_token_type_ids
            and (truncation_strategy == "do_not_truncate" or max_length is None)
        )
        if simple:  # the common case, without the per-example machinery
            cls, sep = self._cls_id, self._sep_id
            rows = [[cls, *ids, sep] for ids in first_ids]
            for row in rows:
                self._eventual_warn_about_too_long_sequence(row, max_length, verbose)
            out: dict[str, list] = {"input_ids": rows}
        else:
            if any(s is not None for s in second_ids):
                self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, True)
            if any(s is None for s in second_ids):
                self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, False)
            out = {}
            for ids, pair_ids in zip(first_ids, second_ids):
                row = self._prepare(
                    ids,
                    pair_ids,
                    add_special_tokens,
                    truncation_strategy,
                    max_length,
                    stride,
                    return_token_type_ids,
                    return_overflowing_tokens,
                    return_special_tokens_mask,
                    verbose,
                )
                for k, v in row.items():
                    out.setdefault(k, []).append(v)
        if return_length:
            out["length"] = [len(r) for r in out["input_ids"]]
        if out.get("input_ids") and (padding_strategy != "do_not_pad" or return_attention_mask):
            out = self._pad_batch(
                out, padding_strategy, max_length, pad_to_multiple_of, padding_side, return_attention_mask
            )
        elif return_attention_mask and "input_ids" in out:
            out["attention_mask"] = []
        if not out:
            out = {"input_ids": []}
            if return_attention_mask:
                out["attention_mask"] = []
        return BatchEncoding(out, tensor_type=return_tensors)

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

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the SentencePiece model as ``[prefix-]sentencepiece.bpe.model`` (atomically)."""
        save_directory = os.fspath(save_directory)
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary needs an existing directory, got {save_directory!r}")
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        if self.vocab_file is None or os.path.abspath(self.vocab_file) != os.path.abspath(out):
            _atomic_write_bytes(out, self._spm_bytes)
        return (out,)

    def _save_model_files(self, save_directory: str, prefix: str):
        return self.save_vocabulary(save_directory, prefix[:-1] if prefix else None)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs, **kwargs):
        """Load from a local directory in HF's layout (``sentencepiece.bpe.model`` + configs)."""
        path, cfg = cls._read_pretrained_dir(pretrained_model_name_or_path)
        vocab_file = os.path.join(path, VOCAB_FILE)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(
                f"{VOCAB_FILE} not found in {path!r} (the slow tokenizer needs the SentencePiece model)"
            )
        cfg.update(kwargs)
        decoder = cls._split_added_tokens_kwargs(cfg, path)
        tok = cls(vocab_file, *init_inputs, added_tokens_decoder=decoder, **cfg)
        tok.name_or_path = os.fspath(pretrained_model_name_or_path)
        return tok


# --------------------------------------------------------------------------------------------------
# Fast tokenizer (tokenizers)
# --------------------------------------------------------------------------------------------------


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
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            sep_token=sep_token,
            cls_token=cls_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
            **kwargs,
        )
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        # Tokens recorded in a config that the backend does not hold yet, then special tokens (HF order).
        known = {repr(t) for t in self._tokenizer.get_added_tokens_decoder().values()}
        to_add = [t for _, t in sorted(added_tokens_decoder.items()) if repr(_to_added_token(t)) not in known]
        to_add = [_to_added_token(t) for t in to_add]
        encoder = set(self.added_tokens_encoder) | {str(t.content) for t in to_add}
        to_add += [t for t in self.all_special_tokens_extended if str(t.content) not in encoder]
        if to_add:
            specials = set(self.all_special_tokens)
            fixed = []
            for t in to_add:
                is_special = t.special or str(t.content) in specials
                fixed.append(
                    AddedToken(
                        t.content,
                        single_word=t.single_word,
                        lstrip=t.lstrip,
                        rstrip=t.rstrip,
                        normalized=t.normalized,
                        special=is_special,
                    )
                )
            self._tokenizer.add_tokens(fixed)
        self._refresh_ids()

    @classmethod
    def _from_spm_bytes(cls, data: bytes, **kwargs):
        return cls(None, _spm_bytes=data, **kwargs)

    def _refresh_ids(self) -> None:
        self._all_special_ids_cache = None
        self._offset_aligner = None  # rebuilt from the (changed) added vocabulary on next use

    def _aligned(self, encodings, items, is_split_into_words: bool, split_special_tokens: bool) -> list:
        """Wrap backend encodings with repaired offsets (see ``xlmr._offsets``); ``items[j]`` is the batch
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

    @property
    def can_save_slow_tokenizer(self) -> bool:
        return self._spm_bytes is not None

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
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

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

    def _set_truncation_and_padding(
        self, padding_strategy, truncation_strategy, max_length, stride, pad_to_multiple_of, padding_side
    ):
        tok = self._tokenizer
        if truncation_strategy == "do_not_truncate":
            if tok.truncation is not None:
                tok.no_truncation()
        else:
            target = {
                "max_length": max_length,
                "stride": stride,
                "strategy": truncation_strategy,
                "direction": self.truncation_side,
            }
            current = tok.truncation
            if current is None or {k: current.get(k) for k in target} != target:
                try:
                    tok.enable_truncation(**target)
                except Exception as e:
                    raise ValueError(f"invalid truncation settings {target}: {e}") from e
        if padding_strategy == "do_not_pad":
            if tok.padding is not None:
                tok.no_padding()
        else:
            target = {
                "length": max_length if padding_strategy == "max_length" else None,
                "direction": padding_side if padding_side is not None else self.padding_side,
                "pad_id": self.pad_token_id,
                "pad_token": self.pad_token,
                "pad_type_id": self.pad_token_type_id,
                "pad_to_multiple_of": pad_to_multiple_of,
            }
            if tok.padding != target:
                tok.enable_padding(**target)

    def _batch_encode_plus(
        self,
        batch,
        *,
        add_special_tokens,
        padding_strategy,
        truncation_strategy,
        max_length,
        stride,
        is_split_into_words,
        pad_to_multiple_of,
        padding_side,
        return_tensors,
        verbose,
        return_token_type_ids=None,
        return_attention_mask=None,
        return_overflowing_tokens=False,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        split_special_tokens=None,
        _single=False,
    ) -> BatchEncoding:
        has_pair = has_single = False
        for i, item in enumerate(batch):
            if is_split_into_words:
                if isinstance(item, (list, tuple)) and item and isinstance(item[0], (list, tuple)):
                    if len(item) != 2:
                        raise ValueError(f"batch item {i} has {len(item)} parts; a pair needs exactly 2")
                    _check_text(item[0], "text", i, words=True)
                    _check_text(item[1], "text_pair", i, words=True)
                    has_pair = True
                else:
                    _check_text(item, "text", i, words=True)
                    has_single = True
            elif isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise ValueError(f"batch item {i} has {len(item)} parts; a pair needs exactly 2")
                _check_text(item[0], "text", i)
                _check_text(item[1], "text_pair", i)
                has_pair = True
            else:
                _check_text(item, "text", i)
                has_single = True
        if has_pair:
            self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, True)
        if has_single:
            self._check_max_length_fits(truncation_strategy, max_length, add_special_tokens, False)
        if return_overflowing_tokens and has_pair and truncation_strategy == "longest_first":
            pass  # tokenizers handles it (HF's fast tokenizer does not refuse it)
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        settings = (
            padding_strategy,
            truncation_strategy,
            max_length,
            stride,
            pad_to_multiple_of,
            padding_side,
        )

        def encode(track_offsets: bool):
            self._set_truncation_and_padding(*settings)
            if self._tokenizer.encode_special_tokens != split:
                self._tokenizer.encode_special_tokens = split
            # encode_batch_fast skips offset tracking (same ids, masks, truncation and padding); the
            # full encodings behind offsets / word_ids() / tokens() are built only when asked for.
            run = self._tokenizer.encode_batch if track_offsets else self._tokenizer.encode_batch_fast
            try:
                encs = run(batch, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # tokenizers reports bad settings as a Rust panic (a BaseException)
                raise ValueError(
                    f"tokenizers could not encode the batch with truncation={truncation_strategy!r}, "
                    f"max_length={max_length}, stride={stride}: {e}"
                ) from e
            mapping = None
            if return_overflowing_tokens:
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

        encodings, mapping = encode(track_offsets=return_offsets_mapping)
        lazy = encodings if return_offsets_mapping else (lambda: encode(True)[0])
        n_sequences = (
            2
            if any(
                isinstance(item, (list, tuple))
                and (not is_split_into_words or (item and isinstance(item[0], (list, tuple))))
                for item in batch
            )
            else 1
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        data: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            data["length"] = [len(ids) for ids in data["input_ids"]]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping
        if verbose and max_length is None and self.model_max_length < LARGE_INTEGER:
            for ids in data["input_ids"]:
                self._eventual_warn_about_too_long_sequence(ids, max_length, verbose)
        if _single and return_tensors is None and not return_overflowing_tokens:
            data = {k: (v[0] if v and isinstance(v[0], list) else v) for k, v in data.items()}
            return BatchEncoding(data, lazy, n_sequences=n_sequences)
        return BatchEncoding(data, lazy, tensor_type=return_tensors, n_sequences=n_sequences)

    def _encode_plus(self, text, text_pair=None, *, is_split_into_words=False, **opts) -> BatchEncoding:
        # HF quirk kept for equality: an empty text_pair counts as no pair.
        batch = [(text, text_pair)] if text_pair else [text]
        return self._batch_encode_plus(batch, is_split_into_words=is_split_into_words, _single=True, **opts)

    # ---- decoding ------------------------------------------------------------------------------

    def _decode(self, token_ids: list[int], skip_special_tokens: bool = False, **kwargs) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    # ---- files ---------------------------------------------------------------------------------

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the SentencePiece model the fast tokenizer was built from (needs one)."""
        if not self.can_save_slow_tokenizer:
            raise ValueError(
                "this fast tokenizer was not built from a SentencePiece model, so it cannot write "
                f"{VOCAB_FILE}; save_pretrained writes tokenizer.json instead"
            )
        save_directory = os.fspath(save_directory)
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary needs an existing directory, got {save_directory!r}")
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        if self.vocab_file is None or os.path.abspath(self.vocab_file) != os.path.abspath(out):
            _atomic_write_bytes(out, self._spm_bytes)
        return (out,)

    def _save_model_files(self, save_directory: str, prefix: str):
        written = []
        if self.can_save_slow_tokenizer:
            written += list(self.save_vocabulary(save_directory, prefix[:-1] if prefix else None))
        state = json.loads(self._tokenizer.to_str())
        state["truncation"] = None
        state["padding"] = None
        path = os.path.join(save_directory, prefix + TOKENIZER_FILE)
        _atomic_write_bytes(path, json.dumps(state, ensure_ascii=False, indent=2).encode("utf-8"))
        written.append(path)
        return written

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs, **kwargs):
        """Load from a local directory in HF's layout (``tokenizer.json`` if present, else
        ``sentencepiece.bpe.model``)."""
        path, cfg = cls._read_pretrained_dir(pretrained_model_name_or_path)
        tokenizer_file = os.path.join(path, TOKENIZER_FILE)
        vocab_file = os.path.join(path, VOCAB_FILE)
        has_tok, has_vocab = os.path.isfile(tokenizer_file), os.path.isfile(vocab_file)
        if not has_tok and not has_vocab:
            raise FileNotFoundError(f"neither {TOKENIZER_FILE} nor {VOCAB_FILE} found in {path!r}")
        cfg.update(kwargs)
        cfg.pop("sp_model_kwargs", None)
        decoder = cls._split_added_tokens_kwargs(cfg, path)
        tok = cls(
            vocab_file if has_vocab else None,
            tokenizer_file if has_tok else None,
            *init_inputs,
            added_tokens_decoder=decoder,
            **cfg,
        )
        tok.name_or_path = os.fspath(pretrained_model_name_or_path)
        return tok

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
        from tokenizers.trainers import UnigramTrainer

        state = json.loads(self._tokenizer.to_str())
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
                        raise ValueError(
                            f"post-processor token {token!r} is missing from the trained vocabulary"
                        )
                    ids.append(idx)
                spec["ids"] = ids
            trained["post_processor"] = post
            backend = _BackendTokenizer.from_str(json.dumps(trained))
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
