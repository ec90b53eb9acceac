"""Training across processes: the process environment, the per-rank batch split, and one command.

Framework-neutral (numpy only). Each backend trains on its framework's own engine --
``xlmr_torch.training`` on ``torch.distributed`` (DDP, or FSDP2's ``fully_shard``, over gloo),
``xlmr_tf.training`` on ``tf.distribute.MultiWorkerMirroredStrategy``, ``xlmr_flax.training`` on
``jax.distributed`` with a global ``Mesh`` -- and this module is what they share: the environment
each process reads (checked once, here, with errors that name the variable), which slice of a
global batch each rank gets (the same split in all three), the training data, and the command.

The process environment (:func:`process_env`):

============  ==========================================================================
backend       variables
============  ==========================================================================
torch         ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (``LOCAL_RANK``,
              ``LOCAL_WORLD_SIZE`` optional): what ``torchrun`` sets.
flax          The same variables (one launch style for torch and JAX); ``JAX_COORDINATOR_ADDRESS``
              (``host:port``, JAX's own name) replaces ``MASTER_ADDR:MASTER_PORT`` when set.
tf            ``TF_CONFIG``: ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type":
              "worker", "index": i}}``, optionally with one ``"chief"`` (then rank 0) -- what
              ``MultiWorkerMirroredStrategy`` reads. ``RANK`` / ``WORLD_SIZE``, when also set,
              must agree with it.
============  ==========================================================================

None of them set: one process (rank 0 of 1). Rank 0 (the TF chief) is the one that saves.

The command (``python -m xlmr.distributed --help``), the same on one host or several::

    torchrun --nproc_per_node 2 -m xlmr.distributed --backend torch --model DIR --data train.jsonl \\
        --batch-size 16 --steps 100 --output out/
    python -m xlmr.distributed --nproc-per-node 2 --backend tf ...     # starts 2 local workers
    python -m xlmr.distributed --nproc-per-node 2 --backend flax ...

``--nproc-per-node N`` starts N local processes with the variables above set (loopback addresses,
free ports; ``TF_CONFIG`` for tf); on several hosts, set the variables on each host and run the
command without it (README, "Distributed training").

Example:
    >>> from xlmr.distributed import process_env, local_slice
    >>> env = process_env("torch", {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1",
    ...                             "MASTER_PORT": "29500"})
    >>> env.rank, env.world_size, env.coordinator
    (1, 2, '10.0.0.1:29500')
    >>> local_slice(8, env.rank, env.world_size)
    slice(4, 8, None)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._fileio import atomic_write_json
from .heads import get_head

BACKENDS = ("torch", "tf", "flax")
TORCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
OPTIMIZERS = ("sgd", "adam")
ADAM_EPS = 1e-8  # torch.optim.Adam's default; keras and optax are given the same
_TRAINING_MODULES = {"torch": "xlmr_torch.training", "tf": "xlmr_tf.training", "flax": "xlmr_flax.training"}


class DistributedEnvError(ValueError):
    """A process-environment variable is missing, malformed or inconsistent (the message names it)."""


@dataclass(frozen=True)
class ProcessEnv:
    """Where this process stands in a training job, read from the environment by :func:`process_env`.

    Attributes:
        rank: This process's rank, 0 to ``world_size - 1`` (0 is the chief, which saves).
        world_size: The number of processes.
        local_rank: The rank among the processes of this host.
        coordinator: ``host:port`` of the rendezvous (torch's store, JAX's coordinator, the TF
            chief); None for one process.
        workers: Every task's ``host:port`` in rank order (TF); empty otherwise.
        task_type: The TF task type (``"chief"`` or ``"worker"``); None otherwise.
        source: The variable the world size came from (``"WORLD_SIZE"``, ``"TF_CONFIG"``), or
            ``"default"`` when none was set.
        tf_chief: Whether the TF cluster has a ``"chief"`` task (rank 0) besides its workers.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    coordinator: str | None = None
    workers: tuple[str, ...] = ()
    task_type: str | None = None
    source: str = "default"
    tf_chief: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside [0, world_size={self.world_size})")

    @property
    def is_chief(self) -> bool:
        """Whether this process saves checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    def tf_cluster(self) -> dict[str, list[str]]:
        """The TF cluster spec (``{"chief": [...], "worker": [...]}``) of this environment."""
        if self.task_type is None:
            raise DistributedEnvError("no TF_CONFIG was read: this environment has no TF cluster")
        if self.tf_chief:
            return {"chief": [self.workers[0]], "worker": list(self.workers[1:])}
        return {"worker": list(self.workers)}

    def task_index(self) -> int:
        """This process's index within its TF task type."""
        return self.rank - 1 if self.task_type == "worker" and self.tf_chief else self.rank


