"""PEFT adapter directories in and out: ``adapter_config.json`` + ``adapter_model.safetensors`` (or
``adapter_model.bin``), as PEFT's ``save_pretrained`` writes them.

The key names and what they mean are in :mod:`xlmr.adapters`. Adapter files are untrusted like
checkpoints: the config is type-checked field by field, file names must resolve inside the
directory, safetensors headers are validated before any tensor is read and ``.bin`` files are
read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlmr import adapters as A
from xlmr._fileio import StagedDirectory, contained_path

from . import safetensors_io, torch_io
from .common import CheckpointError

ADAPTER_FORMATS = {"safetensors": A.WEIGHTS_NAME, "pytorch": A.WEIGHTS_NAME_BIN}


def find_adapter_weights(directory: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Path:
    """``adapter_model.safetensors`` (preferred) or ``adapter_model.bin`` of an adapter directory."""
    directory = Path(directory)
    for name in ADAPTER_FORMATS.values():
        if (directory / name).is_file():
            return contained_path(directory, name, what="adapter weight file", root=root)
    raise FileNotFoundError(
        f"{directory} holds no adapter weights (looked for {', '.join(ADAPTER_FORMATS.values())})"
    )


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding an ``adapter_config.json``."""
    return (Path(path) / A.CONFIG_NAME).is_file()


def read_adapter_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of an adapter weight file, under their stored (PEFT) names."""
    path = Path(path)
    if path.name.endswith(".safetensors"):
        return safetensors_io.read(path)
    if path.name.endswith(".bin"):
        return torch_io.read(path)
    raise CheckpointError(f"{path}: not an adapter weight file (.safetensors or .bin)")


def load_adapter(
    directory: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> tuple[A.LoraConfig, dict[str, np.ndarray]]:
    """``(config, {PEFT key: array})`` of an adapter directory; the config is checked first."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such adapter directory: {directory}")
    config_path = contained_path(directory, A.CONFIG_NAME, what="adapter config", root=root)
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} is not a PEFT adapter directory: no {A.CONFIG_NAME}")
    config = A.LoraConfig.from_pretrained(config_path)
    return config, read_adapter_weights(find_adapter_weights(directory, root=root))


def save_adapter(
    directory: str | os.PathLike,
    config: A.LoraConfig,
    state_dict: Mapping[str, np.ndarray],
    fmt: str = "safetensors",
) -> Path:
    """Write an adapter directory as PEFT does: ``adapter_config.json`` and the weights under PEFT's keys.

    ``state_dict`` holds canonical adapter keys (:func:`xlmr.adapters.add_prefix` is applied), written
    as float32.
    The directory is replaced as a whole (:class:`xlmr._fileio.StagedDirectory`); other files in it
    are kept except adapter weight files of the other format, which PEFT could load instead.
    Returns the path of the weight file.

    Args:
        directory: Destination.
        config: The adapter config (``adapter_config.json``).
        state_dict: ``{canonical adapter key: array}``.
        fmt: ``"safetensors"`` (``adapter_model.safetensors``) or ``"pytorch"`` (``adapter_model.bin``,
            needs torch).
    """
    if fmt not in ADAPTER_FORMATS:
        raise ValueError(
            f"an adapter is saved in PEFT's format, safetensors or pytorch, not {fmt!r}; "
            "merge it into the model first (merge_adapter()) to save a full checkpoint in any format"
        )
    name = ADAPTER_FORMATS[fmt]
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in A.add_prefix(state_dict).items()}
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory, {directory} is a file")
    with StagedDirectory(directory) as stage:
        target = stage.path / name
        if fmt == "safetensors":
            from safetensors.numpy import save_file

            save_file(tensors, str(target), metadata={"format": "pt"})
        else:
            torch = torch_io._torch(target)
            torch.save({k: torch_io._from_numpy(v) for k, v in tensors.items()}, str(target))
        (stage.path / A.CONFIG_NAME).write_text(
            json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        # Check what was written before it replaces anything.
        back = read_adapter_weights(target)
        if set(back) != set(tensors) or any(not np.array_equal(back[k], tensors[k]) for k in tensors):
            raise CheckpointError(f"{directory / name}: the written adapter does not read back as written")
        A.LoraConfig.from_pretrained(stage.path / A.CONFIG_NAME)
        stage.commit(carry_over=lambda n: n not in ADAPTER_FORMATS.values())
    return directory / name


def read_source(
    peft_model_id: str | os.PathLike | None = None,
    peft_config: A.LoraConfig | Mapping | None = None,
    adapter_state_dict: Mapping[str, object] | None = None,
) -> tuple[A.LoraConfig, dict[str, np.ndarray], str]:
    """The arguments of HF's ``load_adapter``, read: ``(config, {key: array}, source name)``.

    Either an adapter directory (``peft_model_id``), or ``adapter_state_dict`` with
    ``peft_config`` (a :class:`xlmr.adapters.LoraConfig`, an ``adapter_config.json`` dict or a
    ``peft.LoraConfig``); a ``peft_config`` given with a directory replaces its config.
    """
    if peft_model_id is None and (adapter_state_dict is None or peft_config is None):
        raise ValueError(
            "load_adapter needs an adapter directory (peft_model_id), or peft_config and adapter_state_dict"
        )
    if peft_model_id is not None:
        directory = Path(peft_model_id)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"no such adapter directory: {directory} (a local PEFT adapter directory with {A.CONFIG_NAME})"
            )
        source = str(directory)
        if peft_config is None:
            config, weights = load_adapter(directory)
        else:
            config = A.LoraConfig.coerce(peft_config, source="peft_config")
            weights = read_adapter_weights(find_adapter_weights(directory))
        if adapter_state_dict is not None:
            weights = dict(adapter_state_dict)
        return config, {k: _as_numpy(v, k) for k, v in weights.items()}, source
    config = A.LoraConfig.coerce(peft_config, source="peft_config")
    return config, {k: _as_numpy(v, k) for k, v in adapter_state_dict.items()}, "adapter_state_dict"


