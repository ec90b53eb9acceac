"""``BatchEncoding``, the output of a tokenizer call, and the conversion of its fields to tensors.

Only numpy is imported here; ``return_tensors="pt"/"tf"/"jax"`` imports the framework when asked.
"""

from __future__ import annotations

from collections import UserDict
from typing import Any

import numpy as np

TENSOR_TYPES = ("np", "pt", "tf", "jax")


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
