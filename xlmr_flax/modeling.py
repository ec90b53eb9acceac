"""Flax/JAX XLM-RoBERTa: ``flax.linen`` modules and HF-style model wrappers for the seven heads.

The linen modules (``FlaxXLMRoberta...Module``) hold the computation; the public classes
(``FlaxXLMRobertaModel``, ``FlaxXLMRobertaForMaskedLM``...) hold a config, the linen module
(``model.module``) and the parameters (``model.params``), a plain nested dict laid out exactly
as HF's ``flax_model.msgpack``: the path of every weight is
``xlmr.weights.to_backend_path(canonical_key, "flax")``. The bare model's parameters have no
``roberta`` level; the heads' do.

Calls follow HF's Flax classes (``params=``, ``dropout_rng=``, ``train=``, ``past_key_values=``)
and work eagerly and under ``jax.jit``. Inputs are checked before anything is traced: ids out
of the vocabulary, sequences longer than ``config.max_sequence_length`` and mismatched mask
shapes raise ``ValueError`` naming the offending values (value checks only on concrete arrays).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xlmr import outputs as O
from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head

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


# -- outputs as pytrees ------------------------------------------------------------------------
def _flatten_output(out: O.ModelOutput):
    keys = tuple(out.keys())
    return [(jax.tree_util.DictKey(k), out[k]) for k in keys], keys


def _unflatten_output(cls: type[O.ModelOutput], keys: tuple[str, ...], children) -> O.ModelOutput:
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


# -- helpers -----------------------------------------------------------------------------------
def create_position_ids_from_input_ids(
    input_ids: Array, padding_idx: int, past_key_values_length: Any = 0
) -> Array:
    """Position ids as fairseq/HF make them: non-padding tokens count from ``padding_idx + 1``.

    Padding tokens get ``padding_idx``; ``past_key_values_length`` shifts the count for cached decoding.
    Works on any number of leading axes (the sequence is the last one).
    """
    mask = (input_ids != padding_idx).astype("i4")
    incremental = (jnp.cumsum(mask, axis=-1).astype("i4") + past_key_values_length) * mask
    return incremental.astype("i4") + padding_idx


def _dense(features: int, config: XLMRobertaConfig, dtype: Any, name: str | None = None, **kw) -> nn.Dense:
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


# -- modules -----------------------------------------------------------------------------------
def _lookup_without_padding_grad(embed: nn.Embed, ids: Array, padding_idx: int | None) -> Array:
    """Embedding lookup whose padding row gets no gradient from it (PyTorch's ``padding_idx``)."""
    vectors = embed(ids)
    if padding_idx is None:
        return vectors
    return jnp.where((ids == padding_idx)[..., None], lax.stop_gradient(vectors), vectors)


class FlaxXLMRobertaEmbeddings(nn.Module):
    """Word + position + token type embeddings, then LayerNorm and dropout.

    Args:
        config: The model configuration.
        dtype: Computation dtype (parameters stay float32).
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.word_embeddings = _embed(cfg.vocab_size, cfg.hidden_size, cfg, self.dtype)
        self.position_embeddings = _embed(cfg.max_position_embeddings, cfg.hidden_size, cfg, self.dtype)
        self.token_type_embeddings = _embed(cfg.type_vocab_size, cfg.hidden_size, cfg, self.dtype)
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(
        self, input_ids, token_type_ids, position_ids, attention_mask=None, deterministic: bool = True
    ):
        # (batch, seq) -> (batch, seq, hidden)
        pad = self.config.pad_token_id
        hidden_states = _lookup_without_padding_grad(self.word_embeddings, input_ids.astype("i4"), pad)
        hidden_states = hidden_states + self.token_type_embeddings(token_type_ids.astype("i4"))
        # PyTorch adds absolute positions only; relative variants work inside attention.
        position_embeds = _lookup_without_padding_grad(
            self.position_embeddings, position_ids.astype("i4"), pad
        )
        if self.config.position_embedding_type == "absolute":
            hidden_states = hidden_states + position_embeds
        hidden_states = self.LayerNorm(hidden_states)
        return self.dropout(hidden_states, deterministic=deterministic)


class FlaxXLMRobertaSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with an optional key/value cache.

    Softmax runs in float32 whatever ``dtype`` is; masked scores take ``finfo(dtype).min``.
    With ``causal=True`` (decoders) keys after the query position are masked, and the cache
    (``"cache"`` collection: ``cached_key``, ``cached_value``, ``cache_index``) allows decoding
    one step at a time.

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
        hidden_states,
        attention_mask,
        layer_head_mask=None,
        key_value_states=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        cfg = self.config
        source = hidden_states if key_value_states is None else key_value_states
        query = self._split_heads(self.query(hidden_states))  # (batch, q, heads, head_dim)
        key = self._split_heads(self.key(source))  # (batch, k, heads, head_dim)
        value = self._split_heads(self.value(source))

        q_offset: Any = 0
        if self.causal and (init_cache or self.has_variable("cache", "cached_key")):
            key, value, q_offset = self._concatenate_to_cache(key, value, query)
        q_len, k_len = query.shape[1], key.shape[1]

        # Boolean mask broadcastable to (batch, heads, q, k).
        mask = None
        if attention_mask is not None:
            mask = jnp.expand_dims(attention_mask > 0, axis=(-3, -2))
        if self.causal:
            q_pos = q_offset + jnp.arange(q_len, dtype=jnp.int32)
            causal = jnp.arange(k_len, dtype=jnp.int32)[None, :] <= q_pos[:, None]
            mask = causal[None, None] if mask is None else jnp.logical_and(mask, causal)

        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key)  # (batch, heads, q, k)
        if self._position_type in ("relative_key", "relative_key_query"):
            q_pos = q_offset + jnp.arange(q_len, dtype=jnp.int32)
            distance = q_pos[:, None] - jnp.arange(k_len, dtype=jnp.int32)[None, :]
            rel = self.distance_embedding(distance + cfg.max_position_embeddings - 1)  # (q, k, head_dim)
            scores = scores + jnp.einsum("bqhd,qkd->bhqk", query, rel)
            if self._position_type == "relative_key_query":
                scores = scores + jnp.einsum("bkhd,qkd->bhqk", key, rel)
        scores = scores.astype(jnp.float32) * (1.0 / math.sqrt(cfg.head_dim))
        if mask is not None:
            scores = jnp.where(mask, scores, jnp.finfo(self.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = self.dropout(probs, deterministic=deterministic).astype(self.dtype)
        if layer_head_mask is not None:
            probs = probs * jnp.asarray(layer_head_mask, probs.dtype).reshape(-1, 1, 1)

        context = jnp.einsum("bhqk,bkhd->bqhd", probs, value)
        context = context.reshape(context.shape[:2] + (cfg.hidden_size,))  # (batch, q, hidden)
        return (context, probs) if output_attentions else (context,)


class FlaxXLMRobertaSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and LayerNorm.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype)
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)

    def __call__(self, hidden_states, input_tensor, deterministic: bool = True):
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
        hidden_states,
        attention_mask,
        layer_head_mask=None,
        key_value_states=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        attn = self.self(
            hidden_states,
            attention_mask,
            layer_head_mask=layer_head_mask,
            key_value_states=key_value_states,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
        )
        hidden_states = self.output(attn[0], hidden_states, deterministic=deterministic)
        return (hidden_states, attn[1]) if output_attentions else (hidden_states,)


class FlaxXLMRobertaIntermediate(nn.Module):
    """Feed-forward expansion with the configured activation.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.dense = _dense(self.config.intermediate_size, self.config, self.dtype)
        self.activation = ACT2FN[self.config.hidden_act]

    def __call__(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class FlaxXLMRobertaOutput(nn.Module):
    """Feed-forward projection back to ``hidden_size``, dropout, residual and LayerNorm.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)
        self.LayerNorm = _layer_norm(self.config, self.dtype)

    def __call__(self, hidden_states, attention_output, deterministic: bool = True):
        hidden_states = self.dropout(self.dense(hidden_states), deterministic=deterministic)
        return self.LayerNorm(hidden_states + attention_output)


class FlaxXLMRobertaLayer(nn.Module):
    """One transformer layer: self-attention, optional cross-attention, feed-forward.

    Args:
        config: The model configuration (``is_decoder`` makes self-attention causal,
            ``add_cross_attention`` adds ``crossattention``).
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

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
        hidden_states,
        attention_mask,
        layer_head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        attention_outputs = self.attention(
            hidden_states,
            attention_mask,
            layer_head_mask=layer_head_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
        )
        attention_output = attention_outputs[0]
        cross_outputs = None
        if encoder_hidden_states is not None:
            cross_outputs = self.crossattention(
                attention_output,
                attention_mask=encoder_attention_mask,
                layer_head_mask=layer_head_mask,
                key_value_states=encoder_hidden_states,
                deterministic=deterministic,
                output_attentions=output_attentions,
            )
            attention_output = cross_outputs[0]
        hidden_states = self.output(
            self.intermediate(attention_output), attention_output, deterministic=deterministic
        )
        outputs = (hidden_states,)
        if output_attentions:
            outputs += (attention_outputs[1],)
            if cross_outputs is not None:
                outputs += (cross_outputs[1],)
        return outputs


class FlaxXLMRobertaLayerCollection(nn.Module):
    """The stack of layers, named ``"0"``, ``"1"``... (HF's parameter layout), optionally rematerialised.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
        gradient_checkpointing: Wrap each layer in ``nn.remat`` (activations recomputed in the
            backward pass; same gradients, less memory).
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32
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
        hidden_states,
        attention_mask,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
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
            layer_outputs = layer(
                hidden_states,
                attention_mask,
                None if head_mask is None else head_mask[i],
                encoder_hidden_states,
                encoder_attention_mask,
                init_cache,
                deterministic,
                output_attentions,
            )
            hidden_states = layer_outputs[0]
            if output_attentions:
                all_attentions += (layer_outputs[1],)
                if encoder_hidden_states is not None:
                    all_cross += (layer_outputs[2],)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        return hidden_states, all_hidden, all_attentions, all_cross


class FlaxXLMRobertaEncoder(nn.Module):
    """The transformer encoder: ``layer`` holds the layer stack.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
        gradient_checkpointing: Rematerialise each layer.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self) -> None:
        self.layer = FlaxXLMRobertaLayerCollection(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )

    def __call__(self, hidden_states, attention_mask, head_mask=None, **kwargs):
        return self.layer(hidden_states, attention_mask, head_mask, **kwargs)


class FlaxXLMRobertaPooler(nn.Module):
    """``tanh(dense(first token))``.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.dense = _dense(self.config.hidden_size, self.config, self.dtype)

    def __call__(self, hidden_states):
        return nn.tanh(self.dense(hidden_states[:, 0]))


class FlaxXLMRobertaLMHead(nn.Module):
    """dense -> gelu -> layer_norm -> decoder (+ bias) over the vocabulary.

    With tied embeddings the decoder is the word embedding matrix (no ``decoder`` parameters,
    as in HF's Flax checkpoints); the bias lives at ``lm_head/bias``.

    Args:
        config: The model configuration.
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.dense = _dense(cfg.hidden_size, cfg, self.dtype)
        self.layer_norm = _layer_norm(cfg, self.dtype)
        if not cfg.tie_word_embeddings:
            self.decoder = _dense(cfg.vocab_size, cfg, self.dtype, use_bias=False)
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,), jnp.float32)

    def __call__(self, hidden_states, shared_embedding=None):
        hidden_states = ACT2FN["gelu"](self.dense(hidden_states))
        hidden_states = self.layer_norm(hidden_states)
        if shared_embedding is not None:
            # (batch, seq, hidden) x (vocab, hidden) -> (batch, seq, vocab)
            logits = jnp.einsum("...h,vh->...v", hidden_states, jnp.asarray(shared_embedding, self.dtype))
        else:
            logits = self.decoder(hidden_states)
        return logits + jnp.asarray(self.bias, self.dtype)