# -- reading the environment ---------------------------------------------------------------------
def _int_var(environ: Mapping[str, str], name: str, low: int = 0) -> int:
    raw = environ[name]
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise DistributedEnvError(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise DistributedEnvError(f"{name}={value} must be at least {low}")
    return value


def _address(text: str, what: str) -> str:
    """Check ``host:port``; returns it stripped."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise DistributedEnvError(f"{what}={text!r} is not a host:port address")
    try:
        number = int(port)
    except ValueError:
        raise DistributedEnvError(f"{what}={text!r}: the port {port!r} is not an integer") from None
    if not 0 < number < 65536:
        raise DistributedEnvError(f"{what}={text!r}: the port {number} is outside 1..65535")
    return text


def _rank_vars(environ: Mapping[str, str], coordinator_var: str | None = None) -> ProcessEnv | None:
    """RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; None when none of them is set."""
    names = tuple(n for n in (*TORCH_VARS, "LOCAL_RANK", "LOCAL_WORLD_SIZE", coordinator_var) if n)
    environ = {n: str(environ[n]).strip() for n in names if str(environ.get(n, "")).strip()}  # "": unset
    if not environ:
        return None
    needed = ["RANK", "WORLD_SIZE"]
    if not (coordinator_var and coordinator_var in environ):
        needed += ["MASTER_ADDR", "MASTER_PORT"]
    missing = [n for n in needed if n not in environ]
    if missing:
        have = [n for n in names if n in environ]
        raise DistributedEnvError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set, but {', '.join(have)} "
            f"{'is' if len(have) == 1 else 'are'}: a process of a distributed job needs "
            f"{', '.join(needed)} (torchrun and `python -m xlmr.distributed --nproc-per-node N` set them)"
        )
    world = _int_var(environ, "WORLD_SIZE", low=1)
    rank = _int_var(environ, "RANK")
    if rank >= world:
        raise DistributedEnvError(f"RANK={rank} is not below WORLD_SIZE={world}")
    local_rank = _int_var(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0
    if "LOCAL_WORLD_SIZE" in environ:
        local_world = _int_var(environ, "LOCAL_WORLD_SIZE", low=1)
        if local_rank >= local_world:
            raise DistributedEnvError(f"LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world}")
        if local_world > world:
            raise DistributedEnvError(f"LOCAL_WORLD_SIZE={local_world} is larger than WORLD_SIZE={world}")
    if local_rank > rank:
        raise DistributedEnvError(f"LOCAL_RANK={local_rank} is larger than RANK={rank}")
    if coordinator_var and coordinator_var in environ:
        coordinator = _address(environ[coordinator_var], coordinator_var)
    else:
        port = _int_var(environ, "MASTER_PORT", low=1)
        if port > 65535:
            raise DistributedEnvError(f"MASTER_PORT={port} is outside 1..65535")
        coordinator = f"{environ['MASTER_ADDR']}:{port}"
    return ProcessEnv(
        rank=rank, world_size=world, local_rank=local_rank, coordinator=coordinator, source="WORLD_SIZE"
    )


def _tf_config(environ: Mapping[str, str]) -> ProcessEnv | None:
    raw = environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        rank_env = _rank_vars(environ)
        if rank_env is not None and rank_env.distributed:
            raise DistributedEnvError(
                f"TF_CONFIG is not set, but WORLD_SIZE={rank_env.world_size}: MultiWorkerMirroredStrategy "
                "reads every worker's address from TF_CONFIG (`python -m xlmr.distributed --nproc-per-node N "
                "--backend tf` sets it on one host)"
            )
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DistributedEnvError(f"TF_CONFIG is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(config, dict):
        raise DistributedEnvError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise DistributedEnvError('TF_CONFIG has no "cluster" object ({"worker": ["host:port", ...]})')
    if not isinstance(task, dict):
        raise DistributedEnvError('TF_CONFIG has no "task" object ({"type": "worker", "index": i})')
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise DistributedEnvError(
            f"TF_CONFIG cluster has task types {other}: MultiWorkerMirroredStrategy runs "
            '"chief" and "worker" tasks only'
        )
    lists = {}
    for kind in ("chief", "worker"):
        if kind not in cluster:
            continue
        addresses = cluster[kind]
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise DistributedEnvError(f'TF_CONFIG cluster["{kind}"] must be a list of "host:port" strings')
        lists[kind] = [_address(a, f'TF_CONFIG cluster["{kind}"][{i}]') for i, a in enumerate(addresses)]
    if len(lists.get("chief", [])) > 1:
        raise DistributedEnvError(
            f'TF_CONFIG cluster["chief"] lists {len(lists["chief"])} tasks; at most one'
        )
    if not lists.get("worker") and not lists.get("chief"):
        raise DistributedEnvError('TF_CONFIG cluster["worker"] is empty')
    workers = (*lists.get("chief", []), *lists.get("worker", []))
    duplicated = sorted({a for a in workers if workers.count(a) > 1})
    if duplicated:
        raise DistributedEnvError(f"TF_CONFIG cluster lists {duplicated} more than once")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in lists:
        raise DistributedEnvError(
            f"TF_CONFIG task type {kind!r} is not one of the cluster's task types {sorted(lists)}"
        )
    if isinstance(index, bool) or not isinstance(index, int):
        raise DistributedEnvError(f"TF_CONFIG task index {index!r} is not an integer")
    if not 0 <= index < len(lists[kind]):
        raise DistributedEnvError(
            f'TF_CONFIG task index {index} is out of range: cluster["{kind}"] lists {len(lists[kind])} '
            f"task{'s' if len(lists[kind]) != 1 else ''}"
        )
    chief = "chief" in lists
    rank = index + (1 if kind == "worker" and chief else 0)
    env = ProcessEnv(
        rank=rank,
        world_size=len(workers),
        local_rank=0,
        coordinator=workers[0],
        workers=workers,
        task_type=kind,
        source="TF_CONFIG",
        tf_chief=chief,
    )
    for name, value in (("RANK", env.rank), ("WORLD_SIZE", env.world_size)):
        if environ.get(name, "").strip() and environ[name].strip() != str(value):
            raise DistributedEnvError(
                f"{name}={environ[name].strip()} disagrees with TF_CONFIG, which makes this process "
                f"{name.lower().replace('_', ' ')} {value}"
            )
    if environ.get("LOCAL_RANK", "").strip():
        object.__setattr__(env, "local_rank", _int_var(environ, "LOCAL_RANK"))
    return env


def process_env(backend: str, environ: Mapping[str, str] | None = None) -> ProcessEnv:
    """Read and check this process's place in a training job (see the module docstring for the variables).

    Args:
        backend: ``"torch"``, ``"tf"`` or ``"flax"``: which variables are read.
        environ: The environment (default ``os.environ``).

    Raises:
        DistributedEnvError: naming the variable that is missing, malformed or inconsistent.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    environ = os.environ if environ is None else environ
    if backend == "tf":
        env = _tf_config(environ)
    else:
        env = _rank_vars(environ, "JAX_COORDINATOR_ADDRESS" if backend == "flax" else None)
    return ProcessEnv() if env is None else env


def tf_config(workers: Sequence[str], index: int) -> str:
    """The ``TF_CONFIG`` JSON of worker ``index`` in a cluster of ``workers`` (``host:port`` each).

    Args:
        workers: Every worker's address, in rank order (worker 0 is the chief).
        index: This worker's index.
    """
    workers = [_address(w, f"workers[{i}]") for i, w in enumerate(workers)]
    if not 0 <= index < len(workers):
        raise ValueError(f"index {index} is out of range for {len(workers)} workers")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


# -- splitting a global batch ---------------------------------------------------------------------
def check_batch_size(batch_size: int, env: ProcessEnv | int) -> int:
    """The per-process batch size of a global ``batch_size``; raises if the world size does not divide it.

    Args:
        batch_size: The global batch size (every process's rows together).
        env: The process environment, or the world size.

    Raises:
        ValueError: naming the batch size, the world size and the variable it came from.
    """
    world = env if isinstance(env, int) else env.world_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"the global batch size must be a positive integer, got {batch_size!r}")
    if batch_size % world:
        source = "world size" if isinstance(env, int) else env.source
        where = {"WORLD_SIZE": f"WORLD_SIZE={world}", "TF_CONFIG": f"the {world} tasks of TF_CONFIG"}.get(
            source, f"world size {world}"
        )
        raise ValueError(
            f"the global batch size {batch_size} does not split evenly over {where} "
            f"({batch_size} % {world} = {batch_size % world}): choose a batch size divisible by {world}"
        )
    return int(batch_size) // world


