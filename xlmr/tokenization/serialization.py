"""HF's tokenizer directory layout: ``save_pretrained`` / ``save_vocabulary`` / ``from_pretrained``.

A directory holds ``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json`` (tokens
beyond the model's vocabulary), ``sentencepiece.bpe.model`` and, from the fast tokenizer,
``tokenizer.json``. Files are written atomically (``xlmr._fileio``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tokenizers import AddedToken

from .._fileio import atomic_write_bytes, atomic_write_json
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES, _added_token_dict, _to_added_token

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


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs, **kwargs):
        """Load from a local directory in HF's layout: the configs, and ``sentencepiece.bpe.model`` (slow
        class) or ``tokenizer.json`` if present, else ``sentencepiece.bpe.model`` (fast class)."""
        path, cfg = cls._read_pretrained_dir(pretrained_model_name_or_path)
        model_files = cls._model_files(path)
        cfg.update(kwargs)
        decoder = cls._split_added_tokens_kwargs(cfg, path)
        tok = cls(*model_files, *init_inputs, added_tokens_decoder=decoder, **cfg)
        tok.name_or_path = os.fspath(pretrained_model_name_or_path)
        return tok

    @staticmethod
    def _read_pretrained_dir(path) -> tuple[str, dict]:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"tokenizer directory not found: {path!r} (xlmr loads only local directories, never from a hub)"
            )
        if not os.path.isdir(path):
            raise NotADirectoryError(f"from_pretrained expects a directory, got the file {path!r}")
        kwargs: dict[str, Any] = {}
        cfg_path = os.path.join(path, TOKENIZER_CONFIG_FILE)
        if os.path.isfile(cfg_path):
            kwargs.update(_read_json(cfg_path))
        stm_path = os.path.join(path, SPECIAL_TOKENS_MAP_FILE)
        if os.path.isfile(stm_path):
            for key, value in _read_json(stm_path).items():
                if key in SPECIAL_TOKENS_ATTRIBUTES:
                    kwargs[key] = value
        return path, kwargs

    @staticmethod
    def _split_added_tokens_kwargs(kwargs: dict, path: str) -> dict[int, AddedToken]:
        decoder = {}
        for idx, spec in (kwargs.pop("added_tokens_decoder", None) or {}).items():
            decoder[int(idx)] = _to_added_token(spec)
        added_path = os.path.join(path, ADDED_TOKENS_FILE)
        if os.path.isfile(added_path):
            for content, idx in _read_json(added_path).items():
                if int(idx) not in decoder:
                    decoder[int(idx)] = AddedToken(content, normalized=True, special=False)
        # Special tokens written as dicts become AddedTokens carrying their flags.
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = kwargs.get(key)
            if isinstance(value, Mapping):
                kwargs[key] = _to_added_token(value)
            elif key == "additional_special_tokens" and isinstance(value, list):
                kwargs[key] = [_to_added_token(v) if isinstance(v, Mapping) else v for v in value]
        for key in ("vocab_file", "tokenizer_file", "__type"):
            kwargs.pop(key, None)
        return decoder
