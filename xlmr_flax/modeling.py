"""Flax/JAX XLM-RoBERTa: ``flax.linen`` modules and HF-style model wrappers for the seven heads.

The linen modules (``FlaxXLMRoberta...Module``) hold the computation; the public classes
(``FlaxXLMRobertaModel``, ``FlaxXLMRobertaForMaskedLM``...) hold a config, the linen module
(``model.module``) and the parameters (``model.params``), a plain nested dict laid out exactly
as HF's ``flax_model.msgpack``: the path of every weight is
``xlmr.weights.to_backend_path(canonical_key, "flax")``. The bare model's parameters have no
``roberta`` level; the heads' do.

Calls follow HF's Flax classes (``params=``, ``dropout_rng=``, ``train=``, ``past_key_values=``)
plus ``segment_ids=`` (packed rows, see :func:`attention_keep_mask` and
:func:`sequence_first_tokens`), and work eagerly and under ``jax.jit``. Every call goes through
:func:`xlmr.inputs.check_inputs` before anything is traced: shapes and ranks always, values
(ids out of the vocabulary, token types, positions, ``segment_ids``) when they are concrete.

Under ``jax.jit`` the values are tracers and cannot be checked on the host; there the embedding
layer *poisons* instead: every row holding a token id, token type or (absolute) position id
outside its table comes out as NaN in every output, so an out-of-range id is never a silent
finite answer. :func:`xlmr_flax.training.make_train_step` checks the same values with
``jax.experimental.checkify`` and raises.

Shapes use one notation: (batch, seq, hidden), (batch, seq, heads, head_dim) inside attention.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xlmr import outputs as O
from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head
from xlmr.inputs import ArrayInfo, check_inputs
from xlmr.weights import LoadReport, flatten_tree, unflatten_tree

from . import loading
from .adapters import FlaxAdapterMixin

__all__ = [
    "FlaxXLMRobertaPreTrainedModel",
    "FlaxXLMRobertaModel",
    "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM",
    "FlaxXLMRobertaForSequenceClassification",
    "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForTokenClassification",
    "FlaxXLMRobertaForQuestionAnswering",
]

Array = jax.Array

# The activations of xlmr.config.SUPPORTED_ACTIVATIONS, as HF's ACT2FN defines them.
ACT2FN: dict[str, Callable[[Array], Array]] = {
    "gelu": partial(nn.gelu, approximate=False),
    "gelu_new": partial(nn.gelu, approximate=True),
    "gelu_fast": partial(nn.gelu, approximate=True),
    "gelu_pytorch_tanh": partial(nn.gelu, approximate=True),
    "relu": nn.relu,
    "silu": nn.swish,
    "swish": nn.swish,
    "tanh": nn.tanh,
}


def array_info(x: Any) -> ArrayInfo | None:
    """Shape, dtype kind and (when concrete) values of ``x`` for :func:`xlmr.inputs.check_inputs`."""
    if x is None:
        return None
    if isinstance(x, jax.core.Tracer):
        return ArrayInfo(tuple(x.shape), np.dtype(x.dtype).kind, None)
    if not hasattr(x, "dtype"):
        x = np.asarray(x)  # Python lists and scalars
    kind = np.dtype(x.dtype).kind
    # The checker reads the values of ids and labels only: float arrays stay where they are.
    return ArrayInfo(tuple(np.shape(x)), kind, np.asarray(x) if kind in "iub" else None)


def create_position_ids_from_input_ids(
    input_ids: Array,
    padding_idx: int,
    past_key_values_length: int | Array = 0,
    segment_ids: Array | None = None,
) -> Array:
    """Positions counted over non-padding tokens, starting at ``padding_idx + 1``; padding keeps ``padding_idx``.

    With ``segment_ids`` (packed rows) the count restarts at ``padding_idx + 1`` for every sequence
    and padding (segment 0) keeps ``padding_idx``. (batch, seq) -> (batch, seq). This is fairseq's
    ``make_positions``, as HF uses it.
    """
    axis = input_ids.ndim - 1
    mask = input_ids != padding_idx
    if segment_ids is not None:
        mask = mask & (segment_ids > 0)
    mask = mask.astype(jnp.int32)
    count = jnp.cumsum(mask, axis=axis, dtype=jnp.int32)
    if segment_ids is not None:
        # Subtract the count reached before each sequence's first token; counts only grow along
        # the row, so a running maximum carries each sequence's offset to all of its tokens.
        previous = jnp.concatenate([jnp.full_like(segment_ids[..., :1], -1), segment_ids[..., :-1]], axis)
        starts = segment_ids != previous
        count = count - lax.cummax(jnp.where(starts, count - mask, 0), axis=axis)
    return (count + past_key_values_length) * mask + padding_idx


def relative_position_scores(
    query: Array,
    key: Array,
    distance_table: Array,
    position_embedding_type: str,
    max_position_embeddings: int,
) -> Array:
    """Relative-position logits (batch, heads, seq, key_seq); queries sit at the end of the keys.

    ``distance_table`` is the (2 * max_position_embeddings - 1, head_dim) distance embedding;
    ``relative_key_query`` adds the key term to the query term.
    """
    return _relative_position_scores_at(
        query,
        key,
        distance_table,
        position_embedding_type,
        max_position_embeddings,
        query_start=key.shape[1] - query.shape[1],
    )


def attention_keep_mask(
    attention_mask: Array | None,
    segment_ids: Array | None,
    seq_length: int,
    past_length: int | Array,
    is_decoder: bool,
) -> Array | None:
    """Which keys each query may attend to: bool (batch or 1, 1, seq or 1, past + seq), True = attend.

    Combines the padding mask (2-D or 3-D ``attention_mask``), the causal mask of decoders and the
    block-diagonal mask of packed rows (a token attends only to tokens of its own sequence).
    Returns None when nothing is masked.
    """
    keep = None
    if attention_mask is not None:
        given = jnp.asarray(attention_mask) > 0
        # (batch, keys) -> (batch, 1, 1, keys); (batch, seq, keys) -> (batch, 1, seq, keys)
        keep = given[:, None, None, :] if given.ndim == 2 else given[:, None]
        key_length = given.shape[-1]
    else:
        key_length = past_length + seq_length
    if segment_ids is not None:
        # Packed rows: same sequence, and never a padding key (segment 0).
        same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] > 0)
        keep = same[:, None] if keep is None else keep & same[:, None]
    if is_decoder:
        query_positions = past_length + jnp.arange(seq_length, dtype=jnp.int32)
        causal = jnp.arange(key_length, dtype=jnp.int32)[None, :] <= query_positions[:, None]
        keep = causal[None, None] if keep is None else keep & causal[None, None]
    return keep


def additive_mask(keep: Array, dtype: Any) -> Array:
    """{True keep, False drop} -> {0, finfo(dtype).min}. Never -inf, so a fully masked row stays finite."""
    return jnp.where(keep, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))


def sequence_first_tokens(hidden_states: Array, segment_ids: Array | None) -> Array:
    """The first token of each packed sequence in slots: (batch, seq, hidden) -> (batch, seq, hidden).

    Slot ``[b, k - 1]`` holds the first token of sequence ``k`` of row ``b``; slots past the row's
    last sequence are zero. Without ``segment_ids``: the first token of each row, (batch, hidden).
    """
    if segment_ids is None:
        return hidden_states[:, 0]
    previous = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)))
    starts = (segment_ids > 0) & (segment_ids != previous)
    # A stable sort of "not a start" puts the start positions first, in order: sequence 1, 2...
    order = jnp.argsort(~starts, axis=-1, stable=True)
    first = jnp.take_along_axis(hidden_states, order[..., None], axis=1)
    return jnp.where(_sequence_slots(segment_ids)[..., None], first, jnp.zeros((), first.dtype))


# -- private helpers ---------------------------------------------------------------------------
def _relative_position_scores_at(
    query: Array,
    key: Array,
    distance_table: Array,
    position_embedding_type: str,
    max_position_embeddings: int,
    query_start: int | Array,
) -> Array:
    """:func:`relative_position_scores` with the queries at ``query_start`` among the keys.

    Flax's cache has a fixed size: while decoding, the queries sit at the cache index, not at the
    end of the keys (the slots after them are empty and masked).
    """
    # query: (batch, seq, heads, head_dim); key: (batch, key_seq, heads, head_dim)
    query_positions = query_start + jnp.arange(query.shape[1], dtype=jnp.int32)
    distance = query_positions[:, None] - jnp.arange(key.shape[1], dtype=jnp.int32)[None, :]
    table = jnp.asarray(distance_table, query.dtype)
    embedded = jnp.take(table, distance + max_position_embeddings - 1, axis=0)  # (seq, key_seq, head_dim)
    scores = jnp.einsum("bqhd,qkd->bhqk", query, embedded)
    if position_embedding_type == "relative_key_query":
        scores = scores + jnp.einsum("bkhd,qkd->bhqk", key, embedded)
    return scores


def _sequence_slots(segment_ids: Array) -> Array:
    """(batch, seq) bool: slot ``[b, k - 1]`` is in use iff row ``b`` packs a sequence ``k``."""
    count = jnp.max(segment_ids, axis=-1, keepdims=True)
    return jnp.arange(segment_ids.shape[-1], dtype=count.dtype)[None, :] < count


def _empty_slots_zero(x: Array, segment_ids: Array | None) -> Array:
    """Zero the (batch, seq, ...) slots of sequences a packed row does not hold; ``x`` as is unpacked."""
    if segment_ids is None:
        return x
    return jnp.where(_sequence_slots(segment_ids)[..., None], x, jnp.zeros((), x.dtype))


def _poison_invalid_rows(
    hidden_states: Array,
    config: XLMRobertaConfig,
    input_ids: Array,
    token_type_ids: Array,
    position_ids: Array,
) -> Array:
    """NaN for every row holding an id outside its embedding table (what traced calls cannot check)."""
    bad = (input_ids < 0) | (input_ids >= config.vocab_size)
    bad = bad | (token_type_ids < 0) | (token_type_ids >= config.type_vocab_size)
    if config.position_embedding_type == "absolute":
        bad = bad | (position_ids < 0) | (position_ids >= config.max_position_embeddings)
    rows = jnp.any(jnp.broadcast_to(bad, input_ids.shape), axis=-1)  # (batch,)
    return jnp.where(rows[:, None, None], jnp.asarray(jnp.nan, hidden_states.dtype), hidden_states)


# -- outputs as pytrees ------------------------------------------------------------------------
def _flatten_output(out: O.ModelOutput) -> tuple[list, tuple[str, ...]]:
    keys = tuple(out.keys())
    return [(jax.tree_util.DictKey(k), out[k]) for k in keys], keys


def _unflatten_output(cls: type[O.ModelOutput], keys: tuple[str, ...], children: Any) -> O.ModelOutput:
    # Bypass __init__ so that JAX may rebuild the node with placeholder (even None) leaves.
    obj = cls.__new__(cls)
    OrderedDict.__init__(obj)
    for name in cls._fields:
        object.__setattr__(obj, name, None)
    for key, value in zip(keys, children):
        object.__setattr__(obj, key, value)
        OrderedDict.__setitem__(obj, key, value)
    return obj


def _register_output_pytrees() -> None:
    """Register xlmr's output classes as JAX pytrees (children: the fields that are set)."""
    classes = {*O.OUTPUT_CLASSES.values(), O.BaseModelOutputWithPastAndCrossAttentions}
    for cls in classes:
        try:
            jax.tree_util.register_pytree_with_keys(
                cls,
                _flatten_output,
                partial(_unflatten_output, cls),
                flatten_func=lambda o: (list(o.values()), tuple(o.keys())),
            )
        except ValueError:  # already registered (module reloaded)
            pass


