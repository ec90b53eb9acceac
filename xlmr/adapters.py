"""LoRA adapters in PEFT's format, framework-neutral: the config, the key names, which layers a
config targets, the scaling, initialisation and merging -- numpy only.

An adapter directory is what PEFT's ``save_pretrained`` writes: ``adapter_config.json`` and
``adapter_model.safetensors`` (or ``adapter_model.bin``). Its keys are the canonical weight names
of :mod:`xlmr.weights` behind PEFT's ``base_model.model.`` prefix:

=============================================  ==============================================
PEFT key (``base_model.model.`` + ...)           what it is (PyTorch layouts)
=============================================  ==============================================
``<module>.lora_A.weight``                     A, (r, in_features), of a targeted dense layer
``<module>.lora_B.weight``                     B, (out_features, r)
``<module_to_save>.<...>.weight`` / ``.bias``  a trained copy of a ``modules_to_save`` weight
=============================================  ==============================================

with ``<module>`` the canonical module name (``roberta.encoder.layer.0.attention.self.query``).
A targeted layer computes ``x @ W.T + b + scale * (dropout(x) @ A.T) @ B.T`` with ``scale =
lora_alpha / r`` (``lora_alpha / sqrt(r)`` with ``use_rslora``); merging folds ``scale * B @ A``
into ``W``.

Each backend holds A and B as two bias-free dense layers named ``lora_A`` and ``lora_B`` under the
targeted layer, so :func:`xlmr.weights.to_backend_path` gives their paths with no new rule:
``.../query/lora_A/kernel`` in Keras, ``(..., "query", "lora_A", "kernel")`` in a Flax tree, the
kernels transposed as every dense kernel is.

Which layers a config targets is decided as PEFT decides it (``peft.tuners.tuners_utils.
check_target_module_exists``), over the module names of HF's PyTorch class of the head: a list
of names matches a module whose name equals one of them or ends with ``"." + name``; a string is
a regular expression that must match the whole name (``re.fullmatch``); ``exclude_modules``,
``layers_to_transform`` / ``layers_pattern`` and the modules inside ``modules_to_save`` are left
out; ``"all-linear"`` is every dense layer but the output layer. A module that matches but is not
a dense layer (a LayerNorm, an embedding, a container such as ``attention.output``) is an error
naming it, as in PEFT; so is a config that matches nothing.

Only LoRA is supported (``peft_type`` ``"LORA"``) with the fields PEFT's ``LoraConfig`` uses for
plain LoRA on linear layers; a field that asks for more (``use_dora``, ``lora_bias``,
``layer_replication``, a ``bias`` other than ``"none"``, an initialisation that rewrites the base
weights such as PiSSA...) is refused with an error naming it. Fields this module does not know
are accepted only when they are unset (null, false, empty), so configs written by newer PEFT
versions still load.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import weights as W
from ._fileio import contained_path
from .config import MAX_JSON_DEPTH, XLMRobertaConfig, json_depth
from .heads import HEADS, Head, get_head

PEFT_PREFIX = "base_model.model."
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME_BIN = "adapter_model.bin"
DEFAULT_ADAPTER_NAME = "default"  # PEFT's and HF's name for an unnamed adapter
# PEFT's default targets for XLM-R (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["xlm-roberta"]).
DEFAULT_TARGET_MODULES = ("query", "value")
ALL_LINEAR = "all-linear"

# PEFT task types and the head each one trains.
TASK_TYPES = {
    "SEQ_CLS": "sequence_classification",
    "TOKEN_CLS": "token_classification",
    "QUESTION_ANS": "question_answering",
    "FEATURE_EXTRACTION": "base",
    "CAUSAL_LM": "causal_lm",
}

# Initialisations that leave the base weights as they are (the others -- PiSSA, OLoRA, CorDA,
# LoftQ, LoRA-GA -- rewrite them, so their adapters need the rewritten base model).
_PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal")
# Initialisations add_adapter can perform.
_OWN_INITS = (True, False, "gaussian")

# adapter_config.json fields that carry no meaning for loading or are PEFT bookkeeping.
_BOOKKEEPING = {
    "peft_type",
    "peft_version",
    "auto_mapping",
    "revision",
    "inference_mode",
    "task_type",
    "base_model_name_or_path",
    "megatron_core",  # a module name, used only with megatron_config
    "qalora_group_size",  # used only with use_qalora
    "runtime_config",
}
# Fields of PEFT's LoraConfig for features xlmr does not implement, with what each is.
_UNSUPPORTED = {
    "use_dora": "DoRA (weight-decomposed LoRA)",
    "lora_bias": "LoRA bias vectors",
    "layer_replication": "layer replication",
    "target_parameters": "LoRA on bare parameters",
    "trainable_token_indices": "trainable token embeddings",
    "alora_invocation_tokens": "activated LoRA (aLoRA)",
    "use_qalora": "QALoRA",
    "use_bdlora": "block-diagonal LoRA",
    "megatron_config": "Megatron parallel layers",
    "loftq_config": "LoftQ",
    "eva_config": "EVA initialisation settings",
    "corda_config": "CorDA",
    "lora_ga_config": "LoRA-GA",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA",
    "ensure_weight_tying": "tied adapter weights",
}


class AdapterError(ValueError):
    """An adapter does not fit the model, or its config asks for something unsupported; names the
    field, key or module."""


def _unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, Mapping | list | tuple | str) and not value)


def _names(value: Any, field_name: str, source: str) -> tuple[str, ...] | str | None:
    """A PEFT module-name field: None, a regex string, or a list/set of names -> sorted tuple."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) and v for v in value):
        return tuple(sorted(set(value)))
    raise AdapterError(
        f"{source}: {field_name} must be a list of module names or a regex string, got {value!r}"
    )


