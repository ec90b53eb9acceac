"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
PyTorch runs eagerly under ``torch.inference_mode``, so batches may take any shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

# Whether batches should come in a few fixed shapes (compiled backends) or any shape.
STATIC_SHAPES = False

Inputs = Mapping[str, np.ndarray]


def prepare(model: Any) -> Any:
    """The model in inference mode (dropout off)."""
    return model.eval()


def accepts_segment_ids(model: Any) -> bool:
    """Whether the model's forward takes packed rows (``segment_ids``)."""
    return "segment_ids" in inspect.signature(model.forward).parameters


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _feed(model: Any, inputs: Inputs) -> dict[str, torch.Tensor]:
    device = _device(model)
    return {k: torch.from_numpy(np.asarray(v, np.int64)).to(device) for k, v in inputs.items()}


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def head_forward(model: Any, fields: Sequence[str]) -> Callable[[Inputs], dict[str, np.ndarray]]:
    """``inputs -> {field: array}``: the head's output ``fields`` (``logits``, ``start_logits``...)."""

    def run(inputs: Inputs) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = model(**_feed(model, inputs), return_dict=True)
        return {name: _numpy(out[name]) for name in fields}

    return run


def _backbone(model: Any) -> Any:
    """The bare backbone of a head model (the model itself for the base model)."""
    return getattr(model, model.head.prefix) if model.head.prefix else model


def backbone_forward(model: Any) -> Callable[[Inputs], np.ndarray]:
    """``inputs -> last_hidden_state`` (batch, seq, hidden) of the model's backbone (any head)."""
    backbone = _backbone(model)

    def run(inputs: Inputs) -> np.ndarray:
        with torch.inference_mode():
            out = backbone(**_feed(model, inputs), return_dict=True)
        return _numpy(out.last_hidden_state)

    return run


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch; the LM head (the vocabulary projection, most of the cost
    of a masked-LM forward) only on the gathered hidden states.
    """
    backbone = _backbone(model)

    def run(inputs: Inputs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        device = _device(model)
        with torch.inference_mode():
            hidden = backbone(**_feed(model, inputs), return_dict=True).last_hidden_state
            picked = hidden[
                torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
            ]  # (n, hidden)
            return _numpy(model.lm_head(picked))  # (n, vocab)

    return run
