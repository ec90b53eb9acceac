"""XLM-RoBERTa as Keras 3 models on the TensorFlow backend, call for call HF's ``TFXLMRoberta*`` classes.

Layer names make every variable's path the canonical weight name: the path of
``roberta.encoder.layer.0.attention.self.query.weight`` is
``<model>/roberta/encoder/layer.0/attention/self/query/kernel`` (the kernel is the transposed
PyTorch weight), see :mod:`xlmr.weights`. Shapes: (batch, seq, hidden) activations,
(batch, heads, seq, head_dim) attention keys/values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"xlmr_tf needs Keras 3 on the TensorFlow backend, but keras.backend.backend() is "
        f"{keras.backend.backend()!r}; set the environment variable KERAS_BACKEND=tensorflow before "
        "importing keras (for example `os.environ['KERAS_BACKEND'] = 'tensorflow'` at the top of your script)"
    )

import numpy as np
import tensorflow as tf

from xlmr import outputs as O
from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head

from . import losses
from .training import TFTrainingMixin

# -- output classes ---------------------------------------------------------------------------------


def _tf_output(base: type[O.ModelOutput]) -> type[O.ModelOutput]:
    """HF's TF name for an xlmr output class; a subclass that tf.nest can rebuild from (key, value) pairs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not isinstance(args[0], dict):
            args = (dict(args[0]),)
        base.__init__(self, *args, **kwargs)

    cls = type(f"TF{base.__name__}", (base,), {"__init__": __init__, "__doc__": base.__doc__})
    cls.__module__ = __name__
    return cls


TFBaseModelOutputWithPoolingAndCrossAttentions = _tf_output(O.BaseModelOutputWithPoolingAndCrossAttentions)
TFBaseModelOutputWithPastAndCrossAttentions = _tf_output(O.BaseModelOutputWithPastAndCrossAttentions)
TFCausalLMOutputWithCrossAttentions = _tf_output(O.CausalLMOutputWithCrossAttentions)
TFMaskedLMOutput = _tf_output(O.MaskedLMOutput)
TFSequenceClassifierOutput = _tf_output(O.SequenceClassifierOutput)
TFMultipleChoiceModelOutput = _tf_output(O.MultipleChoiceModelOutput)
TFTokenClassifierOutput = _tf_output(O.TokenClassifierOutput)
TFQuestionAnsweringModelOutput = _tf_output(O.QuestionAnsweringModelOutput)
TF_OUTPUT_CLASSES = {
    "base": TFBaseModelOutputWithPoolingAndCrossAttentions,
    "causal_lm": TFCausalLMOutputWithCrossAttentions,
    "masked_lm": TFMaskedLMOutput,
    "sequence_classification": TFSequenceClassifierOutput,
    "multiple_choice": TFMultipleChoiceModelOutput,
    "token_classification": TFTokenClassifierOutput,
    "question_answering": TFQuestionAnsweringModelOutput,
}


def _register_with_keras_tree() -> None:
    """Let keras.tree (optree, namespace "keras") see outputs as dict-like nodes, so fit/predict work."""
    try:
        import optree
        from keras.src.tree import tree_api
    except ImportError:  # pragma: no cover - keras falls back to dm-tree, which handles Mappings
        return
    if tree_api.tree_impl.__name__.rpartition(".")[2] != "optree_impl":  # pragma: no cover
        return
    for cls in (*TF_OUTPUT_CLASSES.values(), TFBaseModelOutputWithPastAndCrossAttentions):

        def flatten(out, _cls=cls):
            keys = tuple(out.keys())
            return tuple(out[k] for k in keys), keys, keys

        def unflatten(keys, children, _cls=cls):
            return _cls(**dict(zip(keys, children)))

        try:
            optree.register_pytree_node(cls, flatten, unflatten, namespace="keras")
        except ValueError:  # already registered (module reloaded)
            pass


_register_with_keras_tree()

# -- small helpers ---------------------------------------------------------------------------------


def _initializer(config: XLMRobertaConfig) -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def _gelu_exact(x):
    return tf.nn.gelu(x, approximate=False)


def _gelu_tanh(x):
    return tf.nn.gelu(x, approximate=True)


def _gelu_fast(x):
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