_register_output_pytrees()


# -- layer factories ---------------------------------------------------------------------------
def _dense(
    features: int, config: XLMRobertaConfig, dtype: Any, name: str | None = None, **kw: Any
) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=jax.nn.initializers.normal(config.initializer_range),
        name=name,
        **kw,
    )


def _embed(num: int, features: int, config: XLMRobertaConfig, dtype: Any) -> nn.Embed:
    return nn.Embed(
        num,
        features,
        dtype=dtype,
        param_dtype=jnp.float32,
        embedding_init=jax.nn.initializers.normal(stddev=config.initializer_range),
    )


def _layer_norm(config: XLMRobertaConfig, dtype: Any) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32)


def _lookup_without_padding_grad(embed: nn.Embed, ids: Array, padding_idx: int | None) -> Array:
    """Embedding lookup whose padding row gets no gradient from it (PyTorch's ``padding_idx``)."""
    vectors = embed(ids)
    if padding_idx is None:
        return vectors
    return jnp.where((ids == padding_idx)[..., None], lax.stop_gradient(vectors), vectors)


def _dropout_rate(config: XLMRobertaConfig) -> float:
    """The classifier heads' dropout: ``classifier_dropout``, else ``hidden_dropout_prob``."""
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


# -- modules -----------------------------------------------------------------------------------
class _ConfigModule(nn.Module):
    """A module of the model, built from the configuration and computing in ``dtype``.

    Args:
        config: The model configuration.
        dtype: Computation dtype (parameters stay float32).
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32


class FlaxXLMRobertaEmbeddings(_ConfigModule):
    """Word + position + token type embeddings, then LayerNorm and dropout.

    Rows holding an id outside its table come out as NaN (see the module docstring): eager calls
    never get here with one, traced calls must not return a finite answer for one.
    """

    _eager_blocks: ClassVar[tuple[str, ...]] = ("__call__",)  # see _compiled_blocks

    def setup(self) -> None:
        cfg = self.config
        self.word_embeddings = _embed(cfg.vocab_size, cfg.hidden_size, cfg, self.dtype)
        self.position_embeddings = _embed(cfg.max_position_embeddings, cfg.hidden_size, cfg, self.dtype)
        self.token_type_embeddings = _embed(cfg.type_vocab_size, cfg.hidden_size, cfg, self.dtype)
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(
        self,
        input_ids: Array,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        attention_mask: Array | None = None,
        deterministic: bool = True,
        segment_ids: Array | None = None,
    ) -> Array:
        # (batch, seq) -> (batch, seq, hidden). Token types default to zeros; positions are counted
        # over non-padding tokens (restarting for every packed sequence with ``segment_ids``).
        pad = self.config.pad_token_id
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = create_position_ids_from_input_ids(input_ids, pad, segment_ids=segment_ids)
        hidden_states = _lookup_without_padding_grad(self.word_embeddings, input_ids.astype("i4"), pad)
        hidden_states = hidden_states + self.token_type_embeddings(token_type_ids.astype("i4"))
        # PyTorch adds absolute positions only; relative variants work inside attention.
        position_embeds = _lookup_without_padding_grad(
            self.position_embeddings, position_ids.astype("i4"), pad
        )
        if self.config.position_embedding_type == "absolute":
            hidden_states = hidden_states + position_embeds
        hidden_states = _poison_invalid_rows(
            hidden_states, self.config, input_ids, token_type_ids, position_ids
        )
        hidden_states = self.LayerNorm(hidden_states)
        return self.dropout(hidden_states, deterministic=deterministic)


class FlaxXLMRobertaSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with an optional key/value cache.

    Softmax runs in float32 whatever ``dtype`` is; masked scores take ``finfo(float32).min``
    (:func:`additive_mask`). With ``causal=True`` (decoders) keys after the query position are
    masked, and the cache (``"cache"`` collection: ``cached_key``, ``cached_value``,
    ``cache_index``) allows decoding one step at a time.

    Args:
        config: The model configuration.
        causal: Whether to apply a causal mask (``config.is_decoder`` for self-attention).
        dtype: Computation dtype.
        position_embedding_type: Overrides ``config.position_embedding_type`` (cross-attention is
            always ``"absolute"``, as in HF).
    """

    config: XLMRobertaConfig
    causal: bool = False
    dtype: Any = jnp.float32
    position_embedding_type: str | None = None

    def setup(self) -> None:
        cfg = self.config
        self.query = _dense(cfg.hidden_size, cfg, self.dtype)
        self.key = _dense(cfg.hidden_size, cfg, self.dtype)
        self.value = _dense(cfg.hidden_size, cfg, self.dtype)
        if self._position_type != "absolute":
            self.distance_embedding = _embed(
                2 * cfg.max_position_embeddings - 1, cfg.head_dim, cfg, self.dtype
            )
        self.dropout = nn.Dropout(rate=cfg.attention_probs_dropout_prob)

    @property
    def _position_type(self) -> str:
        return self.position_embedding_type or self.config.position_embedding_type

    def _split_heads(self, x: Array) -> Array:
        # (batch, seq, hidden) -> (batch, seq, heads, head_dim)
        return x.reshape(x.shape[:2] + (self.config.num_attention_heads, self.config.head_dim))

    @nn.compact
    def _concatenate_to_cache(self, key: Array, value: Array, query: Array) -> tuple[Array, Array, Array]:
        """Write this step's keys/values into the cache; return the full cache and the query offset."""
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        offset = jnp.array(0, dtype=jnp.int32)
        if initialized:
            offset = cache_index.value
            start = (0, offset, 0, 0)
            key = lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype), start)
            value = lax.dynamic_update_slice(
                cached_value.value, value.astype(cached_value.value.dtype), start
            )
            cached_key.value = key
            cached_value.value = value
            cache_index.value = offset + query.shape[1]
        return key, value, offset

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None,
        layer_head_mask: Array | None = None,
        key_value_states: Array | None = None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        segment_ids: Array | None = None,
    ) -> tuple[Array, Array | None]:
        cfg = self.config
        source = hidden_states if key_value_states is None else key_value_states
        query = self._split_heads(self.query(hidden_states))  # (batch, seq, heads, head_dim)
        key = self._split_heads(self.key(source))  # (batch, key_seq, heads, head_dim)
        value = self._split_heads(self.value(source))

        cached = self.causal and (init_cache or self.has_variable("cache", "cached_key"))
        past: int | Array = 0
        if cached:
            key, value, past = self._concatenate_to_cache(key, value, query)
            if attention_mask is None:  # the fixed-size cache: every slot, the causal mask does the rest
                attention_mask = jnp.ones((key.shape[0], key.shape[1]), "i4")
        keep = attention_keep_mask(attention_mask, segment_ids, query.shape[1], past, self.causal)

        relative = self._position_type != "absolute"
        if not relative:
            # Scale the (seq, head_dim) queries, not the (seq, seq) scores: XLA folds the scalar into
            # the projection's bias fusion, where a product on the scores is one more full pass.
            query = query * jnp.asarray(1.0 / math.sqrt(cfg.head_dim), query.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key)  # (batch, heads, seq, key_seq)
        if relative:
            args = (
                query,
                key,
                self.distance_embedding.embedding,
                self._position_type,
                cfg.max_position_embeddings,
            )
            scores = scores + (
                _relative_position_scores_at(*args, query_start=past)
                if cached
                else relative_position_scores(*args)
            )
        scores = scores.astype(jnp.float32)
        if relative:
            scores = scores * (1.0 / math.sqrt(cfg.head_dim))
        if keep is not None:
            scores = scores + additive_mask(keep, scores.dtype)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = self.dropout(probs, deterministic=deterministic).astype(self.dtype)
        if layer_head_mask is not None:
            probs = probs * jnp.asarray(layer_head_mask, probs.dtype).reshape(-1, 1, 1)

        context = jnp.einsum("bhqk,bkhd->bqhd", probs, value)
        context = context.reshape(context.shape[:2] + (cfg.hidden_size,))  # (batch, seq, hidden)
        return context, (probs if output_attentions else None)


