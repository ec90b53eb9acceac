"""XLMRobertaConfig: HF field names and defaults, ``config.json`` in and out.

Framework-neutral: imports only the standard library. A ``config.json`` written by HF
transformers loads here, and one written here loads in HF; keys this class does not know
are kept and written back unchanged.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from ._fileio import atomic_write_text

CONFIG_NAME = "config.json"

# Activation names every backend implements (HF ACT2FN spellings).
SUPPORTED_ACTIVATIONS = (
    "gelu",
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
    "relu",
    "silu",
    "swish",
    "tanh",
)
POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Fields of XLMRobertaConfig itself, with the reference defaults (yes, vocab_size=30522).
_MODEL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
    "use_cache": True,
    "classifier_dropout": None,
}

# Fields of HF's PretrainedConfig that the heads read.
_COMMON_DEFAULTS: dict[str, Any] = {
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    "problem_type": None,
    "architectures": None,
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict": True,
    "torch_dtype": None,
}

_POSITIVE_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id")
_PROBABILITY_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
_BOOL_FIELDS = (
    "use_cache",
    "is_decoder",
    "add_cross_attention",
    "tie_word_embeddings",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
)

# Sizes beyond these are not a model anyone can hold: refused before anything is allocated for them.
MAX_SIZE = 2**31 - 1  # ids and shapes are int32 in TF and in XLA
MAX_LAYERS = 10_000  # (the deepest published transformers have a few hundred)
MAX_LABELS = 1_000_000  # (id2label is built eagerly, as in HF)
MAX_PARAMETERS = 10**11  # (larger than any XLM-R: XXL has 1.07e10)
# config.json is small; a file nested deeper than this is not a config.
MAX_JSON_DEPTH = 64


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def json_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of parsed JSON, counting no further than ``limit + 1`` (iterative, no recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parameter_count(config: Any) -> int:
    """Parameters ``config``'s sizes imply (backbone and an LM head), from its fields alone."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size + 2) * h
    attention = 4 * h * h + 6 * h
    if config.position_embedding_type != "absolute":
        attention += (2 * config.max_position_embeddings - 1) * (h // config.num_attention_heads)
    per_layer = attention + 2 * h * i + i + 3 * h
    if config.add_cross_attention:
        per_layer += 4 * h * h + 6 * h
    return embeddings + n * per_layer + (h * h + h) + (h * h + 3 * h + config.vocab_size)


def _check_num_labels(n: Any) -> None:
    if not _is_int(n) or not 0 < n <= MAX_LABELS:
        raise ValueError(f"num_labels must be a positive integer (at most {MAX_LABELS}), got {_describe(n)}")


def _parse_id2label(id2label: Any) -> dict[int, str]:
    """``{"0": "neg", ...}`` (JSON) or ``{0: "neg"}`` -> ``{0: "neg"}``; anything else names the entry."""
    if not isinstance(id2label, dict):
        raise ValueError(f"id2label must be an object mapping label ids to names, got {_describe(id2label)}")
    _check_num_labels(len(id2label))
    out: dict[int, str] = {}
    for key, name in id2label.items():
        if _is_int(key):
            index = key
        elif isinstance(key, str) and key.strip().lstrip("-").isdigit() and key.strip().isascii():
            index = int(key)
        else:
            raise ValueError(f"id2label key {key!r} is not an integer label id")
        if not isinstance(name, str):
            raise ValueError(f"id2label[{key!r}] must be a label name (a string), got {_describe(name)}")
        out[index] = name
    return out


def _parse_label2id(label2id: Any) -> dict[str, int]:
    if not isinstance(label2id, dict):
        raise ValueError(f"label2id must be an object mapping label names to ids, got {_describe(label2id)}")
    out: dict[str, int] = {}
    for name, index in label2id.items():
        if not _is_int(index):
            raise ValueError(f"label2id[{name!r}] must be an integer label id, got {_describe(index)}")
        out[str(name)] = index
    return out


class XLMRobertaConfig:
    """Configuration of an XLM-RoBERTa model, field for field HF's ``XLMRobertaConfig``.

    Args:
        vocab_size: Size of the token vocabulary (250002 for the released checkpoints).
        hidden_size: Width of the encoder layers and the pooler.
        num_hidden_layers: Number of transformer layers.
        num_attention_heads: Attention heads per layer; must divide ``hidden_size``.
        intermediate_size: Width of the feed-forward layer.
        hidden_act: Feed-forward activation, one of ``SUPPORTED_ACTIVATIONS``.
        max_position_embeddings: Rows of the position table (sequences hold at most
            ``max_position_embeddings - pad_token_id - 1`` tokens).
        num_labels: Output size of the classification heads (or ``id2label``).
        **kwargs: Any other HF config key; unknown keys are kept and written back.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> config = XLMRobertaConfig(vocab_size=250002, num_labels=3)
        >>> config.hidden_size // config.num_attention_heads
        64
    """

    model_type = "xlm-roberta"

    def __init__(self, **kwargs: Any) -> None:
        for name, default in {**_MODEL_DEFAULTS, **_COMMON_DEFAULTS}.items():
            setattr(self, name, kwargs.pop(name, copy.deepcopy(default)))
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("model_type", None)
        # Where the config was loaded from (HF's ``_name_or_path``); not written to config.json.
        name_or_path = kwargs.pop("_name_or_path", kwargs.pop("name_or_path", ""))
        self._name_or_path = "" if name_or_path is None else str(name_or_path)
        if num_labels is not None:
            _check_num_labels(num_labels)
        if id2label is not None:
            id2label = _parse_id2label(id2label)
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(
                    f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries"
                )
        else:
            n = 2 if num_labels is None else num_labels
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self.id2label = id2label
        self.label2id = (
            _parse_label2id(label2id) if label2id is not None else {v: k for k, v in id2label.items()}
        )
        # Everything else (transformers_version, HF generation fields, user keys) is kept verbatim.
        self._extra: dict[str, Any] = dict(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.validate()

    # -- derived fields -------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        _check_num_labels(n)
        if n != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def name_or_path(self) -> str:
        """The path or Hub repo id ``from_pretrained`` loaded (HF's ``config.name_or_path``; "" if built)."""
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str | os.PathLike) -> None:
        self._name_or_path = os.fspath(value) if value is not None else ""

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_sequence_length(self) -> int:
        """Longest input the position table allows (positions start after the padding index)."""
        return self.max_position_embeddings - self.pad_token_id - 1

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # Attributes set by users after construction are saved like HF saves them.
        if (
            name not in _MODEL_DEFAULTS
            and name not in _COMMON_DEFAULTS
            and name not in ("id2label", "label2id")
            and not name.startswith("_")
            and not isinstance(getattr(type(self), name, None), property)
            and "_extra" in self.__dict__
        ):
            self._extra[name] = value

    # -- validation -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (type, range, NaN / inf, absurd size)."""
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if not _is_int(value):
                raise ValueError(f"{name} must be a positive integer, got {_describe(value)}")
            if not 0 < value <= MAX_SIZE:
                raise ValueError(f"{name} must be a positive integer (at most {MAX_SIZE}), got {value!r}")
        if self.num_hidden_layers > MAX_LAYERS:
            raise ValueError(
                f"num_hidden_layers={self.num_hidden_layers} is absurd (more than {MAX_LAYERS} layers)"
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for name in _TOKEN_ID_FIELDS:
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name} must be None or a non-negative integer, got {_describe(value)}")
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:  # NaN fails the comparison too
                raise ValueError(f"{name} must be a probability in [0, 1], got {_describe(value)}")
        value = self.classifier_dropout
        if value is not None and (not _is_real(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"classifier_dropout must be None or in [0, 1], got {_describe(value)}")
        value = self.layer_norm_eps
        if not _is_real(value) or not 0.0 < value < math.inf:
            raise ValueError(f"layer_norm_eps must be a finite positive number, got {_describe(value)}")
        value = self.initializer_range
        if not _is_real(value) or not 0.0 <= value < math.inf:
            raise ValueError(
                f"initializer_range must be a finite non-negative number, got {_describe(value)}"
            )
        for name in _BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {_describe(value)}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {SUPPORTED_ACTIVATIONS}, got {self.hidden_act!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"problem_type must be None or one of {PROBLEM_TYPES}, got {self.problem_type!r}"
            )
        if self.torch_dtype is not None and not isinstance(self.torch_dtype, str):
            raise ValueError(f"torch_dtype must be None or a dtype name, got {_describe(self.torch_dtype)}")
        arch = self.architectures
        if arch is not None and (not isinstance(arch, list) or not all(isinstance(a, str) for a in arch)):
            raise ValueError(f"architectures must be None or a list of class names, got {_describe(arch)}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id ({self.pad_token_id}) must lie in [0, vocab_size={self.vocab_size})"
            )
        if self.max_sequence_length <= 0:
            raise ValueError(
                f"max_position_embeddings ({self.max_position_embeddings}) leaves no room for tokens after "
                f"the padding offset (pad_token_id={self.pad_token_id})"
            )
        if not isinstance(self.id2label, dict) or sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError(f"id2label keys must be 0..num_labels-1, got {sorted(self.id2label)}")
        _check_num_labels(len(self.id2label))
        parameters = parameter_count(self) + len(self.id2label) * self.hidden_size
        if parameters > MAX_PARAMETERS:
            # Blame the field furthest beyond what real models use.
            typical = {"num_hidden_layers": 200, "hidden_size": 16384, "intermediate_size": 65536,
                       "vocab_size": 1_000_000, "max_position_embeddings": 1_000_000, "type_vocab_size": 1000}  # fmt: skip
            sizes = {name: getattr(self, name) / bound for name, bound in typical.items()}
            field = max(sizes, key=sizes.__getitem__)
            raise ValueError(
                f"{field}={getattr(self, field)} is absurd: with hidden_size={self.hidden_size}, "
                f"intermediate_size={self.intermediate_size}, num_hidden_layers={self.num_hidden_layers} and "
                f"vocab_size={self.vocab_size} the model would have {parameters:.3g} parameters, more than "
                f"any real model (limit {MAX_PARAMETERS:.0e})"
            )

    # -- dict / json ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, plus ``_name_or_path`` as in HF's ``to_dict`` (``config.json`` leaves it out)."""
        out: dict[str, Any] = {"_name_or_path": self._name_or_path}
        for name in (*_MODEL_DEFAULTS, *_COMMON_DEFAULTS):
            out[name] = copy.deepcopy(getattr(self, name))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        out.update(copy.deepcopy(self._extra))
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **overrides: Any) -> XLMRobertaConfig:
        if not isinstance(config_dict, dict):
            raise TypeError(f"config must be a dict, got {type(config_dict).__name__}")
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type not in (cls.model_type, "roberta", "xlm_roberta"):
            raise ValueError(f"model_type {model_type!r} is not an XLM-RoBERTa config")
        merged = {**config_dict, **overrides}
        # As in HF, an explicit num_labels override replaces labels the dict had for another size.
        if "num_labels" in overrides and "id2label" not in overrides:
            labels = config_dict.get("id2label")
            if labels is not None and len(labels) != overrides["num_labels"]:
                merged.pop("id2label", None)
                merged.pop("label2id", None)
        return cls(**merged)

    def _fields(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``_name_or_path``: what ``config.json`` holds (HF drops it too)."""
        out = self.to_dict()
        del out["_name_or_path"]
        return out

    def to_json_string(self) -> str:
        return json.dumps(self._fields(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), self.to_json_string())

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> XLMRobertaConfig:
        """Read a ``config.json``; any problem (encoding, JSON, nesting, a field) is a ValueError naming the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a directory, not a config file") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        except RecursionError:
            raise ValueError(f"{path} is not a config: its JSON is nested too deeply") from None
        if json_depth(obj) > MAX_JSON_DEPTH:
            raise ValueError(
                f"{path} is not a config: its JSON is nested more than {MAX_JSON_DEPTH} levels deep"
            )
        if not isinstance(obj, dict):
            raise ValueError(f"{path} is not a config: the JSON is a {type(obj).__name__}, not an object")
        try:
            return cls.from_dict(obj)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> XLMRobertaConfig:
        """Load ``config.json`` from a directory (or a JSON file) or a Hub repo, overriding fields with ``overrides``.

        ``path`` may be a Hub repo id (``org/name``, ``org/name@revision``), fetched with HF's Hub
        arguments among ``overrides`` (``revision``, ``cache_dir``, ``local_files_only``, ``token``,
        ``subfolder``, ``force_download``; see :mod:`xlmr._hub`); only ``config.json`` is fetched.
        """
        from . import _hub

        resolved = _hub.resolve_config(path, **_hub.pop_hub_kwargs(overrides))
        path = resolved.path
        if path.is_dir():
            path = path / CONFIG_NAME
        elif not path.exists():
            raise FileNotFoundError(f"no such directory or config file: {path}")
        config = cls.from_json_file(path)
        if overrides:
            config = cls.from_dict(config.to_dict(), **overrides)
        config.name_or_path = resolved.name_or_path
        return config

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        save_directory = Path(save_directory)
        if save_directory.exists() and not save_directory.is_dir():
            raise NotADirectoryError(f"save_pretrained needs a directory, {save_directory} is a file")
        save_directory.mkdir(parents=True, exist_ok=True)
        target = save_directory / CONFIG_NAME
        self.to_json_file(target)
        return target

    def copy(self, **overrides: Any) -> XLMRobertaConfig:
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        # Where a config was loaded from is not part of it.
        return isinstance(other, XLMRobertaConfig) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"