_ACTIVATIONS = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def _static_dims(x) -> list:
    """Static dims where known, dynamic scalars elsewhere (HF's shape_list)."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if d is None else d for i, d in enumerate(static)]


def _is_concrete(x) -> bool:
    return isinstance(x, np.ndarray | np.generic) or (
        tf.is_tensor(x) and hasattr(x, "numpy") and tf.executing_eagerly()
    )


def _to_tensor(x, dtype=None):
    if x is None:
        return None
    if isinstance(x, keras.KerasTensor):  # pragma: no cover - symbolic functional use
        return x
    t = tf.convert_to_tensor(x)
    if dtype is not None and t.dtype != dtype:
        t = tf.cast(t, dtype)
    return t


def _mask_value(dtype) -> float:
    return float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).min)


# -- layers -------------------------------------------------------------------------------------


class TFXLMRobertaEmbeddings(keras.layers.Layer):
    """Word + position + token type embeddings, then LayerNorm and dropout.

    Positions follow RoBERTa: they count non-padding tokens from ``pad_token_id + 1`` and padding
    tokens keep position ``pad_token_id``.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.padding_idx = config.pad_token_id
        init = _initializer(config)
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=init, name="word_embeddings"
        )
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings,
            config.hidden_size,
            embeddings_initializer=init,
            name="position_embeddings",
        )
        self.token_type_embeddings = keras.layers.Embedding(
            config.type_vocab_size,
            config.hidden_size,
            embeddings_initializer=init,
            name="token_type_embeddings",
        )
        self.LayerNorm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape=None) -> None:
        for layer in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            layer.build((None, None))
        self.LayerNorm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(
        self,
        input_ids=None,
        position_ids=None,
        token_type_ids=None,
        inputs_embeds=None,
        past_key_values_length=0,
        training=False,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        input_shape = _static_dims(inputs_embeds)[:-1]
        if position_ids is None:
            if input_ids is not None:
                not_pad = tf.cast(tf.not_equal(input_ids, self.padding_idx), tf.int32)
                position_ids = (
                    tf.cumsum(not_pad, axis=1) + past_key_values_length
                ) * not_pad + self.padding_idx
            else:
                position_ids = tf.range(self.padding_idx + 1, input_shape[-1] + self.padding_idx + 1)[None, :]
        if token_type_ids is None:
            token_type_ids = tf.zeros(input_shape, tf.int32)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.config.position_embedding_type == "absolute":  # relative types only use distance embeddings
            embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class TFXLMRobertaSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (self- or cross-), with an optional key/value cache.

    Scores are computed in the compute dtype and normalised in float32 (safe under mixed precision).

    Args:
        config: The model configuration.
        position_embedding_type: Overrides ``config.position_embedding_type`` (cross-attention is absolute).
    """

    def __init__(
        self, config: XLMRobertaConfig, position_embedding_type: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_dim
        self.all_head_size = config.hidden_size
        self.is_decoder = config.is_decoder
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        init = _initializer(config)
        self.query = keras.layers.Dense(self.all_head_size, kernel_initializer=init, name="query")
        self.key = keras.layers.Dense(self.all_head_size, kernel_initializer=init, name="key")
        self.value = keras.layers.Dense(self.all_head_size, kernel_initializer=init, name="value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)
        self.max_position_embeddings = config.max_position_embeddings
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            self.distance_embedding = keras.layers.Embedding(
                2 * config.max_position_embeddings - 1,
                self.attention_head_size,
                embeddings_initializer=init,
                name="distance_embedding",
            )

    def build(self, input_shape=None) -> None:
        for layer in (self.query, self.key, self.value):
            layer.build((None, None, self.config.hidden_size))
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            self.distance_embedding.build((None,))
        self.built = True

    def _split_heads(self, x, batch_size):
        # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        x = tf.reshape(x, (batch_size, -1, self.num_attention_heads, self.attention_head_size))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(
        self,
        hidden_states,
        attention_mask=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        past_key_values_length=0,
        output_attentions=False,
        training=False,
    ):
        batch_size = _static_dims(hidden_states)[0]
        query = self._split_heads(self.query(hidden_states), batch_size)
        is_cross = encoder_hidden_states is not None
        if is_cross and past_key_value is not None:
            key, value = past_key_value[0], past_key_value[1]
        elif is_cross:
            key = self._split_heads(self.key(encoder_hidden_states), batch_size)
            value = self._split_heads(self.value(encoder_hidden_states), batch_size)
        else:
            key = self._split_heads(self.key(hidden_states), batch_size)
            value = self._split_heads(self.value(hidden_states), batch_size)
            if past_key_value is not None:
                key = tf.concat([tf.cast(past_key_value[0], key.dtype), key], axis=2)
                value = tf.concat([tf.cast(past_key_value[1], value.dtype), value], axis=2)
        present = (key, value) if self.is_decoder else None

        # (batch, heads, q_len, k_len)
        scores = tf.matmul(query, key, transpose_b=True)
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            q_len, k_len = _static_dims(query)[2], _static_dims(key)[2]
            pos_l = tf.range(q_len)[:, None] + past_key_values_length
            pos_r = tf.range(k_len)[None, :]
            table = tf.cast(self.distance_embedding.embeddings, query.dtype)
            rel = tf.gather(
                table, pos_l - pos_r + self.max_position_embeddings - 1
            )  # (q_len, k_len, head_dim)
            scores = scores + tf.einsum("bhld,lrd->bhlr", query, rel)
            if self.position_embedding_type == "relative_key_query":
                scores = scores + tf.einsum("bhrd,lrd->bhlr", key, rel)
        scores = tf.cast(scores, tf.float32) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            # boolean "may attend" mask (booleans are not autocast by Keras); masked scores become the
            # float32 minimum, as HF's additive finfo.min mask leaves them
            scores = tf.where(attention_mask, scores, tf.constant(_mask_value(tf.float32), tf.float32))
        probs = tf.nn.softmax(scores, axis=-1)
        probs = tf.cast(probs, query.dtype)
        probs = self.dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)
        context = tf.matmul(probs, value)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (batch_size, -1, self.all_head_size))
        return context, (probs if output_attentions else None), present


class TFXLMRobertaSelfOutput(keras.layers.Layer):
    """Output projection of the attention block with dropout, residual and LayerNorm.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size, kernel_initializer=_initializer(config), name="dense"
        )
        self.LayerNorm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape=None) -> None:
        self.dense.build((None, None, self.config.hidden_size))
        self.LayerNorm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states, input_tensor, training=False):
        hidden_states = self.dropout(self.dense(hidden_states), training=training)
        return self.LayerNorm(hidden_states + input_tensor)