class FlaxXLMRobertaSelfOutput(_ConfigModule):
    """Attention output projection, dropout, residual and LayerNorm."""

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype)
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)

    def __call__(self, hidden_states: Array, input_tensor: Array, deterministic: bool = True) -> Array:
        hidden_states = self.dropout(self.dense(hidden_states), deterministic=deterministic)
        return self.LayerNorm(hidden_states + input_tensor)


class FlaxXLMRobertaAttention(nn.Module):
    """Self- (or cross-) attention followed by its output block.

    Args:
        config: The model configuration.
        causal: Causal masking (decoder self-attention).
        dtype: Computation dtype.
        position_embedding_type: Overrides the config's (``"absolute"`` for cross-attention).
    """

    config: XLMRobertaConfig
    causal: bool = False
    dtype: Any = jnp.float32
    position_embedding_type: str | None = None

    def setup(self) -> None:
        self.self = FlaxXLMRobertaSelfAttention(
            self.config,
            causal=self.causal,
            dtype=self.dtype,
            position_embedding_type=self.position_embedding_type,
        )
        self.output = FlaxXLMRobertaSelfOutput(self.config, dtype=self.dtype)

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None,
        layer_head_mask: Array | None = None,
        **kwargs: Any,
    ) -> tuple[Array, Array | None]:
        """Run :class:`FlaxXLMRobertaSelfAttention` (``kwargs``: its keyword arguments), then the output block."""
        context, probs = self.self(hidden_states, attention_mask, layer_head_mask, **kwargs)
        return self.output(context, hidden_states, deterministic=kwargs.get("deterministic", True)), probs


class FlaxXLMRobertaIntermediate(_ConfigModule):
    """Feed-forward expansion with the configured activation."""

    def setup(self) -> None:
        self.dense = _dense(self.config.intermediate_size, self.config, self.dtype)
        self.activation = ACT2FN[self.config.hidden_act]

    def __call__(self, hidden_states: Array) -> Array:
        return self.activation(self.dense(hidden_states))


class FlaxXLMRobertaOutput(_ConfigModule):
    """Feed-forward projection back to ``hidden_size``, dropout, residual and LayerNorm."""

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)
        self.LayerNorm = _layer_norm(self.config, self.dtype)

    def __call__(self, hidden_states: Array, attention_output: Array, deterministic: bool = True) -> Array:
        hidden_states = self.dropout(self.dense(hidden_states), deterministic=deterministic)
        return self.LayerNorm(hidden_states + attention_output)


class FlaxXLMRobertaLayer(_ConfigModule):
    """One transformer layer: self-attention, optional cross-attention, feed-forward.

    Returns ``(hidden_states, self_attention_probs, cross_attention_probs)``; the probabilities
    are None unless ``output_attentions`` (the cross ones also without cross-attention).

    Args:
        config: The model configuration (``is_decoder`` makes self-attention causal,
            ``add_cross_attention`` adds ``crossattention``).
    """

    _eager_blocks: ClassVar[tuple[str, ...]] = ("__call__",)  # see _compiled_blocks

    def setup(self) -> None:
        self.attention = FlaxXLMRobertaAttention(self.config, causal=self.config.is_decoder, dtype=self.dtype)
        self.intermediate = FlaxXLMRobertaIntermediate(self.config, dtype=self.dtype)
        self.output = FlaxXLMRobertaOutput(self.config, dtype=self.dtype)
        if self.config.add_cross_attention:
            self.crossattention = FlaxXLMRobertaAttention(
                self.config, causal=False, dtype=self.dtype, position_embedding_type="absolute"
            )

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None,
        layer_head_mask: Array | None = None,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        segment_ids: Array | None = None,
    ) -> tuple[Array, Array | None, Array | None]:
        attention_output, self_probs = self.attention(
            hidden_states,
            attention_mask,
            layer_head_mask=layer_head_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            segment_ids=segment_ids,
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            attention_output, cross_probs = self.crossattention(
                attention_output,
                attention_mask=encoder_attention_mask,
                layer_head_mask=layer_head_mask,
                key_value_states=encoder_hidden_states,
                deterministic=deterministic,
                output_attentions=output_attentions,
            )
        hidden_states = self.output(
            self.intermediate(attention_output), attention_output, deterministic=deterministic
        )
        return hidden_states, self_probs, cross_probs


class FlaxXLMRobertaLayerCollection(_ConfigModule):
    """The stack of layers, named ``"0"``, ``"1"``... (HF's parameter layout), optionally rematerialised.

    Returns ``(hidden_states, all_hidden_states, all_attentions, all_cross_attentions)``; the
    tuples are None unless requested.

    Args:
        gradient_checkpointing: Wrap each layer in ``nn.remat`` (activations recomputed in the
            backward pass; same gradients, less memory).
    """

    gradient_checkpointing: bool = False

    def setup(self) -> None:
        layer_cls = FlaxXLMRobertaLayer
        if self.gradient_checkpointing:
            # Static: init_cache, deterministic, output_attentions (argnums count ``self`` as 0).
            layer_cls = nn.remat(FlaxXLMRobertaLayer, static_argnums=(6, 7, 8))
        self.layers = [
            layer_cls(self.config, dtype=self.dtype, name=str(i))
            for i in range(self.config.num_hidden_layers)
        ]

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None,
        head_mask: Array | None = None,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        segment_ids: Array | None = None,
    ) -> tuple[Array, tuple[Array, ...] | None, tuple[Array, ...] | None, tuple[Array, ...] | None]:
        all_hidden = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if (output_attentions and encoder_hidden_states is not None) else None
        if head_mask is not None and head_mask.shape[0] != len(self.layers):
            raise ValueError(
                f"head_mask is given for {head_mask.shape[0]} layers, the model has {len(self.layers)}"
            )
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden += (hidden_states,)
            hidden_states, self_probs, cross_probs = layer(
                hidden_states,
                attention_mask,
                None if head_mask is None else head_mask[i],
                encoder_hidden_states,
                encoder_attention_mask,
                init_cache,
                deterministic,
                output_attentions,
                segment_ids,
            )
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        return hidden_states, all_hidden, all_attentions, all_cross


class FlaxXLMRobertaEncoder(_ConfigModule):
    """The transformer encoder: ``layer`` holds the layer stack.

    Args:
        gradient_checkpointing: Rematerialise each layer.
    """

    gradient_checkpointing: bool = False

    def setup(self) -> None:
        self.layer = FlaxXLMRobertaLayerCollection(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None,
        head_mask: Array | None = None,
        **kwargs: Any,
    ) -> tuple[Array, tuple[Array, ...] | None, tuple[Array, ...] | None, tuple[Array, ...] | None]:
        """Run :class:`FlaxXLMRobertaLayerCollection` (``kwargs``: its keyword arguments)."""
        return self.layer(hidden_states, attention_mask, head_mask, **kwargs)


