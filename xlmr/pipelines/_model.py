"""Which model, which backend, which tokenizer: resolving ``pipeline(task, model, ...)``'s arguments.

Framework-neutral: a backend package is imported only when a directory is loaded into it, and an
already-built model is recognised by the package its class comes from.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from .. import _hub
from ..config import XLMRobertaConfig
from ..heads import HEADS, Head, head_from_architectures

BACKENDS = ("torch", "tf", "flax")
_PACKAGES = {"torch": "xlmr_torch", "tf": "xlmr_tf", "flax": "xlmr_flax"}
_FRAMEWORKS = {"torch": "torch", "tf": "tensorflow", "flax": "jax"}
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")


def backend_of(model: Any) -> str | None:
    """``"torch"`` / ``"tf"`` / ``"flax"`` for a model of an xlmr backend (by its class's package), else None."""
    for cls in type(model).__mro__:
        package = cls.__module__.split(".", 1)[0]
        for backend, name in _PACKAGES.items():
            if package == name:
                return backend
    return None


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return backend


def import_backend(backend: str):
    """The backend package (``xlmr_torch``...), with a one-line error when its extra is missing."""
    check_backend(backend)
    if backend == "tf":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        importlib.import_module(_FRAMEWORKS[backend])
    except ImportError as err:
        raise ImportError(
            f"the {backend} backend needs `pip install 'xlmr[{backend}]'` "
            f"({_FRAMEWORKS[backend]} cannot be imported: {err})"
        ) from None
    return importlib.import_module(_PACKAGES[backend])


def import_tasks(backend: str):
    """The backend's forward glue, ``xlmr_<backend>.tasks``."""
    import_backend(backend)
    return importlib.import_module(f"{_PACKAGES[backend]}.tasks")


def checkpoint_head(directory: Path) -> Head | None:
    """The head a checkpoint directory was saved from (its config's ``architectures``), if it says."""
    config = XLMRobertaConfig.from_pretrained(directory)
    return head_from_architectures(getattr(config, "architectures", None))


def head_mismatch(task: str, needs: tuple[str, ...], found: Head | None, what: str) -> str | None:
    """The error text when a model of head ``found`` cannot run ``task`` (None when it can)."""
    if not needs or found is None or found.name in needs:
        return None
    wanted = " or ".join(HEADS[n].torch_class for n in needs)
    return (
        f"task {task!r} needs a {wanted} model (head {' or '.join(needs)}), but {what} is a "
        f"{found.torch_class} ({found.name}); load or fine-tune a checkpoint with that head"
    )


def resolve_source(model: str | os.PathLike, backend: str, hub: dict[str, Any], tokenizer: bool) -> Any:
    """A Hub repo id fetched into the Hugging Face cache (config, one weight format -- safetensors, else
    ``backend``'s own --, and the tokenizer files with ``tokenizer``), or None for a local path."""
    if not _hub.is_hub_name(model):
        return None
    return _hub.resolve_model(model, _hub.BACKEND_FORMATS[backend], tokenizer=tokenizer, **hub)


def load_model(
    backend: str, head: Head, directory: str | os.PathLike, *, resolved: Any = None, **kwargs: Any
):
    """``from_pretrained`` of ``head``'s class of ``backend`` on an HF-layout directory.

    With ``resolved`` (a Hub snapshot from :func:`resolve_source`, ``directory`` its folder), the
    weight file fetched is the one loaded and the repo id is recorded as ``name_or_path``."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"model {str(directory)!r}: no such directory (pass a checkpoint directory)")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(directory)!r}: no config.json (is it an HF checkpoint directory?)"
        )
    package = import_backend(backend)
    source = resolved.path if resolved is not None else directory
    model = getattr(package, head.class_name(backend)).from_pretrained(str(source), **kwargs)
    return _hub.record_name(model, resolved.name_or_path) if resolved is not None else model


def load_tokenizer(
    tokenizer: Any, directory: str | os.PathLike | None, *, hub: dict[str, Any] | None = None, name: str = ""
):
    """An xlmr tokenizer: ``tokenizer`` itself, or loaded from it (a directory or a Hub repo id, fetched
    with ``hub``'s arguments) or from the model's directory (``name``: the repo id it was fetched for).

    The fast tokenizer is preferred: token classification and question answering need its offsets.
    """
    if tokenizer is not None and not isinstance(tokenizer, str | os.PathLike):
        return tokenizer
    if tokenizer is not None and _hub.is_hub_name(tokenizer):
        from ..tokenization import XLMRobertaTokenizerFast

        return XLMRobertaTokenizerFast.from_pretrained(tokenizer, **(hub or {}))
    source = tokenizer if tokenizer is not None else directory
    if source is None:
        raise ValueError(
            "a model object needs tokenizer=...: an xlmr tokenizer or the directory it was saved to"
        )
    source = Path(source).expanduser()
    if not any((source / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"tokenizer {str(source)!r}: no {' or '.join(TOKENIZER_FILES)} there")
    from ..tokenization import XLMRobertaTokenizerFast

    loaded = XLMRobertaTokenizerFast.from_pretrained(str(source))
    if name:
        loaded.name_or_path = name
    return loaded
