"""Sentence embeddings, framework-neutral: the sentence-transformers layout, pooling, prompts, the
batching plan, Dense, normalization, quantization and similarity -- all numpy.

A sentence encoder is pre-processing (here), one backend forward (``last_hidden_state`` of the
backbone: ``_forward`` in ``xlmr_torch/sentence.py``, ``xlmr_tf/sentence.py``,
``xlmr_flax/sentence.py``), and post-processing (here). Everything in this module reproduces
sentence-transformers 5.x (``SentenceTransformer.encode``, ``Pooling``, ``Dense``, ``Normalize``,
``quantize_embeddings``, the similarity functions) number for number; where it cites
sentence-transformers it means that code.

The sentence-transformers directory layout (what :func:`read_layout` reads and
:func:`write_layout` writes)::

    modules.json                       [{"idx", "name", "path", "type"}, ...] in order
    config_sentence_transformers.json  prompts, default_prompt_name, similarity_fn_name, truncate_dim
    sentence_bert_config.json          max_seq_length, do_lower_case (next to the Transformer)
    config.json + weights + tokenizer  the Transformer module, at the root ("path": "") or in
                                       0_Transformer/ (older models)
    1_Pooling/config.json              pooling modes (legacy booleans or "pooling_mode"), include_prompt
    2_Dense/config.json + model.safetensors (or pytorch_model.bin): a torch Linear and its activation
    3_Normalize/                       (empty)

A plain HF XLM-R directory (no ``modules.json``) is a Transformer followed by mean pooling, as
sentence-transformers makes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _hub
from ._fileio import StagedDirectory, atomic_write_bytes, atomic_write_json, contained_path

logger = logging.getLogger("xlmr.sentence")

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# sentence-transformers' legacy boolean keys, in its fixed concatenation order.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
_SIMILARITY_ALIASES = {"dot_product": "dot", "dot_score": "dot", "cos_sim": "cosine"}
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
_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize
# The backends' own weight formats (``SentenceEncoderBase.framework`` -> xlmr._hub.WEIGHT_FILES key).
_NATIVE_FORMATS = {"torch": "pytorch", "tensorflow": "tf", "jax": "flax"}
# What a sentence-transformers directory's own files are; saving over one replaces them all (with the
# weight files of any format), other entries (README.md, logs...) are kept.
_MODULE_DIR = re.compile(r"\d+_.+")
_LAYOUT_FILES = frozenset(
    (
        "config.json",
        "modules.json",
        "config_sentence_transformers.json",
        *_SBERT_CONFIG_NAMES,
        *_hub.TOKENIZER_FILES,
    )
)
CHUNK_TEXTS = 4096  # texts tokenized and planned at a time (bounds memory on long inputs)
PROGRESS_MIN_TEXTS = 1000  # show_progress_bar=None: a bar from this many texts on (on a terminal)


class UnsupportedModuleError(ValueError):
    """``modules.json`` names a module xlmr has no implementation of."""


# -- post-processing modules -----------------------------------------------------------------------
@dataclass
class Ragged:
    """Variable-length per-token outputs: ``values`` (tokens, hidden) holds the sequences one after
    another, ``lengths`` (n,) their token counts; ``offsets`` (n + 1,) where each starts."""

    values: np.ndarray
    lengths: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def split(self) -> list[np.ndarray]:
        return np.split(self.values, self.offsets[1:-1])


@dataclass
class Pooling:
    """sentence-transformers' ``Pooling`` on :class:`Ragged` token embeddings (numpy).

    Args:
        embedding_dimension: Hidden size of the token embeddings.
        modes: Pooling modes, concatenated in this order (see :data:`POOLING_MODES`).
        include_prompt: ``False`` leaves the prompt's tokens out of the pooling (INSTRUCTOR-style).
    """

    embedding_dimension: int
    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.modes, str):
            self.modes = (self.modes,)
        self.modes = tuple(self.modes)
        if not self.modes:
            raise ValueError("Pooling needs at least one pooling mode")
        for mode in self.modes:
            if mode not in POOLING_MODES:
                raise ValueError(f"unknown pooling mode {mode!r}; sentence-transformers has {POOLING_MODES}")

    @property
    def output_dimension(self) -> int:
        return len(self.modes) * self.embedding_dimension

    @classmethod
    def from_config(cls, config: dict, where: str = "Pooling config") -> Pooling:
        """From a ``1_Pooling/config.json`` in either format (legacy booleans or ``pooling_mode``)."""
        dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        if not isinstance(dim, int):
            raise ValueError(f"{where}: no integer embedding_dimension / word_embedding_dimension")
        known = {"embedding_dimension", "word_embedding_dimension", "pooling_mode", "include_prompt"}
        unknown = sorted(k for k in config if k not in known and k not in _LEGACY_POOLING_KEYS)
        for key in unknown:
            if key.startswith("pooling_mode") and config[key]:
                raise ValueError(
                    f"{where}: unknown pooling mode {key!r}; sentence-transformers has {POOLING_MODES}"
                )
        if "pooling_mode" in config and config["pooling_mode"] is not None:
            modes = config["pooling_mode"]
            modes = (modes,) if isinstance(modes, str) else tuple(modes)
        else:
            modes = tuple(mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key, False))
            modes = modes or ("mean",)
        for mode in modes:
            if mode not in POOLING_MODES:
                raise ValueError(
                    f"{where}: unknown pooling mode {mode!r}; sentence-transformers has {POOLING_MODES}"
                )
        return cls(dim, modes, bool(config.get("include_prompt", True)))

    def to_config(self) -> dict:
        """The legacy boolean keys when they can say it (every version reads them), else ``pooling_mode``."""
        legacy_order = [m for m in _LEGACY_POOLING_KEYS.values() if m in self.modes]
        if list(self.modes) == legacy_order:
            config: dict[str, Any] = {"word_embedding_dimension": self.embedding_dimension}
            config.update({key: mode in self.modes for key, mode in _LEGACY_POOLING_KEYS.items()})
        else:
            config = {"embedding_dimension": self.embedding_dimension, "pooling_mode": list(self.modes)}
        if not self.include_prompt:  # sentence-transformers before 2.4 does not know the key
            config["include_prompt"] = False
        return config

    def __call__(self, tokens: Ragged, prompt_length: int = 0) -> np.ndarray:
        """(n, len(modes) * hidden) float32 sentence embeddings of ``tokens``.

        ``prompt_length`` tokens at the start of each sequence are left out when
        ``include_prompt`` is False, exactly as sentence-transformers masks them (a sequence
        with nothing left pools to zeros; ``max`` to -inf; ``cls`` then reads token 0).
        """
        values, lengths = tokens.values, np.asarray(tokens.lengths, np.int64)
        n, hidden = len(lengths), values.shape[-1]
        if n == 0:
            return np.zeros((0, self.output_dimension), np.float32)
        offsets = tokens.offsets
        starts = offsets[:-1]
        skip = 0 if self.include_prompt else int(prompt_length)
        position = np.arange(len(values)) - np.repeat(starts, lengths)  # within its sequence
        keep = position >= skip
        empty = lengths <= skip  # every token masked
        kept = np.maximum(lengths - skip, 0)
        out: list[np.ndarray] = []
        sums = None
        for mode in self.modes:
            if mode == "cls":
                first = starts + np.where(empty, 0, skip)
                out.append(values[first].astype(np.float32))
            elif mode == "lasttoken":
                last = values[offsets[1:] - 1].astype(np.float32)
                last[empty] = 0.0
                out.append(last)
            elif mode == "max":
                masked = np.where(keep[:, None], values, np.float32(-np.inf))
                out.append(np.maximum.reduceat(masked, starts, axis=0).astype(np.float32))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                if sums is None:
                    masked = values if skip == 0 else values * keep[:, None]
                    sums = np.add.reduceat(masked, starts, axis=0, dtype=np.float64)
                count = np.maximum(kept.astype(np.float64), 1e-9)[:, None]
                denom = count if mode == "mean" else np.sqrt(count)
                out.append((sums / denom).astype(np.float32))
            elif mode == "weightedmean":
                weights = ((position + 1) * keep).astype(np.float64)
                total = np.add.reduceat(values * weights[:, None], starts, axis=0, dtype=np.float64)
                norm = np.add.reduceat(weights, starts)
                out.append((total / np.maximum(norm, 1e-9)[:, None]).astype(np.float32))
        result = np.concatenate(out, axis=-1) if len(out) > 1 else out[0]
        assert result.shape == (n, len(self.modes) * hidden)
        return result


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


# torch.nn activation (class name) -> numpy function, with torch's default arguments.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Identity": lambda x: x,
    "Tanh": np.tanh,
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "ReLU": lambda x: np.maximum(x, 0),
    "GELU": lambda x: 0.5 * x * (1.0 + _erf(x.astype(np.float64) / np.sqrt(2.0))),
    "SiLU": lambda x: x / (1.0 + np.exp(-x)),
    "LeakyReLU": lambda x: np.where(x >= 0, x, 0.01 * x),
    "ELU": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "Softplus": lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
}


@dataclass
class Dense:
    """sentence-transformers' ``Dense``: ``activation(x @ weight.T + bias)`` in float32.

    Args:
        weight: (out_features, in_features), a torch ``Linear``'s layout.
        bias: (out_features,) or None.
        activation_function: The torch class path sentence-transformers stores
            (``torch.nn.modules.activation.Tanh``); only ``torch.*`` paths are trusted, as in
            sentence-transformers, which falls back to Tanh for any other.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    activation_function: str = "torch.nn.modules.activation.Tanh"

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, np.float32)
        if self.bias is not None:
            self.bias = np.asarray(self.bias, np.float32)
        name = self.activation_function or "torch.nn.modules.linear.Identity"
        if not name.startswith("torch."):
            logger.warning(
                "Dense activation %r is not a torch class; using Tanh, as sentence-transformers does "
                "without trust_remote_code",
                name,
            )
            name = "torch.nn.modules.activation.Tanh"
        short = name.rsplit(".", 1)[-1]
        if short not in ACTIVATIONS:
            raise ValueError(
                f"Dense activation {self.activation_function!r} is not supported; supported: "
                f"{', '.join(sorted(ACTIVATIONS))}"
            )
        self._activation = ACTIVATIONS[short]

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, np.float32) @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return np.asarray(self._activation(y), np.float32)

    def to_config(self) -> dict:
        # The keys every sentence-transformers version takes (no module_input_name: 5.x only).
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "activation_function": self.activation_function,
        }