def local_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch of ``batch_size`` that process ``rank`` of ``world_size`` takes.

    Contiguous blocks in rank order -- the layout ``jax.make_array_from_process_local_data``
    expects, and the split every backend uses, so a run on N processes sees the same global batch.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    per = check_batch_size(batch_size, world_size)
    return slice(rank * per, (rank + 1) * per)


def local_batch(batch: Mapping[str, Any], env: ProcessEnv) -> dict[str, np.ndarray]:
    """This process's rows of a global ``batch`` (every array split along its first axis).

    Raises:
        ValueError: naming an array whose first axis differs from the others', or a batch size the
            world size does not divide.
    """
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in batch.items() if v is not None}
    if not sizes:
        raise ValueError("the batch holds no arrays")
    first = next(iter(sizes))
    for key, size in sizes.items():
        if size is None or size != sizes[first]:
            raise ValueError(f"batch[{key!r}] has {size} rows, batch[{first!r}] has {sizes[first]}")
    check_batch_size(sizes[first], env)
    rows = local_slice(sizes[first], env.rank, env.world_size)
    return {k: np.asarray(v)[rows] for k, v in batch.items() if v is not None}


# -- training data ----------------------------------------------------------------------------------
def read_examples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Sequence-classification examples from a JSONL file: ``{"input_ids": [int, ...], "label": int}`` a line.

    Raises:
        ValueError: naming the file, the line and the field.
    """
    path = Path(path)
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: a line must be a JSON object")
            ids, label = row.get("input_ids"), row.get("label")
            if (
                not isinstance(ids, list)
                or not ids
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise ValueError(f'{where}: "input_ids" must be a non-empty list of integers')
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f'{where}: "label" must be an integer, got {label!r}')
            examples.append({"input_ids": ids, "label": label})
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def global_batches(
    examples: Sequence[Mapping[str, Any]],
    batch_size: int,
    steps: int,
    pad_token_id: int = 1,
    max_length: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """``steps`` global batches, in order, cycling through ``examples`` (the same on every process).

    Rows are padded with ``pad_token_id`` to one length (the longest example), so every step has
    the same shapes. Arrays: ``input_ids``, ``attention_mask`` (int32, (batch, seq)), ``labels``
    (int32, (batch,)).

    Raises:
        ValueError: naming an example longer than ``max_length``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    check_batch_size(batch_size, 1)
    length = max(len(e["input_ids"]) for e in examples)
    if max_length is not None and length > max_length:
        i = next(i for i, e in enumerate(examples) if len(e["input_ids"]) > max_length)
        raise ValueError(
            f"example {i} has {len(examples[i]['input_ids'])} tokens, more than max_length={max_length}"
        )
    ids = np.full((len(examples), length), pad_token_id, np.int32)
    mask = np.zeros((len(examples), length), np.int32)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = e["input_ids"]
        mask[i, : len(e["input_ids"])] = 1
    labels = np.array([e["label"] for e in examples], np.int32)
    order = np.arange(steps * batch_size) % len(examples)
    return [
        {"input_ids": ids[rows], "attention_mask": mask[rows], "labels": labels[rows]}
        for rows in order.reshape(steps, batch_size)
    ]