def _as_numpy(value: object, key: str) -> np.ndarray:
    """A tensor of any framework (torch, tf, jax) or array-like as numpy."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as err:  # noqa: BLE001 -- any framework's conversion error
        raise ValueError(f"adapter_state_dict[{key!r}] is not an array: {type(value).__name__}") from err


def merge_into_checkpoint(
    checkpoint: str | os.PathLike,
    adapter: str | os.PathLike,
    destination: str | os.PathLike,
    fmt: str = "safetensors",
    *,
    head: str | None = None,
    **config_overrides: object,
) -> Path:
    """Write ``checkpoint`` with a LoRA ``adapter`` merged into it, as a full checkpoint in ``fmt``
    (PEFT's ``merge_and_unload`` + ``save_pretrained``, with numpy alone: no framework needed).

    Each targeted weight becomes ``W + scale * B @ A`` and the ``modules_to_save`` weights are the
    adapter's, so a classifier the base checkpoint lacks (an adapter trained on a masked-LM
    checkpoint) comes from the adapter.

    Args:
        checkpoint: The base model's directory (config.json + any weight file).
        adapter: A PEFT LoRA adapter directory.
        destination: Output directory (replaced as a whole, see :func:`conversion.save_pretrained`).
        fmt: ``safetensors``, ``pytorch``, ``tf`` or ``flax`` (aliases accepted).
        head: The model head; default: the adapter's ``task_type``, else the checkpoint's architecture.
        **config_overrides: Config fields to override (``num_labels=3``...).
    """
    from xlmr.config import XLMRobertaConfig
    from xlmr.heads import get_head

    from .io import head_of, load_pretrained, resolve_format, save_pretrained

    config, weights = load_adapter(adapter)
    if head is None:
        task_head = A.head_for_task(config.task_type)
        head = task_head.name if task_head else head_of(XLMRobertaConfig.from_pretrained(checkpoint)).name
    head = get_head(head)
    model_config, report = load_pretrained(checkpoint, head, **config_overrides)
    plan = A.plan_adapter(config, model_config, head)
    checked = A.check_state_dict(plan, weights, str(adapter))
    missing = [k for k in report.newly_initialized if k not in plan.saved]
    if missing:
        raise A.AdapterError(
            f"{checkpoint} lacks {', '.join(missing[:5])} and the adapter does not save them (modules_to_save)"
        )
    base = dict(report.state_dict)
    base.update({k: checked[k] for k in plan.saved if k not in base})
    return save_pretrained(A.merge(plan, base, checked), model_config, head, destination, resolve_format(fmt))
