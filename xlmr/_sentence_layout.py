"""The sentence-transformers directory layout: reading, resolving on the Hub, writing.

Part of :mod:`xlmr._sentence` (the encoder); the layout itself is described there.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _hub
from ._fileio import atomic_write_bytes, atomic_write_json, contained_path
from ._sentence_modules import Dense, Normalize, Pooling, UnsupportedModuleError, similarity_fn_name_of

logger = logging.getLogger("xlmr.sentence")

SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# The names written to modules.json: sentence-transformers 2.x to 5.x all load these.
_MODULE_TYPES = {name: f"sentence_transformers.models.{name}" for name in SUPPORTED_MODULES}
_SBERT_CONFIG_NAMES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlnet_config.json",
)
_DEFAULT_PROMPTS = {"query": "", "document": ""}  # sentence-transformers' SentenceTransformer defaults


# -- the directory layout --------------------------------------------------------------------------
@dataclass
class Layout:
    """What a sentence-transformers (or plain HF) directory says, read by :func:`read_layout`.

    Attributes:
        transformer_dir: The Transformer module's directory (config.json, weights, tokenizer).
        modules: The modules after the Transformer, in order (:class:`Pooling`, :class:`Dense`,
            :class:`Normalize`).
        max_seq_length: Longest tokenized input (truncated beyond), None for the tokenizer's.
        do_lower_case: Lower-case texts before tokenizing.
        prompts: Prompt name -> text prepended to every input.
        default_prompt_name: Prompt used when ``encode`` gets neither ``prompt`` nor ``prompt_name``.
        similarity_fn_name: ``cosine`` (default), ``dot``, ``euclidean`` or ``manhattan``.
        truncate_dim: Keep the first ``truncate_dim`` dimensions of each embedding.
    """

    transformer_dir: Path
    modules: list = field(default_factory=list)
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    truncate_dim: int | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def _module_dir(root: Path, name: Any, what: str) -> Path:
    if name in ("", ".", None):
        return root
    return contained_path(root, name, what=what)


def _module_kind(type_name: Any, entry: dict, where: Path) -> str:
    short = type_name.rsplit(".", 1)[-1] if isinstance(type_name, str) else None
    if not (isinstance(type_name, str) and type_name.startswith("sentence_transformers.")) or (
        short not in SUPPORTED_MODULES
    ):
        raise UnsupportedModuleError(
            f"{where}: module {type_name!r} (idx {entry.get('idx')}, path {entry.get('path')!r}) is not "
            f"supported; xlmr supports the sentence-transformers modules {', '.join(SUPPORTED_MODULES)}"
        )
    return short


def _read_dense(directory: Path, tree: Path | None = None) -> Dense:
    config = _read_json(directory / "config.json")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in ("sentence_embedding", None):
            raise UnsupportedModuleError(
                f"{directory}: Dense on {key}={config[key]!r} is not supported (only on sentence_embedding)"
            )
    weights = None
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = contained_path(directory, name, what="Dense weights", root=tree)
        if path.is_file():
            from conversion import safetensors_io, torch_io

            weights = (safetensors_io if name.endswith(".safetensors") else torch_io).read(path)
            break
    if weights is None:
        raise FileNotFoundError(f"{directory}: Dense module has no model.safetensors or pytorch_model.bin")
    if "linear.weight" not in weights:
        raise ValueError(f"{directory}: Dense weights lack 'linear.weight' (found {sorted(weights)})")
    weight = np.asarray(weights["linear.weight"], np.float32)
    bias = weights.get("linear.bias")
    expected = (config.get("out_features", weight.shape[0]), config.get("in_features", weight.shape[1]))
    if tuple(weight.shape) != tuple(expected):
        raise ValueError(f"{directory}: linear.weight has shape {weight.shape}, config says {expected}")
    if config.get("bias", True) and bias is None:
        raise ValueError(f"{directory}: config says bias=true but there is no 'linear.bias'")
    # sentence-transformers: no key is its default (Tanh), null is Identity.
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    return Dense(
        weight,
        None if bias is None else np.asarray(bias, np.float32),
        activation or "torch.nn.modules.linear.Identity",
    )


def _read_transformer_config(directory: Path, layout: Layout) -> bool:
    """Read ``sentence_bert_config.json`` (or a legacy name) of the Transformer; False if none."""
    for name in _SBERT_CONFIG_NAMES:
        path = directory / name
        if path.is_file():
            config = _read_json(path)
            if config.get("max_seq_length") is not None:
                layout.max_seq_length = int(config["max_seq_length"])
            layout.do_lower_case = bool(config.get("do_lower_case", False))
            task = config.get("transformer_task", "feature-extraction")
            if task != "feature-extraction":
                raise UnsupportedModuleError(f"{path}: transformer_task {task!r} is not supported")
            text = (config.get("modality_config") or {}).get("text", {})
            output = text.get("method_output_name", "last_hidden_state")
            if output != "last_hidden_state" or text.get("method", "forward") != "forward":
                raise UnsupportedModuleError(
                    f"{path}: a Transformer module reading {output!r} is not supported (only last_hidden_state)"
                )
            text_kwargs = (config.get("processing_kwargs") or {}).get("text") or {}
            if text_kwargs.get("max_length") is not None:
                layout.max_seq_length = int(text_kwargs["max_length"])
            return True
    return False


def read_modules(modules_json: Path) -> list[tuple[str, dict]]:
    """``modules.json`` as ``(kind, entry)`` pairs in ``idx`` order, kinds among :data:`SUPPORTED_MODULES`:
    one Transformer first, one Pooling right after it. Raises :class:`UnsupportedModuleError` naming a
    module xlmr does not implement (before any weight is read or fetched)."""
    entries = _read_json(modules_json)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{modules_json}: expected a list of module objects")
    entries = sorted(entries, key=lambda e: e.get("idx", 0))
    kinds = [_module_kind(e.get("type"), e, modules_json) for e in entries]
    if not kinds or kinds[0] != "Transformer" or "Transformer" in kinds[1:]:
        raise UnsupportedModuleError(
            f"{modules_json}: the first module (and only that one) must be a Transformer, got {kinds}"
        )
    if "Pooling" not in kinds or kinds.index("Pooling") != 1 or kinds.count("Pooling") > 1:
        raise UnsupportedModuleError(
            f"{modules_json}: xlmr needs one Pooling module right after the Transformer, got {kinds}"
        )
    return list(zip(kinds, entries))


def plain_layout(hidden_size: int, transformer_dir: str | os.PathLike = "") -> Layout:
    """What sentence-transformers makes of a plain XLM-R model: the Transformer, then mean pooling."""
    return Layout(
        transformer_dir=Path(transformer_dir),
        modules=[Pooling(int(hidden_size), ("mean",))],
        prompts=dict(_DEFAULT_PROMPTS),
    )


def read_layout(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Layout:
    """Parse a sentence-transformers directory (or a plain HF one: mean pooling) into a :class:`Layout`.

    Module paths in ``modules.json`` are names from an untrusted checkpoint: each resolves through
    :func:`xlmr._fileio.contained_path`. Raises :class:`UnsupportedModuleError` naming a module
    xlmr does not implement, ``ValueError`` naming an unknown pooling mode.

    ``root`` widens the tree the module files may resolve into (a Hugging Face cache snapshot's
    files link into the repo's ``blobs/``); by default the repo folder when ``path`` lies in an HF
    cache snapshot, else ``path`` itself.
    """
    root_dir = Path(path)
    if not root_dir.is_dir():
        raise FileNotFoundError(f"no such model directory: {root_dir}")
    tree = Path(root) if root is not None else _hub.cache_root(root_dir)
    root = root_dir
    modules_json = root / "modules.json"
    if not modules_json.is_file():
        hidden = (
            _read_json(root / "config.json").get("hidden_size") if (root / "config.json").is_file() else None
        )
        if not isinstance(hidden, int):
            raise FileNotFoundError(f"{root} has neither modules.json nor an XLM-R config.json")
        layout = plain_layout(hidden, root)
        _read_transformer_config(root, layout)
    else:
        modules = read_modules(modules_json)
        layout = Layout(transformer_dir=_module_dir(root, modules[0][1].get("path"), "module path"))
        if not _read_transformer_config(layout.transformer_dir, layout):
            _read_transformer_config(root, layout)
        for kind, entry in modules[1:]:
            directory = _module_dir(root, entry.get("path"), "module path")
            if kind == "Pooling":
                where = directory / "config.json"
                layout.modules.append(Pooling.from_config(_read_json(where), str(where)))
            elif kind == "Dense":
                layout.modules.append(_read_dense(directory, tree))
            else:
                layout.modules.append(Normalize())
    st_config = root / "config_sentence_transformers.json"
    prompts: dict[str, str] = dict(_DEFAULT_PROMPTS)
    if st_config.is_file():
        config = _read_json(st_config)
        model_type = config.get("model_type", "SentenceTransformer")
        if model_type != "SentenceTransformer":
            raise UnsupportedModuleError(
                f"{st_config}: model_type {model_type!r} is not a SentenceTransformer"
            )
        for name, text in (config.get("prompts") or {}).items():
            prompts[name] = "" if text is None else str(text)
        layout.default_prompt_name = config.get("default_prompt_name")
        layout.similarity_fn_name = config.get("similarity_fn_name")
        layout.truncate_dim = config.get("truncate_dim")
    layout.prompts = prompts
    if layout.default_prompt_name is not None and layout.default_prompt_name not in prompts:
        raise ValueError(
            f"{st_config}: default_prompt_name {layout.default_prompt_name!r} is not among the prompts "
            f"{sorted(prompts)}"
        )
    if layout.similarity_fn_name is not None:
        similarity_fn_name_of(layout.similarity_fn_name)
    return layout


def _module_prefix(directory: Path, name: Any) -> str:
    """The repo folder of a module path from ``modules.json`` (``""``: the root, else ending in ``/``),
    refused (:class:`xlmr._fileio.UnsafePathError`) when it leads out of ``directory``."""
    if name in ("", ".", None):
        return ""
    candidate = contained_path(directory, name, what="module path")
    relative = candidate.resolve().relative_to(directory.resolve()).as_posix()
    return "" if relative == "." else relative + "/"


def resolve_encoder(name_or_path: str | os.PathLike, native: str | None = None, **hub: Any) -> _hub.Resolved:
    """Where a sentence encoder's files lie: a local directory (``subfolder`` joined), or a Hub repo id's
    files fetched into the Hugging Face cache -- only those the encoder reads.

    From the Hub (:mod:`xlmr._hub`, HF's arguments ``revision``, ``cache_dir``, ``local_files_only``,
    ``token``, ``subfolder``, ``force_download``; ``org/name@revision``): ``modules.json`` and
    ``config_sentence_transformers.json`` when the repo has them; the Transformer module's folder
    (``""`` or e.g. ``0_Transformer/``): ``config.json``, ``sentence_bert_config.json`` (or a legacy
    name; beside ``modules.json`` when the folder has none), ONE weight format (safetensors, then
    ``native``, then any other; a shard index and its shards) and the tokenizer files; each later
    module's folder: ``config.json`` (Pooling, Dense) and Dense's ``model.safetensors`` (else
    ``pytorch_model.bin``). Module paths are untrusted names: one leading out of the repo is refused
    before anything is fetched for it; an unsupported module is named before any weight is fetched.

    Returns :class:`xlmr._hub.Resolved`: ``path`` the Transformer's weight file for a Hub repo (the
    directory for a local path), ``directory`` the encoder's folder, ``root`` the tree its files may
    resolve into.
    """
    if not _hub.is_hub_name(name_or_path):
        return _hub.resolve_files(name_or_path, (), **hub)
    repo = _hub.open_repo(name_or_path, **hub)
    modules_json = repo.fetch("modules.json", required=False)
    repo.fetch("config_sentence_transformers.json", required=False)
    modules: list[tuple[str, dict]] = []
    folders = [""]  # each module's folder, the Transformer's first
    if modules_json is None:
        if repo.unreachable is not None and not repo.known_absent("modules.json"):
            logger.warning(
                "modules.json of %s could not be fetched and is not in the Hugging Face cache: loading %r "
                "as a plain XLM-R model with mean pooling (as sentence-transformers does); if it is a "
                "sentence-transformers model, fetch its modules.json once online",
                repo.where(),
                repo.name,
            )
    else:
        modules = read_modules(modules_json)
        folders = [_module_prefix(modules_json.parent, entry.get("path")) for _, entry in modules]
    transformer = folders[0]
    repo.fetch(transformer + "config.json", required=True)
    places = [transformer, ""] if transformer and modules else [transformer]
    for prefix in places:  # sentence_bert_config.json (or a legacy name): the Transformer's, else the root's
        if any(repo.fetch(prefix + name, required=False) is not None for name in _SBERT_CONFIG_NAMES):
            break
    weights = _hub.fetch_weights(repo, native, prefix=transformer)
    for name in _hub.TOKENIZER_FILES:
        repo.fetch(transformer + name, required=False)
    vocab = (transformer + "sentencepiece.bpe.model", transformer + "tokenizer.json")
    if not set(vocab) & set(repo.fetched):
        raise repo.not_found(" or ".join(vocab))
    for (kind, _), folder in zip(modules[1:], folders[1:]):
        if kind in ("Pooling", "Dense"):
            repo.fetch(folder + "config.json", required=True)
        if kind == "Dense":  # sentence-transformers' order: safetensors, else the torch pickle
            dense = (folder + "model.safetensors", folder + "pytorch_model.bin")
            if repo.fetch(dense[0], required=False) is None and repo.fetch(dense[1], required=False) is None:
                raise repo.not_found(" or ".join(dense))
    return repo.resolved(weights)


def write_layout(directory: str | os.PathLike, layout: Layout, *, xlmr_version: str) -> None:
    """Write everything of a sentence-transformers directory but the Transformer's own files
    (config.json, weights, tokenizer: the backend writes those at the root)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    entries = [{"idx": 0, "name": "0", "path": "", "type": _MODULE_TYPES["Transformer"]}]
    for idx, module in enumerate(layout.modules, start=1):
        kind = type(module).__name__
        sub = f"{idx}_{kind}"
        entries.append({"idx": idx, "name": str(idx), "path": sub, "type": _MODULE_TYPES[kind]})
        target = root / sub
        target.mkdir(exist_ok=True)
        if isinstance(module, Pooling):
            atomic_write_json(target / "config.json", module.to_config(), sort_keys=False)
        elif isinstance(module, Dense):
            atomic_write_json(target / "config.json", module.to_config(), sort_keys=False)
            from safetensors.numpy import save as save_safetensors

            tensors = {"linear.weight": np.ascontiguousarray(module.weight)}
            if module.bias is not None:
                tensors["linear.bias"] = np.ascontiguousarray(module.bias)
            atomic_write_bytes(
                target / "model.safetensors", save_safetensors(tensors, metadata={"format": "pt"})
            )
    atomic_write_json(
        root / "sentence_bert_config.json",
        {"max_seq_length": layout.max_seq_length, "do_lower_case": layout.do_lower_case},
        sort_keys=False,
    )
    config: dict[str, Any] = {
        "__version__": {"xlmr": xlmr_version},
        "model_type": "SentenceTransformer",
        "prompts": layout.prompts,
        "default_prompt_name": layout.default_prompt_name,
        "similarity_fn_name": similarity_fn_name_of(layout.similarity_fn_name),
    }
    if layout.truncate_dim is not None:
        config["truncate_dim"] = layout.truncate_dim
    atomic_write_json(root / "config_sentence_transformers.json", config)
    atomic_write_json(root / "modules.json", entries, sort_keys=False)