class FlaxXLMRobertaPooler(_ConfigModule):
    """``tanh(dense(first token))``; with ``segment_ids`` one row per packed sequence, in slots."""

    _eager_blocks: ClassVar[tuple[str, ...]] = ("__call__",)  # see _compiled_blocks

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)

    def __call__(self, hidden_states: Array, segment_ids: Array | None = None) -> Array:
        # (batch, seq, hidden) -> (batch, hidden); packed: (batch, seq, hidden) slots
        pooled = nn.tanh(self.dense(sequence_first_tokens(hidden_states, segment_ids)))
        return _empty_slots_zero(pooled, segment_ids)


class FlaxXLMRobertaLMHead(_ConfigModule):
    """dense -> gelu -> layer_norm -> decoder (+ bias) over the vocabulary.

    With tied embeddings the decoder is the word embedding matrix (no ``decoder`` parameters,
    as in HF's Flax checkpoints); the bias lives at ``lm_head/bias``.
    """

    def setup(self) -> None:
        cfg = self.config
        self.dense = _dense(cfg.hidden_size, cfg, self.dtype)
        self.layer_norm = _layer_norm(cfg, self.dtype)
        if not cfg.tie_word_embeddings:
            self.decoder = _dense(cfg.vocab_size, cfg, self.dtype, use_bias=False)
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,), jnp.float32)

    def __call__(self, hidden_states: Array, shared_embedding: Array | None = None) -> Array:
        hidden_states = ACT2FN["gelu"](self.dense(hidden_states))
        hidden_states = self.layer_norm(hidden_states)
        if shared_embedding is not None:
            # (batch, seq, hidden) x (vocab, hidden) -> (batch, seq, vocab)
            logits = jnp.einsum("...h,vh->...v", hidden_states, jnp.asarray(shared_embedding, self.dtype))
        else:
            logits = self.decoder(hidden_states)
        return logits + jnp.asarray(self.bias, self.dtype)


class FlaxXLMRobertaClassificationHead(_ConfigModule):
    """Sentence classification head on the first token: dropout, dense, tanh, dropout, out_proj.

    With ``segment_ids`` it reads the first token of every packed sequence and returns
    (batch, seq, num_labels) slots (:func:`sequence_first_tokens`; empty slots are zero).

    Args:
        config: The model configuration (``classifier_dropout`` or ``hidden_dropout_prob``).
    """

    def setup(self) -> None:
        cfg = self.config
        self.dense = _dense(cfg.hidden_size, cfg, self.dtype)
        self.dropout = nn.Dropout(rate=_dropout_rate(cfg))
        self.out_proj = _dense(cfg.num_labels, cfg, self.dtype)

    def __call__(
        self, hidden_states: Array, deterministic: bool = True, segment_ids: Array | None = None
    ) -> Array:
        x = self.dropout(sequence_first_tokens(hidden_states, segment_ids), deterministic=deterministic)
        x = nn.tanh(self.dense(x))
        x = self.dropout(x, deterministic=deterministic)
        return _empty_slots_zero(self.out_proj(x), segment_ids)


# -- the public wrappers -----------------------------------------------------------------------
def _find_leaf(tree: Mapping, name: str) -> Any:
    """The first leaf called ``name`` in a nested cache dict (all layers hold the same), or None."""
    for key, value in tree.items():
        if key == name:
            return value
        if isinstance(value, Mapping):
            found = _find_leaf(value, name)
            if found is not None:
                return found
    return None


def _to_plain_dict(tree: Any) -> Any:
    """FrozenDict / Mapping trees -> plain nested dicts (leaves untouched)."""
    if isinstance(tree, Mapping):
        return {k: _to_plain_dict(v) for k, v in tree.items()}
    return tree


# XLA's CPU options for xlmr's own programs. The older loop emitters compile fused operations in
# about half the time of the MLIR fusion emitters and run as fast here (measured on the base
# shape: first eager call 0.52 -> 0.41 s, 8x128 forward equal within noise).
_FAST_COMPILE = (("xla_cpu_use_fusion_emitters", False),)
# A program that runs once (new leaves' random values): LLVM's cheapest pipeline besides, as
# compiling is most of its cost.
_QUICK_COMPILE = _FAST_COMPILE + (
    ("xla_backend_optimization_level", 0),
    ("xla_llvm_disable_expensive_passes", True),
)


@functools.cache
def _xla_knows_the_options() -> bool:
    """Whether this XLA takes :data:`_QUICK_COMPILE` (a superset of the others): one trial compile."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.zeros(1)).compile(dict(_QUICK_COMPILE))
    except Exception:  # XlaRuntimeError "No such compile option" (debug options come and go)
        return False
    return True


def _accepted(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """``options`` as compiler options, or ``{}`` (XLA's defaults) where this XLA lacks one."""
    return dict(options) if _xla_knows_the_options() else {}


_COMPILED: OrderedDict[tuple, Callable] = OrderedDict()  # key -> jitted function, most recent last
_COMPILED_KEEP = 64


def _module_key(module: nn.Module) -> tuple:
    """The module's class and fields (the config by its JSON; not its name or parent)."""
    return (type(module),) + tuple(
        (
            f.name,
            getattr(module, f.name).to_json_string() if f.name == "config" else repr(getattr(module, f.name)),
        )
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name")
    )


_COMPILED_LOCK = threading.Lock()


def _kept(key: tuple, make: Callable[[], Callable]) -> Callable:
    """``_COMPILED[key]``, made on first use; the least recently used beyond :data:`_COMPILED_KEEP` go.

    ``make`` only wraps a function in ``jax.jit`` (compiling happens at its first call, outside
    the lock), so threads calling models at once wait for each other only here.
    """
    with _COMPILED_LOCK:
        if key in _COMPILED:
            _COMPILED.move_to_end(key)
            return _COMPILED[key]
        made = _COMPILED[key] = make()
        while len(_COMPILED) > _COMPILED_KEEP:
            _COMPILED.popitem(last=False)
        return made


def _private_clone(module: nn.Module) -> nn.Module:
    # Its own copy of the config: a later change to the caller's config makes a new key and never
    # reaches a program another model shares.
    return module.clone(parent=None, config=module.config.copy())


def _compiled_train_apply(module: nn.Module, outputs: tuple[bool, bool]) -> Callable:
    """``jax.jit`` of ``module.apply`` with dropout, for ``(output_attentions, output_hidden_states)``.

    The eager path of ``train=True`` calls: one program, so the dropout masks are those of the
    same call traced by the caller. Kept by :func:`_kept` under the module's class and fields:
    models with equal configs share their compiled programs, as eager operations share theirs.
    """
    output_attentions, output_hidden_states = outputs

    def make() -> Callable:
        clone = _private_clone(module)

        def apply(params, input_ids, attention_mask, head_mask, dropout_rng, kwargs):
            return clone.apply(
                {"params": params},
                input_ids,
                attention_mask,
                head_mask=head_mask,
                deterministic=False,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                rngs={"dropout": dropout_rng} if dropout_rng is not None else {},
                **kwargs,
            )

        return jax.jit(apply, compiler_options=_accepted(_FAST_COMPILE))

    return _kept((_module_key(module), "train", outputs), make)


def _compiled_blocks(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """Interceptor (``nn.intercept_methods``) of an eager, deterministic call: blocks run compiled.

    A method a module class names in ``_eager_blocks`` (the embeddings, a layer, the pooler, a
    head's prediction) runs as ``jax.jit`` of that method alone, kept by :func:`_kept` under the
    module's class and fields and the call's non-array arguments; everything between blocks (the
    loop over layers, assembling the outputs) runs eagerly. The layers share one program, so the
    first call compiles a handful of small programs instead of the whole model (a fraction of
    the time), and a later call runs them. Arrays are passed, never captured; a call already
    being traced (a block's own modules) goes through untouched.
    """
    module = context.module
    if context.method_name not in getattr(type(module), "_eager_blocks", ()):
        return next_fun(*args, **kwargs)
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return next_fun(*args, **kwargs)
    arrays = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array)]
    static = tuple(None if isinstance(x, jax.Array) else x for x in leaves)
    try:
        hash(static)
    except TypeError:
        return next_fun(*args, **kwargs)
    method = context.method_name

    def make() -> Callable:
        clone = _private_clone(module)

        def block(params, values):
            filled = list(static)
            for i, value in zip(arrays, values):
                filled[i] = value
            call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, filled)
            return clone.apply({"params": params}, *call_args, **call_kwargs, method=method)

        return jax.jit(block, compiler_options=_accepted(_FAST_COMPILE))

    compiled = _kept((_module_key(module), method, treedef, static), make)
    return compiled(module.variables["params"], [leaves[i] for i in arrays])