def _number(value: Any, field_name: str, source: str, *, integer: bool = False) -> int | float:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise AdapterError(f"{source}: {field_name} must be {kind}, got {value!r}")
    return value


def _pattern(value: Any, field_name: str, source: str, *, integer: bool) -> dict[str, int | float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise AdapterError(f"{source}: {field_name} must map module names to numbers, got {value!r}")
    return {k: _number(v, f"{field_name}[{k!r}]", source, integer=integer) for k, v in value.items()}


@dataclass(frozen=True)
class LoraConfig:
    """PEFT's ``LoraConfig``, the fields that plain LoRA on dense layers uses; ``adapter_config.json``
    in and out.

    Field names, meanings and defaults are PEFT's (``peft.LoraConfig``): ``target_modules`` None
    means PEFT's default for XLM-R, ``("query", "value")``.

    Args:
        r: Rank of the update.
        lora_alpha: Scale numerator: the update is scaled by ``lora_alpha / r``.
        target_modules: Module names (suffix match), a regex (full match), or ``"all-linear"``.
        lora_dropout: Dropout on the input of the LoRA branch while training.
        use_rslora: Scale by ``lora_alpha / sqrt(r)`` instead.
        bias: Only ``"none"`` is supported.
        modules_to_save: Modules trained and saved in full beside the adapter (e.g. ``["classifier"]``).
        exclude_modules: Names or a regex of modules never targeted.
        layers_to_transform: Layer indices (or one index) to target only.
        layers_pattern: The name of the layer list for ``layers_to_transform`` (``"layer"``).
        rank_pattern: ``{name or regex: r}`` overriding ``r`` per module.
        alpha_pattern: ``{name or regex: lora_alpha}`` overriding ``lora_alpha`` per module.
        init_lora_weights: How fresh branches start: True (B zero), ``"gaussian"`` or False.
        task_type: PEFT's task type (``"SEQ_CLS"``, ``"TOKEN_CLS"``...), or None.
        base_model_name_or_path: The model the adapter was trained on.
        revision: The base model's revision.
        inference_mode: Whether PEFT loads it frozen.

    Example:
        >>> from xlmr.adapters import LoraConfig
        >>> config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])
        >>> config.to_dict()["peft_type"], config.scale(8)
        ('LORA', 2.0)
    """

    r: int = 8
    lora_alpha: int | float = 8
    target_modules: tuple[str, ...] | str | None = None
    lora_dropout: float = 0.0
    use_rslora: bool = False
    bias: str = "none"
    modules_to_save: tuple[str, ...] | None = None
    exclude_modules: tuple[str, ...] | str | None = None
    layers_to_transform: tuple[int, ...] | None = None
    layers_pattern: tuple[str, ...] | None = None
    rank_pattern: Mapping[str, int] = field(default_factory=dict)
    alpha_pattern: Mapping[str, int | float] = field(default_factory=dict)
    init_lora_weights: bool | str = True
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    revision: str | None = None
    inference_mode: bool = False

    def __post_init__(self) -> None:
        self._validate("LoraConfig")

    def _validate(self, source: str) -> None:
        """Type- and range-check every field; errors name ``source`` and the field."""
        set_ = object.__setattr__
        set_(self, "r", _number(self.r, "r", source, integer=True))
        set_(self, "lora_alpha", _number(self.lora_alpha, "lora_alpha", source))
        for name in ("target_modules", "exclude_modules"):
            set_(self, name, _names(getattr(self, name), name, source))
        mts = self.modules_to_save
        if mts is not None:
            if isinstance(mts, str) or not all(isinstance(m, str) and m for m in mts):
                raise AdapterError(f"{source}: modules_to_save must be a list of module names, got {mts!r}")
            set_(self, "modules_to_save", tuple(dict.fromkeys(mts)))
        dropout = self.lora_dropout
        if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise AdapterError(f"{source}: lora_dropout must be a probability in [0, 1), got {dropout!r}")
        if not isinstance(self.use_rslora, bool):
            raise AdapterError(f"{source}: use_rslora must be true or false, got {self.use_rslora!r}")
        if self.bias != "none":
            raise AdapterError(
                f"{source}: bias={self.bias!r} is not supported (trained bias vectors of the base layers); "
                "only bias='none'"
            )
        layers = self.layers_to_transform
        if layers is not None:
            layers = (layers,) if isinstance(layers, int) and not isinstance(layers, bool) else layers
            if not isinstance(layers, list | tuple) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers
            ):
                raise AdapterError(f"{source}: layers_to_transform must be layer indices, got {layers!r}")
            set_(self, "layers_to_transform", tuple(layers))
        pattern = self.layers_pattern
        if pattern is not None:
            pattern = (pattern,) if isinstance(pattern, str) else pattern
            if not isinstance(pattern, list | tuple) or not all(isinstance(p, str) for p in pattern):
                raise AdapterError(
                    f"{source}: layers_pattern must be a name or a list of names, got {pattern!r}"
                )
            set_(self, "layers_pattern", tuple(pattern))
        if isinstance(self.target_modules, str) and (layers is not None or pattern is not None):
            raise AdapterError(
                f"{source}: layers_to_transform / layers_pattern cannot be used when target_modules is a regex"
            )
        set_(self, "rank_pattern", _pattern(self.rank_pattern, "rank_pattern", source, integer=True))
        set_(self, "alpha_pattern", _pattern(self.alpha_pattern, "alpha_pattern", source, integer=False))
        init = self.init_lora_weights
        if init not in _PLAIN_INITS or isinstance(init, int) and not isinstance(init, bool):
            raise AdapterError(
                f"{source}: init_lora_weights={init!r} is not supported"
                + (
                    " (it rewrites the base weights, so the adapter needs that rewritten model)"
                    if isinstance(init, str)
                    else ""
                )
                + f"; supported: {', '.join(map(repr, _PLAIN_INITS))}"
            )
        if self.task_type is not None and not isinstance(self.task_type, str):
            raise AdapterError(f"{source}: task_type must be a string or null, got {self.task_type!r}")
        for name in ("base_model_name_or_path", "revision"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise AdapterError(f"{source}: {name} must be a string or null, got {value!r}")
        if not isinstance(self.inference_mode, bool):
            raise AdapterError(f"{source}: inference_mode must be true or false, got {self.inference_mode!r}")

    # -- scaling -------------------------------------------------------------------------------
    def scale(self, r: int | None = None, alpha: float | None = None) -> float:
        """The LoRA scale of a branch of rank ``r`` and ``alpha`` (the config's own by default)."""
        r = self.r if r is None else r
        alpha = self.lora_alpha if alpha is None else alpha
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def rank_and_alpha(self, module: str) -> tuple[int, int | float]:
        """``(r, lora_alpha)`` of ``module``: ``rank_pattern`` / ``alpha_pattern`` as PEFT reads them
        (the first key ``k`` with ``re.match(rf"(.*\\.)?({k})$", module)``), else the config's."""
        return (
            self.rank_pattern.get(_pattern_key(self.rank_pattern, module), self.r),
            self.alpha_pattern.get(_pattern_key(self.alpha_pattern, module), self.lora_alpha),
        )

    # -- dict / JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``adapter_config.json`` PEFT writes for this config (PEFT fills the fields not given)."""
        out: dict[str, Any] = {"peft_type": "LORA"}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        out.update(fan_in_fan_out=False, use_dora=False, lora_bias=False)
        return out

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], source: str = "adapter config") -> LoraConfig:
        """Parse an ``adapter_config.json`` dict; refuse what plain LoRA does not cover, naming the field.

        Args:
            config: The parsed JSON (or ``peft.LoraConfig.to_dict()``).
            source: Where it came from, for the error messages.
        """
        if not isinstance(config, Mapping):
            raise AdapterError(f"{source}: an adapter config is a JSON object, got {type(config).__name__}")
        peft_type = config.get("peft_type")
        peft_type = getattr(peft_type, "value", peft_type)  # peft.PeftType is a str enum
        if peft_type is None:
            raise AdapterError(f"{source}: no peft_type; xlmr loads PEFT LoRA adapters (peft_type 'LORA')")
        if peft_type != "LORA":
            raise AdapterError(
                f"{source}: unsupported PEFT type {peft_type!r}: xlmr_tf and xlmr_flax load LoRA adapters "
                "only (peft_type 'LORA'); with PyTorch, PEFT itself loads every type onto xlmr_torch models"
            )
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in config.items():
            value = getattr(value, "value", value)  # enums (peft.TaskType) -> their string
            if key in known:
                kwargs[key] = value
            elif key == "fan_in_fan_out":
                if value:
                    raise AdapterError(
                        f"{source}: fan_in_fan_out=true (Conv1D weights stored (in, out)) does not apply to "
                        "XLM-R's linear layers"
                    )
            elif key in _BOOKKEEPING:
                continue
            elif not _unset(value):
                what = _UNSUPPORTED.get(key)
                raise AdapterError(
                    f"{source}: unsupported field {key}={json.dumps(value, default=str)}"
                    + (f" ({what})" if what else "")
                    + "; xlmr implements plain LoRA on dense layers"
                )
        if kwargs.get("task_type") is not None and not isinstance(kwargs["task_type"], str):
            kwargs["task_type"] = str(kwargs["task_type"])
        config_obj = cls.__new__(cls)
        defaults = cls()
        for f in fields(cls):
            object.__setattr__(config_obj, f.name, kwargs.get(f.name, getattr(defaults, f.name)))
        config_obj._validate(source)
        return config_obj

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> LoraConfig:
        """Read ``adapter_config.json`` from an adapter directory (or the file itself)."""
        path = Path(directory)
        if path.is_dir():
            path = contained_path(path, CONFIG_NAME, what="adapter config")
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise AdapterError(f"{path} is not valid JSON: {err}") from None
        except RecursionError:
            raise AdapterError(f"{path}: its JSON is nested too deeply") from None
        if json_depth(obj) > MAX_JSON_DEPTH:
            raise AdapterError(f"{path}: its JSON is nested more than {MAX_JSON_DEPTH} levels deep")
        return cls.from_dict(obj, source=str(path))

    @classmethod
    def coerce(cls, config: Any, source: str = "adapter_config") -> LoraConfig:
        """A :class:`LoraConfig` from one, from an ``adapter_config.json`` dict, or from a
        ``peft.LoraConfig`` (anything with ``to_dict()``)."""
        if isinstance(config, cls):
            return config
        if hasattr(config, "to_dict") and not isinstance(config, Mapping):
            config = config.to_dict()
        return cls.from_dict(config, source=source)

    def copy(self, **changes: Any) -> LoraConfig:
        return replace(self, **changes)


