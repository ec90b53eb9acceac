"""HF's tokenizer directory layout: ``save_pretrained`` / ``save_vocabulary`` / ``from_pretrained``.

A directory holds ``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json`` (tokens
beyond the model's vocabulary), ``sentencepiece.bpe.model`` and, from the fast tokenizer,
``tokenizer.json``. Files are written atomically (``xlmr._fileio``).

A directory is untrusted input. Only these standard names are read, each through
``xlmr._fileio.contained_path`` (a symlink out of the directory is refused); file names a config
carries (``vocab_file``, ``tokenizer_file``: older HF versions wrote absolute paths of the saving
machine there) are never opened. The JSON files must be UTF-8 JSON objects, and every field the
tokenizers use is type-checked with an error naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken

from .. import _hub
from .._fileio import atomic_write_bytes, atomic_write_json, contained_path
from .special_tokens import (
    _ADDED_TOKEN_FLAGS,
    SPECIAL_TOKENS_ATTRIBUTES,
    _added_token_dict,
    _to_added_token,
)

VOCAB_FILE = "sentencepiece.bpe.model"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _read_json(path: str) -> dict:
    """A tokenizer JSON file's top-level object; ValueError naming ``path`` if it is not UTF-8 JSON
    holding an object."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    except RecursionError:
        raise ValueError(f"{path} is not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


# ---- config fields ------------------------------------------------------------------------------

_BOOL_FIELDS = ("clean_up_tokenization_spaces", "split_special_tokens", "add_prefix_space", "legacy")


def _wrong(path: str, field: str, expected: str, value, error: type[Exception] = TypeError) -> Exception:
    return error(f"{path}: {field} must be {expected}, got {type(value).__name__} {value!r:.80}")


def _check_token(path: str, field: str, value) -> None:
    """A token as configs write it: a str, or an AddedToken dict (str ``content``, bool flags)."""
    if isinstance(value, str):
        return
    if not isinstance(value, Mapping):
        raise _wrong(path, field, "a str or an AddedToken object ({'content': ...})", value)
    if not isinstance(value.get("content"), str):
        raise _wrong(path, f"{field}.content", "a str", value.get("content"))
    for flag in _ADDED_TOKEN_FLAGS:
        if flag in value and not isinstance(value[flag], bool):
            raise _wrong(path, f"{field}.{flag}", "true or false", value[flag])


def _check_config(cfg: dict, path: str) -> None:
    """TypeError / ValueError naming ``path`` and the field, for each field of a tokenizer config (or
    special-tokens map) that the tokenizers use and that has the wrong type or an impossible value."""
    for key in SPECIAL_TOKENS_ATTRIBUTES[:-1]:
        if cfg.get(key) is not None:
            _check_token(path, key, cfg[key])
    extra = cfg.get("additional_special_tokens")
    if extra is not None:
        if not isinstance(extra, list):
            raise _wrong(path, "additional_special_tokens", "a list of tokens", extra)
        for i, token in enumerate(extra):
            _check_token(path, f"additional_special_tokens[{i}]", token)
    decoder = cfg.get("added_tokens_decoder")
    if decoder is not None:
        if not isinstance(decoder, Mapping):
            raise _wrong(path, "added_tokens_decoder", "an object {id: token}", decoder)
        for idx, token in decoder.items():
            if not (isinstance(idx, str) and idx.isascii() and idx.isdigit()):
                raise _wrong(path, "added_tokens_decoder key", "a token id (digits)", idx, ValueError)
            _check_token(path, f"added_tokens_decoder[{idx}]", token)
    length = cfg.get("model_max_length")
    if length is not None:
        integral = isinstance(length, int) or (
            isinstance(length, float) and math.isfinite(length) and length.is_integer()
        )
        if isinstance(length, bool) or not integral:
            raise _wrong(path, "model_max_length", "an int", length)
        if length < 0:
            raise _wrong(path, "model_max_length", ">= 0", length, ValueError)
    for key in _BOOL_FIELDS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise _wrong(path, key, "true or false", cfg[key])
    for key in ("padding_side", "truncation_side"):
        side = cfg.get(key, "right")
        if side not in ("left", "right"):
            raise _wrong(
                path, key, "'left' or 'right'", side, ValueError if isinstance(side, str) else TypeError
            )
    names = cfg.get("model_input_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise _wrong(path, "model_input_names", "a list of str", names)
    if cfg.get("sp_model_kwargs") is not None and not isinstance(cfg["sp_model_kwargs"], Mapping):
        raise _wrong(path, "sp_model_kwargs", "an object", cfg["sp_model_kwargs"])


def _check_added_tokens(added: dict, path: str) -> None:
    """``added_tokens.json``: ``{token: id}``."""
    for content, idx in added.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise _wrong(path, f"the id of {content!r}", "an int >= 0", idx)


# ---- files of a directory -----------------------------------------------------------------------


def _checkpoint_root(directory: str) -> Path:
    """The tree the files of ``directory`` may resolve into: the directory itself or, inside a Hugging
    Face cache snapshot (``models--org--name/snapshots/<commit>/[subfolder/]``, whose files link into
    the repo's ``blobs/``), the repo folder ``models--org--name``."""
    return _hub.cache_root(directory) or Path(directory).resolve()


def _dir_file(directory: str, name: str, what: str) -> str | None:
    """``directory/name`` if it is a file there, None if there is none; ``UnsafePathError`` if it
    resolves (through a symlink) outside the directory."""
    path = contained_path(directory, name, what=what, root=_checkpoint_root(directory))
    return os.fspath(path) if path.is_file() else None


class SerializationMixin:
    """Save / load in HF's layout; the tokenizer supplies ``_model_files`` (which model files it loads
    from a directory) and, for the fast one, ``_save_model_files``."""

    @property
    def can_save_slow_tokenizer(self) -> bool:
        return self._spm_bytes is not None

    def _tokenizer_config(self) -> dict:
        cfg = dict(self._extra_init_kwargs)
        cfg.update(
            {
                "added_tokens_decoder": {
                    str(i): _added_token_dict(t) for i, t in sorted(self.added_tokens_decoder.items())
                },
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                "extra_special_tokens": {},
                "model_max_length": self.model_max_length,
                "sp_model_kwargs": dict(getattr(self, "sp_model_kwargs", {})),
                "tokenizer_class": "XLMRobertaTokenizer",
            }
        )
        if self.padding_side != "right":
            cfg["padding_side"] = self.padding_side
        if self.truncation_side != "right":
            cfg["truncation_side"] = self.truncation_side
        if self.split_special_tokens:
            cfg["split_special_tokens"] = True
        for key, value in self.special_tokens_map.items():
            cfg[key] = value
        return cfg

    def _special_tokens_map_json(self) -> dict:
        out = {}
        for key, value in self.special_tokens_map_extended.items():
            if key == "additional_special_tokens":
                out[key] = [_added_token_dict(t, with_special=False) for t in value]
            elif (
                value.lstrip
                or value.rstrip
                or value.single_word
                or (value.normalized and key == "mask_token")
            ):
                out[key] = _added_token_dict(value, with_special=False)
            else:
                out[key] = str(value.content)
        return out

    def save_pretrained(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None, **kwargs
    ) -> tuple[str, ...]:
        """Write HF's tokenizer layout (``sentencepiece.bpe.model``, ``tokenizer.json`` for the fast class,
        ``tokenizer_config.json``, ``special_tokens_map.json``) to ``save_directory``; files are written
        atomically. Returns the written paths."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise NotADirectoryError(f"save_directory {save_directory!r} is a file, not a directory")
        os.makedirs(save_directory, exist_ok=True)
        prefix = (filename_prefix + "-") if filename_prefix else ""
        files = {
            TOKENIZER_CONFIG_FILE: self._tokenizer_config(),
            SPECIAL_TOKENS_MAP_FILE: self._special_tokens_map_json(),
        }
        added = {str(t.content): i for i, t in self.added_tokens_decoder.items() if i >= self.vocab_size}
        if added:
            files[ADDED_TOKENS_FILE] = added
        written = []
        for name, content in files.items():
            path = os.path.join(save_directory, prefix + name)
            atomic_write_json(path, content, sort_keys=True)
            written.append(path)
        written += list(self._save_model_files(save_directory, prefix))
        return tuple(written)

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the SentencePiece model the tokenizer was built from as ``[prefix-]sentencepiece.bpe.model``
        (atomically). A fast tokenizer built from a ``tokenizer.json`` alone has none to write."""
        if not self.can_save_slow_tokenizer:
            raise ValueError(
                "this fast tokenizer was not built from a SentencePiece model, so it cannot write "
                f"{VOCAB_FILE}; save_pretrained writes tokenizer.json instead"
            )
        save_directory = os.fspath(save_directory)
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary needs an existing directory, got {save_directory!r}")
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        if self.vocab_file is None or os.path.abspath(self.vocab_file) != os.path.abspath(out):
            atomic_write_bytes(out, self._spm_bytes)
        return (out,)

    def _save_model_files(self, save_directory: str, prefix: str) -> list[str]:
        return list(self.save_vocabulary(save_directory, prefix[:-1] if prefix else None))

    #: The model files ``from_pretrained`` fetches from a Hub repo, at least one of them needed.
    _hub_model_files: tuple[str, ...] = (VOCAB_FILE,)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs, **kwargs):
        """Load from a local directory in HF's layout, or a Hub repo: the configs, and ``sentencepiece.bpe.model``
        (slow class) or ``tokenizer.json`` if present, else ``sentencepiece.bpe.model`` (fast class).

        ``pretrained_model_name_or_path`` may be a Hub repo id (``org/name``, ``org/name@revision``),
        fetched through huggingface_hub with HF's arguments ``revision``, ``cache_dir``,
        ``local_files_only``, ``token``, ``subfolder`` and ``force_download`` (see :mod:`xlmr._hub`):
        the tokenizer files only, never the weights. The name is kept as ``tokenizer.name_or_path``.
        """
        hub = _hub.pop_hub_kwargs(kwargs)
        files = (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, ADDED_TOKENS_FILE, *cls._hub_model_files)
        resolved = _hub.resolve_files(
            pretrained_model_name_or_path, files, need_one_of=cls._hub_model_files, **hub
        )
        path, cfg = cls._read_pretrained_dir(resolved.path)
        model_files = cls._model_files(path)
        cfg.update(kwargs)
        decoder = cls._split_added_tokens_kwargs(cfg, path)
        tok = cls(*model_files, *init_inputs, added_tokens_decoder=decoder, **cfg)
        tok.name_or_path = resolved.name_or_path
        return tok

    @staticmethod
    def _read_pretrained_dir(path) -> tuple[str, dict]:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"tokenizer directory not found: {path!r} (neither a local directory nor a Hub repo id)"
            )
        if not os.path.isdir(path):
            raise NotADirectoryError(f"from_pretrained expects a directory, got the file {path!r}")
        kwargs: dict[str, Any] = {}
        cfg_path = _dir_file(path, TOKENIZER_CONFIG_FILE, "tokenizer config")
        if cfg_path is not None:
            cfg = _read_json(cfg_path)
            _check_config(cfg, cfg_path)
            kwargs.update(cfg)
        stm_path = _dir_file(path, SPECIAL_TOKENS_MAP_FILE, "special tokens map")
        if stm_path is not None:
            stm = {k: v for k, v in _read_json(stm_path).items() if k in SPECIAL_TOKENS_ATTRIBUTES}
            _check_config(stm, stm_path)
            kwargs.update(stm)
        return path, kwargs

    @staticmethod
    def _split_added_tokens_kwargs(kwargs: dict, path: str) -> dict[int, AddedToken]:
        decoder = {}
        for idx, spec in (kwargs.pop("added_tokens_decoder", None) or {}).items():
            decoder[int(idx)] = _to_added_token(spec)
        added_path = _dir_file(path, ADDED_TOKENS_FILE, "added tokens file")
        if added_path is not None:
            added = _read_json(added_path)
            _check_added_tokens(added, added_path)
            for content, idx in added.items():
                if int(idx) not in decoder:
                    decoder[int(idx)] = AddedToken(content, normalized=True, special=False)
        # Special tokens written as dicts become AddedTokens carrying their flags.
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = kwargs.get(key)
            if isinstance(value, Mapping):
                kwargs[key] = _to_added_token(value)
            elif key == "additional_special_tokens" and isinstance(value, list):
                kwargs[key] = [_to_added_token(v) if isinstance(v, Mapping) else v for v in value]
        # File names in a config are not opened (see the module docstring).
        for key in ("vocab_file", "tokenizer_file", "__type"):
            kwargs.pop(key, None)
        return decoder