def _layer_position(path: tuple[str, ...]) -> int | None:
    """Where the layer number stands in a parameter path (``.../encoder/layer/<i>/...``), else None."""
    for i in range(len(path) - 2):
        if path[i] == "encoder" and path[i + 1] == "layer":
            return i + 2
    return None


_HEAD_MODULES = ("pooler", "lm_head", "classifier", "qa_outputs")


def _head_owner(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The head module holding the parameter at ``path`` (``("roberta", "pooler")``...), else None."""
    owner = path[1:2] if path[:1] == ("roberta",) else path[:1]
    if owner and owner[0] in _HEAD_MODULES and len(path) > 1 + (path[0] == "roberta"):
        return path[: len(owner) + (path[0] == "roberta")]
    return None


def _new_leaves(module: nn.Module, given: dict, rngs: dict, *args: Any, **kwargs: Any) -> dict[str, Array]:
    """The parameters ``module.apply(*args, **kwargs)`` creates beyond ``given`` (``"a/b"`` path -> value).

    The params collection is open: a given parameter is used as it is (its initializer never
    runs), a missing one is made by its initializer. Compiled, only the new leaves are outputs, so
    XLA drops the rest of the computation and the given parameters never enter it.
    """
    _, variables = module.apply({"params": given}, *args, rngs=rngs, mutable=["params"], **kwargs)
    old = flatten_tree(given)
    return {
        "/".join(p): v for p, v in flatten_tree(_to_plain_dict(variables["params"])).items() if p not in old
    }


def _init_rngs(rng: Array) -> dict[str, Array]:
    """The ``rngs`` of an initialisation from one key (a full init and a partial one alike)."""
    params_rng, dropout_rng = jax.random.split(rng)
    return {"params": params_rng, "dropout": dropout_rng}


def _run_heads(root: nn.Module, owners: list[tuple[str, ...]]) -> None:
    """Call each head module at ``owners`` (paths below ``root``) on a (1, 1, hidden) zero state."""
    cfg = root.config
    hidden = jnp.zeros((1, 1, cfg.hidden_size), root.dtype)
    for owner in owners:
        head = root
        for name in owner:
            head = getattr(head, name)
        if isinstance(head, FlaxXLMRobertaLMHead):
            tied = jnp.zeros((1, cfg.hidden_size), root.dtype) if cfg.tie_word_embeddings else None
            head(hidden, shared_embedding=tied)
        else:
            head(hidden)


def _run_once(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` compiled with :data:`_QUICK_COMPILE` (a program that runs once)."""
    return jax.jit(fn).lower(*args).compile(_accepted(_QUICK_COMPILE))(*args)


def _has_dropout(config: XLMRobertaConfig) -> bool:
    rates = (
        config.hidden_dropout_prob,
        config.attention_probs_dropout_prob,
        config.classifier_dropout or 0.0,
    )
    return any(r > 0 for r in rates)


class FlaxXLMRobertaPreTrainedModel(FlaxAdapterMixin):
    """Base of the Flax XLM-R classes: config, linen module, parameters, loading and saving.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape: Shape of the dummy input used to initialise the parameters.
        seed: Seed of the parameter initialisation.
        dtype: Computation dtype (``jnp.float32``, ``jnp.bfloat16``...); parameters stay float32.
        _do_init: Initialise parameters now (``False``: set ``model.params`` yourself).
        gradient_checkpointing: Rematerialise each layer in the backward pass.
        **kwargs: Fields of the linen module (``add_pooling_layer`` for the bare model).

    The seven model classes take these arguments (``config`` first); each one's docstring says only
    what its head adds.

    Example (every model on one tiny configuration):
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> import xlmr_flax
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37, num_labels=2)
        >>> ids = [[0, 5, 6, 2]]
        >>> model = xlmr_flax.FlaxXLMRobertaModel(config)
        >>> model(ids).last_hidden_state.shape, model(ids).pooler_output.shape
        ((1, 4, 32), (1, 32))
        >>> # Two sequences packed into one row, then padding: one pooled slot per sequence.
        >>> packed = model([[0, 5, 2, 0, 7, 8, 2, 1]], segment_ids=[[1, 1, 1, 2, 2, 2, 2, 0]])
        >>> packed.pooler_output.shape, bool(np.all(packed.pooler_output[0, 2:] == 0))
        ((1, 8, 32), True)
        >>> decoder = xlmr_flax.FlaxXLMRobertaForCausalLM(config.copy(is_decoder=True))
        >>> cache = decoder.init_cache(batch_size=1, max_length=8)
        >>> decoder([[0]], attention_mask=[[1] * 8], past_key_values=cache).logits.shape
        (1, 1, 100)
        >>> xlmr_flax.FlaxXLMRobertaForMaskedLM(config)(ids).logits.shape
        (1, 4, 100)
        >>> classifier = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config)
        >>> classifier(ids).logits.shape, classifier([[0, 5, 2, 0, 6, 2]], segment_ids=[[1, 1, 1, 2, 2, 2]]).logits.shape
        ((1, 2), (1, 6, 2))
        >>> xlmr_flax.FlaxXLMRobertaForMultipleChoice(config)([[[0, 5, 2], [0, 6, 2]]]).logits.shape
        (1, 2)
        >>> xlmr_flax.FlaxXLMRobertaForTokenClassification(config)(ids).logits.shape
        (1, 4, 2)
        >>> xlmr_flax.FlaxXLMRobertaForQuestionAnswering(config)(ids).start_logits.shape
        (1, 4)
    """

    config_class = XLMRobertaConfig
    base_model_prefix = "roberta"
    main_input_name = "input_ids"
    module_class: type[nn.Module] | None = None
    head: Head = HEADS["base"]

    def __init__(
        self,
        config: XLMRobertaConfig,
        input_shape: tuple[int, ...] = (1, 1),
        seed: int = 0,
        dtype: Any = jnp.float32,
        _do_init: bool = True,
        gradient_checkpointing: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an xlmr.XLMRobertaConfig, got {type(config).__name__}")
        if self.module_class is None:
            raise TypeError(f"{type(self).__name__} is abstract; use one of the seven model classes")
        self.config = config
        self.name_or_path = config.name_or_path  # HF's attribute: where from_pretrained loaded from
        self.dtype = dtype
        self.input_shape = tuple(input_shape)
        self.key = jax.random.PRNGKey(seed)
        self._module_kwargs = dict(kwargs)
        self._module = self.module_class(
            config=config, dtype=dtype, gradient_checkpointing=gradient_checkpointing, **kwargs
        )
        self._params_shape_tree: dict | None = None
        self._params: dict | None = None
        self._is_initialized = _do_init
        if _do_init:
            self._params = self.init_weights(self.key, self.input_shape)

    # -- properties ----------------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        """The linen module (use with ``module.apply({"params": params}, ...)``)."""
        return self._module

    @property
    def params(self) -> dict:
        """The parameters: a nested dict in HF's ``flax_model.msgpack`` layout."""
        if self._params is None:
            raise ValueError(
                f"{type(self).__name__} was built with _do_init=False and has no parameters; "
                "set model.params, call model.init_weights(...) or pass params= to the call"
            )
        return self._params

    @params.setter
    def params(self, params: Mapping) -> None:
        params = _to_plain_dict(params)
        expected = {p: tuple(v.shape) for p, v in flatten_tree(self.params_shape_tree).items()}
        given = {p: tuple(np.shape(v)) for p, v in flatten_tree(params).items()}
        missing = sorted("/".join(p) for p in expected if p not in given)
        unexpected = sorted("/".join(p) for p in given if p not in expected)
        wrong = sorted(
            f"{'/'.join(p)}: {given[p]} vs {expected[p]}"
            for p in expected
            if p in given and given[p] != expected[p]
        )
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing[:10]))
            if unexpected:
                parts.append("unexpected " + ", ".join(unexpected[:10]))
            if wrong:
                parts.append("misshapen " + "; ".join(wrong[:10]))
            raise ValueError(f"params do not fit {type(self).__name__}: " + " | ".join(parts))
        self._params = params
        self._is_initialized = True

    @property
    def params_shape_tree(self) -> dict:
        """``jax.ShapeDtypeStruct`` tree of the parameters, computed without allocating them.

        ``jax.eval_shape`` of the init of the model with one layer, that layer's subtree then
        repeated for every layer (the layers are one module class built from one config): the
        same tree as tracing all of them, for a twelfth of the tracing.
        """
        if self._params_shape_tree is None:
            module = self._one_layer_module()
            shapes = jax.eval_shape(
                lambda rng: self._init_variables(rng, self.input_shape, module=module), self.key
            )
            self._params_shape_tree = self._every_layer(_to_plain_dict(shapes["params"]))
        return self._params_shape_tree

    def _one_layer_module(self) -> nn.Module:
        """The same module class with a one-layer copy of the config (for shapes and new leaves)."""
        if self.config.num_hidden_layers <= 1:
            return self.module
        return self.module_class(
            config=self.config.copy(num_hidden_layers=1), dtype=self.dtype, **self._module_kwargs
        )

    def _every_layer(self, params: dict) -> dict:
        """``params`` of the one-layer module with layer ``"0"`` repeated for every layer of the model."""
        count = self.config.num_hidden_layers
        if count <= 1:
            return params
        flat = flatten_tree(params)
        out = {}
        for path, value in flat.items():
            at = _layer_position(path)
            if at is None:
                out[path] = value
                continue
            for i in range(count):
                out[path[:at] + (str(i),) + path[at + 1 :]] = value
        return unflatten_tree(out)

    # -- initialisation ------------------------------------------------------------------------
    def _init_variables(
        self,
        rng: Array,
        input_shape: tuple[int, ...],
        params: Mapping | None = None,
        module: nn.Module | None = None,
    ) -> dict:
        module = self.module if module is None else module
        if params is None:
            rngs, args, kwargs = self._dummy_call(rng, input_shape)
            return module.init(rngs, *args, **kwargs)

        flat = flatten_tree(params)
        new_paths = (
            [p for p in flatten_tree(self.params_shape_tree) if p not in flat]
            if module is self.module
            else []
        )
        owners = sorted({_head_owner(p) for p in new_paths})
        if new_paths and None not in owners:
            # Every new leaf lies in a head module (pooler, classifier, LM head, span scores): only
            # those modules run, on a (1, 1, hidden) zero state; Flax derives a parameter's random
            # stream from its path alone, so the values are those of a full init.
            given = unflatten_tree({p: v for p, v in flat.items() if _head_owner(p) in owners})
            heads = partial(_run_heads, owners=owners)
            new = _run_once(
                lambda given, rng: _new_leaves(module, given, _init_rngs(rng), method=heads), given, rng
            )
        else:
            if module is self.module and all(_layer_position(p) is None for p in new_paths):
                # Every new leaf lies outside the layers, some outside the head modules (an
                # embedding table): the one-layer model makes the same values (the same paths),
                # traced and compiled without the other layers.
                module = self._one_layer_module()
                flat_given = {
                    p: v
                    for p, v in flat.items()
                    if _layer_position(p) is None or p[_layer_position(p)] == "0"
                }
            else:
                flat_given = flat
            given = unflatten_tree(flat_given)

            def missing(given: dict, rng: Array) -> dict:
                # The dummy inputs are made inside (one program, not one compiled operation each).
                rngs, args, kwargs = self._dummy_call(rng, input_shape)
                return _new_leaves(module, given, rngs, *args, **kwargs)

            new = _run_once(missing, given, rng)
        flat.update({tuple(p.split("/")): v for p, v in new.items()})
        return {"params": unflatten_tree(flat)}

    def _dummy_call(self, rng: Array, input_shape: tuple[int, ...]) -> tuple[dict, tuple, dict]:
        """``(rngs, args, kwargs)`` of the dummy forward pass that initialises the parameters."""
        input_ids = jnp.zeros(input_shape, dtype="i4")
        kwargs: dict[str, Any] = {}
        if self.config.add_cross_attention:
            batch = int(np.prod(input_shape[:-1]))
            kwargs["encoder_hidden_states"] = jnp.zeros(
                (batch, input_shape[-1], self.config.hidden_size), self.dtype
            )
            kwargs["encoder_attention_mask"] = jnp.ones((batch, input_shape[-1]), "i4")
        kwargs.update(
            token_type_ids=jnp.zeros_like(input_ids),
            position_ids=create_position_ids_from_input_ids(input_ids, self.config.pad_token_id),
            return_dict=False,
        )
        return _init_rngs(rng), (input_ids, jnp.ones_like(input_ids)), kwargs

    def init_weights(self, rng: Array, input_shape: tuple[int, ...], params: Mapping | None = None) -> dict:
        """Random parameters; with ``params``, only the leaves it lacks are initialised.

        With ``params`` the module runs once on the dummy input with its ``params`` collection
        open for new entries: each given parameter is used as it is (its initializer never
        runs) and each missing one is made by its own initializer, from the RNG stream a full
        init would give it (Flax derives it from the module path), so a missing module gets the
        values HF's init-everything-then-fill would.

        Args:
            rng: PRNG key of the initialisation.
            input_shape: Shape of the dummy input.
            params: Parameters to keep; only their missing leaves are initialised.
        """
        if params is None:
            return _to_plain_dict(self._init_variables(rng, input_shape)["params"])
        return _to_plain_dict(self._init_variables(rng, input_shape, _to_plain_dict(params))["params"])

    def enable_gradient_checkpointing(self) -> None:
        """Rebuild the module with ``nn.remat`` around every layer (parameters unchanged)."""
        self._module = self.module_class(
            config=self.config, dtype=self.dtype, gradient_checkpointing=True, **self._module_kwargs
        )

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """An empty key/value cache for decoding up to ``max_length`` tokens (decoders only).

        Args:
            batch_size: Rows decoded together.
            max_length: Most tokens the cache holds (at most ``config.max_sequence_length``).
        """
        if not self.config.is_decoder:
            raise ValueError("init_cache needs a decoder: build the model with config.is_decoder=True")
        if not self.head.decodes:
            raise ValueError(f"{type(self).__name__} does not decode; use FlaxXLMRobertaForCausalLM")
        if not 0 < max_length <= self.config.max_sequence_length:
            raise ValueError(
                f"max_length={max_length} must lie in [1, config.max_sequence_length="
                f"{self.config.max_sequence_length}]"
            )
        input_ids = jnp.ones((batch_size, max_length), dtype="i4")
        kwargs: dict[str, Any] = {}
        if self.config.add_cross_attention:
            kwargs["encoder_hidden_states"] = jnp.zeros((batch_size, 1, self.config.hidden_size), self.dtype)
        shapes = jax.eval_shape(
            lambda ids: self.module.init(
                jax.random.PRNGKey(0), ids, jnp.ones_like(ids), init_cache=True, return_dict=False, **kwargs
            ),
            input_ids,
        )
        # Only the cache is needed: zeros of the right shapes, without initialising any parameter.
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), _to_plain_dict(shapes["cache"]))

    # -- the call ------------------------------------------------------------------------------
    def _check_inputs(self, arrays: Mapping[str, Any], past_key_values: Mapping | None) -> Any:
        """:func:`xlmr.inputs.check_inputs` on the call's arrays; returns the cache index (or 0).

        The fixed-size cache adds two checks of its own: it must come from :meth:`init_cache`,
        and the new tokens must fit in it. Under ``jax.jit`` only shapes and dtypes are checked
        here; the values are guarded by poisoning (:class:`FlaxXLMRobertaEmbeddings`: rows with an
        out-of-range id are NaN) and, in the train step, by ``checkify`` (``training.py``).
        """
        capacity = index = None
        if past_key_values is not None:
            cached_key = _find_leaf(past_key_values, "cached_key")
            capacity = None if cached_key is None else int(np.shape(cached_key)[1])
            index = _find_leaf(past_key_values, "cache_index")
        concrete = index is not None and not isinstance(index, jax.core.Tracer)
        shape = check_inputs(
            self.config,
            self.head,
            **{name: array_info(value) for name, value in arrays.items()},
            past_length=int(index) if concrete else (0 if past_key_values is None else None),
            mask_length=capacity,
            has_cache=past_key_values is not None,
        )
        if past_key_values is None:
            return 0
        if capacity is None or index is None:
            raise ValueError("past_key_values is not a cache from model.init_cache(batch_size, max_length)")
        if concrete and int(index) + shape.seq > capacity:
            raise ValueError(
                f"the cache holds {capacity} tokens; {int(index)} are used and {shape.seq} more do not fit"
            )
        return index

    def __call__(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        head_mask: Any = None,
        encoder_hidden_states: Any = None,
        encoder_attention_mask: Any = None,
        params: Mapping | None = None,
        dropout_rng: Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Mapping | None = None,
        segment_ids: Any = None,
    ) -> O.ModelOutput | tuple:
        """Run the model (eagerly, or inside ``jax.jit``/``jax.grad``).

        An eager call (concrete arrays, no cache, no adapter) runs compiled programs shared by
        models of equal configs: block by block (embeddings, one program for every layer, the
        head; :func:`_compiled_blocks`), or with ``train=True`` the whole forward as one program
        (:func:`_compiled_train_apply`, the dropout masks of a traced call). Inside a trace, with a
        decoder cache or an attached adapter, the module runs as it is.

        Args:
            input_ids: Token ids, (batch, seq) ((batch, num_choices, seq) for multiple choice).
            attention_mask: 1 for tokens to attend to, 0 for padding: (batch, seq), or (batch, seq,
                seq) for a mask per query (with ``past_key_values`` the key axis covers the whole
                cache, ``max_length``).
            token_type_ids: Segment ids (zeros by default).
            position_ids: Positions; by default counted from ``pad_token_id + 1`` over non-padding tokens.
            head_mask: (heads,) or (layers, heads) multipliers of the attention probabilities.
            encoder_hidden_states: (batch, enc_seq, hidden) for cross-attention (decoders).
            encoder_attention_mask: (batch, enc_seq) mask of ``encoder_hidden_states``.
            params: Parameters to use instead of ``self.params`` (pass them for ``jax.jit``/``grad``).
            dropout_rng: PRNG key for dropout; needed with ``train=True``.
            train: Apply dropout.
            output_attentions / output_hidden_states / return_dict: As in HF (config defaults).
            past_key_values: A cache from :meth:`init_cache` (decoders); the updated cache is
                returned in ``past_key_values``.
            segment_ids: Packed rows, (batch, seq): 0 for padding, 1..k for the k sequences of a
                row, in order (heads with ``head.packable``). Positions restart for every sequence,
                attention stays within it, ``attention_mask`` may be omitted; per-token outputs
                keep the packed layout, the pooler and sequence-classification logits come in
                (batch, seq, ...) slots (slot ``[b, k - 1]`` is sequence ``k``; empty slots zero).

        Under ``jax.jit`` the values cannot be checked: rows holding an out-of-range id come out
        as NaN (see the module docstring).
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = cfg.return_dict if return_dict is None else return_dict
        arrays = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "head_mask": head_mask,
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
            "segment_ids": segment_ids,
        }
        past = self._check_inputs(arrays, past_key_values)
        if train and dropout_rng is None and _has_dropout(cfg):
            raise ValueError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")

        input_ids = jnp.asarray(input_ids, dtype="i4")
        kwargs: dict[str, Any] = {}
        for name in ("token_type_ids", "position_ids", "segment_ids", "encoder_attention_mask"):
            if arrays[name] is not None:
                kwargs[name] = jnp.asarray(arrays[name], dtype="i4")
        if attention_mask is not None:
            attention_mask = jnp.asarray(attention_mask, dtype="i4")
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = jnp.asarray(encoder_hidden_states)
        if head_mask is not None:
            head_mask = jnp.asarray(head_mask, jnp.float32)
            if head_mask.ndim == 1:
                head_mask = jnp.broadcast_to(head_mask, (cfg.num_hidden_layers, cfg.num_attention_heads))
        # An attached adapter (xlmr_flax.adapters): its tree merged in, its LoRA branches intercepted.
        params, adapter_scope = self._adapted(params, train)
        variables: dict[str, Any] = {"params": params}
        mutable: Any = False
        if past_key_values is not None:
            variables["cache"] = past_key_values
            mutable = ["cache"]
            if position_ids is None:  # the module cannot see the cache index: count on from it
                kwargs["position_ids"] = create_position_ids_from_input_ids(input_ids, cfg.pad_token_id, past)
        eager = (
            past_key_values is None
            and isinstance(adapter_scope, contextlib.nullcontext)
            and not any(
                isinstance(x, jax.core.Tracer)
                for x in jax.tree_util.tree_leaves(
                    (params, input_ids, attention_mask, head_mask, dropout_rng, kwargs)
                )
            )
        )
        if eager and train:
            # Dropout: the whole forward as one compiled program, the masks those of a traced call.
            return_value = _compiled_train_apply(self.module, (output_attentions, output_hidden_states))(
                params, input_ids, attention_mask, head_mask, dropout_rng, kwargs
            )
            return return_value if return_dict else return_value.to_tuple()
        if eager:  # compiled block by block, not one operation at a time (see _compiled_blocks)
            adapter_scope = nn.intercept_methods(_compiled_blocks)
        with adapter_scope:
            result = self.module.apply(
                variables,
                input_ids,
                attention_mask,
                head_mask=head_mask,
                deterministic=not train,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                rngs={"dropout": dropout_rng} if dropout_rng is not None else {},
                mutable=mutable,
                **kwargs,
            )
        if past_key_values is not None:
            outputs, new_variables = result
            outputs["past_key_values"] = _to_plain_dict(new_variables["cache"])
        else:
            outputs = result
        return outputs if return_dict else outputs.to_tuple()

    # -- weights in and out (see loading.py) ----------------------------------------------------
    def canonical_state_dict(self, params: Mapping | None = None) -> dict[str, np.ndarray]:
        """The parameters as a canonical numpy state dict (HF PyTorch names and layouts).

        Args:
            params: Parameters to convert instead of ``self.params`` (e.g. gradients).
        """
        return loading.params_to_state_dict(self.params if params is None else params)

    def load_canonical_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> LoadReport:
        """Load a canonical numpy state dict (checked loudly); returns the :class:`xlmr.weights.LoadReport`."""
        return loading.load_canonical_state_dict(self, state_dict)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Any,
        dtype: Any = jnp.float32,
        *,
        param_dtype: Any = None,
        **kwargs: Any,
    ) -> FlaxXLMRobertaPreTrainedModel:
        """Load any HF XLM-R checkpoint directory (safetensors, pytorch_model.bin, tf_model.h5, flax msgpack) or Hub repo.

        The parameter tree comes straight from the file (shapes checked against ``jax.eval_shape``
        of the init first; no random init for weights the checkpoint provides).

        Args:
            pretrained_model_name_or_path: A local directory with ``config.json`` and a weight file, or a
                Hub repo id (``org/name``, ``org/name@revision``) fetched through huggingface_hub:
                config.json and one weight format, ``model.safetensors`` first, then
                ``flax_model.msgpack``, then any other. Kept as ``model.name_or_path``.
            dtype: Computation dtype.
            param_dtype: Dtype of the loaded parameters (None: float32, as HF keeps them;
                ``jnp.bfloat16`` halves their memory), each weight cast as it is read.
            **kwargs: ``seed``, ``gradient_checkpointing``, ``input_shape``, HF's Hub arguments
                (``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``subfolder``,
                ``force_download``), or config overrides.
        """
        return loading.from_pretrained(
            cls, pretrained_model_name_or_path, dtype=dtype, param_dtype=param_dtype, **kwargs
        )

    def save_pretrained(
        self, save_directory: str | Any, params: Mapping | None = None, format: str = "safetensors"
    ) -> Any:
        """Write ``config.json`` and the weights (``format``: safetensors, pytorch, flax or tf).

        With an adapter attached (:mod:`xlmr_flax.adapters`) the active adapter alone is written, in
        PEFT's layout (``adapter_config.json`` + ``adapter_model.safetensors``, or ``.bin`` with
        ``format="pytorch"``), as HF's ``save_pretrained`` does; :meth:`merge_adapter` first to
        write the full model.

        Args:
            save_directory: Destination directory.
            params: Parameters to write instead of ``self.params``.
            format: Weight file format (``conversion.FORMAT_ALIASES`` names accepted).
        """
        if self._has_adapters():
            if params is not None:
                raise ValueError(
                    "save_pretrained(params=...) writes a full model, but an adapter is attached, whose "
                    "save_pretrained writes the adapter alone; merge_adapter() or delete_adapter() first"
                )
            return self._save_adapter(save_directory, format)
        return loading.save_pretrained(self, save_directory, params=params, format=format)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={jnp.dtype(self.dtype).name}, config={self.config.to_json_string()})"


class FlaxXLMRobertaModule(nn.Module):
    """The bare backbone: embeddings, encoder and (optionally) pooler.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
        add_pooling_layer: Build the pooler.
        gradient_checkpointing: Rematerialise each layer.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True
    gradient_checkpointing: bool = False

    def setup(self) -> None:
        self.embeddings = FlaxXLMRobertaEmbeddings(self.config, dtype=self.dtype)
        self.encoder = FlaxXLMRobertaEncoder(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )
        if self.add_pooling_layer:
            self.pooler = FlaxXLMRobertaPooler(self.config, dtype=self.dtype)

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        head_mask: Array | None = None,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        segment_ids: Array | None = None,
    ) -> O.ModelOutput | tuple:
        hidden_states = self.embeddings(
            input_ids, token_type_ids, position_ids, attention_mask, deterministic, segment_ids=segment_ids
        )
        hidden_states, all_hidden, all_attn, all_cross = self.encoder(
            hidden_states,
            attention_mask,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            segment_ids=segment_ids,
        )
        pooled = self.pooler(hidden_states, segment_ids) if self.add_pooling_layer else None
        out = O.BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_attn,
            cross_attentions=all_cross,
        )
        return out if return_dict else out.to_tuple()