def _pattern_key(pattern: Mapping[str, Any], module: str) -> str:
    """PEFT's ``get_pattern_key``: the first key matching the end of ``module`` (``module`` if none)."""
    for key in pattern:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return module


# -- the modules of a model, as HF's PyTorch class names them ----------------------------------------
@dataclass(frozen=True)
class Module:
    """A module of HF's PyTorch class of a head, as ``model.named_modules()`` lists it.

    Attributes:
        name: The module name (``roberta.encoder.layer.0.attention.self.query``).
        kind: ``"dense"`` (nn.Linear), ``"tied"`` (the LM decoder tied to the word embeddings),
            ``"layernorm"``, ``"embedding"`` or ``"container"``.
        shape: (out_features, in_features) of a dense layer, else None.
    """

    name: str
    kind: str
    shape: tuple[int, int] | None = None


def model_modules(config: XLMRobertaConfig, head: Head | str) -> dict[str, Module]:
    """The modules (with weights, and their containers) of ``head``'s model, in HF's module order."""
    head = get_head(head) if isinstance(head, str) else head
    shapes = W.expected_shapes(config, head)
    out: dict[str, Module] = {}

    def add(name: str, kind: str, shape: tuple[int, int] | None = None) -> None:
        parts = name.split(".")
        for i in range(1, len(parts)):
            out.setdefault(".".join(parts[:i]), Module(".".join(parts[:i]), "container"))
        out.setdefault(name, Module(name, kind, shape))

    for key, shape in shapes.items():
        kind, role = W.param_kind(key)
        module = key.rpartition(".")[0]
        if kind == "param":  # lm_head.bias: the LM head module itself holds it
            add(module, "container")
        elif kind == "dense" and role == "weight":
            add(module, "dense", (int(shape[0]), int(shape[1])))
        elif kind != "dense":
            add(module, kind)
    if "lm_head.decoder" not in out and head.name in ("masked_lm", "causal_lm"):
        add("lm_head.decoder", "tied", (config.vocab_size, config.hidden_size))
    return out