class TFXLMRobertaAttention(keras.layers.Layer):
    """Attention block: ``self`` (the attention) and ``output`` (projection + residual + LayerNorm).

    Args:
        config: The model configuration.
        position_embedding_type: Overrides ``config.position_embedding_type``.
    """

    def __init__(
        self, config: XLMRobertaConfig, position_embedding_type: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.self_attention = TFXLMRobertaSelfAttention(config, position_embedding_type, name="self")
        self.dense_output = TFXLMRobertaSelfOutput(config, name="output")

    def build(self, input_shape=None) -> None:
        self.self_attention.build(None)
        self.dense_output.build(None)
        self.built = True

    def call(
        self,
        input_tensor,
        attention_mask=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        past_key_values_length=0,
        output_attentions=False,
        training=False,
    ):
        context, probs, present = self.self_attention(
            input_tensor,
            attention_mask=attention_mask,
            head_mask=head_mask,
            encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value,
            past_key_values_length=past_key_values_length,
            output_attentions=output_attentions,
            training=training,
        )
        return self.dense_output(context, input_tensor, training=training), probs, present


class TFXLMRobertaIntermediate(keras.layers.Layer):
    """Feed-forward expansion with ``config.hidden_act``.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.intermediate_size, kernel_initializer=_initializer(config), name="dense"
        )
        self.intermediate_act_fn = _ACTIVATIONS[config.hidden_act]

    def build(self, input_shape=None) -> None:
        self.dense.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class TFXLMRobertaOutput(keras.layers.Layer):
    """Feed-forward contraction with dropout, residual and LayerNorm.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size, kernel_initializer=_initializer(config), name="dense"
        )
        self.LayerNorm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape=None) -> None:
        self.dense.build((None, None, self.config.intermediate_size))
        self.LayerNorm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states, input_tensor, training=False):
        hidden_states = self.dropout(self.dense(hidden_states), training=training)
        return self.LayerNorm(hidden_states + input_tensor)


class TFXLMRobertaLayer(keras.layers.Layer):
    """One transformer layer: self-attention, optional cross-attention (decoders), feed-forward.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.is_decoder = config.is_decoder
        self.add_cross_attention = config.add_cross_attention
        self.attention = TFXLMRobertaAttention(config, name="attention")
        if self.add_cross_attention:
            if not self.is_decoder:
                raise ValueError("add_cross_attention=True needs is_decoder=True in the config")
            self.crossattention = TFXLMRobertaAttention(
                config, position_embedding_type="absolute", name="crossattention"
            )
        self.intermediate = TFXLMRobertaIntermediate(config, name="intermediate")
        self.bert_output = TFXLMRobertaOutput(config, name="output")

    def build(self, input_shape=None) -> None:
        self.attention.build(None)
        if self.add_cross_attention:
            self.crossattention.build(None)
        self.intermediate.build(None)
        self.bert_output.build(None)
        self.built = True

    def call(
        self,
        hidden_states,
        attention_mask=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_value=None,
        past_key_values_length=0,
        output_attentions=False,
        training=False,
    ):
        self_past = tuple(past_key_value[:2]) if past_key_value is not None else None
        attention_output, self_probs, present = self.attention(
            hidden_states,
            attention_mask=attention_mask,
            head_mask=head_mask,
            past_key_value=self_past,
            past_key_values_length=past_key_values_length,
            output_attentions=output_attentions,
            training=training,
        )
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were given, but the model has no cross-attention layers; "
                    "build it with config.add_cross_attention=True"
                )
            cross_past = (
                tuple(past_key_value[2:]) if past_key_value is not None and len(past_key_value) == 4 else None
            )
            attention_output, cross_probs, cross_present = self.crossattention(
                attention_output,
                attention_mask=encoder_attention_mask,
                head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
                training=training,
            )
            present = present + cross_present
        intermediate = self.intermediate(attention_output)
        layer_output = self.bert_output(intermediate, attention_output, training=training)
        return layer_output, self_probs, cross_probs, present


class TFXLMRobertaEncoder(keras.layers.Layer):
    """The stack of ``config.num_hidden_layers`` layers, named ``layer.0`` ... ``layer.N``.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.layer = [TFXLMRobertaLayer(config, name=f"layer.{i}") for i in range(config.num_hidden_layers)]

    def build(self, input_shape=None) -> None:
        for layer in self.layer:
            layer.build(None)
        self.built = True

    def call(
        self,
        hidden_states,
        attention_mask=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        past_key_values_length=0,
        use_cache=False,
        output_attentions=False,
        output_hidden_states=False,
        training=False,
    ):
        all_hidden = () if output_hidden_states else None
        all_attn = () if output_attentions else None
        all_cross = () if output_attentions and self.config.add_cross_attention else None
        cache = () if use_cache else None
        for i, layer in enumerate(self.layer):
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                attention_mask=attention_mask,
                head_mask=None if head_mask is None else head_mask[i],
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                past_key_value=None if past_key_values is None else past_key_values[i],
                past_key_values_length=past_key_values_length,
                output_attentions=output_attentions,
                training=training,
            )
            if use_cache:
                cache = cache + (present,)
            if output_attentions:
                all_attn = all_attn + (probs,)
                if all_cross is not None and cross_probs is not None:
                    all_cross = all_cross + (cross_probs,)
        if output_hidden_states:
            all_hidden = all_hidden + (hidden_states,)
        return TFBaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=cache,
            hidden_states=all_hidden,
            attentions=all_attn,
            cross_attentions=all_cross or None,
        )