class FlaxXLMRobertaModel(FlaxXLMRobertaPreTrainedModel):
    """The bare XLM-RoBERTa transformer, returning hidden states (and the pooled first token).

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`, plus ``add_pooling_layer``:
    build the pooler (default True).
    """

    module_class = FlaxXLMRobertaModule
    head = HEADS["base"]


_ENCODER_FIELDS = ("hidden_states", "attentions", "cross_attentions")


class _HeadModule(_ConfigModule):
    """The one call path of the head modules: the backbone, then the head's own :meth:`_predict`.

    Subclasses name their head (``head``), build ``roberta`` with :meth:`_backbone` and their own
    layers in ``setup``, and compute the head's output fields in :meth:`_predict`. The call takes
    HF's argument order, then cross-attention, cache and ``segment_ids``.

    Args:
        gradient_checkpointing: Rematerialise each layer.
    """

    gradient_checkpointing: bool = False
    head: ClassVar[Head]
    _eager_blocks: ClassVar[tuple[str, ...]] = ("_predict",)  # see _compiled_blocks

    def _backbone(self) -> FlaxXLMRobertaModule:
        return FlaxXLMRobertaModule(
            self.config,
            dtype=self.dtype,
            add_pooling_layer=self.head.add_pooling_layer,
            gradient_checkpointing=self.gradient_checkpointing,
        )

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        head_mask: Array | None = None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
        init_cache: bool = False,
        segment_ids: Array | None = None,
    ) -> O.ModelOutput | tuple:
        def rows(x: Array | None) -> Array | None:
            # Multiple choice: (batch, num_choices, seq) -> (batch * num_choices, seq)
            return x if x is None or self.head.input_rank == 2 else x.reshape(-1, x.shape[-1])

        out = self.roberta(
            rows(input_ids),
            rows(attention_mask),
            rows(token_type_ids),
            rows(position_ids),
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            segment_ids=segment_ids,
        )
        fields = self._predict(out, input_ids.shape, deterministic, segment_ids)
        extras = {f: getattr(out, f) for f in _ENCODER_FIELDS if f in self.head.outputs}
        result = O.OUTPUT_CLASSES[self.head.name](**fields, **extras)
        return result if return_dict else result.to_tuple()

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        """The head's own output fields (``head.prediction``) from the backbone's outputs."""
        raise NotImplementedError


