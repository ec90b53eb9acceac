"""Sentence embeddings on PyTorch: :class:`SentenceEncoder` (sentence-transformers directories).

Everything but the forward pass is framework-neutral and lives in :mod:`xlmr._sentence`; the same
file exists in ``xlmr_tf`` and ``xlmr_flax`` with the same methods in the same order.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlmr._sentence import SentenceEncoderBase

from .modeling import XLMRobertaModel


class SentenceEncoder(SentenceEncoderBase):
    """XLM-R sentence encoder with sentence-transformers' ``encode`` on PyTorch.

    Loads a sentence-transformers directory (modules.json: Transformer, Pooling, Dense, Normalize)
    or a plain HF XLM-R directory (mean pooling), runs the backbone on packed rows
    (``segment_ids``: no padding computed) and gives sentence-transformers' embeddings.

    Args:
        model: The backbone (:class:`xlmr_torch.XLMRobertaModel`).
        tokenizer: An xlmr XLM-R tokenizer.
        layout: The modules and settings (:func:`xlmr._sentence.read_layout`).
        packed: Packed rows (None: when the backbone takes ``segment_ids``) or padded batches.

    Example:
        >>> from xlmr_torch import SentenceEncoder
        >>> encoder = SentenceEncoder.from_pretrained("path/to/multilingual-e5-base")  # doctest: +SKIP
        >>> q = encoder.encode(["how do I bake bread?"], prompt_name="query")  # doctest: +SKIP
        >>> d = encoder.encode(["Bread needs flour, water, salt and yeast."], prompt_name="passage")  # doctest: +SKIP
        >>> encoder.similarity(q, d)  # doctest: +SKIP
    """

    framework = "torch"
    shape_buckets = False  # eager: padded batches are as long as their longest sequence

    @classmethod
    def from_pretrained(cls, path, *, packed: bool | None = None, **model_kwargs: Any) -> SentenceEncoder:
        """A sentence-transformers or plain HF directory, or a Hub repo id of either (see
        ``SentenceEncoderBase.from_pretrained``: HF's Hub arguments, only the files read are fetched).

        The forward runs eagerly under ``torch.inference_mode``; ``model_kwargs`` (``torch_dtype``...)
        go to ``XLMRobertaModel.from_pretrained``.
        """
        return super().from_pretrained(path, packed=packed, **model_kwargs)

    @classmethod
    def _load_model(cls, directory: Path, **kwargs: Any) -> XLMRobertaModel:
        return XLMRobertaModel.from_pretrained(str(directory), **kwargs).eval()

    def _save_model(self, directory: Path, format: str) -> None:
        self.model.save_pretrained(str(directory), format=format)

    def _supports_packing(self) -> bool:
        return "segment_ids" in inspect.signature(self.model.forward).parameters

    @torch.inference_mode()
    def _forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        segment_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """The backbone's ``last_hidden_state`` (rows, seq, hidden) as float32 numpy."""
        device = self.model.device
        key, second = (
            ("segment_ids", segment_ids) if segment_ids is not None else ("attention_mask", attention_mask)
        )
        feed = {
            "input_ids": torch.from_numpy(np.asarray(input_ids, np.int64)).to(device),
            key: torch.from_numpy(np.asarray(second, np.int64)).to(device),
        }
        hidden = self.model(**feed, return_dict=True).last_hidden_state  # (rows, seq, hidden)
        return hidden.float().cpu().numpy()

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))
