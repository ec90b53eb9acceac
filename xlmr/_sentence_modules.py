"""Sentence-transformers' post-processing modules in numpy: Pooling, Dense, Normalize, and
``quantize_embeddings`` and the similarity functions, number for number (sentence-transformers 5.x).

Part of :mod:`xlmr._sentence` (the encoder); :mod:`xlmr.sentence` has the public names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

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
_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize


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
