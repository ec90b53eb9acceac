"""Sentence embeddings on Flax/JAX: :class:`FlaxSentenceEncoder` (sentence-transformers directories).

Everything but the forward pass is framework-neutral and lives in :mod:`xlmr._sentence`; the same
file exists in ``xlmr_torch`` and ``xlmr_tf`` with the same methods in the same order.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xlmr._sentence import SentenceEncoderBase

from .modeling import FlaxXLMRobertaModel


class FlaxSentenceEncoder(SentenceEncoderBase):
    """XLM-R sentence encoder with sentence-transformers' ``encode`` on Flax/JAX.

    Loads a sentence-transformers directory (modules.json: Transformer, Pooling, Dense, Normalize)
    or a plain HF XLM-R directory (mean pooling), runs the backbone on packed rows
    (``segment_ids``: no padding computed) under ``jax.jit`` -- one compile per batch shape, and the
    packing planner's shapes are few -- and gives sentence-transformers' embeddings.

    Args:
        model: The backbone (:class:`xlmr_flax.FlaxXLMRobertaModel`).
        tokenizer: An xlmr XLM-R tokenizer.
        layout: The modules and settings (:func:`xlmr._sentence.read_layout`).
        packed: Packed rows (None: when the backbone takes ``segment_ids``) or padded batches.

    Example:
        >>> from xlmr_flax import FlaxSentenceEncoder
        >>> encoder = FlaxSentenceEncoder.from_pretrained("path/to/multilingual-e5-base")  # doctest: +SKIP
        >>> q = encoder.encode(["how do I bake bread?"], prompt_name="query")  # doctest: +SKIP
        >>> d = encoder.encode(["Bread needs flour, water, salt and yeast."], prompt_name="passage")  # doctest: +SKIP
        >>> encoder.similarity(q, d)  # doctest: +SKIP
    """

    framework = "jax"

    @classmethod
    def from_pretrained(cls, path, *, packed: bool | None = None, **model_kwargs: Any) -> FlaxSentenceEncoder:
        """A sentence-transformers or plain HF directory, or a Hub repo id of either (see
        ``SentenceEncoderBase.from_pretrained``: HF's Hub arguments, only the files read are fetched).

        The forward runs under ``jax.jit``; ``model_kwargs`` (``dtype``...) go to
        ``FlaxXLMRobertaModel.from_pretrained``.
        """
        return super().from_pretrained(path, packed=packed, **model_kwargs)

    @classmethod
    def _load_model(cls, directory: Path, **kwargs: Any) -> FlaxXLMRobertaModel:
        return FlaxXLMRobertaModel.from_pretrained(str(directory), **kwargs)

    def _save_model(self, directory: Path, format: str) -> None:
        self.model.save_pretrained(str(directory), format=format)

    def _supports_packing(self) -> bool:
        return "segment_ids" in inspect.signature(type(self.model).__call__).parameters

    def _forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        segment_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """The backbone's ``last_hidden_state`` (rows, seq, hidden) as float32 numpy."""
        key, second = (
            ("segment_ids", segment_ids) if segment_ids is not None else ("attention_mask", attention_mask)
        )
        compiled = self.__dict__.setdefault("_compiled", {})
        if key not in compiled:
            model = self.model

            def run(params, ids, other):
                return model(ids, params=params, return_dict=True, **{key: other}).last_hidden_state

            compiled[key] = jax.jit(run)
        out = compiled[key](self.model.params, np.asarray(input_ids, np.int32), np.asarray(second, np.int32))
        return np.asarray(out, np.float32)  # (rows, seq, hidden)

    def _to_tensor(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(array)
