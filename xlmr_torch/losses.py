"""The head losses, as HF transformers v4 computes them (see ``xlmr.heads.LOSSES``).

Each head names its loss kind in ``head.loss``; :func:`compute_loss` dispatches on it.
Cross entropies ignore the label -100 and average over the labels that are not ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from xlmr.config import XLMRobertaConfig

IGNORE_INDEX = -100


def causal_lm_loss(config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: logits (batch, seq, vocab)[:, :-1] against labels[:, 1:], in float32."""
    shifted_logits = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].to(logits.device).reshape(-1)
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)


def masked_lm_loss(config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over every position: logits (batch, seq, vocab), labels (batch, seq)."""
    return F.cross_entropy(
        logits.reshape(-1, config.vocab_size), labels.to(logits.device).reshape(-1), ignore_index=IGNORE_INDEX
    )


def sequence_classification_loss(
    config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """By ``config.problem_type``; when None it is inferred and stored on the config, as HF does.

    num_labels == 1 -> regression (MSE); integer labels -> single-label (CE); else multi-label
    (BCE with logits). Logits are (batch, num_labels).
    """
    labels = labels.to(logits.device)
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        target = labels.to(logits.dtype)
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), target.squeeze())
        return F.mse_loss(logits, target)
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1), ignore_index=IGNORE_INDEX)
    if labels.shape != logits.shape:
        raise ValueError(
            f"multi-label classification needs labels shaped like the logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def multiple_choice_loss(
    config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Cross entropy over the choices: logits (batch, num_choices), labels (batch,)."""
    return F.cross_entropy(logits, labels.to(logits.device), ignore_index=IGNORE_INDEX)


def token_classification_loss(
    config: XLMRobertaConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Cross entropy over every token: logits (batch, seq, num_labels), labels (batch, seq)."""
    return F.cross_entropy(
        logits.view(-1, config.num_labels), labels.to(logits.device).view(-1), ignore_index=IGNORE_INDEX
    )


def span_loss(
    config: XLMRobertaConfig,
    logits: tuple[torch.Tensor, torch.Tensor],
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """(CE(start) + CE(end)) / 2 with positions clamped to [0, seq]; position ``seq`` (outside) is ignored."""
    start_logits, end_logits = logits  # (batch, seq) each
    if start_positions.dim() > 1:
        start_positions = start_positions.squeeze(-1)
    if end_positions.dim() > 1:
        end_positions = end_positions.squeeze(-1)
    ignored = start_logits.shape[1]
    start_positions = start_positions.to(start_logits.device).clamp(0, ignored)
    end_positions = end_positions.to(end_logits.device).clamp(0, ignored)
    start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=ignored)
    end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=ignored)
    return (start_loss + end_loss) / 2


LOSS_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "causal_lm": causal_lm_loss,
    "masked_lm": masked_lm_loss,
    "sequence_classification": sequence_classification_loss,
    "multiple_choice": multiple_choice_loss,
    "token_classification": token_classification_loss,
    "span": span_loss,
}


def compute_loss(kind: str, config: XLMRobertaConfig, logits, *labels: torch.Tensor) -> torch.Tensor:
    """The loss of kind ``kind`` (a head's ``head.loss``) for ``logits`` and the head's label tensors."""
    try:
        fn = LOSS_FUNCTIONS[kind]
    except KeyError:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {tuple(LOSS_FUNCTIONS)}") from None
    names = ("start_positions", "end_positions") if kind == "span" else ("labels",)
    return fn(config, logits, *(_as_tensor(value, name) for value, name in zip(labels, names)))


def _as_tensor(value, name: str) -> torch.Tensor:
    """Labels given as numpy arrays or lists become tensors; anything else is a TypeError naming them."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor, array or list of numbers, got {type(value).__name__}"
        ) from None