class FlaxXLMRobertaClassificationHead(nn.Module):
    """Sentence classification head on the first token: dropout, dense, tanh, dropout, out_proj.

    Args:
        config: The model configuration (``classifier_dropout`` or ``hidden_dropout_prob``).
        dtype: Computation dtype.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.dense = _dense(cfg.hidden_size, cfg, self.dtype)
        rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        self.dropout = nn.Dropout(rate=rate)
        self.out_proj = _dense(cfg.num_labels, cfg, self.dtype)

    def __call__(self, hidden_states, deterministic: bool = True):
        x = self.dropout(hidden_states[:, 0, :], deterministic=deterministic)
        x = nn.tanh(self.dense(x))
        x = self.dropout(x, deterministic=deterministic)
        return self.out_proj(x)


# -- the public wrappers -----------------------------------------------------------------------
def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _find_cache_index(cache: Mapping) -> Any:
    for key, value in cache.items():
        if key == "cache_index":
            return value
        if isinstance(value, Mapping):
            found = _find_cache_index(value)
            if found is not None:
                return found
    return None


def _find_cache_length(cache: Mapping) -> int | None:
    for key, value in cache.items():
        if key == "cached_key":
            return int(np.shape(value)[1])
        if isinstance(value, Mapping):
            found = _find_cache_length(value)
            if found is not None:
                return found
    return None


class FlaxXLMRobertaPreTrainedModel:
    """Base of the Flax XLM-R classes: config, linen module, parameters, loading and saving.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape: Shape of the dummy input used to initialise the parameters.
        seed: Seed of the parameter initialisation.
        dtype: Computation dtype (``jnp.float32``, ``jnp.bfloat16``...); parameters stay float32.
        _do_init: Initialise parameters now (``False``: set ``model.params`` yourself).
        gradient_checkpointing: Rematerialise each layer in the backward pass.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaModel
        >>> model = FlaxXLMRobertaModel(XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                              num_attention_heads=4, intermediate_size=37))
        >>> model([[0, 5, 6, 2]]).last_hidden_state.shape
        (1, 4, 32)
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
        from xlmr.weights import flatten_tree

        params = _to_plain_dict(params)
        expected = {p: tuple(v.shape) for p, v in flatten_tree(self.params_shape_tree).items()}
        given = {p: _shape(v) for p, v in flatten_tree(params).items()}
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
        """``jax.ShapeDtypeStruct`` tree of the parameters, computed without allocating them."""
        if self._params_shape_tree is None:
            shapes = jax.eval_shape(lambda rng: self._init_variables(rng, self.input_shape), self.key)
            self._params_shape_tree = _to_plain_dict(shapes["params"])
        return self._params_shape_tree

    # -- initialisation ------------------------------------------------------------------------
    def _init_variables(self, rng: Array, input_shape: tuple[int, ...]) -> dict:
        input_ids = jnp.zeros(input_shape, dtype="i4")
        attention_mask = jnp.ones_like(input_ids)
        token_type_ids = jnp.zeros_like(input_ids)
        position_ids = create_position_ids_from_input_ids(input_ids, self.config.pad_token_id)
        params_rng, dropout_rng = jax.random.split(rng)
        kwargs: dict[str, Any] = {}
        if self.config.add_cross_attention:
            batch = int(np.prod(input_shape[:-1]))
            kwargs["encoder_hidden_states"] = jnp.zeros(
                (batch, input_shape[-1], self.config.hidden_size), self.dtype
            )
            kwargs["encoder_attention_mask"] = jnp.ones((batch, input_shape[-1]), "i4")
        return self.module.init(
            {"params": params_rng, "dropout": dropout_rng},
            input_ids,
            attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            return_dict=False,
            **kwargs,
        )

    def init_weights(self, rng: Array, input_shape: tuple[int, ...], params: Mapping | None = None) -> dict:
        """Random parameters; with ``params``, only the missing leaves are filled in."""
        random_params = _to_plain_dict(self._init_variables(rng, input_shape)["params"])
        if params is None:
            return random_params
        from xlmr.weights import flatten_tree, unflatten_tree

        flat = flatten_tree(random_params)
        flat.update(flatten_tree(_to_plain_dict(params)))
        return unflatten_tree(flat)

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
        if self.head.name not in ("base", "causal_lm"):
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

    # -- input checking ------------------------------------------------------------------------
    def _check_inputs(
        self,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        head_mask,
        encoder_hidden_states,
        encoder_attention_mask,
        past_key_values,
    ) -> None:
        cfg = self.config
        shape = _shape(input_ids)
        want_ndim = 3 if self.head.name == "multiple_choice" else 2
        if len(shape) != want_ndim:
            layout = "(batch, num_choices, seq)" if want_ndim == 3 else "(batch, seq)"
            raise ValueError(f"input_ids must have shape {layout}, got shape {shape}")
        dtype = getattr(input_ids, "dtype", None)
        if dtype is not None and np.dtype(dtype).kind not in "iub":
            raise TypeError(f"input_ids must hold integer token ids, got dtype {dtype}")
        seq_len = shape[-1]
        cache_len = None
        if past_key_values is not None:
            if not cfg.is_decoder:
                raise ValueError("past_key_values need a decoder (config.is_decoder=True)")
            if self.head.name not in ("base", "causal_lm"):
                raise ValueError(f"{type(self).__name__} takes no past_key_values")
            cache_len = _find_cache_length(past_key_values)
            index = _find_cache_index(past_key_values)
            if cache_len is None or index is None:
                raise ValueError(
                    "past_key_values is not a cache from model.init_cache(batch_size, max_length)"
                )
            if not _is_tracer(index) and int(index) + seq_len > cache_len:
                raise ValueError(
                    f"the cache holds {cache_len} tokens; {int(index)} are used and {seq_len} more do not fit"
                )
        elif position_ids is None and seq_len > cfg.max_sequence_length:
            raise ValueError(
                f"input sequence length {seq_len} exceeds config.max_sequence_length={cfg.max_sequence_length} "
                f"(max_position_embeddings={cfg.max_position_embeddings} minus the padding offset "
                f"{cfg.pad_token_id + 1})"
            )
        if not _is_tracer(input_ids) and np.size(input_ids):
            ids = np.asarray(input_ids)
            if ids.max() >= cfg.vocab_size:
                raise ValueError(f"input_ids contain id {int(ids.max())}, but vocab_size is {cfg.vocab_size}")
            if ids.min() < 0:
                raise ValueError(f"input_ids contain negative id {int(ids.min())}")
        if attention_mask is not None:
            want = shape if cache_len is None else (*shape[:-1], cache_len)
            if _shape(attention_mask) != want:
                extra = (
                    ""
                    if cache_len is None
                    else f" (cached decoding: the mask covers all {cache_len} cache slots)"
                )
                raise ValueError(
                    f"attention_mask has shape {_shape(attention_mask)}, expected {want} to match input_ids "
                    f"{shape}{extra}"
                )
        if token_type_ids is not None:
            if _shape(token_type_ids) != shape:
                raise ValueError(f"token_type_ids has shape {_shape(token_type_ids)}, input_ids has {shape}")
            if not _is_tracer(token_type_ids) and np.size(token_type_ids):
                tt = np.asarray(token_type_ids)
                if tt.max() >= cfg.type_vocab_size or tt.min() < 0:
                    bad = int(tt.max()) if tt.max() >= cfg.type_vocab_size else int(tt.min())
                    raise ValueError(
                        f"token_type_ids contain {bad}, but type_vocab_size is {cfg.type_vocab_size}"
                    )
        if position_ids is not None:
            try:
                np.broadcast_shapes(_shape(position_ids), shape)
            except ValueError:
                raise ValueError(
                    f"position_ids has shape {_shape(position_ids)}, input_ids has {shape}"
                ) from None
            if not _is_tracer(position_ids) and np.size(position_ids):
                pos = np.asarray(position_ids)
                if pos.max() >= cfg.max_position_embeddings or pos.min() < 0:
                    bad = int(pos.max()) if pos.max() >= cfg.max_position_embeddings else int(pos.min())
                    raise ValueError(
                        f"position_ids contain {bad}, outside [0, max_position_embeddings="
                        f"{cfg.max_position_embeddings})"
                    )
        if head_mask is not None and _shape(head_mask) not in (
            (cfg.num_attention_heads,),
            (cfg.num_hidden_layers, cfg.num_attention_heads),
        ):
            raise ValueError(
                f"head_mask has shape {_shape(head_mask)}, expected ({cfg.num_attention_heads},) or "
                f"({cfg.num_hidden_layers}, {cfg.num_attention_heads})"
            )
        if encoder_hidden_states is not None:
            if not cfg.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states need cross-attention layers (config.add_cross_attention=True)"
                )
            enc = _shape(encoder_hidden_states)
            batch = int(np.prod(shape[:-1]))
            if len(enc) != 3 or enc[0] != batch or enc[2] != cfg.hidden_size:
                raise ValueError(
                    f"encoder_hidden_states has shape {enc}, expected ({batch}, enc_seq, {cfg.hidden_size})"
                )
            if encoder_attention_mask is not None and _shape(encoder_attention_mask) != enc[:2]:
                raise ValueError(
                    f"encoder_attention_mask has shape {_shape(encoder_attention_mask)}, expected {enc[:2]}"
                )
        elif encoder_attention_mask is not None:
            raise ValueError("encoder_attention_mask given without encoder_hidden_states")

    # -- the call ------------------------------------------------------------------------------
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        params: Mapping | None = None,
        dropout_rng: Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Mapping | None = None,
    ):
        """Run the model (eagerly, or inside ``jax.jit``/``jax.grad``).

        Args:
            input_ids: Token ids, (batch, seq) ((batch, num_choices, seq) for multiple choice).
            attention_mask: 1 for tokens to attend to, 0 for padding (with ``past_key_values``:
                (batch, max_length), covering the whole cache).
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
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = cfg.return_dict if return_dict is None else return_dict
        if not isinstance(input_ids, jax.Array | np.ndarray):
            input_ids = np.asarray(input_ids)
        self._check_inputs(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            past_key_values,
        )
        input_ids = jnp.asarray(input_ids, dtype="i4")
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            past = 0 if past_key_values is None else _find_cache_index(past_key_values)
            position_ids = create_position_ids_from_input_ids(input_ids, cfg.pad_token_id, past)
        if attention_mask is None:
            length = input_ids.shape[-1] if past_key_values is None else _find_cache_length(past_key_values)
            attention_mask = jnp.ones((*input_ids.shape[:-1], length), dtype="i4")
        if head_mask is not None:
            head_mask = jnp.asarray(head_mask, jnp.float32)
            if head_mask.ndim == 1:
                head_mask = jnp.broadcast_to(head_mask, (cfg.num_hidden_layers, cfg.num_attention_heads))
        if train and dropout_rng is None and _has_dropout(cfg):
            raise ValueError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}

        variables: dict[str, Any] = {"params": self.params if params is None else params}
        kwargs: dict[str, Any] = {}
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = jnp.asarray(encoder_hidden_states)
            if encoder_attention_mask is not None:
                kwargs["encoder_attention_mask"] = jnp.asarray(encoder_attention_mask, dtype="i4")
        mutable: Any = False
        if past_key_values is not None:
            variables["cache"] = past_key_values
            mutable = ["cache"]
        result = self.module.apply(
            variables,
            input_ids,
            jnp.asarray(attention_mask, dtype="i4"),
            token_type_ids=jnp.asarray(token_type_ids, dtype="i4"),
            position_ids=jnp.asarray(position_ids, dtype="i4"),
            head_mask=head_mask,
            deterministic=not train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            rngs=rngs,
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
        """The parameters as a canonical numpy state dict (HF PyTorch names and layouts)."""
        from .loading import params_to_state_dict

        return params_to_state_dict(self.params if params is None else params)

    def load_canonical_state_dict(self, state_dict: Mapping[str, np.ndarray]):
        """Load a canonical numpy state dict (checked loudly); returns the :class:`xlmr.weights.LoadReport`."""
        from .loading import load_canonical_state_dict

        return load_canonical_state_dict(self, state_dict)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, dtype: Any = jnp.float32, **kwargs: Any):
        """Load any HF XLM-R checkpoint directory (safetensors, pytorch_model.bin, tf_model.h5, flax msgpack).

        Args:
            pretrained_model_name_or_path: A local directory with ``config.json`` and a weight file.
            dtype: Computation dtype.
            **kwargs: ``seed``, ``gradient_checkpointing``, ``input_shape``, or config overrides.
        """
        from .loading import from_pretrained

        return from_pretrained(cls, pretrained_model_name_or_path, dtype=dtype, **kwargs)

    def save_pretrained(self, save_directory, params: Mapping | None = None, format: str = "safetensors"):
        """Write ``config.json`` and the weights (``format``: safetensors, pytorch, flax or tf)."""
        from .loading import save_pretrained

        return save_pretrained(self, save_directory, params=params, format=format)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={jnp.dtype(self.dtype).name}, config={self.config.to_json_string()})"


def _has_dropout(config: XLMRobertaConfig) -> bool:
    rates = (
        config.hidden_dropout_prob,
        config.attention_probs_dropout_prob,
        config.classifier_dropout or 0.0,
    )
    return any(r > 0 for r in rates)


def _to_plain_dict(tree: Any) -> Any:
    """FrozenDict / Mapping trees -> plain nested dicts (leaves untouched)."""
    if isinstance(tree, Mapping):
        return {k: _to_plain_dict(v) for k, v in tree.items()}
    return tree


def _encoder_extras(hidden_states, attentions, cross_attentions=None) -> dict[str, Any]:
    return {"hidden_states": hidden_states, "attentions": attentions, "cross_attentions": cross_attentions}


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
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = create_position_ids_from_input_ids(input_ids, self.config.pad_token_id)
        hidden_states = self.embeddings(
            input_ids, token_type_ids, position_ids, attention_mask, deterministic=deterministic
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
        )
        pooled = self.pooler(hidden_states) if self.add_pooling_layer else None
        out = O.BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            **_encoder_extras(all_hidden, all_attn, all_cross),
        )
        return out if return_dict else out.to_tuple()


class FlaxXLMRobertaModel(FlaxXLMRobertaPreTrainedModel):
    """The bare XLM-RoBERTa transformer, returning hidden states (and the pooled first token).

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaModel
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37)
        >>> out = FlaxXLMRobertaModel(config)([[0, 5, 6, 2]])
        >>> out.pooler_output.shape
        (1, 32)
    """

    module_class = FlaxXLMRobertaModule
    head = HEADS["base"]


class FlaxXLMRobertaForCausalLMModule(nn.Module):
    """Backbone without pooler plus the LM head, for left-to-right language modelling.

    Args:
        config: The model configuration (``is_decoder=True`` for causal masking).
        dtype: Computation dtype.
        gradient_checkpointing: Rematerialise each layer.
    """

    config: XLMRobertaConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self) -> None:
        self.roberta = FlaxXLMRobertaModule(
            self.config,
            dtype=self.dtype,
            add_pooling_layer=False,
            gradient_checkpointing=self.gradient_checkpointing,
        )
        self.lm_head = FlaxXLMRobertaLMHead(self.config, dtype=self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        token_type_ids=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        out = self.roberta(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(out.last_hidden_state, shared_embedding=_shared_embedding(self))
        result = O.CausalLMOutputWithCrossAttentions(
            logits=logits, **_encoder_extras(out.hidden_states, out.attentions, out.cross_attentions)
        )
        return result if return_dict else result.to_tuple()


def _shared_embedding(module: nn.Module):
    if not module.config.tie_word_embeddings:
        return None
    return module.roberta.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


class FlaxXLMRobertaForCausalLM(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a language modelling head for autoregressive decoding.

    Use ``config.is_decoder=True`` for causal attention; :meth:`init_cache` and
    ``past_key_values`` decode one token at a time (jit-compatible).

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForCausalLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=37, is_decoder=True)
        >>> model = FlaxXLMRobertaForCausalLM(config)
        >>> cache = model.init_cache(batch_size=1, max_length=8)
        >>> mask = [[1] * 8]
        >>> out = model([[0]], attention_mask=mask, past_key_values=cache)
        >>> out.logits.shape
        (1, 1, 100)
    """

    module_class = FlaxXLMRobertaForCausalLMModule
    head = HEADS["causal_lm"]

    def prepare_inputs_for_generation(self, input_ids, max_length: int, attention_mask=None) -> dict:
        """Cache, full-length mask and position ids for a generation loop starting from ``input_ids``."""
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

    def update_inputs_for_generation(self, model_outputs, model_kwargs: dict) -> dict:
        """Carry the cache forward and advance the position ids by one."""
        model_kwargs["past_key_values"] = model_outputs.past_key_values
        model_kwargs["position_ids"] = model_kwargs["position_ids"][:, -1:] + 1
        return model_kwargs