@dataclass
class Normalize:
    """sentence-transformers' ``Normalize``: rows scaled to unit L2 norm."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return normalize(x)


def normalize(x: np.ndarray) -> np.ndarray:
    """``x / max(||x||, 1e-12)`` along the last axis (``torch.nn.functional.normalize``), float32."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, _NORMALIZE_EPS)).astype(np.float32)


# -- quantization and similarity -------------------------------------------------------------------
def quantize_embeddings(
    embeddings: np.ndarray,
    precision: str,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings``, bit for bit.

    ``int8``/``uint8``: 256 buckets per dimension between ``ranges`` (2, dim), else the minimum and
    maximum of ``calibration_embeddings``, else of ``embeddings`` themselves (then the result
    depends on which texts are encoded together). ``binary``/``ubinary``: one bit per dimension
    (> 0), packed, ``binary`` shifted by -128 into int8.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.dtype in (np.uint8, np.int8):
        raise ValueError("embeddings to quantize must be float, not int8 or uint8")
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision in ("int8", "uint8"):
        if ranges is None:
            source = embeddings if calibration_embeddings is None else np.asarray(calibration_embeddings)
            if calibration_embeddings is None and embeddings.shape[0] < 100:
                logger.warning(
                    "computing %s buckets from %d embeddings; pass ranges or calibration_embeddings "
                    "for stable buckets",
                    precision,
                    embeddings.shape[0],
                )
            ranges = np.vstack((np.min(source, axis=0), np.max(source, axis=0)))
        ranges = np.asarray(ranges)
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        q = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        return q.astype(np.uint8) if precision == "uint8" else (q - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1)
    raise ValueError(f"precision {precision!r} is not supported; expected one of {PRECISIONS}")


def similarity_fn_name_of(name: str | None) -> str:
    """The canonical similarity function name (``cosine`` when None)."""
    if name is None:
        return "cosine"
    name = getattr(name, "value", name)
    name = _SIMILARITY_ALIASES.get(name, name)
    if name not in SIMILARITY_FUNCTIONS:
        raise ValueError(f"unknown similarity function {name!r}; expected one of {SIMILARITY_FUNCTIONS}")
    return name


def _as_matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be one embedding or a (n, dim) matrix, got shape {a.shape}")
    return a


def similarity(a: Any, b: Any, fn: str = "cosine") -> np.ndarray:
    """(n, m) float32 scores of every row of ``a`` against every row of ``b``.

    As sentence-transformers: ``cosine``, ``dot``; ``euclidean`` and ``manhattan`` are the
    *negated* distances (higher is more similar). 1-D inputs are one embedding.
    """
    fn = similarity_fn_name_of(fn)
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding sizes differ: {a.shape[1]} and {b.shape[1]}")
    if fn == "cosine":
        return normalize(a) @ normalize(b).T
    if fn == "dot":
        return a @ b.T
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if fn == "euclidean":
        sq = (a64 * a64).sum(1)[:, None] - 2 * a64 @ b64.T + (b64 * b64).sum(1)[None]
        return (-np.sqrt(np.maximum(sq, 0))).astype(np.float32)
    return (-np.abs(a64[:, None, :] - b64[None, :, :]).sum(-1)).astype(np.float32)


def similarity_pairwise(a: Any, b: Any, fn: str = "cosine") -> np.ndarray:
    """(n,) float32 scores of row i of ``a`` against row i of ``b`` (the diagonal of :func:`similarity`)."""
    fn = similarity_fn_name_of(fn)
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"pairwise similarity needs equal shapes, got {a.shape} and {b.shape}")
    if fn == "cosine":
        return (normalize(a) * normalize(b)).sum(-1)
    if fn == "dot":
        return (a * b).sum(-1)
    diff = a.astype(np.float64) - b.astype(np.float64)
    if fn == "euclidean":
        return (-np.sqrt((diff * diff).sum(-1))).astype(np.float32)
    return (-np.abs(diff).sum(-1)).astype(np.float32)


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


