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

    Loading, arguments and example: see :class:`xlmr._sentence.SentenceEncoderBase`.
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

    def _supports_packing(self) -> bool:
        return "segment_ids" in inspect.signature(self.model.forward).parameters

    @torch.inference_mode()
    def _forward(self, input_ids: np.ndarray, **mask: np.ndarray) -> np.ndarray:
        """The backbone's ``last_hidden_state`` (rows, seq, hidden) as float32 numpy."""
        ((mask_name, mask),) = mask.items()  # segment_ids (packed rows) or attention_mask
        device = self.model.device
        feed = {
            "input_ids": torch.from_numpy(np.asarray(input_ids, np.int64)).to(device),
            mask_name: torch.from_numpy(np.asarray(mask, np.int64)).to(device),
        }
        hidden = self.model(**feed, return_dict=True).last_hidden_state  # (rows, seq, hidden)
        return hidden.float().cpu().numpy()

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))
