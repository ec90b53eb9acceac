"""Canonical weight names and the few rules that map them onto each backend.

The canonical name of a weight is its key in HF's PyTorch state dict, e.g.
``roberta.encoder.layer.0.attention.self.query.weight``. A canonical state dict is
``{canonical key: numpy array}`` with PyTorch layouts (``nn.Linear`` weights are
``(out_features, in_features)``) and without tied aliases.

Every backend names its modules so that its own weight path *is* the canonical path; the
backends then differ only in the last segment of the path, and in whether a 2-D dense
weight is stored transposed:

=========  ================  ==============  ===================  =================
kind       torch             tf (Keras)      flax                 transposed (tf, flax)
=========  ================  ==============  ===================  =================
dense      weight, bias      kernel, bias    kernel, bias         yes
layernorm  weight, bias      gamma, beta     scale, bias          no
embedding  weight            embeddings      embedding            no
param      (as named)        (as named)      (as named)           no
=========  ================  ==============  ===================  =================

Tied weights: ``lm_head.decoder.bias`` is always ``lm_head.bias``, and with
``tie_word_embeddings`` ``lm_head.decoder.weight`` is the word embedding matrix; canonical
dicts hold only the source of a tie (``TIED_ALIASES``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .config import XLMRobertaConfig
from .heads import HEADS, Head, get_head

logger = logging.getLogger("xlmr")

BACKENDS = ("torch", "tf", "flax")
BACKBONE_PREFIX = "roberta"

# Leaf names per kind and backend: (weight leaf, bias leaf).
_LEAVES: dict[str, dict[str, tuple[str, str]]] = {
    "torch": {"dense": ("weight", "bias"), "layernorm": ("weight", "bias"), "embedding": ("weight", "")},
    "tf": {"dense": ("kernel", "bias"), "layernorm": ("gamma", "beta"), "embedding": ("embeddings", "")},
    "flax": {"dense": ("kernel", "bias"), "layernorm": ("scale", "bias"), "embedding": ("embedding", "")},
}
_TRANSPOSED = {"torch": False, "tf": True, "flax": True}

# Legacy PyTorch spellings found in old checkpoints: LayerNorm.gamma / LayerNorm.beta.
_LEGACY_LEAVES = {"gamma": "weight", "beta": "bias"}

# Buffers that old PyTorch checkpoints carry and that are not weights.
IGNORED_KEYS = re.compile(r"(^|\.)(embeddings\.position_ids|embeddings\.token_type_ids)$")


# -- canonical key sets ----------------------------------------------------------------------
def _linear(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def _layer_norm(name: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


def _attention(name: str, config: XLMRobertaConfig, relative: bool) -> dict[str, tuple[int, ...]]:
    h = config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for proj in ("query", "key", "value"):
        shapes.update(_linear(f"{name}.self.{proj}", h, h))
    if relative:
        shapes[f"{name}.self.distance_embedding.weight"] = (
            2 * config.max_position_embeddings - 1,
            config.head_dim,
        )
    shapes.update(_linear(f"{name}.output.dense", h, h))
    shapes.update(_layer_norm(f"{name}.output.LayerNorm", h))
    return shapes


def backbone_shapes(config: XLMRobertaConfig, add_pooling_layer: bool = True) -> dict[str, tuple[int, ...]]:
    """Canonical keys (without the ``roberta.`` prefix) and shapes of the backbone."""
    h, i = config.hidden_size, config.intermediate_size
    relative = config.position_embedding_type != "absolute"
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        **_layer_norm("embeddings.LayerNorm", h),
    }
    for n in range(config.num_hidden_layers):
        layer = f"encoder.layer.{n}"
        shapes.update(_attention(f"{layer}.attention", config, relative))
        if config.add_cross_attention:
            # HF builds cross-attention with absolute positions whatever the config says.
            shapes.update(_attention(f"{layer}.crossattention", config, relative=False))
        shapes.update(_linear(f"{layer}.intermediate.dense", i, h))
        shapes.update(_linear(f"{layer}.output.dense", h, i))
        shapes.update(_layer_norm(f"{layer}.output.LayerNorm", h))
    if add_pooling_layer:
        shapes.update(_linear("pooler.dense", h, h))
    return shapes


def head_module_shapes(config: XLMRobertaConfig, head: Head | str) -> dict[str, tuple[int, ...]]:
    """Canonical keys and shapes of the head's own weights (tied aliases excluded)."""
    head = get_head(head) if isinstance(head, str) else head
    h, v, n = config.hidden_size, config.vocab_size, config.num_labels
    if head.name in ("causal_lm", "masked_lm"):
        shapes = {
            **_linear("lm_head.dense", h, h),
            **_layer_norm("lm_head.layer_norm", h),
            "lm_head.bias": (v,),
        }
        if not config.tie_word_embeddings:
            shapes["lm_head.decoder.weight"] = (v, h)
        return shapes
    if head.name == "sequence_classification":
        return {**_linear("classifier.dense", h, h), **_linear("classifier.out_proj", n, h)}
    if head.name == "multiple_choice":
        return _linear("classifier", 1, h)
    if head.name == "token_classification":
        return _linear("classifier", n, h)
    if head.name == "question_answering":
        return _linear("qa_outputs", n, h)
    return {}


