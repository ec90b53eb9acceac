"""A minimal PyTorch training step for the XLM-RoBERTa heads.

Example:
    >>> import torch
    >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForSequenceClassification
    >>> from xlmr_torch.training import train_step
    >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=37, num_labels=2)
    >>> model = XLMRobertaForSequenceClassification(config)
    >>> optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> batch = {"input_ids": torch.tensor([[0, 5, 6, 2]]), "labels": torch.tensor([1])}
    >>> loss = train_step(model, batch, optimizer)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def train_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float | None = 1.0,
    scheduler: Any | None = None,
) -> float:
    """One optimisation step: forward with labels, backward, clip, step. Returns the loss.

    Bad token ids and labels raise before anything is updated: a ``ValueError`` from the core
    checker when ``model`` runs eagerly, a ``RuntimeError`` from the graph's own range asserts
    when it is a ``torch.compile`` module.

    Args:
        model: Any xlmr_torch head; it is put in training mode (dropout on).
        batch: Keyword arguments of the model's forward, labels included
            (``labels``, or ``start_positions`` / ``end_positions`` for question answering).
            A packed batch adds ``segment_ids``: token-classification labels then follow the packed
            layout (-100 on padding), sequence-classification labels the (batch, seq) slots (-100
            in the empty ones); loss and gradients equal those of the padded batch.
        optimizer: A torch optimizer over ``model.parameters()``.
        max_grad_norm: Clip the global gradient norm to this value (None: no clipping).
        scheduler: Optional learning-rate scheduler, stepped after the optimizer.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    outputs = model(**batch, return_dict=True)
    loss = outputs.get("loss")
    if loss is None:
        raise ValueError(f"the batch gives no loss: it holds {sorted(batch)}, with no labels for this head")
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())
