"""Sentence embeddings on TensorFlow (Keras 3): :class:`TFSentenceEncoder` (sentence-transformers directories).

Everything but the forward pass is framework-neutral and lives in :mod:`xlmr._sentence`; the same
file exists in ``xlmr_torch`` and ``xlmr_flax`` with the same methods in the same order.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xlmr._sentence import SentenceEncoderBase

from .modeling import TFXLMRobertaModel


class TFSentenceEncoder(SentenceEncoderBase):
    """XLM-R sentence encoder with sentence-transformers' ``encode`` on TensorFlow (Keras 3).

    The forward runs under ``tf.function(jit_compile=True)``: one XLA compile per batch shape, and
    the packing planner's shapes are few.

    Loading, arguments and example: see :class:`xlmr._sentence.SentenceEncoderBase`.
    """

    framework = "tensorflow"
    jit_compile = True

    @classmethod
    def from_pretrained(
        cls, path, *, packed: bool | None = None, jit_compile: bool = True, **model_kwargs: Any
    ) -> TFSentenceEncoder:
        """A sentence-transformers or plain HF directory, or a Hub repo id of either (see
        ``SentenceEncoderBase.from_pretrained``: HF's Hub arguments, only the files read are fetched).

        The forward runs under ``tf.function(jit_compile=True)`` (``jit_compile=False``: eagerly);
        ``model_kwargs`` go to ``TFXLMRobertaModel.from_pretrained``.
        """
        encoder = super().from_pretrained(path, packed=packed, **model_kwargs)
        encoder.jit_compile = jit_compile
        return encoder

    @classmethod
    def _load_model(cls, directory: Path, **kwargs: Any) -> TFXLMRobertaModel:
        return TFXLMRobertaModel.from_pretrained(str(directory), **kwargs)

    def _supports_packing(self) -> bool:
        return "segment_ids" in inspect.signature(self.model.call).parameters

    def _forward(self, input_ids: np.ndarray, **mask: np.ndarray) -> np.ndarray:
        """The backbone's ``last_hidden_state`` (rows, seq, hidden) as float32 numpy."""
        ((mask_name, mask),) = mask.items()  # segment_ids (packed rows) or attention_mask
        # One tf.function per batch shape: each traces (and XLA-compiles) once, never retraces.
        compiled = self.__dict__.setdefault("_compiled", {})
        shape = (mask_name, *np.shape(input_ids))
        if shape not in compiled:
            model = self.model

            def run(ids, other):
                return model(input_ids=ids, training=False, return_dict=True, **{mask_name: other})[
                    "last_hidden_state"
                ]

            compiled[shape] = tf.function(run, jit_compile=True) if self.jit_compile else run
        ids = tf.constant(np.asarray(input_ids, np.int32))
        other = tf.constant(np.asarray(mask, np.int32))
        return np.asarray(compiled[shape](ids, other), np.float32)  # (rows, seq, hidden)

    def _to_tensor(self, array: np.ndarray) -> tf.Tensor:
        return tf.constant(array)