def expected_shapes(
    config: XLMRobertaConfig, head: Head | str, add_pooling_layer: bool | None = None
) -> dict[str, tuple[int, ...]]:
    """Every canonical key of ``head``'s model with its shape, in module order.

    ``add_pooling_layer`` overrides the head's default (``XLMRobertaModel(config, add_pooling_layer=False)``).
    """
    head = get_head(head) if isinstance(head, str) else head
    prefix = f"{head.prefix}." if head.prefix else ""
    pooler = head.add_pooling_layer if add_pooling_layer is None else add_pooling_layer
    shapes = {prefix + k: s for k, s in backbone_shapes(config, pooler).items()}
    shapes.update(head_module_shapes(config, head))
    return shapes


def canonical_keys(config: XLMRobertaConfig, head: Head | str) -> list[str]:
    return list(expected_shapes(config, head))


def tied_aliases(config: XLMRobertaConfig, head: Head | str) -> dict[str, str]:
    """``{alias: source}`` for the tied weights of ``head`` (both canonical keys)."""
    head = get_head(head) if isinstance(head, str) else head
    if head.name not in ("causal_lm", "masked_lm"):
        return {}
    aliases = {"lm_head.decoder.bias": "lm_head.bias"}
    if config.tie_word_embeddings:
        aliases["lm_head.decoder.weight"] = f"{BACKBONE_PREFIX}.embeddings.word_embeddings.weight"
    return aliases


# -- kinds and per-backend names -----------------------------------------------------------------
def param_kind(key: str) -> tuple[str, str]:
    """``(kind, role)`` of a canonical key: kind in dense/layernorm/embedding/param, role weight/bias."""
    module, _, leaf = key.rpartition(".")
    last = module.rpartition(".")[2]
    if key == "lm_head.bias" or key.endswith(".lm_head.bias"):
        return "param", "bias"
    if last in ("LayerNorm", "layer_norm"):
        return "layernorm", leaf
    if last.endswith("_embeddings") or last == "distance_embedding":
        return "embedding", leaf
    return "dense", leaf


def to_backend_path(key: str, backend: str) -> tuple[tuple[str, ...], bool]:
    """The backend's path (segments) for a canonical key, and whether the array is transposed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    kind, role = param_kind(key)
    parts = tuple(key.split("."))
    if kind == "param":
        return parts, False
    weight_leaf, bias_leaf = _LEAVES[backend][kind]
    leaf = weight_leaf if role == "weight" else bias_leaf
    transpose = kind == "dense" and role == "weight" and _TRANSPOSED[backend]
    return (*parts[:-1], leaf), transpose


def from_backend_path(path: Iterable[str], backend: str) -> tuple[str, bool]:
    """Inverse of :func:`to_backend_path`: canonical key and whether to transpose back."""
    parts = tuple(path)
    module, leaf = parts[:-1], parts[-1]
    last = module[-1] if module else ""
    if parts[-2:] == ("lm_head", "bias"):
        return ".".join(parts), False
    if last in ("LayerNorm", "layer_norm"):
        kind = "layernorm"
    elif last.endswith("_embeddings") or last == "distance_embedding":
        kind = "embedding"
    else:
        kind = "dense"
    weight_leaf, bias_leaf = _LEAVES[backend][kind]
    legacy = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias", "scale": "weight"}
    if leaf == weight_leaf:
        role = "weight"
    elif leaf == bias_leaf and bias_leaf:
        role = "bias"
    elif leaf in legacy:
        role = legacy[leaf]
    else:
        raise KeyError(f"{'/'.join(parts)}: leaf {leaf!r} is not a {backend} {kind} parameter name")
    transpose = kind == "dense" and role == "weight" and _TRANSPOSED[backend]
    return ".".join((*module, role)), transpose


def to_backend(state_dict: Mapping[str, np.ndarray], backend: str) -> dict[tuple[str, ...], np.ndarray]:
    """Canonical state dict -> ``{backend path: array}`` with the backend's layout."""
    out = {}
    for key, value in state_dict.items():
        path, transpose = to_backend_path(key, backend)
        out[path] = np.ascontiguousarray(np.asarray(value).T) if transpose else np.asarray(value)
    return out