# -- one training run ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingRun:
    """What every process of a job trains: the same on each (each takes its rows of every batch).

    Attributes:
        model: A checkpoint directory (``config.json`` + weights); a sequence classifier is trained.
        batches: The global batches, in step order (:func:`global_batches`).
        optimizer: ``"sgd"`` or ``"adam"`` (eps 1e-8 in every backend).
        learning_rate: The learning rate.
        seed: Seeds the framework's generator before the model is built (new head weights, dropout).
        output: Where rank 0 saves the trained model (``save_pretrained``); None: not saved.
        save_format: The weight format (``safetensors``, ``pytorch``, ``tf``, ``flax``).
        num_labels: Override the checkpoint's ``num_labels``.
        parallel: torch only: ``"ddp"`` (DistributedDataParallel) or ``"fsdp"`` (FSDP2 ``fully_shard``).
    """

    model: str
    batches: Sequence[Mapping[str, np.ndarray]]
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    seed: int = 0
    output: str | None = None
    save_format: str = "safetensors"
    num_labels: int | None = None
    parallel: str = "ddp"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if not self.batches:
            raise ValueError("a training run needs at least one batch")

    def config_overrides(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained``."""
        return {} if self.num_labels is None else {"num_labels": self.num_labels}


@dataclass
class TrainingResult:
    """What one process reports: the loss of every step (over the global batch), where it saved, and
    the wall time of every step (the first includes compilation)."""

    losses: list[float] = field(default_factory=list)
    saved: str | None = None
    rank: int = 0
    world_size: int = 1
    step_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0


def training_module(backend: str) -> Any:
    """The backend's ``training`` module (imported here, on demand: ``xlmr`` imports no framework)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return importlib.import_module(_TRAINING_MODULES[backend])


def model_class(backend: str, head: str = "sequence_classification") -> type:
    """``backend``'s model class for ``head`` (imported here, on demand)."""
    package = importlib.import_module(_TRAINING_MODULES[backend].split(".")[0])
    return getattr(package, get_head(head).class_name(backend))


def train(backend: str, run: TrainingRun, env: ProcessEnv | None = None) -> TrainingResult:
    """Run ``run`` in this process on ``backend``'s engine (``env`` default: :func:`process_env`).

    The sequence classifier of ``backend`` is trained by its ``training.train_distributed``; every
    process of the job calls this with the same ``run``.
    """
    env = process_env(backend) if env is None else env
    for batch in run.batches:
        check_batch_size(len(batch["labels"]), env)
    module = training_module(backend)
    return module.train_distributed(model_class(backend), run, env)


# -- the command ------------------------------------------------------------------------------
def _free_ports(count: int, host: str) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGKILL when the launcher dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn_env(
    backend: str, nproc: int, addr: str = "127.0.0.1", port: int | None = None
) -> list[dict[str, str]]:
    """The variables of ``nproc`` local processes of one job (free loopback ports unless ``port``).

    Args:
        backend: ``tf`` adds ``TF_CONFIG`` (one port per worker) to the torchrun-style variables.
        nproc: The number of processes.
        addr: The address of this host.
        port: The rendezvous port (``MASTER_PORT``); a free one by default.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    ports = _free_ports(1 + (nproc if backend == "tf" else 0), addr)
    master = port or ports[0]
    workers = [f"{addr}:{p}" for p in ports[1:]]
    out = []
    for rank in range(nproc):
        env = {
            "RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": addr,
            "MASTER_PORT": str(master),
        }
        if backend == "tf":
            env["TF_CONFIG"] = tf_config(workers, rank)
        out.append(env)
    return out


def launch(
    command: Sequence[str],
    backend: str,
    nproc: int,
    *,
    addr: str = "127.0.0.1",
    port: int | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``command`` as ``nproc`` local processes of one job (:func:`spawn_env`); returns the exit status.

    When one process fails the others are stopped (they would wait for it), and the first
    failure's status is returned; SIGTERM, Ctrl-C and ``timeout`` (exit status 124) stop them all,
    and on Linux the processes die with the launcher even when it is killed.

    Args:
        command: The program and its arguments (e.g. ``[sys.executable, "-m", "xlmr.distributed", ...]``).
        backend: ``tf`` adds ``TF_CONFIG`` to each process's variables.
        nproc: The number of processes.
        addr: This host's address.
        port: The rendezvous port (a free one by default).
        timeout: Stop every process after this many seconds.
    """
    environs = spawn_env(backend, nproc, addr, port)
    procs: list[subprocess.Popen] = []

    def stop(signum: int | None = None, frame: Any = None) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if signum is not None:
            raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    try:
        for extra in environs:
            procs.append(
                subprocess.Popen(
                    list(command),
                    env={**os.environ, **extra},
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            )
        start = time.monotonic()
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                stop()
                return 128 - failed[0] if failed[0] < 0 else failed[0]  # killed by signal N: 128 + N
            if all(c == 0 for c in codes):
                return 0
            if timeout is not None and time.monotonic() - start > timeout:
                stop()
                print(f"xlmr.distributed: stopped after the {timeout} s timeout", file=sys.stderr)
                return 124
            time.sleep(0.1)
    finally:
        stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xlmr.distributed",
        description="Train a sequence classifier on one process or many, on each framework's own "
        "distributed engine. Rank and addresses come from the environment (torchrun's variables, "
        "or TF_CONFIG for tf); --nproc-per-node N starts N local processes with them set.",
    )
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--model", required=True, help="checkpoint directory (config.json + weights)")
    parser.add_argument("--data", required=True, help='JSONL: {"input_ids": [...], "label": k} per line')
    parser.add_argument("--batch-size", type=int, required=True, help="global batch size (all processes)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--num-labels", type=int, default=None)
    parser.add_argument("--output", default=None, help="rank 0 saves the trained model here")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the weights in a non-empty --output directory"
    )
    parser.add_argument("--format", default="safetensors", help="weight format of the saved model")
    parser.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp", help="torch: DDP or FSDP2")
    parser.add_argument(
        "--report-dir", default=None, help="each rank writes rank<N>.json (losses, saved) here"
    )
    parser.add_argument(
        "--nproc-per-node", type=int, default=None, help="start this many local processes of one job"
    )
    parser.add_argument(
        "--master-addr", default="127.0.0.1", help="with --nproc-per-node: this host's address"
    )
    parser.add_argument(
        "--master-port", type=int, default=None, help="with --nproc-per-node: rendezvous port"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="with --nproc-per-node: stop after this many s"
    )
    return parser