def _excluded(config: LoraConfig, name: str) -> bool:
    ex = config.exclude_modules
    if ex is None:
        return False
    if isinstance(ex, str):
        return re.fullmatch(ex, name) is not None
    return name in ex or any(name.endswith(f".{e}") for e in ex)


def _in_modules_to_save(config: LoraConfig, name: str) -> bool:
    # PEFT: ``re.match(rf"(^|.*\.){m}($|\..*)", key)`` -- the names are used as regexes, as there.
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in config.modules_to_save or ())


def _matches(config: LoraConfig, targets: tuple[str, ...] | str, name: str) -> bool:
    """PEFT's ``check_target_module_exists`` for one module name (exclusions handled by the caller)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    if name in targets:
        return True
    if not any(name.endswith(f".{t}") for t in targets):
        return False
    if config.layers_to_transform is None:
        return True
    index = None
    if not config.layers_pattern:
        m = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
        index = m.group("idx") if m else None
    else:
        for pattern in config.layers_pattern:
            m = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", name)
            if m:
                index = m.group("idx")
                break
    return index is not None and int(index) in config.layers_to_transform


# -- the plan: what an adapter config means for one model --------------------------------------------
@dataclass(frozen=True)
class LoraTarget:
    """One dense layer with a LoRA branch.

    Attributes:
        module: Canonical module name.
        in_features / out_features: The layer's sizes.
        r / alpha: Rank and alpha of this branch (``rank_pattern`` / ``alpha_pattern`` applied).
        scale: ``alpha / r`` (``alpha / sqrt(r)`` with ``use_rslora``).
        dropout: ``lora_dropout``.
    """

    module: str
    in_features: int
    out_features: int
    r: int
    alpha: float
    scale: float
    dropout: float

    @property
    def a_key(self) -> str:
        return f"{self.module}.lora_A.weight"

    @property
    def b_key(self) -> str:
        return f"{self.module}.lora_B.weight"


@dataclass(frozen=True)
class AdapterPlan:
    """An adapter config resolved against one model: its LoRA branches and saved modules.

    Attributes:
        config: The adapter config.
        head: The model's head.
        targets: ``{module: LoraTarget}`` in module order.
        saved: ``{canonical key: shape}`` of the ``modules_to_save`` weights.
        model_name: The model's class name, for messages.
    """

    config: LoraConfig
    head: Head
    targets: dict[str, LoraTarget]
    saved: dict[str, tuple[int, ...]]
    model_name: str

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of the adapter's state dict (canonical, no PEFT prefix) with its PyTorch shape."""
        out: dict[str, tuple[int, ...]] = {}
        for t in self.targets.values():
            out[t.a_key] = (t.r, t.in_features)
            out[t.b_key] = (t.out_features, t.r)
        out.update(self.saved)
        return out

    def config_to_save(self) -> LoraConfig:
        """The config as PEFT's ``save_pretrained`` writes it: ``inference_mode`` true, and
        ``"all-linear"`` written out as the module names it resolved to."""
        config = self.config.copy(inference_mode=True)
        spec = config.target_modules
        if isinstance(spec, str) and spec.lower() == ALL_LINEAR:
            config = config.copy(target_modules=tuple(self.targets))
        return config


