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

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _hub
from ._fileio import StagedDirectory
from ._sentence_layout import (
    _SBERT_CONFIG_NAMES,
    SUPPORTED_MODULES,
    Layout,
    plain_layout,
    read_layout,
    resolve_encoder,
    write_layout,
)
from ._sentence_modules import (
    POOLING_MODES,
    PRECISIONS,
    SIMILARITY_FUNCTIONS,
    Dense,
    Normalize,
    Pooling,
    Ragged,
    UnsupportedModuleError,
    normalize,
    quantize_embeddings,
    similarity,
    similarity_fn_name_of,
    similarity_pairwise,
)

logger = logging.getLogger("xlmr.sentence")

# Re-exported: the modules and the layout live in _sentence_modules.py and _sentence_layout.py.
__all__ = [
    "POOLING_MODES",
    "PRECISIONS",
    "SIMILARITY_FUNCTIONS",
    "SUPPORTED_MODULES",
    "Dense",
    "EncodeStats",
    "Layout",
    "Normalize",
    "Pooling",
    "SentenceEncoderBase",
    "UnsupportedModuleError",
    "normalize",
    "plain_layout",
    "quantize_embeddings",
    "read_layout",
    "resolve_encoder",
    "similarity",
    "similarity_pairwise",
    "write_layout",
]

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

    Loads a sentence-transformers directory (modules.json: Transformer, Pooling, Dense, Normalize)
    or a plain HF XLM-R directory (mean pooling), runs the backbone on packed rows
    (``segment_ids``: no padding computed) and gives sentence-transformers' embeddings.

    Subclasses implement ``_load_model(directory, **kwargs)`` (classmethod),
    ``_supports_packing()``, ``_forward(input_ids, **mask) -> np.ndarray`` (the backbone's
    ``last_hidden_state``; ``mask`` is one keyword: ``segment_ids=`` for packed rows, else
    ``attention_mask=``) and ``_to_tensor(array)``.

    Args:
        model: The backbone (the backend's ``XLMRobertaModel``).
        tokenizer: An xlmr XLM-R tokenizer.
        layout: The modules and settings (:func:`xlmr._sentence.read_layout`).
        packed: Packed rows (None: when the backbone takes ``segment_ids``) or padded batches.

    Example (the same with ``xlmr_tf.TFSentenceEncoder`` or ``xlmr_flax.FlaxSentenceEncoder``):
        >>> from xlmr_torch import SentenceEncoder
        >>> encoder = SentenceEncoder.from_pretrained("path/to/multilingual-e5-base")  # doctest: +SKIP
        >>> q = encoder.encode(["how do I bake bread?"], prompt_name="query")  # doctest: +SKIP
        >>> d = encoder.encode(["Bread needs flour, water, salt and yeast."], prompt_name="passage")  # doctest: +SKIP
        >>> encoder.similarity(q, d)  # doctest: +SKIP
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
        self.model.save_pretrained(str(directory), format=format)

    def _supports_packing(self) -> bool:
        raise NotImplementedError

    def _forward(self, input_ids: np.ndarray, **mask: np.ndarray) -> np.ndarray:
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