def _without_launch_options(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    launch_opts = ("--nproc-per-node", "--master-addr", "--master-port", "--timeout")
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in launch_opts:
            skip = True
            continue
        if arg.split("=", 1)[0] in launch_opts:
            continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit status (0, 1 on a bad environment or input, 2 on bad arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.nproc_per_node is not None:
        if any(os.environ.get(n) for n in ("RANK", "WORLD_SIZE", "TF_CONFIG")):
            print(
                "error: --nproc-per-node starts the processes of a job itself; RANK / WORLD_SIZE / TF_CONFIG "
                "are already set (unset them, or run without --nproc-per-node)",
                file=sys.stderr,
            )
            return 1
        return launch(
            [sys.executable, "-m", "xlmr.distributed", *_without_launch_options(argv)],
            args.backend,
            args.nproc_per_node,
            addr=args.master_addr,
            port=args.master_port,
            timeout=args.timeout,
        )
    try:
        env = process_env(args.backend)
        check_batch_size(args.batch_size, env)
        examples = read_examples(args.data)
        config = json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8"))
        output = Path(args.output) if args.output else None
        if env.is_chief and output is not None and output.exists() and not args.overwrite:
            if not output.is_dir() or any(output.iterdir()):
                raise ValueError(
                    f"--output {output} exists and is not empty (pass --overwrite to replace it)"
                )
        batches = global_batches(
            examples, args.batch_size, args.steps, int(config.get("pad_token_id", 1)), args.max_length
        )
        run = TrainingRun(
            model=args.model,
            batches=batches,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            seed=args.seed,
            output=args.output,
            save_format=args.format,
            num_labels=args.num_labels,
            parallel=args.parallel,
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    result = train(args.backend, run, env)
    result.seconds = time.perf_counter() - start
    if args.report_dir:
        Path(args.report_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.report_dir) / f"rank{env.rank}.json", result.__dict__)
    if env.is_chief:
        timed = result.step_seconds[1:] or result.step_seconds  # the first step compiles
        summary = {
            "backend": args.backend,
            "world_size": env.world_size,
            "steps": len(run.batches),
            "loss": result.losses[-1],
            "samples_per_s": args.batch_size * len(timed) / sum(timed),
            "seconds": result.seconds,
            "saved": result.saved,
        }
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    from xlmr.distributed import main as _main  # the imported module, not this __main__ copy

    raise SystemExit(_main())