def plan_adapter(
    adapter_config: LoraConfig, config: XLMRobertaConfig, head: Head | str, model_name: str | None = None
) -> AdapterPlan:
    """Resolve ``adapter_config`` against a model of ``config`` and ``head``, as PEFT would.

    Raises :class:`AdapterError` naming the modules when ``target_modules`` matches no dense layer,
    matches a module that is not one, or ``modules_to_save`` matches nothing.
    """
    head = get_head(head) if isinstance(head, str) else head
    name = model_name or head.torch_class
    modules = model_modules(config, head)
    ac = adapter_config
    targets_spec = DEFAULT_TARGET_MODULES if ac.target_modules is None else ac.target_modules
    if isinstance(targets_spec, str) and targets_spec.lower() == ALL_LINEAR:
        excluded = {"lm_head.decoder"}
        if ac.task_type == "SEQ_CLS":
            excluded.add("classifier")  # PEFT leaves out the classifier module itself (by that name)
        targets_spec = tuple(m.name for m in modules.values() if m.kind == "dense" and m.name not in excluded)
        matched = [m for m in targets_spec if not _excluded(ac, m) and not _in_modules_to_save(ac, m)]
        matched_modules = [modules[m] for m in matched]
    else:
        matched_modules = [
            m
            for m in modules.values()
            if not _excluded(ac, m.name)
            and not _in_modules_to_save(ac, m.name)
            and _matches(ac, targets_spec, m.name)
        ]
    wrong = [m for m in matched_modules if m.kind != "dense"]
    if wrong:
        m = wrong[0]
        what = {
            "tied": "the LM decoder tied to the word embeddings (LoRA on it is not supported)",
            "layernorm": "a LayerNorm",
            "embedding": "an embedding (LoRA on embeddings is not supported)",
            "container": "a container module, not a dense layer",
        }[m.kind]
        raise AdapterError(
            f"target_modules {_show(targets_spec)} match {m.name!r} of {name}, which is {what}; "
            "LoRA applies to dense (linear) layers only"
        )
    if not matched_modules:
        dense = sorted({m.name.rpartition(".")[2] for m in modules.values() if m.kind == "dense"})
        raise AdapterError(
            f"target_modules {_show(targets_spec)} match no layer of {name}"
            + (f" (exclude_modules {_show(ac.exclude_modules)})" if ac.exclude_modules else "")
            + f"; its dense layers are named {', '.join(dense)}"
        )
    targets = {}
    for m in matched_modules:
        r, alpha = ac.rank_and_alpha(m.name)
        out_features, in_features = m.shape
        targets[m.name] = LoraTarget(
            m.name, in_features, out_features, r, alpha, ac.scale(r, alpha), float(ac.lora_dropout)
        )
    saved: dict[str, tuple[int, ...]] = {}
    if ac.modules_to_save:
        chosen = [m for m in modules if any(m.endswith(s) for s in ac.modules_to_save)]
        if not chosen:
            raise AdapterError(f"modules_to_save {list(ac.modules_to_save)} match no module of {name}")
        for key, shape in W.expected_shapes(config, head).items():
            if any(key.startswith(m + ".") for m in chosen):
                saved[key] = tuple(shape)
    return AdapterPlan(ac, head, targets, saved, name)