def from_backend(params: Mapping[tuple[str, ...], np.ndarray], backend: str) -> dict[str, np.ndarray]:
    """``{backend path: array}`` -> canonical state dict."""
    out = {}
    for path, value in params.items():
        key, transpose = from_backend_path(path, backend)
        out[key] = np.ascontiguousarray(np.asarray(value).T) if transpose else np.asarray(value)
    return out


def flatten_tree(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Nested dict (a Flax params pytree) -> ``{path: leaf}``."""
    flat: dict[tuple[str, ...], object] = {}
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping):
            flat.update(flatten_tree(v, path))
        else:
            flat[path] = v
    return flat


def unflatten_tree(flat: Mapping[tuple[str, ...], object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


# -- normalising and checking checkpoints ----------------------------------------------------------
def canonicalize(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Legacy spellings -> canonical ones; drop non-weight buffers.

    ``LayerNorm.gamma`` / ``LayerNorm.beta`` become ``.weight`` / ``.bias``.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if IGNORED_KEYS.search(key):
            continue
        module, _, leaf = key.rpartition(".")
        if leaf in _LEGACY_LEAVES and module.rpartition(".")[2] in ("LayerNorm", "layer_norm"):
            key = f"{module}.{_LEGACY_LEAVES[leaf]}"
        out[key] = value
    return out


def _is_head_key(key: str) -> bool:
    return key.split(".", 1)[0] in {m for h in HEADS.values() for m in h.head_modules}


def adapt_prefix(state_dict: Mapping[str, np.ndarray], head: Head | str) -> dict[str, np.ndarray]:
    """Add or strip the ``roberta.`` prefix so a bare-model checkpoint fits a head and back."""
    head = get_head(head) if isinstance(head, str) else head
    prefixed = any(k.startswith(BACKBONE_PREFIX + ".") for k in state_dict)
    out: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if head.prefix and not prefixed and not _is_head_key(key):
            key = f"{head.prefix}.{key}"
        elif not head.prefix and key.startswith(BACKBONE_PREFIX + "."):
            key = key[len(BACKBONE_PREFIX) + 1 :]
        out[key] = value
    return out


def resolve_ties(state_dict: Mapping[str, np.ndarray], config: XLMRobertaConfig, head: Head | str) -> dict:
    """Drop tied aliases (checking they equal their source); fill a missing source from its alias."""
    out = dict(state_dict)
    for alias, source in tied_aliases(config, head).items():
        if alias not in out:
            continue
        value = out.pop(alias)
        if source not in out:
            out[source] = value
        elif not _same_values(out[source], value):
            logger.warning("%s differs from the tied weight %s; using %s", alias, source, source)
    return out


def _same_values(a, b) -> bool:
    """``a`` equals ``b``; a lazily read tensor that knows it shares ``b``'s bytes is not read."""
    if a.shape != b.shape:
        return False
    shares = getattr(a, "shares_data_with", None)
    return (shares is not None and shares(b)) or bool(np.array_equal(a, b))


def untie(state_dict: Mapping[str, np.ndarray], config: XLMRobertaConfig, head: Head | str) -> dict:
    """Add the tied aliases back (for files whose writers store them, e.g. ``pytorch_model.bin``)."""
    out = dict(state_dict)
    for alias, source in tied_aliases(config, head).items():
        if source in out and alias not in out:
            out[alias] = out[source]
    return out


@dataclass
class LoadReport:
    """What :func:`prepare_state_dict` did: the keys left to initialise and the keys dropped."""

    state_dict: dict[str, np.ndarray]
    newly_initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class WeightMismatchError(ValueError):
    """A checkpoint does not fit the model: names the keys (and shapes) that do not."""


_LAYER_KEY = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def check_layer_count(keys: Iterable[str], config: XLMRobertaConfig, source: str = "checkpoint") -> None:
    """The checkpoint's layers (``encoder.layer.N.*`` keys) must be ``config.num_hidden_layers``.

    Checked from the keys alone, before anything proportional to the config's sizes is built, so a
    config claiming a billion layers is an error naming the field, not an out-of-memory kill.
    """
    layers = {int(m.group(1)): k for k in sorted(keys) if (m := _LAYER_KEY.search(k))}
    if layers and max(layers) + 1 != config.num_hidden_layers:
        found = f"{max(layers) + 1} layers (encoder.layer.0..{max(layers)}, e.g. {layers[max(layers)]})"
        raise WeightMismatchError(
            f"{source}: config num_hidden_layers={config.num_hidden_layers} does not fit the checkpoint, "
            f"which has {found}"
        )


def prepare_state_dict(
    state_dict: Mapping[str, np.ndarray],
    config: XLMRobertaConfig,
    head: Head | str,
    *,
    source: str = "checkpoint",
) -> LoadReport:
    """Normalise a checkpoint for ``head`` and check it, loudly.

    - legacy names, tied aliases and the ``roberta.`` prefix are sorted out;
    - a misshapen weight, a missing backbone weight or an unknown key raises
      :class:`WeightMismatchError` naming them;
    - weights of another head (``lm_head.*`` into a classifier) are dropped and logged;
    - missing weights of this head's own modules (or the pooler) are left for the model to
      initialise, and logged, as HF does when a checkpoint of one head loads into another.
    """
    head = get_head(head) if isinstance(head, str) else head
    sd = canonicalize(state_dict)
    sd = adapt_prefix(sd, head)
    # Sizes first, from the declared shapes alone: nothing is read (or allocated for the model)
    # before the config and the checkpoint agree.
    check_layer_count(sd, config, source)
    shapes = expected_shapes(config, head)
    expect = dict(shapes)
    expect.update({a: shapes[s] for a, s in tied_aliases(config, head).items() if s in shapes})
    bad_shapes = [
        f"{k}: checkpoint {tuple(np.shape(v))} vs model {expect[k]}"
        for k, v in sd.items()
        if k in expect and tuple(np.shape(v)) != expect[k]
    ]
    if bad_shapes:
        raise WeightMismatchError(f"{source}: misshapen weights: " + "; ".join(bad_shapes))
    sd = resolve_ties(sd, config, head)

    ignored = []
    unknown = []
    for key in sd:
        if key in shapes:
            continue
        bare = key[len(BACKBONE_PREFIX) + 1 :] if key.startswith(BACKBONE_PREFIX + ".") else key
        if _is_head_key(key) or bare.startswith("pooler.") or key.startswith("lm_head.decoder."):
            ignored.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise WeightMismatchError(
            f"{source}: unexpected weights not part of {head.torch_class}: {', '.join(sorted(unknown)[:10])}"
            + (f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else "")
        )

    missing = [k for k in shapes if k not in sd]
    may_init = [k for k in missing if _is_head_key(k) or ".pooler." in f".{k}"]
    must_have = [k for k in missing if k not in may_init]
    if must_have:
        raise WeightMismatchError(
            f"{source}: missing weights for {head.torch_class}: {', '.join(must_have[:10])}"
            + (f" (and {len(must_have) - 10} more)" if len(must_have) > 10 else "")
        )
    if may_init:
        logger.warning(
            "Some weights of %s were not in %s and are newly initialized: %s",
            head.torch_class,
            source,
            ", ".join(may_init),
        )
    if ignored:
        logger.info("Weights of %s not used by %s: %s", source, head.torch_class, ", ".join(ignored))
    return LoadReport(
        state_dict={k: sd[k] for k in shapes if k in sd}, newly_initialized=may_init, ignored=ignored
    )


def infer_head(shapes: Mapping[str, object] | Iterable[str]) -> Head:
    """Guess the head of a checkpoint from its keys (and shapes, when given a state dict).

    Used when ``config.json`` has no ``architectures``. A ``classifier.weight`` with one output
    row next to a pooler is multiple choice; otherwise it is token classification.
    """
    keys = set(shapes)
    tops = {k.split(".", 1)[0] for k in keys}
    if "qa_outputs" in tops:
        return HEADS["question_answering"]
    if "lm_head" in tops:
        return HEADS["masked_lm"]
    if "classifier.out_proj.weight" in keys:
        return HEADS["sequence_classification"]
    if "classifier.weight" in keys:
        rows = np.shape(shapes["classifier.weight"])[0] if isinstance(shapes, Mapping) else None
        has_pooler = any(".pooler." in f".{k}" for k in keys)
        if rows == 1 and has_pooler:
            return HEADS["multiple_choice"]
        return HEADS["token_classification"]
    return HEADS["base"]


def dtype_check(state_dict: Mapping[str, np.ndarray], source: str = "checkpoint") -> None:
    """Weights must be floating point arrays."""
    for key, value in state_dict.items():
        kind = np.asarray(value).dtype.kind
        if kind not in "fV" and str(np.asarray(value).dtype) != "bfloat16":
            raise WeightMismatchError(
                f"{source}: weight {key} has dtype {np.asarray(value).dtype}, expected float"
            )