# -- inputs and the batching plan ------------------------------------------------------------------
def check_sentences(sentences: Any) -> tuple[list[str], bool]:
    """``(texts, single)``: a string is one text (``single``); a list/tuple/array of strings is a
    batch. A non-string item is a ``TypeError`` naming its index."""
    if isinstance(sentences, str):
        return [sentences], True
    if isinstance(sentences, np.ndarray):
        sentences = sentences.tolist()
    if not isinstance(sentences, Iterable) or isinstance(sentences, bytes | dict):
        raise TypeError(f"sentences must be a string or a list of strings, got {type(sentences).__name__}")
    texts = list(sentences)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"sentences[{i}] is a {type(text).__name__}, not a string")
    return texts, False


def row_length_for(longest: int, max_length: int) -> int:
    """Row length of a packed plan: the smallest bucket holding four of the longest sequence (so
    rows fill well with FFD) -- or ``max_length``. Bucketed: XLA compiles few shapes."""
    from ._packing import row_length_buckets

    buckets = row_length_buckets(max_length)
    target = min(max_length, 4 * longest)
    return next(b for b in buckets if b >= target)


@dataclass
class EncodeStats:
    """What the last ``encode`` call did: texts, real tokens, forward batches, padded token slots
    computed, wall seconds."""

    texts: int = 0
    tokens: int = 0
    batches: int = 0
    slots: int = 0
    seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        return self.texts / self.seconds if self.seconds > 0 else float("nan")