def _show(spec: Any) -> str:
    return repr(spec) if isinstance(spec, str) else repr(list(spec))


# -- state dicts -------------------------------------------------------------------------------------
def strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """PEFT's keys -> canonical ones: ``base_model.model.`` dropped (HF's ``load_adapter`` does the same),
    and the adapter name PEFT puts in in-memory keys (``lora_A.default.weight``) too."""
    out = {}
    for key, value in state_dict.items():
        key = key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key
        key = re.sub(r"\.(lora_[AB])\.[^.]+\.weight$", r".\1.weight", key)
        out[key] = value
    return out


def add_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical adapter keys -> the keys PEFT's ``save_pretrained`` writes."""
    return {PEFT_PREFIX + k: v for k, v in state_dict.items()}


def check_state_dict(
    plan: AdapterPlan, state_dict: Mapping[str, Any], source: str = "adapter"
) -> dict[str, np.ndarray]:
    """The adapter's weights, checked against ``plan``: canonical keys, float32 numpy arrays.

    Every key must be one the plan expects (a LoRA weight of a targeted layer, a weight of a
    saved module) with the expected shape, and every expected key must be there; the error names
    the keys, shapes and the model.
    """
    sd = strip_prefix(state_dict)
    shapes = plan.shapes()
    unexpected = sorted(k for k in sd if k not in shapes)
    if unexpected:
        hint = ""
        lora_modules = sorted({k.rpartition(".lora_")[0] for k in unexpected if ".lora_" in k})
        if lora_modules and not any(m in plan.targets for m in lora_modules):
            hint = f" (LoRA weights for layers that are not targets of {plan.model_name})"
        elif any(".lora_" not in k for k in unexpected):
            hint = (
                f" (weights {plan.model_name} does not have: an adapter for another head, "
                f"task_type={plan.config.task_type!r}?)"
            )
        raise AdapterError(
            f"{source}: unexpected keys{hint}: {', '.join(PEFT_PREFIX + k for k in unexpected[:8])}"
            + (f" (and {len(unexpected) - 8} more)" if len(unexpected) > 8 else "")
        )
    bad = [
        f"{PEFT_PREFIX}{k}: adapter {tuple(np.shape(v))} vs model {shapes[k]}"
        for k, v in sd.items()
        if tuple(np.shape(v)) != shapes[k]
    ]
    if bad:
        raise AdapterError(
            f"{source}: misshapen weights for {plan.model_name} (another hidden size, rank or label count?): "
            + "; ".join(bad[:8])
        )
    missing = [k for k in shapes if k not in sd]
    if missing:
        raise AdapterError(
            f"{source}: missing weights for the layers its config targets in {plan.model_name}: "
            + ", ".join(PEFT_PREFIX + k for k in missing[:8])
            + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else "")
        )
    out = {}
    for key in shapes:
        value = np.asarray(sd[key])
        kind = value.dtype.kind
        if kind not in "fV" and str(value.dtype) != "bfloat16":
            raise AdapterError(f"{source}: {PEFT_PREFIX}{key} has dtype {value.dtype}, expected float")
        out[key] = np.asarray(value, dtype=np.float32)
    return out


