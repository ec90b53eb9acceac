"""The base both XLM-R tokenizers share: strategies, calling conventions, padding and decoding.

``_XLMRobertaTokenizerBase`` resolves HF's ``padding`` / ``truncation`` / ``max_length`` arguments into
an ``EncodeOptions``, checks the inputs, pads and decodes; the slow and fast classes implement the
segmentation (``_encode_plus``, ``_batch_encode_plus``, ``_decode``, the vocabulary). Special tokens and
save / load come from the two mixins.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._text_inputs import InvalidTextInputError, _batch_item_names, _raise_for_surrogates
from .batch_encoding import BatchEncoding, _check_tensor_type, _to_py
from .serialization import SerializationMixin, _jsonable
from .special_tokens import SpecialTokensMixin
from .training import train_spm_model

logger = logging.getLogger(__name__)

VERY_LARGE_INTEGER = int(1e30)  # HF's "no model_max_length" sentinel
LARGE_INTEGER = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("only_first", "only_second", "longest_first", "do_not_truncate")


class InvalidTokenIdError(ValueError, IndexError):
    """A token id outside the vocabulary (a ValueError; also the IndexError the slow tokenizer raised)."""


@dataclass(frozen=True)
class EncodeOptions:
    """Everything an encoding call asked for, once ``padding`` / ``truncation`` / ``max_length`` are
    resolved into strategies (``_get_padding_truncation_strategies``)."""

    padding_strategy: str
    truncation_strategy: str
    max_length: int | None
    add_special_tokens: bool = True
    stride: int = 0
    is_split_into_words: bool = False
    pad_to_multiple_of: int | None = None
    padding_side: str | None = None
    return_tensors: str | None = None
    verbose: bool = True
    return_token_type_ids: bool | None = None
    return_attention_mask: bool | None = None
    return_overflowing_tokens: bool = False
    return_special_tokens_mask: bool = False
    return_offsets_mapping: bool = False
    return_length: bool = False
    split_special_tokens: bool | None = None


def _strategy(value: Any, what: str, off: str, on: str, strategies: tuple[str, ...]) -> str:
    """A ``padding`` / ``truncation`` argument (bool, None, a strategy name or HF's enum) as a strategy."""
    value = getattr(value, "value", value)
    if value is False or value is None:
        return off
    if value is True:
        return on
    if isinstance(value, str) and value in strategies:
        return value
    raise ValueError(f"Unknown {what} strategy {value!r}; use True, False or one of {strategies}")


# The special-token arguments of the tokenizers' ``__init__``, in the order they are registered.
_INIT_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "sep_token",
    "cls_token",
    "unk_token",
    "pad_token",
    "mask_token",
)


def special_token_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The special tokens among a tokenizer ``__init__``'s ``arguments`` (its ``locals()``)."""
    return {name: arguments[name] for name in _INIT_SPECIAL_TOKENS}


# ``__call__``'s arguments that are not encoding options.
_CALL_INPUTS = ("self", "text", "text_pair", "text_target", "text_pair_target", "kwargs")


