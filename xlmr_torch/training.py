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

import datetime
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from xlmr.distributed import ADAM_EPS, ProcessEnv, TrainingResult, TrainingRun, local_batch

_TIMEOUT_S = 300  # a process that waits longer than this for the others fails


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


# -- across processes: torch.distributed ---------------------------------------------------------
def init_distributed(env: ProcessEnv) -> dist.ProcessGroup | None:
    """Join the job ``env`` describes: the default process group over gloo (CPU collectives).

    Returns the default group (None for one process). Called once per process; a second call
    returns the group already made.

    Args:
        env: This process's place in the job (:func:`xlmr.distributed.process_env`).
    """
    if not env.distributed:
        return None
    if not dist.is_initialized():
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{env.coordinator}",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=_TIMEOUT_S),
        )
    if (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
        raise RuntimeError(
            f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, the environment "
            f"says {env.rank} of {env.world_size}"
        )
    return dist.group.WORLD


def _optimizer(run: TrainingRun, parameters: Any) -> torch.optim.Optimizer:
    if run.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=run.learning_rate, eps=ADAM_EPS)
    return torch.optim.SGD(parameters, lr=run.learning_rate)


def train_distributed(model_class: type, run: TrainingRun, env: ProcessEnv) -> TrainingResult:
    """Train ``run`` as process ``env.rank`` of ``env.world_size``; rank 0 saves.

    Each process takes its rows of every global batch (:func:`xlmr.distributed.local_batch`) and
    steps with :func:`train_step` on the model wrapped for the job: ``DistributedDataParallel``
    (``run.parallel == "ddp"``: every process holds the whole model, gradients are averaged), or
    FSDP2's ``fully_shard`` per encoder layer and on the whole model (``"fsdp"``: parameters,
    gradients and optimizer state sharded; runs on CPU over gloo). The loss of a step is averaged
    over the processes: the loss of the global batch. Rank 0 writes the trained model with
    ``save_pretrained`` (under FSDP after gathering the full state dict, which every rank joins).

    Args:
        model_class: The xlmr_torch class to train (e.g. ``XLMRobertaForSequenceClassification``).
        run: The model directory, the global batches, optimizer and output (same on every rank).
        env: This process's place in the job.
    """
    init_distributed(env)
    torch.manual_seed(run.seed)
    model = model_class.from_pretrained(run.model, **run.config_overrides())
    wrapped: nn.Module = model
    if env.distributed and run.parallel == "ddp":
        wrapped = nn.parallel.DistributedDataParallel(model)
    elif env.distributed:
        from torch.distributed.fsdp import fully_shard

        for layer in model.roberta.encoder.layer:
            fully_shard(layer)
        fully_shard(model)
    optimizer = _optimizer(run, wrapped.parameters())
    losses, times = [], []
    for batch in run.batches:
        start = time.perf_counter()
        local = {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in local_batch(batch, env).items()}
        loss = torch.tensor(train_step(wrapped, local, optimizer, max_grad_norm=None), dtype=torch.float64)
        if env.distributed:
            dist.all_reduce(loss)
            loss /= env.world_size
        losses.append(float(loss))
        times.append(time.perf_counter() - start)
    saved = None
    if run.parallel == "fsdp" and env.distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if env.is_chief and run.output is not None:
            plain = model_class(model.config)
            plain.load_state_dict(state)
            plain.save_pretrained(run.output, format=run.save_format)
            saved = str(run.output)
    elif env.is_chief and run.output is not None:
        model.save_pretrained(run.output, format=run.save_format)
        saved = str(run.output)
    if env.distributed:
        dist.barrier()  # the checkpoint is complete before any process reports
        dist.destroy_process_group()
    return TrainingResult(
        losses=losses, saved=saved, rank=env.rank, world_size=env.world_size, step_seconds=times
    )