def init_weights(
    plan: AdapterPlan, base: Mapping[str, np.ndarray], seed: int | None = None
) -> dict[str, np.ndarray]:
    """Fresh adapter weights, as PEFT initialises them, in canonical keys (float32).

    ``init_lora_weights=True``: A as ``nn.Linear``'s default (uniform in ``±1/sqrt(in_features)``),
    B zeros, so the adapted model starts as the base model; ``"gaussian"``: A normal with std
    ``1/r``; False: B as A (uniform in ``±1/sqrt(r)``), a random non-zero update. The
    ``modules_to_save`` weights start as copies of ``base``'s.
    """
    init = plan.config.init_lora_weights
    if init not in _OWN_INITS:
        raise AdapterError(
            f"init_lora_weights={init!r}: add_adapter initialises {', '.join(map(repr, _OWN_INITS))}"
        )
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in plan.targets.values():
        if init == "gaussian":
            a = rng.normal(0.0, 1.0 / t.r, size=(t.r, t.in_features))
        else:
            bound = 1.0 / math.sqrt(t.in_features)
            a = rng.uniform(-bound, bound, size=(t.r, t.in_features))
        if init is False:
            bound = 1.0 / math.sqrt(t.r)
            b = rng.uniform(-bound, bound, size=(t.out_features, t.r))
        else:
            b = np.zeros((t.out_features, t.r))
        out[t.a_key] = a.astype(np.float32)
        out[t.b_key] = b.astype(np.float32)
    for key in plan.saved:
        if key not in base:
            raise AdapterError(f"modules_to_save: the model has no weight {key}")
        out[key] = np.array(base[key], dtype=np.float32)
    return out