class TFXLMRobertaPooler(keras.layers.Layer):
    """tanh(dense(first token's hidden state)).

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size, kernel_initializer=_initializer(config), activation="tanh", name="dense"
        )

    def build(self, input_shape=None) -> None:
        self.dense.build((None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states):
        return self.dense(hidden_states[:, 0])


class TFXLMRobertaMainLayer(keras.layers.Layer):
    """The backbone (embeddings, encoder, optional pooler), named ``roberta`` in every model, as in HF.

    Args:
        config: The model configuration.
        add_pooling_layer: Whether to build the pooler.
    """

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.is_decoder = config.is_decoder
        self.add_pooling_layer = add_pooling_layer
        self.embeddings = TFXLMRobertaEmbeddings(config, name="embeddings")
        self.encoder = TFXLMRobertaEncoder(config, name="encoder")
        self.pooler = TFXLMRobertaPooler(config, name="pooler") if add_pooling_layer else None

    def build(self, input_shape=None) -> None:
        self.embeddings.build(None)
        self.encoder.build(None)
        if self.pooler is not None:
            self.pooler.build(None)
        self.built = True

    def _head_mask(self, head_mask):
        # (heads,) or (layers, heads) -> (layers, 1, heads, 1, 1), as HF's get_head_mask
        head_mask = _to_tensor(head_mask, self.compute_dtype)
        if head_mask.shape.rank == 1:
            head_mask = tf.tile(head_mask[None], (self.config.num_hidden_layers, 1))
        if head_mask.shape.rank != 2 or head_mask.shape[0] != self.config.num_hidden_layers:
            raise ValueError(
                f"head_mask must have shape (num_heads,) or (num_hidden_layers={self.config.num_hidden_layers}, "
                f"num_heads), got {tuple(head_mask.shape)}"
            )
        return head_mask[:, None, :, None, None]

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=False,
        output_hidden_states=False,
        training=False,
    ):
        config = self.config
        use_cache = bool(use_cache) if config.is_decoder else False
        input_ids = _to_tensor(input_ids, tf.int32)
        inputs_embeds = _to_tensor(inputs_embeds, self.compute_dtype)
        shape = _static_dims(input_ids) if input_ids is not None else _static_dims(inputs_embeds)[:-1]
        batch_size, seq_length = shape
        past_length = 0
        if past_key_values is not None:
            past_length = _static_dims(past_key_values[0][0])[2]
        total_length = seq_length + past_length
        _check_inputs(
            config,
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            seq_length,
            past_length,
            batch_size,
        )
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, total_length), tf.int32)
        attention_mask = _to_tensor(attention_mask)
        token_type_ids = _to_tensor(token_type_ids, tf.int32)
        position_ids = _to_tensor(position_ids, tf.int32)

        embedding_output = self.embeddings(
            input_ids=input_ids,
            position_ids=position_ids,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_length,
            training=training,
        )
        # boolean "may attend" mask, (batch, 1, q_len or 1, k_len)
        allowed = tf.not_equal(attention_mask, 0)
        if attention_mask.shape.rank == 3:
            allowed = allowed[:, None, :, :]
        else:
            allowed = allowed[:, None, None, :]
        if config.is_decoder:
            q_pos = tf.range(seq_length)[:, None] + past_length
            k_pos = tf.range(total_length)[None, :]
            allowed = tf.logical_and(allowed, (k_pos <= q_pos)[None, None])
        extended_mask = allowed

        encoder_extended_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            encoder_hidden_states = _to_tensor(encoder_hidden_states, self.compute_dtype)
            if encoder_attention_mask is None:
                encoder_attention_mask = tf.ones(_static_dims(encoder_hidden_states)[:2], tf.int32)
            enc_allowed = tf.not_equal(_to_tensor(encoder_attention_mask), 0)
            enc_allowed = (
                enc_allowed[:, None, :, :] if enc_allowed.shape.rank == 3 else enc_allowed[:, None, None, :]
            )
            encoder_extended_mask = enc_allowed

        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=extended_mask,
            head_mask=None if head_mask is None else self._head_mask(head_mask),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_mask,
            past_key_values=past_key_values,
            past_key_values_length=past_length,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        sequence_output = encoder_outputs["last_hidden_state"]
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        return TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=pooled,
            past_key_values=encoder_outputs.past_key_values,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
            cross_attentions=encoder_outputs.cross_attentions,
        )


def _check_inputs(
    config, input_ids, attention_mask, token_type_ids, position_ids, seq_length, past_length, batch_size
) -> None:
    """Clear errors for bad input: eagerly with the values, in graphs through tf.debugging asserts."""
    total = seq_length + past_length if isinstance(seq_length, int) and isinstance(past_length, int) else None
    limit = config.max_sequence_length
    if total is not None and total > limit:
        raise ValueError(
            f"sequence length {total}"
            + (f" ({seq_length} new + {past_length} cached)" if past_length else "")
            + f" exceeds config.max_sequence_length={limit} "
            f"(max_position_embeddings={config.max_position_embeddings} - pad_token_id - 1)"
        )
    if total is None and position_ids is None:
        tf.debugging.assert_less_equal(
            seq_length + past_length,
            limit,
            message=f"sequence length exceeds config.max_sequence_length={limit}",
        )
    if attention_mask is not None:
        mask_shape = (
            tuple(np.shape(attention_mask))
            if not tf.is_tensor(attention_mask)
            else tuple(attention_mask.shape.as_list())
        )
        expected = (batch_size, total)
        if len(mask_shape) not in (2, 3) or any(
            isinstance(e, int) and m is not None and m != e
            for m, e in zip(mask_shape[:1] + mask_shape[-1:], expected)
        ):
            raise ValueError(
                f"attention_mask has shape {mask_shape}, expected (batch, past + seq) = {expected} "
                "to match input_ids / inputs_embeds (and past_key_values)"
            )
    if token_type_ids is not None and config.type_vocab_size and _is_concrete(token_type_ids):
        tt = np.asarray(token_type_ids)
        if tt.size and (tt.max() >= config.type_vocab_size or tt.min() < 0):
            raise ValueError(
                f"token_type_ids must lie in [0, type_vocab_size={config.type_vocab_size}), "
                f"found {int(tt.max()) if tt.max() >= config.type_vocab_size else int(tt.min())}"
            )
    if input_ids is None:
        return
    if _is_concrete(input_ids):
        ids = np.asarray(input_ids)
        if ids.size:
            largest, smallest = int(ids.max()), int(ids.min())
            if largest >= config.vocab_size:
                raise ValueError(
                    f"input_ids contain id {largest}, out of range for vocab_size={config.vocab_size} "
                    f"(valid ids are 0..{config.vocab_size - 1})"
                )
            if smallest < 0:
                raise ValueError(
                    f"input_ids contain the negative id {smallest}; ids must lie in [0, {config.vocab_size})"
                )
    else:
        tf.debugging.assert_less(
            input_ids,
            tf.cast(config.vocab_size, input_ids.dtype),
            message=f"input_ids contain an id >= vocab_size={config.vocab_size} (out of vocabulary)",
        )
        tf.debugging.assert_non_negative(input_ids, message="input_ids contain a negative id")


class TFXLMRobertaLMHead(keras.layers.Layer):
    """dense -> gelu -> layer_norm -> decoder (the word embedding matrix when tied) + ``bias``.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = keras.layers.Dense(
            config.hidden_size, kernel_initializer=_initializer(config), name="dense"
        )
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm")
        self.decoder = None
        if not config.tie_word_embeddings:
            self.decoder = keras.layers.Dense(
                config.vocab_size, use_bias=False, kernel_initializer=_initializer(config), name="decoder"
            )

    def build(self, input_shape=None) -> None:
        self.dense.build((None, None, self.config.hidden_size))
        self.layer_norm.build((None, None, self.config.hidden_size))
        if self.decoder is not None:
            self.decoder.build((None, None, self.config.hidden_size))
        self.bias = self.add_weight(shape=(self.config.vocab_size,), initializer="zeros", name="bias")
        self.built = True

    def call(self, hidden_states, embedding_matrix=None):
        hidden_states = self.layer_norm(_gelu_exact(self.dense(hidden_states)))
        if self.decoder is not None:
            logits = self.decoder(hidden_states)
        else:
            logits = tf.matmul(
                hidden_states, tf.cast(embedding_matrix, hidden_states.dtype), transpose_b=True
            )
        return logits + tf.cast(self.bias, logits.dtype)