def _show_progress(show: bool | None, n: int) -> bool:
    if show is not None:
        return bool(show)
    if logger.getEffectiveLevel() <= logging.INFO:  # sentence-transformers' rule
        return True
    return n >= PROGRESS_MIN_TEXTS and sys.stderr.isatty()


# -- the encoder -----------------------------------------------------------------------------------
class SentenceEncoderBase:
    """The framework-neutral sentence encoder; ``xlmr_torch.SentenceEncoder``,
    ``xlmr_tf.TFSentenceEncoder`` and ``xlmr_flax.FlaxSentenceEncoder`` add one backend forward.

    Subclasses implement ``_load_model(directory, **kwargs)`` (classmethod),
    ``_save_model(directory, format)``, ``_supports_packing()``,
    ``_forward(input_ids, attention_mask=None, segment_ids=None) -> np.ndarray`` (the backbone's
    ``last_hidden_state``) and ``_to_tensor(array)``.
    """

    framework = "numpy"
    # Batch shapes from the planner's buckets (XLA compiles each shape once); an eager backend
    # sets False and pads each batch of the padded route to its own longest sequence.
    shape_buckets = True

    def __init__(self, model: Any, tokenizer: Any, layout: Layout, *, packed: bool | None = None) -> None:
        from .inputs import max_sequence_length

        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.config = model.config
        self.modules = layout.modules
        self.prompts = layout.prompts
        self.default_prompt_name = layout.default_prompt_name
        self.similarity_fn_name = similarity_fn_name_of(layout.similarity_fn_name)
        self.truncate_dim = layout.truncate_dim
        self.max_positions = max_sequence_length(self.config)
        self._prompt_lengths: dict[str, int] = {}
        self.max_seq_length = self._resolve_max_seq_length(layout.max_seq_length)
        self.packed = self._supports_packing() if packed is None else bool(packed)
        if self.packed and not self._supports_packing():
            raise ValueError(f"{type(self.model).__name__} does not accept segment_ids (packed rows)")
        hidden = int(self.config.hidden_size)
        pooling = self.modules[0]
        if pooling.embedding_dimension != hidden:
            raise ValueError(
                f"Pooling expects {pooling.embedding_dimension}-dimensional token embeddings, "
                f"the Transformer gives {hidden}"
            )
        dim = pooling.output_dimension
        for module in self.modules[1:]:
            if isinstance(module, Dense):
                if module.in_features != dim:
                    raise ValueError(
                        f"Dense expects {module.in_features} inputs, the module before gives {dim}"
                    )
                dim = module.out_features
        self._dimension = dim
        self.last_stats = EncodeStats()
        self.name_or_path = ""  # from_pretrained: the path as given, or the Hub repo id

    # -- loading and saving ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, packed: bool | None = None, **model_kwargs: Any):
        """Load a sentence-transformers model or a plain HF XLM-R model (mean pooling), from a
        directory or the Hugging Face Hub.

        Args:
            path: A local directory, or a Hub repo id (``org/name``, ``org/name@revision``): only the
                files the encoder reads are fetched (see :func:`resolve_encoder`). The Transformer's
                weights may be any of the four formats.
            packed: Run packed rows (``segment_ids``); None: whenever the backbone supports it.
                False: length-sorted padded batches.
            **model_kwargs: HF's Hub arguments (``revision``, ``cache_dir``, ``local_files_only``,
                ``token``, ``subfolder``, ``force_download``); the rest is passed to the backbone's
                ``from_pretrained``.
        """
        hub = _hub.pop_hub_kwargs(model_kwargs)
        resolved = resolve_encoder(path, _NATIVE_FORMATS.get(cls.framework), **hub)
        layout = read_layout(resolved.directory, root=resolved.root)
        from_hub = resolved.repo_id is not None
        # From the Hub: exactly the weight file fetched (the snapshot may hold others from earlier calls).
        model = cls._load_model(resolved.path if from_hub else layout.transformer_dir, **model_kwargs)
        tokenizer = _load_tokenizer(layout.transformer_dir)
        if from_hub:
            _hub.record_name(model, resolved.name_or_path)
            tokenizer.name_or_path = resolved.name_or_path
        encoder = cls(model, tokenizer, layout, packed=packed)
        encoder.name_or_path = resolved.name_or_path
        return encoder

    def save_pretrained(self, path: str | os.PathLike, *, format: str = "safetensors") -> None:
        """Write a sentence-transformers directory (Transformer at the root, weights in ``format``)
        that sentence-transformers loads and that gives the same embeddings.

        The directory is replaced as a whole, as the models' ``save_pretrained`` replaces theirs
        (:class:`xlmr._fileio.StagedDirectory`): readers see the old directory or the complete new
        one, and a failure or a kill at any point leaves the old one. What an earlier
        sentence-transformers directory there held (weights of any format, tokenizer files, module
        folders ``1_Pooling/``..., its JSON files) is not carried over, so nothing stale is loaded;
        every other entry (README.md, logs...) is kept.
        """
        from ._version import __version__

        root = Path(path)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"save_pretrained needs a directory, {root} is a file")
        with StagedDirectory(root) as stage:
            self._write(stage.path, format, __version__)
            stage.commit(carry_over=_kept_on_save, on_drop=_log_dropped(stage.destination, format))

    def _write(self, root: Path, format: str, version: str) -> None:
        """Everything of the directory into ``root`` (an empty staging directory)."""
        self._save_model(root, format)
        previous = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_seq_length
        try:
            self.tokenizer.save_pretrained(str(root))
        finally:
            self.tokenizer.model_max_length = previous
        layout = Layout(
            transformer_dir=root,
            modules=self.modules,
            max_seq_length=self.max_seq_length,
            do_lower_case=self.layout.do_lower_case,
            prompts=dict(self.prompts),
            default_prompt_name=self.default_prompt_name,
            similarity_fn_name=self.similarity_fn_name,
            truncate_dim=self.truncate_dim,
        )
        write_layout(root, layout, xlmr_version=version)

    def _resolve_max_seq_length(self, configured: int | None) -> int:
        # sentence-transformers: max_seq_length from sentence_bert_config.json, else the tokenizer's
        # model_max_length capped at max_position_embeddings. xlmr also caps at the positions the
        # model really has (max_position_embeddings - pad_token_id - 1), instead of failing later.
        if configured is None:
            limit = getattr(self.tokenizer, "model_max_length", None)
            if limit is None or limit > 10**9:
                limit = self.config.max_position_embeddings
            configured = min(int(limit), int(self.config.max_position_embeddings))
        if configured > self.max_positions:
            logger.warning(
                "max_seq_length %d is more than the model positions (%d); truncating at %d",
                configured,
                self.max_positions,
                self.max_positions,
            )
            configured = self.max_positions
        return int(configured)

    # -- properties -------------------------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        """Longest tokenized input, special tokens included; longer ones are truncated (settable)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if not 2 <= int(value) <= self.max_positions:
            raise ValueError(
                f"max_seq_length must be between 2 and the model's {self.max_positions} positions, got {value}"
            )
        self._max_seq_length = int(value)
        self._prompt_lengths = {}

    def get_embedding_dimension(self) -> int:
        """Size of the sentence embeddings ``encode`` returns (after ``truncate_dim``)."""
        if self.truncate_dim is not None:
            return min(self._dimension, int(self.truncate_dim))
        return self._dimension

    get_sentence_embedding_dimension = get_embedding_dimension

    # -- encoding ---------------------------------------------------------------------------------
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        prompt_name: str | None = None,
        prompt: str | None = None,
        normalize_embeddings: bool = False,
        output_value: str | None = "sentence_embedding",
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        precision: str = "float32",
        convert_to_tensor: bool = False,
        truncate_dim: int | None = None,
        max_batch_tokens: int | None = None,
    ):
        """Embed ``sentences``; sentence-transformers' ``encode`` arguments with its meanings.

        Args:
            sentences: A string (the result is one 1-D embedding) or a list of strings.
            batch_size: Texts per forward pass on the padded route. On the packed route it keeps
                its memory meaning: a batch holds at most ``batch_size * max_seq_length`` tokens
                (sentence-transformers' largest batch), packed from as many texts as fit.
            prompt_name: Key of ``self.prompts`` whose text is prepended; ``prompt`` wins.
            prompt: Text prepended to every sentence.
            normalize_embeddings: Unit-length embeddings.
            output_value: ``"sentence_embedding"``, ``"token_embeddings"`` (a list of
                (tokens, hidden) arrays, one per sentence, prompt tokens included) or None (a
                list of dicts with both and the input ids).
            show_progress_bar: A tqdm bar over the texts; None: on when the ``xlmr.sentence``
                logger is at INFO, or for 1,000+ texts on a terminal.
            convert_to_numpy: A numpy (n, dim) array; False: a list of backend tensors.
            precision: ``float32``, ``int8``, ``uint8``, ``binary``, ``ubinary`` (see
                :func:`quantize_embeddings`; int8/uint8 ranges come from these embeddings).
            convert_to_tensor: One backend tensor.
            truncate_dim: Keep the first dimensions (before ``normalize_embeddings``).
            max_batch_tokens: Token budget of a packed batch (default: see ``batch_size``).

        Returns:
            Embeddings in input order.
        """
        from tqdm.auto import tqdm

        texts, single = check_sentences(sentences)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not supported; expected one of {PRECISIONS}")
        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise ValueError(
                f"output_value must be 'sentence_embedding', 'token_embeddings' or None, got {output_value!r}"
            )
        if output_value != "sentence_embedding" and precision != "float32":
            raise ValueError(f"precision={precision!r} applies to sentence embeddings only")
        prompt = self._resolve_prompt(prompt, prompt_name)
        truncate_dim = self.truncate_dim if truncate_dim is None else truncate_dim
        want_tokens = output_value != "sentence_embedding"
        want_sentences = output_value != "token_embeddings"

        start_time = time.perf_counter()
        n = len(texts)
        dim = self._dimension if truncate_dim is None else min(self._dimension, int(truncate_dim))
        sentence_out = np.zeros((n, dim), np.float32) if want_sentences else None
        token_out: list = [None] * n if want_tokens else []
        ids_out: list = [None] * n if output_value is None else []
        stats = EncodeStats(texts=n)
        prompt_length = self._prompt_length(prompt) if prompt else 0
        if prompt:
            texts = [prompt + t for t in texts]
        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        # sentence-transformers sorts by characters (longest first); chunks of that order pack tightly.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        budget = max_batch_tokens or batch_size * self.max_seq_length
        with tqdm(
            total=n, unit="text", desc="Encoding", disable=not _show_progress(show_progress_bar, n)
        ) as bar:
            for first in range(0, n, CHUNK_TEXTS):
                chunk = order[first : first + CHUNK_TEXTS]
                ids = self.tokenizer(
                    [texts[i] for i in chunk],
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_attention_mask=False,
                )["input_ids"]
                for index, tokens, batch_ids in self._run_batches(ids, batch_size, budget, stats):
                    where = chunk[index]
                    if want_sentences:
                        sentence_out[where] = self._post_process(tokens, prompt_length, truncate_dim)
                    if want_tokens:
                        for w, t in zip(where, self._token_outputs(tokens, prompt_length)):
                            token_out[w] = t
                    if output_value is None:
                        for w, b in zip(where, batch_ids):
                            ids_out[w] = np.asarray(b)
                    bar.update(len(index))
        stats.seconds = time.perf_counter() - start_time
        self.last_stats = stats

        if output_value == "token_embeddings":
            result = token_out if convert_to_numpy else [self._to_tensor(t) for t in token_out]
            return result[0] if single else result
        if normalize_embeddings:
            sentence_out = normalize(sentence_out)
        if output_value is None:
            result = [
                {"sentence_embedding": s, "token_embeddings": t, "input_ids": i}
                for s, t, i in zip(sentence_out, token_out, ids_out)
            ]
            return result[0] if single else result
        embeddings = sentence_out
        if precision != "float32" and n:
            embeddings = quantize_embeddings(embeddings, precision)
        if convert_to_tensor:
            result = self._to_tensor(embeddings)
        elif convert_to_numpy:
            result = embeddings
        else:
            result = [self._to_tensor(e) for e in embeddings]
        return result[0] if single else result

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any):
        """``encode`` with the ``query`` prompt unless a prompt is given (sentence-transformers 5)."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any):
        """``encode`` with the ``document`` (or ``passage``, ``corpus``) prompt unless one is given."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        if prompt is not None:
            if prompt_name is not None:
                logger.warning("both prompt and prompt_name given; using prompt")
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(
                    f"prompt_name {prompt_name!r} is not one of this model's prompts: "
                    f"{', '.join(repr(p) for p in self.prompts) or 'none'}"
                )
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    def _prompt_length(self, prompt: str) -> int:
        # sentence-transformers: the prompt's tokens alone, less a trailing special token.
        if prompt not in self._prompt_lengths:
            text = prompt.lower() if self.layout.do_lower_case else prompt
            ids = self.tokenizer([text], truncation=True, max_length=self.max_seq_length)["input_ids"][0]
            special = set(self.tokenizer.all_special_ids)
            self._prompt_lengths[prompt] = len(ids) - (1 if ids and ids[-1] in special else 0)
        return self._prompt_lengths[prompt]

    def _run_batches(self, ids: list[list[int]], batch_size: int, budget: int, stats: EncodeStats):
        """For each forward batch: (positions in ``ids``, :class:`Ragged` token embeddings, their ids)."""
        from ._packing import pack_sequences, pad_sequences

        if not ids:
            return
        pad = int(self.config.pad_token_id)
        if self.packed:
            longest = max(len(x) for x in ids)
            row = row_length_for(longest, self.max_seq_length)
            batches = pack_sequences(
                ids, max_length=self.max_seq_length, pad_token_id=pad, max_batch_tokens=max(budget, row),
                overflow="truncate", row_lengths=(row,),
            )  # fmt: skip
        else:
            exact = None if self.shape_buckets else range(1, self.max_seq_length + 1)
            batches = pad_sequences(
                ids, max_length=self.max_seq_length, pad_token_id=pad, max_batch_tokens=budget,
                overflow="truncate", max_rows=batch_size, row_lengths=exact,
            )  # fmt: skip
        for batch in batches:
            if self.packed:
                hidden = self._forward(batch.input_ids, segment_ids=batch.segment_ids)
                valid = batch.segment_ids > 0
                order = np.lexsort((batch.start, batch.row))  # sequences as they lie in the rows
            else:
                hidden = self._forward(batch.input_ids, attention_mask=batch.attention_mask)
                valid = batch.attention_mask > 0
                order = np.arange(len(batch.index))
            stats.batches += 1
            stats.slots += int(np.prod(batch.input_ids.shape))
            stats.tokens += int(batch.length.sum())
            tokens = Ragged(np.asarray(hidden)[valid], batch.length[order])
            index = batch.index[order]
            yield index, tokens, [ids[i] for i in index]

    def _post_process(self, tokens: Ragged, prompt_length: int, truncate_dim: int | None) -> np.ndarray:
        x = self.modules[0](tokens, prompt_length)
        for module in self.modules[1:]:
            x = module(x)
        if truncate_dim is not None:
            x = x[:, : int(truncate_dim)]
        return x

    def _token_outputs(self, tokens: Ragged, prompt_length: int) -> list[np.ndarray]:
        out = [t.astype(np.float32, copy=True) for t in tokens.split()]
        pooling = self.modules[0]
        if not pooling.include_prompt and prompt_length:
            # sentence-transformers trims at the last unmasked token: one token when all are masked.
            out = [t[:1] if len(t) <= prompt_length else t for t in out]
        return out

    # -- similarity -------------------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n, m) scores by ``self.similarity_fn_name`` (euclidean, manhattan: negated distances)."""
        return similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n,) scores of row i against row i by ``self.similarity_fn_name``."""
        return similarity_pairwise(embeddings1, embeddings2, self.similarity_fn_name)

    def __repr__(self) -> str:
        modules = ", ".join(type(m).__name__ for m in self.modules)
        return (
            f"{type(self).__name__}(max_seq_length={self.max_seq_length}, modules=[Transformer, {modules}], "
            f"dimension={self.get_embedding_dimension()}, similarity={self.similarity_fn_name!r}, "
            f"packed={self.packed})"
        )

    # -- backend hooks ----------------------------------------------------------------------------
    @classmethod
    def _load_model(cls, directory: Path, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _save_model(self, directory: Path, format: str) -> None:
        raise NotImplementedError

    def _supports_packing(self) -> bool:
        raise NotImplementedError

    def _forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        segment_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        raise NotImplementedError

    def _to_tensor(self, array: np.ndarray) -> Any:
        raise NotImplementedError


def _kept_on_save(name: str) -> bool:
    """Whether an entry of the directory ``save_pretrained`` replaces is carried over into the new one."""
    from conversion.io import weight_file_format

    return not (name in _LAYOUT_FILES or weight_file_format(name) or _MODULE_DIR.fullmatch(name))


def _log_dropped(directory: Path, fmt: str) -> Callable[[Path], None]:
    """``on_drop`` of the staged save: say which entry of the old directory goes, and why."""
    from conversion.io import _log_dropped as log_weights
    from conversion.io import resolve_format, weight_file_format

    log_weight = log_weights(directory, resolve_format(fmt))

    def on_drop(path: Path) -> None:
        if weight_file_format(path.name):
            log_weight(path)
        else:
            logger.info("removing %s from %s: part of the sentence-transformers directory replaced", path.name,
                        directory)  # fmt: skip

    return on_drop


def _load_tokenizer(directory: Path):
    from .tokenization import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    if (directory / "tokenizer.json").is_file():
        return XLMRobertaTokenizerFast.from_pretrained(str(directory))
    if (directory / "sentencepiece.bpe.model").is_file():
        try:
            return XLMRobertaTokenizerFast.from_pretrained(str(directory))
        except Exception:  # noqa: BLE001 -- no converter available: the slow tokenizer, same ids
            return XLMRobertaTokenizer.from_pretrained(str(directory))
    raise FileNotFoundError(f"{directory} has no tokenizer (tokenizer.json or sentencepiece.bpe.model)")