class _HeadModule(nn.Module):
    """Shared call signature of the non-causal head modules (HF's argument order, then cross-attention)."""

    config: XLMRobertaConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def _backbone(self, add_pooling_layer: bool) -> FlaxXLMRobertaModule:
        return FlaxXLMRobertaModule(
            self.config,
            dtype=self.dtype,
            add_pooling_layer=add_pooling_layer,
            gradient_checkpointing=self.gradient_checkpointing,
        )


class FlaxXLMRobertaForMaskedLMModule(_HeadModule):
    """Backbone without pooler plus the LM head (masked language modelling)."""

    def setup(self) -> None:
        self.roberta = self._backbone(add_pooling_layer=False)
        self.lm_head = FlaxXLMRobertaLMHead(self.config, dtype=self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
    ):
        out = self.roberta(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(out.last_hidden_state, shared_embedding=_shared_embedding(self))
        result = O.MaskedLMOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class FlaxXLMRobertaForMaskedLM(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with the masked language modelling head.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForMaskedLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37)
        >>> FlaxXLMRobertaForMaskedLM(config)([[0, 5, 6, 2]]).logits.shape
        (1, 4, 100)
    """

    module_class = FlaxXLMRobertaForMaskedLMModule
    head = HEADS["masked_lm"]


class FlaxXLMRobertaForSequenceClassificationModule(_HeadModule):
    """Backbone without pooler plus the classification head on the first token."""

    def setup(self) -> None:
        self.roberta = self._backbone(add_pooling_layer=False)
        self.classifier = FlaxXLMRobertaClassificationHead(self.config, dtype=self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
    ):
        out = self.roberta(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(out.last_hidden_state, deterministic=deterministic)
        result = O.SequenceClassifierOutput(
            logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return result if return_dict else result.to_tuple()


class FlaxXLMRobertaForSequenceClassification(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a sequence classification / regression head (``config.num_labels`` outputs).

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForSequenceClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37, num_labels=3)
        >>> FlaxXLMRobertaForSequenceClassification(config)([[0, 5, 6, 2]]).logits.shape
        (1, 3)
    """

    module_class = FlaxXLMRobertaForSequenceClassificationModule
    head = HEADS["sequence_classification"]


class FlaxXLMRobertaForMultipleChoiceModule(_HeadModule):
    """Backbone with pooler plus one score per choice."""

    def setup(self) -> None:
        self.roberta = self._backbone(add_pooling_layer=True)
        self.dropout = nn.Dropout(rate=self.config.hidden_dropout_prob)
        self.classifier = _dense(1, self.config, self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
    ):
        num_choices = input_ids.shape[1]

        def flat(x):  # (batch, num_choices, seq) -> (batch * num_choices, seq)
            return None if x is None else x.reshape(-1, x.shape[-1])

        out = self.roberta(
            flat(input_ids),
            flat(attention_mask),
            flat(token_type_ids),
            flat(position_ids),
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        pooled = self.dropout(out.pooler_output, deterministic=deterministic)
        logits = self.classifier(pooled).reshape(-1, num_choices)  # (batch, num_choices)
        result = O.MultipleChoiceModelOutput(
            logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return result if return_dict else result.to_tuple()


class FlaxXLMRobertaForMultipleChoice(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa scoring each of several choices (inputs (batch, num_choices, seq)).

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForMultipleChoice
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37)
        >>> FlaxXLMRobertaForMultipleChoice(config)([[[0, 5, 2], [0, 6, 2]]]).logits.shape
        (1, 2)
    """

    module_class = FlaxXLMRobertaForMultipleChoiceModule
    head = HEADS["multiple_choice"]


class FlaxXLMRobertaForTokenClassificationModule(_HeadModule):
    """Backbone without pooler plus a per-token classifier."""

    def setup(self) -> None:
        cfg = self.config
        self.roberta = self._backbone(add_pooling_layer=False)
        rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        self.dropout = nn.Dropout(rate=rate)
        self.classifier = _dense(cfg.num_labels, cfg, self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
    ):
        out = self.roberta(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = self.dropout(out.last_hidden_state, deterministic=deterministic)
        result = O.TokenClassifierOutput(
            logits=self.classifier(hidden), hidden_states=out.hidden_states, attentions=out.attentions
        )
        return result if return_dict else result.to_tuple()


class FlaxXLMRobertaForTokenClassification(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a per-token classification head (NER, POS...).

    Args:
        config: An :class:`xlmr.XLMRobertaConfig`.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForTokenClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37, num_labels=5)
        >>> FlaxXLMRobertaForTokenClassification(config)([[0, 5, 6, 2]]).logits.shape
        (1, 4, 5)
    """

    module_class = FlaxXLMRobertaForTokenClassificationModule
    head = HEADS["token_classification"]


class FlaxXLMRobertaForQuestionAnsweringModule(_HeadModule):
    """Backbone without pooler plus span start/end scores."""

    def setup(self) -> None:
        self.roberta = self._backbone(add_pooling_layer=False)
        self.qa_outputs = _dense(self.config.num_labels, self.config, self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
    ):
        out = self.roberta(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.qa_outputs(out.last_hidden_state)  # (batch, seq, num_labels)
        if logits.shape[-1] != 2:
            raise ValueError(
                f"question answering needs config.num_labels == 2 (start, end), got {logits.shape[-1]}"
            )
        result = O.QuestionAnsweringModelOutput(
            start_logits=logits[..., 0],
            end_logits=logits[..., 1],
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
        return result if return_dict else result.to_tuple()


class FlaxXLMRobertaForQuestionAnswering(FlaxXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a span classification head (start/end logits) for extractive QA.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig` with ``num_labels=2``.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: See
            :class:`FlaxXLMRobertaPreTrainedModel`.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_flax import FlaxXLMRobertaForQuestionAnswering
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37, num_labels=2)
        >>> FlaxXLMRobertaForQuestionAnswering(config)([[0, 5, 6, 2]]).start_logits.shape
        (1, 4)
    """

    module_class = FlaxXLMRobertaForQuestionAnsweringModule
    head = HEADS["question_answering"]