class TFXLMRobertaClassificationHead(keras.layers.Layer):
    """Sentence classifier on the first token: dropout -> dense -> tanh -> dropout -> out_proj.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        init = _initializer(config)
        self.dense = keras.layers.Dense(
            config.hidden_size, kernel_initializer=init, activation="tanh", name="dense"
        )
        rate = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = keras.layers.Dropout(rate)
        self.out_proj = keras.layers.Dense(config.num_labels, kernel_initializer=init, name="out_proj")

    def build(self, input_shape=None) -> None:
        self.dense.build((None, self.config.hidden_size))
        self.out_proj.build((None, self.config.hidden_size))
        self.built = True

    def call(self, features, training=False):
        x = self.dropout(features[:, 0, :], training=training)
        x = self.dropout(self.dense(x), training=training)
        return self.out_proj(x)


# -- models -------------------------------------------------------------------------------------

_BASE_ARGS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds")
_DECODER_ARGS = ("encoder_hidden_states", "encoder_attention_mask", "past_key_values", "use_cache")
_FLAG_ARGS = ("output_attentions", "output_hidden_states", "return_dict")


def _unpack_inputs(arg_names: tuple[str, ...], values: dict[str, Any]) -> dict[str, Any]:
    """HF's three input conventions: keywords, one tensor, or a list/tuple/dict in the first argument."""
    main = values["input_ids"]
    if isinstance(main, Mapping):
        values = dict(values, input_ids=None)
        for key, value in main.items():
            if key not in arg_names:
                raise ValueError(f"unknown input {key!r}; this model takes {', '.join(arg_names)}")
            if values.get(key) is not None and value is not None:
                raise ValueError(f"input {key!r} was given both in the input dict and as a keyword argument")
            if value is not None:
                values[key] = value
    elif isinstance(main, list | tuple):
        if len(main) > len(arg_names):
            raise ValueError(
                f"got {len(main)} inputs in a list; this model takes at most {len(arg_names)}: {arg_names}"
            )
        values = dict(values, input_ids=None)
        for key, value in zip(arg_names, main):
            if values.get(key) is not None and value is not None:
                raise ValueError(f"input {key!r} was given both in the input list and as a keyword argument")
            if value is not None:
                values[key] = value
    return values