class _XLMRobertaTokenizerBase(SpecialTokensMixin, SerializationMixin):
    """Everything the two XLM-R tokenizers share: special tokens, strategies, padding, tensors, the
    calling conventions, decoding glue and save / load. Subclasses implement the segmentation."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    is_fast = False

    def __init__(
        self,
        special_tokens: Mapping[str, Any],
        additional_special_tokens=None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        model_input_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        """``special_tokens``: the subclass's ``bos_token`` ... ``mask_token`` arguments by name
        (:func:`special_token_arguments`); the rest as HF's tokenizer ``__init__`` takes them."""
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
        self._init_special_tokens(dict(special_tokens), additional_special_tokens)

    @classmethod
    def _from_spm_bytes(cls, data: bytes, **kwargs):
        return cls(None, _spm_bytes=data, **kwargs)

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
        self,
        padding=False,
        truncation=None,
        max_length=None,
        pad_to_multiple_of=None,
        verbose=True,
        stacklevel: int = 3,
    ) -> tuple[str, str, int | None]:
        """HF's resolution of ``padding`` / ``truncation`` / ``max_length`` into strategies, with a clear
        ValueError for an unknown strategy. ``stacklevel``: the frame the UserWarning names (the caller of
        the public method)."""
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
        if (
            padding is True
            and verbose
            and max_length is not None
            and truncation in (None, False, "do_not_truncate")
        ):
            warnings.warn(
                "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                "To pad to max length, use `padding='max_length'`.",
                stacklevel=stacklevel,
            )
        padding_strategy = _strategy(padding, "padding", "do_not_pad", "longest", PADDING_STRATEGIES)
        truncation_strategy = _strategy(
            truncation, "truncation", "do_not_truncate", "longest_first", TRUNCATION_STRATEGIES
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
        opts = {name: value for name, value in locals().items() if name not in _CALL_INPUTS}
        opts["split_special_tokens"] = kwargs.pop("split_special_tokens", self.split_special_tokens)
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
        opts = self._options(locals(), "text", "text_pair", **kwargs)
        try:
            return self._encode_plus(text, text_pair, opts)
        except Exception:
            _raise_for_surrogates([("text", text), ("text_pair", text_pair)])
            raise

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
        opts = self._options(locals(), "batch_text_or_text_pairs", **kwargs)
        batch = list(batch_text_or_text_pairs)
        try:
            return self._batch_encode_plus(batch, opts)
        except Exception:
            _raise_for_surrogates(_batch_item_names(batch, is_split_into_words))
            raise

    def _options(self, arguments: Mapping[str, Any], *inputs: str, **fields: Any) -> EncodeOptions:
        """The options of one public call -- its ``arguments`` (``locals()``) but ``self``, ``kwargs``
        and its ``inputs``, then ``fields`` -- with the strategies resolved and ``return_tensors``,
        ``padding_side`` and ``stride`` checked."""
        skip = ("self", "kwargs", *inputs)
        fields = {**{k: v for k, v in arguments.items() if k not in skip}, **fields}
        padding, truncation = fields.pop("padding"), fields.pop("truncation")
        padding_strategy, truncation_strategy, max_length = self._get_padding_truncation_strategies(
            padding, truncation, fields.pop("max_length"), fields["pad_to_multiple_of"], fields["verbose"],
            stacklevel=4,
        )  # fmt: skip
        _check_tensor_type(fields.get("return_tensors"))
        self._check_side(fields.get("padding_side"))
        self._check_stride(fields.get("stride", 0))
        return EncodeOptions(padding_strategy, truncation_strategy, max_length, **fields)

    def _split_special(self, opts: EncodeOptions) -> bool:
        """Whether this call matches special tokens in the text as plain text (``split_special_tokens``)."""
        return self.split_special_tokens if opts.split_special_tokens is None else opts.split_special_tokens

    def _wants(self, value: bool | None, field: str) -> bool:
        """``return_attention_mask`` / ``return_token_type_ids``: None means "if the model takes it"."""
        return field in self.model_input_names if value is None else value

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
        return_attention_mask = self._wants(return_attention_mask, "attention_mask")
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
        self._check_token_ids(token_ids)
        text = self._decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    def _check_token_ids(self, ids: list[int]) -> None:
        """InvalidTokenIdError naming the first id that is no token: negative, or beyond the model's
        vocabulary and not an added token."""
        size = self.vocab_size
        if not ids or (min(ids) >= 0 and max(ids) < size):
            return
        for i in ids:
            if not 0 <= i < size and not self._is_added_id(i):
                raise self._id_error(i)

    def _id_error(self, i: int) -> InvalidTokenIdError:
        return InvalidTokenIdError(
            f"token id {i} is out of range for a vocabulary of {len(self)} tokens "
            f"(ids 0 to {len(self) - 1}, added tokens included)"
        )

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