def _shared_embedding(module: nn.Module) -> Array | None:
    if not module.config.tie_word_embeddings:
        return None
    return module.roberta.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


class FlaxXLMRobertaForCausalLMModule(_HeadModule):
    """Backbone without pooler plus the LM head, for left-to-right language modelling.

    Takes HF's argument order for this module (``position_ids`` before ``token_type_ids``).
    """

    head = HEADS["causal_lm"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.lm_head = FlaxXLMRobertaLMHead(self.config, dtype=self.dtype)

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        token_type_ids: Array | None = None,
        head_mask: Array | None = None,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        segment_ids: Array | None = None,
    ) -> O.ModelOutput | tuple:
        return super().__call__(
            input_ids,
            attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            segment_ids=segment_ids,
        )

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        return {"logits": self.lm_head(out.last_hidden_state, shared_embedding=_shared_embedding(self))}


class FlaxXLMRobertaForCausalLM(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a language modelling head for autoregressive decoding.

    Use ``config.is_decoder=True`` for causal attention; :meth:`init_cache` and
    ``past_key_values`` decode one token at a time (jit-compatible).

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`.
    """

    module_class = FlaxXLMRobertaForCausalLMModule
    head = HEADS["causal_lm"]

    def prepare_inputs_for_generation(
        self, input_ids: Any, max_length: int, attention_mask: Any = None
    ) -> dict:
        """Cache, full-length mask and position ids for a generation loop starting from ``input_ids``.

        Args:
            input_ids: The prompt, (batch, seq).
            max_length: Most tokens (prompt included) the loop generates up to.
            attention_mask: The prompt's mask (ones by default).
        """
        batch_size, seq_length = np.shape(input_ids)
        past_key_values = self.init_cache(batch_size, max_length)
        extended = jnp.ones((batch_size, max_length), dtype="i4")
        if attention_mask is not None:
            attention_mask = jnp.asarray(attention_mask, "i4")
            position_ids = jnp.cumsum(attention_mask, axis=-1) * attention_mask + self.config.pad_token_id
            extended = lax.dynamic_update_slice(extended, attention_mask, (0, 0))
        else:
            position_ids = jnp.broadcast_to(
                jnp.arange(seq_length, dtype="i4") + self.config.pad_token_id + 1, (batch_size, seq_length)
            )
        return {"past_key_values": past_key_values, "attention_mask": extended, "position_ids": position_ids}

    def update_inputs_for_generation(self, model_outputs: O.ModelOutput, model_kwargs: dict) -> dict:
        """Carry the cache forward and advance the position ids by one.

        Args:
            model_outputs: The last call's outputs (their ``past_key_values``).
            model_kwargs: The call arguments to update (``position_ids``, ``past_key_values``).
        """
        model_kwargs["past_key_values"] = model_outputs.past_key_values
        model_kwargs["position_ids"] = model_kwargs["position_ids"][:, -1:] + 1
        return model_kwargs


class FlaxXLMRobertaForMaskedLMModule(_HeadModule):
    """Backbone without pooler plus the LM head (masked language modelling)."""

    head = HEADS["masked_lm"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.lm_head = FlaxXLMRobertaLMHead(self.config, dtype=self.dtype)

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        return {"logits": self.lm_head(out.last_hidden_state, shared_embedding=_shared_embedding(self))}


class FlaxXLMRobertaForMaskedLM(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with the masked language modelling head.

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`.
    """

    module_class = FlaxXLMRobertaForMaskedLMModule
    head = HEADS["masked_lm"]


class FlaxXLMRobertaForSequenceClassificationModule(_HeadModule):
    """Backbone without pooler plus the classification head on the first token (of each packed sequence)."""

    head = HEADS["sequence_classification"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.classifier = FlaxXLMRobertaClassificationHead(self.config, dtype=self.dtype)

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        return {"logits": self.classifier(out.last_hidden_state, deterministic, segment_ids)}


class FlaxXLMRobertaForSequenceClassification(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a sequence classification / regression head (``config.num_labels`` outputs).

    With ``segment_ids`` the logits come in (batch, seq, num_labels) slots, one per packed
    sequence (empty slots zero); train them with labels in the same slots, -100 in empty ones.

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`.
    """

    module_class = FlaxXLMRobertaForSequenceClassificationModule
    head = HEADS["sequence_classification"]


class FlaxXLMRobertaForMultipleChoiceModule(_HeadModule):
    """Backbone with pooler plus one score per choice."""

    head = HEADS["multiple_choice"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)
        self.classifier = _dense(1, self.config, self.dtype)

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        pooled = self.dropout(out.pooler_output, deterministic=deterministic)
        return {"logits": self.classifier(pooled).reshape(input_shape[:2])}  # (batch, num_choices)


class FlaxXLMRobertaForMultipleChoice(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa scoring each of several choices (inputs (batch, num_choices, seq)).

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`.
    """

    module_class = FlaxXLMRobertaForMultipleChoiceModule
    head = HEADS["multiple_choice"]


class FlaxXLMRobertaForTokenClassificationModule(_HeadModule):
    """Backbone without pooler plus a per-token classifier."""

    head = HEADS["token_classification"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.dropout = nn.Dropout(rate=_dropout_rate(self.config))
        self.classifier = _dense(self.config.num_labels, self.config, self.dtype)

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        return {"logits": self.classifier(self.dropout(out.last_hidden_state, deterministic=deterministic))}


class FlaxXLMRobertaForTokenClassification(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a per-token classification head (NER, POS...).

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel`.
    """

    module_class = FlaxXLMRobertaForTokenClassificationModule
    head = HEADS["token_classification"]


class FlaxXLMRobertaForQuestionAnsweringModule(_HeadModule):
    """Backbone without pooler plus span start/end scores."""

    head = HEADS["question_answering"]

    def setup(self) -> None:
        self.roberta = self._backbone()
        self.qa_outputs = _dense(self.config.num_labels, self.config, self.dtype)

    def _predict(
        self, out: O.ModelOutput, input_shape: tuple[int, ...], deterministic: bool, segment_ids: Array | None
    ) -> dict[str, Array]:
        logits = self.qa_outputs(out.last_hidden_state)  # (batch, seq, num_labels)
        if logits.shape[-1] != 2:
            raise ValueError(
                f"question answering needs config.num_labels == 2 (start, end), got {logits.shape[-1]}"
            )
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}


class FlaxXLMRobertaForQuestionAnswering(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a span classification head (start/end logits) for extractive QA.

    Arguments and example: see :class:`FlaxXLMRobertaPreTrainedModel` (``config.num_labels`` must be 2).
    """

    module_class = FlaxXLMRobertaForQuestionAnsweringModule
    head = HEADS["question_answering"]