class TFXLMRobertaPreTrainedModel(TFTrainingMixin, keras.Model):
    """Base class of the seven models: config handling, weight (de)serialisation, Keras glue.

    A ``keras.Model`` subclass: ``compile``/``fit``/``evaluate``/``predict``, ``model.save("x.keras")`` and
    ``keras.models.load_model`` work as for any Keras model. With ``compile(optimizer)`` and no loss, the
    model's own (HF) loss is trained when the inputs carry ``labels`` (or ``start_positions`` /
    ``end_positions``); with a Keras loss it is applied to the logits.

    Args:
        config: The model configuration.
        *inputs, **kwargs: Passed to ``keras.Model`` (``name``, ``dtype``...).

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr_tf import TFXLMRobertaForMaskedLM
        >>> model = TFXLMRobertaForMaskedLM(XLMRobertaConfig(vocab_size=100, hidden_size=32,
        ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=37))
        >>> model.build_model().count_params() > 0
        True
    """

    head: Head = HEADS["base"]
    base_model_prefix = "roberta"
    config_class = XLMRobertaConfig

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        if isinstance(config, Mapping):
            config = XLMRobertaConfig.from_dict(dict(config))
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        super().__init__(*inputs, **kwargs)
        self.config = config

    # -- Keras serialisation -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None):
        config = dict(config)
        kwargs = {k: config.pop(k) for k in ("name", "trainable", "dtype") if k in config}
        kwargs.pop("dtype", None)
        return cls(XLMRobertaConfig.from_dict(config), **kwargs)

    def build_model(self) -> TFXLMRobertaPreTrainedModel:
        """Create every variable (no forward pass); returns the model."""
        if not self.built:
            self.build(None)
        return self

    # -- weights -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **config_overrides: Any):
        """Load an HF-layout directory (config.json + any of the four weight files) into this class.

        Args:
            pretrained_model_name_or_path: Local directory (no hub downloads).
            **config_overrides: Config fields to override (``num_labels=5``...).
        """
        from .loading import from_pretrained

        return from_pretrained(cls, pretrained_model_name_or_path, **config_overrides)

    def save_pretrained(self, save_directory, format: str = "safetensors"):
        """Write ``config.json`` and the weights (``safetensors``, ``pytorch``, ``tf`` = tf_model.h5, ``flax``)."""
        from .loading import save_pretrained

        return save_pretrained(self, save_directory, format=format)

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """The weights as a canonical numpy state dict (HF PyTorch names and layouts, no tied aliases)."""
        from .loading import canonical_state_dict

        return canonical_state_dict(self)

    def load_canonical_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> TFXLMRobertaPreTrainedModel:
        """Assign a canonical state dict (checked loudly by ``xlmr.weights.prepare_state_dict``)."""
        from .loading import load_canonical_state_dict

        return load_canonical_state_dict(self, state_dict)

    def export(self, filepath, format: str = "tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """SavedModel with a ``serving_default`` signature over ``input_ids`` / ``attention_mask`` (int32).

        Other formats and explicit ``input_signature`` go to ``keras.Model.export``.
        """
        if format == "tf_saved_model" and input_signature is None and not kwargs:
            from .training import export_saved_model

            return export_saved_model(self, filepath)
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    @property
    def _default_save_signature(self):
        # Keras would trace a float "inputs" signature from build shapes; serving signatures come from
        # export_saved_model instead.
        return None

    # -- call glue -----------------------------------------------------------------------------
    def _flags(self, output_attentions, output_hidden_states, return_dict):
        c = self.config
        return (
            c.output_attentions if output_attentions is None else bool(output_attentions),
            c.output_hidden_states if output_hidden_states is None else bool(output_hidden_states),
            c.use_return_dict if return_dict is None else bool(return_dict),
        )

    def _finish(self, return_dict: bool, **fields):
        out = TF_OUTPUT_CLASSES[self.head.name](**fields)
        return out if return_dict else out.to_tuple()

    def _roberta(self, a: dict[str, Any], output_attentions, output_hidden_states, training):
        if a["input_ids"] is not None and a["inputs_embeds"] is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if a["input_ids"] is None and a["inputs_embeds"] is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        return self.roberta(
            input_ids=a["input_ids"],
            attention_mask=a["attention_mask"],
            token_type_ids=a["token_type_ids"],
            position_ids=a["position_ids"],
            head_mask=a["head_mask"],
            inputs_embeds=a["inputs_embeds"],
            encoder_hidden_states=a.get("encoder_hidden_states"),
            encoder_attention_mask=a.get("encoder_attention_mask"),
            past_key_values=a.get("past_key_values"),
            use_cache=a.get("use_cache"),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )

    def _prediction(self, out):
        """The tensor(s) a Keras loss / metric is applied to: logits (or last_hidden_state for the bare model)."""
        if self.head.name == "base":
            return out["last_hidden_state"]
        if self.head.name == "question_answering":
            return (out["start_logits"], out["end_logits"])
        return out["logits"]


def _model_docstring(summary: str, cls_name: str, extra_args: str = "") -> str:
    return (
        f"{summary}\n\n"
        "    Call arguments are HF's: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``position_ids``,\n"
        f"    ``head_mask``, ``inputs_embeds``{extra_args}, ``output_attentions``, ``output_hidden_states``,\n"
        "    ``return_dict``, ``training``; inputs may also come as one tensor, or a list/dict in the first argument.\n\n"
        "    Args:\n"
        "        config: The model configuration.\n\n"
        "    Example:\n"
        "        >>> import numpy as np\n"
        "        >>> from xlmr import XLMRobertaConfig\n"
        f"        >>> from xlmr_tf import {cls_name}\n"
        "        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,\n"
        "        ...                           num_attention_heads=4, intermediate_size=37)\n"
        f"        >>> model = {cls_name}(config)\n"
        "        >>> out = model(np.array([[0, 5, 6, 2]]))\n"
    )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaModel(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "The bare XLM-RoBERTa encoder (or decoder) returning hidden states and the pooled first token.",
        "TFXLMRobertaModel",
        ", ``encoder_hidden_states``, ``encoder_attention_mask``, ``past_key_values``, ``use_cache``",
    )
    head = HEADS["base"]
    _arg_names = (*_BASE_ARGS, *_DECODER_ARGS, *_FLAG_ARGS)

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, add_pooling_layer: bool = True, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=add_pooling_layer, name="roberta")

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        if a["use_cache"] is None:
            a["use_cache"] = self.config.use_cache
        out = self._roberta(a, oa, oh, training)
        return self._finish(rd, **dict(out))


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForCausalLM(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a language modeling head for causal LM (set ``config.is_decoder=True``).\n\n"
        "    ``labels`` (batch, seq): the loss is next-token cross entropy (logits[:, :-1] vs labels[:, 1:]),\n"
        "    -100 ignored. ``past_key_values`` / ``use_cache`` give HF v4's legacy per-layer tuples.",
        "TFXLMRobertaForCausalLM",
        ", ``encoder_hidden_states``, ``encoder_attention_mask``, ``past_key_values``, ``use_cache``, ``labels``",
    )
    head = HEADS["causal_lm"]
    _arg_names = (*_BASE_ARGS, *_DECODER_ARGS, *_FLAG_ARGS, "labels")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=False, name="roberta")
        self.lm_head = TFXLMRobertaLMHead(self.config, name="lm_head")

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.lm_head.build(None)
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        if a["labels"] is not None:
            a["use_cache"] = False
        elif a["use_cache"] is None:
            a["use_cache"] = self.config.use_cache
        out = self._roberta(a, oa, oh, training)
        logits = self.lm_head(
            out["last_hidden_state"], embedding_matrix=self.roberta.embeddings.word_embeddings.embeddings
        )
        loss = None if a["labels"] is None else losses.causal_lm_loss(a["labels"], logits)
        return self._finish(
            rd,
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForMaskedLM(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a masked language modeling head (tied to the word embeddings).\n\n"
        "    ``labels`` (batch, seq): cross entropy over all positions, -100 ignored.",
        "TFXLMRobertaForMaskedLM",
        ", ``labels``",
    )
    head = HEADS["masked_lm"]
    _arg_names = (*_BASE_ARGS, *_FLAG_ARGS, "labels")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=False, name="roberta")
        self.lm_head = TFXLMRobertaLMHead(self.config, name="lm_head")

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.lm_head.build(None)
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        out = self._roberta(a, oa, oh, training)
        logits = self.lm_head(
            out["last_hidden_state"], embedding_matrix=self.roberta.embeddings.word_embeddings.embeddings
        )
        loss = None if a["labels"] is None else losses.masked_lm_loss(a["labels"], logits)
        return self._finish(
            rd, loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForSequenceClassification(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a sentence classification / regression head on the first token.\n\n"
        "    ``labels`` (batch,): loss by ``config.problem_type`` (inferred when None, as HF).",
        "TFXLMRobertaForSequenceClassification",
        ", ``labels``",
    )
    head = HEADS["sequence_classification"]
    _arg_names = (*_BASE_ARGS, *_FLAG_ARGS, "labels")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=False, name="roberta")
        self.classifier = TFXLMRobertaClassificationHead(self.config, name="classifier")

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.classifier.build(None)
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        out = self._roberta(a, oa, oh, training)
        logits = self.classifier(out["last_hidden_state"], training=training)
        loss = (
            None
            if a["labels"] is None
            else losses.sequence_classification_loss(a["labels"], logits, self.config)
        )
        return self._finish(
            rd, loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForMultipleChoice(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a multiple choice head: inputs are (batch, num_choices, seq), logits (batch, num_choices).\n\n"
        "    ``labels`` (batch,): cross entropy over the choices.",
        "TFXLMRobertaForMultipleChoice",
        ", ``labels``",
    ).replace("np.array([[0, 5, 6, 2]])", "np.array([[[0, 5, 6, 2], [0, 7, 8, 2]]])")
    head = HEADS["multiple_choice"]
    _arg_names = (*_BASE_ARGS, *_FLAG_ARGS, "labels")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=True, name="roberta")
        self.dropout = keras.layers.Dropout(self.config.hidden_dropout_prob)
        self.classifier = keras.layers.Dense(
            1, kernel_initializer=_initializer(self.config), name="classifier"
        )

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.classifier.build((None, self.config.hidden_size))
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        ref = a["input_ids"] if a["input_ids"] is not None else a["inputs_embeds"]
        if ref is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        ref = _to_tensor(ref)
        if ref.shape.rank is not None and ref.shape.rank < (3 if a["input_ids"] is not None else 4):
            raise ValueError(
                f"multiple choice inputs must be (batch, num_choices, seq), got shape {tuple(ref.shape.as_list())}"
            )
        num_choices, seq_length = _static_dims(ref)[1], _static_dims(ref)[2]
        flat = dict(a)
        for name in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
            if a[name] is not None:
                flat[name] = tf.reshape(_to_tensor(a[name]), (-1, seq_length))
        if a["inputs_embeds"] is not None:
            emb = _to_tensor(a["inputs_embeds"])
            flat["inputs_embeds"] = tf.reshape(emb, (-1, seq_length, _static_dims(emb)[-1]))
        out = self._roberta(flat, oa, oh, training)
        pooled = self.dropout(out["pooler_output"], training=training)
        logits = tf.reshape(self.classifier(pooled), (-1, num_choices))
        loss = None if a["labels"] is None else losses.multiple_choice_loss(a["labels"], logits)
        return self._finish(
            rd, loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForTokenClassification(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a per-token classification head (NER, POS...).\n\n"
        "    ``labels`` (batch, seq): cross entropy over all tokens, -100 ignored.",
        "TFXLMRobertaForTokenClassification",
        ", ``labels``",
    )
    head = HEADS["token_classification"]
    _arg_names = (*_BASE_ARGS, *_FLAG_ARGS, "labels")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=False, name="roberta")
        c = self.config
        self.dropout = keras.layers.Dropout(
            c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob
        )
        self.classifier = keras.layers.Dense(
            c.num_labels, kernel_initializer=_initializer(c), name="classifier"
        )

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.classifier.build((None, None, self.config.hidden_size))
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labels=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        out = self._roberta(a, oa, oh, training)
        logits = self.classifier(self.dropout(out["last_hidden_state"], training=training))
        loss = None if a["labels"] is None else losses.token_classification_loss(a["labels"], logits)
        return self._finish(
            rd, loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForQuestionAnswering(TFXLMRobertaPreTrainedModel):
    __doc__ = _model_docstring(
        "XLM-RoBERTa with a span head for extractive QA: start and end logits per token.\n\n"
        "    ``start_positions`` / ``end_positions`` (batch,): mean of the two cross entropies; positions are\n"
        "    clamped to [0, seq] and seq is ignored, as HF.",
        "TFXLMRobertaForQuestionAnswering",
        ", ``start_positions``, ``end_positions``",
    )
    head = HEADS["question_answering"]
    _arg_names = (*_BASE_ARGS, *_FLAG_ARGS, "start_positions", "end_positions")

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any):
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        self.roberta = TFXLMRobertaMainLayer(self.config, add_pooling_layer=False, name="roberta")
        self.qa_outputs = keras.layers.Dense(
            self.config.num_labels, kernel_initializer=_initializer(self.config), name="qa_outputs"
        )

    def build(self, input_shape=None) -> None:
        self.roberta.build(None)
        self.qa_outputs.build((None, None, self.config.hidden_size))
        self.built = True

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        start_positions=None,
        end_positions=None,
        training=False,
    ):
        a = _unpack_inputs(self._arg_names, locals())
        oa, oh, rd = self._flags(a["output_attentions"], a["output_hidden_states"], a["return_dict"])
        out = self._roberta(a, oa, oh, training)
        if self.config.num_labels != 2:
            raise ValueError(
                f"question answering splits the logits into start and end, so it needs config.num_labels == 2, "
                f"got {self.config.num_labels}"
            )
        logits = self.qa_outputs(out["last_hidden_state"])
        start_logits, end_logits = tf.unstack(logits, axis=-1)
        loss = None
        if a["start_positions"] is not None and a["end_positions"] is not None:
            loss = losses.span_loss(a["start_positions"], a["end_positions"], start_logits, end_logits)
        return self._finish(
            rd,
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