def delta(target: LoraTarget, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scale * B @ A``: the (out_features, in_features) update merging adds to the layer's weight."""
    return (np.asarray(b, np.float32) @ np.asarray(a, np.float32)) * np.float32(target.scale)


def merge(
    plan: AdapterPlan, base: Mapping[str, np.ndarray], adapter: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The merged canonical weights: each target's ``W + scale * B @ A`` (float32, as PEFT computes
    it), the ``modules_to_save`` weights replaced. ``base`` is not modified."""
    out = dict(base)
    for module, t in plan.targets.items():
        key = f"{module}.weight"
        weight = np.asarray(base[key])
        out[key] = (weight.astype(np.float32) + delta(t, adapter[t.a_key], adapter[t.b_key])).astype(
            weight.dtype
        )
    for key in plan.saved:
        out[key] = np.asarray(adapter[key], dtype=np.asarray(base[key]).dtype)
    return out


def head_for_task(task_type: str | None) -> Head | None:
    """The head a PEFT ``task_type`` trains (None when unknown or unset)."""
    name = TASK_TYPES.get(task_type or "")
    return HEADS[name] if name else None


def lora_keys(keys: Iterable[str]) -> list[str]:
    """The LoRA keys among ``keys`` (``*.lora_A.weight`` / ``*.lora_B.weight``)."""
    return [k for k in keys if re.search(r"\.lora_[AB]\.weight$", k)]
