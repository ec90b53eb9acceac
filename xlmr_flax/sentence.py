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

    The forward runs under ``jax.jit``: one compile per batch shape, and the packing planner's
    shapes are few.

    Loading, arguments and example: see :class:`xlmr._sentence.SentenceEncoderBase`.
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

    def _supports_packing(self) -> bool:
        return "segment_ids" in inspect.signature(type(self.model).__call__).parameters

    def _forward(self, input_ids: np.ndarray, **mask: np.ndarray) -> np.ndarray:
        """The backbone's ``last_hidden_state`` (rows, seq, hidden) as float32 numpy."""
        ((mask_name, mask),) = mask.items()  # segment_ids (packed rows) or attention_mask
        compiled = self.__dict__.setdefault("_compiled", {})
        if mask_name not in compiled:
            model = self.model

            def run(params, ids, other):
                return model(ids, params=params, return_dict=True, **{mask_name: other}).last_hidden_state

            compiled[mask_name] = jax.jit(run)
        out = compiled[mask_name](
            self.model.params, np.asarray(input_ids, np.int32), np.asarray(mask, np.int32)
        )
        return np.asarray(out, np.float32)  # (rows, seq, hidden)

    def _to_tensor(self, array: np.ndarray) -> jax.Array:
        return jnp.asarray(array)
