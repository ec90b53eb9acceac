"""XLM-RoBERTa as Keras 3 models on the TensorFlow backend, call for call HF's ``TFXLMRoberta*`` classes.

Layer names make every variable's path the canonical weight name: the path of
``roberta.encoder.layer.0.attention.self.query.weight`` is
``<model>/roberta/encoder/layer.0/attention/self/query/kernel`` (the kernel is the transposed
PyTorch weight), see :mod:`xlmr.weights`. Shapes: (batch, seq, hidden) activations,
(batch, heads, seq, head_dim) attention keys/values.

Inputs are checked once per call by :func:`xlmr.inputs.check_inputs` (and labels by
:func:`xlmr.losses.check_labels`) in the models' ``__call__``, before Keras wraps exceptions, so
errors carry the core's text. Out-of-range ids and labels, per path:

- eager calls: a ``ValueError`` naming the value (the core's checks on the concrete values);
- ``tf.function`` graphs without XLA: ``tf.errors.InvalidArgumentError`` from graph asserts;
- XLA (``tf.function(jit_compile=True)``, :func:`xlmr_tf.compiled_forward`, ``predict`` under
  ``jit_compile``): XLA drops graph asserts, so the row of an out-of-range id is poisoned to NaN
  in every output, and a loss over an out-of-range label is NaN;
- Keras ``fit`` / ``evaluate`` / ``predict`` with ``jit_compile=True``: the batch is checked by graph
  asserts outside the XLA-compiled step (``InvalidArgumentError`` before any weight changes).

Float ids are a ``TypeError`` on every path (the dtype is static).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
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

from xlmr import inputs as core_inputs
from xlmr import outputs as O
from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head
from xlmr.inputs import ArrayInfo, check_inputs
from xlmr.losses import IGNORE_INDEX, check_labels, loss_spec, num_classes

from . import loading, losses
from .adapters import LoraDense, TFAdapterMixin
from .training import TFTrainingMixin, export_saved_model

# A call argument: a tensor, or anything tf.convert_to_tensor takes (numpy arrays, nested lists).
TensorLike = tf.Tensor | np.ndarray | Sequence[Any]
# The first argument of a model call: a tensor, or HF's list / dict of inputs.
ModelInputs = TensorLike | Mapping[str, Any] | None
# A decoder's cache: per layer (self_key, self_value[, cross_key, cross_value]), each
# (batch, heads, seq, head_dim) -- HF v4's "legacy" tuple format.
PastKeyValues = tuple[tuple[tf.Tensor, ...], ...]

# -- output classes ---------------------------------------------------------------------------------


class _TFOutput:
    """Lets tf.nest rebuild an output from its (key, value) pairs, besides keywords or one dict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not isinstance(args[0], dict):
            args = (dict(args[0]),)
        super().__init__(*args, **kwargs)


class TFBaseModelOutputWithPoolingAndCrossAttentions(
    _TFOutput, O.BaseModelOutputWithPoolingAndCrossAttentions
):
    """HF's ``TFBaseModelOutputWithPoolingAndCrossAttentions`` (see :mod:`xlmr.outputs`)."""


class TFBaseModelOutputWithPastAndCrossAttentions(_TFOutput, O.BaseModelOutputWithPastAndCrossAttentions):
    """HF's ``TFBaseModelOutputWithPastAndCrossAttentions``: what the encoder returns."""


class TFCausalLMOutputWithCrossAttentions(_TFOutput, O.CausalLMOutputWithCrossAttentions):
    """HF's ``TFCausalLMOutputWithCrossAttentions``."""


class TFMaskedLMOutput(_TFOutput, O.MaskedLMOutput):
    """HF's ``TFMaskedLMOutput``."""


class TFSequenceClassifierOutput(_TFOutput, O.SequenceClassifierOutput):
    """HF's ``TFSequenceClassifierOutput``."""


class TFMultipleChoiceModelOutput(_TFOutput, O.MultipleChoiceModelOutput):
    """HF's ``TFMultipleChoiceModelOutput``."""


class TFTokenClassifierOutput(_TFOutput, O.TokenClassifierOutput):
    """HF's ``TFTokenClassifierOutput``."""


class TFQuestionAnsweringModelOutput(_TFOutput, O.QuestionAnsweringModelOutput):
    """HF's ``TFQuestionAnsweringModelOutput``."""


# head name -> its output class, by HF's TF class name (xlmr.heads.Head.output_class_name).
TF_OUTPUT_CLASSES: dict[str, type[O.ModelOutput]] = {
    head.name: globals()[head.output_class_name("tf")] for head in HEADS.values()
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

        def flatten(out: O.ModelOutput) -> tuple:
            keys = tuple(out.keys())
            return tuple(out[k] for k in keys), keys, keys

        def unflatten(keys: tuple[str, ...], children: Any, _cls: type = cls) -> O.ModelOutput:
            return _cls(**dict(zip(keys, children)))

        try:
            optree.register_pytree_node(cls, flatten, unflatten, namespace="keras")
        except ValueError:  # already registered (module reloaded)
            pass


_register_with_keras_tree()

# -- helpers shared by the three backends (same names, order and docstrings) ----------------------


def _gelu(x: tf.Tensor) -> tf.Tensor:
    # The exact GELU written with erf: tf.nn.gelu(approximate=False) lowers to Erfc, an op tf2onnx
    # cannot convert (ONNX Runtime refuses the graph); this form converts and agrees within 1e-6.
    return 0.5 * x * (1.0 + tf.math.erf(x * tf.cast(1.0 / math.sqrt(2.0), x.dtype)))


def _gelu_new(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=True)


def _gelu_fast(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# The activations of xlmr.config.SUPPORTED_ACTIVATIONS, as HF's ACT2FN defines them.
ACT2FN: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": _gelu,
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": _gelu_new,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def array_info(x: Any) -> ArrayInfo | None:
    """Shape, dtype kind and (when concrete) values of ``x`` for :func:`xlmr.inputs.check_inputs`."""
    if x is None:
        return None
    if isinstance(x, keras.KerasTensor):  # symbolic (functional API): no values
        return ArrayInfo(tuple(x.shape), _dtype_kind(x.dtype))
    if isinstance(x, tf.Variable) or tf.is_tensor(x):
        shape = tuple(x.shape.as_list())
        if tf.is_symbolic_tensor(x):  # traced by tf.function: no values
            return ArrayInfo(shape, _dtype_kind(x.dtype))
        return ArrayInfo(shape, _dtype_kind(x.dtype), np.asarray(x))
    return core_inputs.array_info(x)


def create_position_ids_from_input_ids(
    input_ids: tf.Tensor,
    padding_idx: int,
    past_key_values_length: int | tf.Tensor = 0,
    segment_ids: tf.Tensor | None = None,
) -> tf.Tensor:
    """Positions counted over non-padding tokens, starting at ``padding_idx + 1``; padding keeps ``padding_idx``.

    With ``segment_ids`` (packed rows) the count restarts at ``padding_idx + 1`` for every sequence
    and padding (segment 0) keeps ``padding_idx``. (batch, seq) -> (batch, seq). This is fairseq's
    ``make_positions``, as HF uses it.
    """
    counted = tf.cast(tf.not_equal(input_ids, padding_idx), tf.int32)
    if segment_ids is None:
        return (tf.cumsum(counted, axis=1) + past_key_values_length) * counted + padding_idx
    counted *= tf.cast(segment_ids > 0, tf.int32)
    starts, _, sequence = _sequence_starts(segment_ids)
    count = tf.cumsum(counted, axis=1)
    # tokens counted before the first token of each token's own sequence
    before = tf.gather(count - counted, tf.gather(starts, sequence, batch_dims=1), batch_dims=1)
    return (count - before) * counted + padding_idx


def relative_position_scores(
    query: tf.Tensor,
    key: tf.Tensor,
    distance_table: tf.Tensor,
    position_embedding_type: str,
    max_position_embeddings: int,
) -> tf.Tensor:
    """Relative-position logits (batch, heads, seq, key_seq); queries sit at the end of the keys.

    ``distance_table`` is the (2 * max_position_embeddings - 1, head_dim) distance embedding;
    ``relative_key_query`` adds the key term to the query term.
    """
    q_len, k_len = _static_dims(query)[2], _static_dims(key)[2]
    q_pos = tf.range(q_len)[:, None] + (k_len - q_len)
    k_pos = tf.range(k_len)[None, :]
    table = tf.cast(distance_table, query.dtype)
    distance = tf.gather(table, q_pos - k_pos + max_position_embeddings - 1)  # (seq, key_seq, head_dim)
    scores = tf.einsum("bhld,lrd->bhlr", query, distance)
    if position_embedding_type == "relative_key_query":
        scores = scores + tf.einsum("bhrd,lrd->bhlr", key, distance)
    return scores


def attention_keep_mask(
    attention_mask: tf.Tensor | None,
    segment_ids: tf.Tensor | None,
    seq_length: int | tf.Tensor,
    past_length: int | tf.Tensor,
    is_decoder: bool,
) -> tf.Tensor | None:
    """Which keys each query may attend to: bool (batch or 1, 1, seq or 1, past + seq), True = attend.

    Combines the padding mask (2-D or 3-D ``attention_mask``), the causal mask of decoders and the
    block-diagonal mask of packed rows (a token attends only to tokens of its own sequence).
    Returns None when nothing is masked.
    """
    keep = None
    if attention_mask is None and segment_ids is not None:
        attention_mask = segment_ids > 0
    if attention_mask is not None:
        allowed = tf.cast(attention_mask, tf.bool)
        keep = allowed[:, None, :, :] if allowed.shape.rank == 3 else allowed[:, None, None, :]
    if is_decoder:
        q_pos = tf.range(seq_length)[:, None] + past_length
        k_pos = tf.range(past_length + seq_length)[None, :]
        causal = (k_pos <= q_pos)[None, None]
        keep = causal if keep is None else tf.logical_and(keep, causal)
    if segment_ids is not None:
        same = tf.equal(segment_ids[:, None, :, None], segment_ids[:, None, None, :])
        keep = same if keep is None else tf.logical_and(keep, same)
    return keep


def additive_mask(keep: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """{True keep, False drop} -> {0, finfo(dtype).min}. Never -inf, so a fully masked row stays finite."""
    lowest = float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).min)
    return tf.where(keep, tf.constant(0.0, dtype), tf.constant(lowest, dtype))


def sequence_first_tokens(hidden_states: tf.Tensor, segment_ids: tf.Tensor | None = None) -> tf.Tensor:
    """The first token of each packed sequence in slots: (batch, seq, hidden) -> (batch, seq, hidden).

    Slot ``[b, k - 1]`` holds the first token of sequence ``k`` of row ``b``; slots past the row's
    last sequence are zero. Without ``segment_ids``: the first token of each row, (batch, hidden).
    """
    if segment_ids is None:
        return hidden_states[:, 0]
    starts, filled, _ = _sequence_starts(segment_ids)
    first = tf.gather(hidden_states, starts, batch_dims=1)
    return tf.where(filled[..., None], first, tf.zeros_like(first))


def _sequence_starts(segment_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where the packed sequences of each row start, with static shapes (jit-safe).

    Returns ``(starts, filled, sequence)``, each (batch, seq) int32/bool/int32: ``starts[b, k - 1]``
    is the index of the first token of sequence ``k`` of row ``b``; ``filled[b, k - 1]`` whether
    row ``b`` has a sequence ``k``; ``sequence[b, t]`` the slot (``k - 1``) of token ``t``'s sequence.
    """
    seg = tf.cast(segment_ids, tf.int32)
    previous = tf.pad(seg[:, :-1], [[0, 0], [1, 0]])
    is_start = tf.logical_and(seg > 0, tf.not_equal(seg, previous))
    # a stable sort of "not a start" puts each row's start indices first, in order
    starts = tf.argsort(tf.cast(tf.logical_not(is_start), tf.int32), axis=-1, stable=True)
    number = tf.cumsum(tf.cast(is_start, tf.int32), axis=1)
    filled = tf.range(tf.shape(seg)[1])[None, :] < number[:, -1:]
    return starts, filled, tf.maximum(number - 1, 0)


def _zero_empty_slots(slots: tf.Tensor, segment_ids: tf.Tensor) -> tf.Tensor:
    """(batch, seq, ...) per-sequence slots with the slots past each row's last sequence set to 0."""
    filled = _sequence_starts(segment_ids)[1]
    return tf.where(filled[..., None], slots, tf.zeros_like(slots))


# -- small private helpers ---------------------------------------------------------------------------


def _dtype_kind(dtype: Any) -> str:
    return np.dtype(tf.as_dtype(dtype).as_numpy_dtype).kind


def _initializer(config: XLMRobertaConfig) -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


# Each layer gets its own initializer: Keras 3 fixes an unseeded initializer's seed when it is
# made, so layers sharing one instance would start from the same values.
def _dense(config: XLMRobertaConfig, units: int, name: str, **kwargs: Any) -> keras.layers.Dense:
    """A Dense layer initialised as HF's (truncated normal of ``config.initializer_range``); a
    :class:`xlmr_tf.adapters.LoraDense`, which adds an attached LoRA adapter's branch."""
    return LoraDense(units, kernel_initializer=_initializer(config), name=name, **kwargs)


def _embedding(config: XLMRobertaConfig, rows: int, width: int, name: str) -> keras.layers.Embedding:
    return keras.layers.Embedding(rows, width, embeddings_initializer=_initializer(config), name=name)


def _layer_norm(config: XLMRobertaConfig, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


def _static_dims(x: tf.Tensor) -> list:
    """Static dims where known, dynamic scalars elsewhere (HF's shape_list)."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if d is None else d for i, d in enumerate(static)]


def _to_tensor(x: Any, dtype: tf.DType | None = None) -> tf.Tensor | None:
    if x is None or isinstance(x, keras.KerasTensor):
        return x
    t = tf.convert_to_tensor(x)
    if dtype is not None and t.dtype != dtype:
        t = tf.cast(t, dtype)
    return t


def _outside(values: tf.Tensor, high: int | tf.Tensor, ignore: int | None = None) -> tf.Tensor:
    """Elementwise: ``values`` outside ``[0, high)`` (``ignore`` excepted)."""
    values = tf.cast(values, tf.int64)
    bad = tf.logical_or(values < 0, values >= tf.cast(high, tf.int64))
    return bad if ignore is None else tf.logical_and(bad, tf.not_equal(values, ignore))


def _traced(x: Any) -> bool:
    """A tensor whose values are unknown until run time (inside tf.function / XLA)."""
    return x is not None and tf.is_tensor(x) and tf.is_symbolic_tensor(x)


def _past_length(past_key_values: PastKeyValues | None) -> int | None:
    if past_key_values is None:
        return 0
    return past_key_values[0][0].shape[2]


# -- layers -------------------------------------------------------------------------------------


class _ConfigLayer(keras.layers.Layer):
    """A layer built from the model configuration, which it keeps as ``self.config``.

    Args:
        config: The model configuration.
        **kwargs: Passed to ``keras.layers.Layer`` (``name``...).
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config


class TFXLMRobertaEmbeddings(_ConfigLayer):
    """Word + position + token type embeddings, then LayerNorm and dropout.

    Positions follow RoBERTa (:func:`create_position_ids_from_input_ids`): they count non-padding
    tokens from ``pad_token_id + 1``, restarting for every sequence of a packed row.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.padding_idx = config.pad_token_id
        self.word_embeddings = _embedding(config, config.vocab_size, config.hidden_size, "word_embeddings")
        self.position_embeddings = _embedding(
            config, config.max_position_embeddings, config.hidden_size, "position_embeddings"
        )
        self.token_type_embeddings = _embedding(
            config, config.type_vocab_size, config.hidden_size, "token_type_embeddings"
        )
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            layer.build((None, None))
        self.LayerNorm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(
        self,
        input_ids: tf.Tensor | None = None,
        position_ids: tf.Tensor | None = None,
        token_type_ids: tf.Tensor | None = None,
        inputs_embeds: tf.Tensor | None = None,
        past_key_values_length: int | tf.Tensor = 0,
        segment_ids: tf.Tensor | None = None,
        training: bool = False,
    ) -> tf.Tensor:
        """(batch, seq) ids (or (batch, seq, hidden) ``inputs_embeds``) -> (batch, seq, hidden)."""
        config = self.config
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        input_shape = _static_dims(inputs_embeds)[:-1]
        if position_ids is None:
            ids = input_ids
            if ids is None and segment_ids is not None:  # count every token of a sequence
                ids = tf.where(segment_ids > 0, self.padding_idx + 1, self.padding_idx)
            if ids is not None:
                position_ids = create_position_ids_from_input_ids(
                    ids, self.padding_idx, past_key_values_length, segment_ids
                )
            else:
                start = self.padding_idx + 1 + past_key_values_length
                position_ids = tf.range(start, input_shape[-1] + start)[None, :]
        if token_type_ids is None:
            token_type_ids = tf.zeros(input_shape, tf.int32)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if config.position_embedding_type == "absolute":  # relative types only use distance embeddings
            embeddings = embeddings + self.position_embeddings(position_ids)
        if not tf.executing_eagerly():
            # Traced (tf.function / XLA): an out-of-range id poisons its token, hence its row, with
            # NaN -- XLA clamps gathers and drops graph asserts; eager calls raised already.
            bad = _outside(token_type_ids, config.type_vocab_size)
            if input_ids is not None:
                bad = tf.logical_or(bad, _outside(input_ids, config.vocab_size))
            if config.position_embedding_type == "absolute":
                bad = tf.logical_or(bad, _outside(position_ids, config.max_position_embeddings))
            embeddings = tf.where(bad[..., None], tf.constant(float("nan"), embeddings.dtype), embeddings)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class TFXLMRobertaSelfAttention(_ConfigLayer):
    """Multi-head scaled dot-product attention (self- or cross-), with an optional key/value cache.

    Scores are computed in the compute dtype and normalised in float32 (safe under mixed precision).

    Args:
        config: The model configuration.
        position_embedding_type: Overrides ``config.position_embedding_type`` (cross-attention is absolute).
    """

    def __init__(
        self, config: XLMRobertaConfig, position_embedding_type: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_dim
        self.all_head_size = config.hidden_size
        self.is_decoder = config.is_decoder
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        self.query = _dense(config, self.all_head_size, "query")
        self.key = _dense(config, self.all_head_size, "key")
        self.value = _dense(config, self.all_head_size, "value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)
        self.max_position_embeddings = config.max_position_embeddings
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            self.distance_embedding = _embedding(
                config, 2 * config.max_position_embeddings - 1, self.attention_head_size, "distance_embedding"
            )

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.query, self.key, self.value):
            layer.build((None, None, self.config.hidden_size))
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            self.distance_embedding.build((None,))
        self.built = True

    def transpose_for_scores(self, x: tf.Tensor, batch_size: int | tf.Tensor) -> tf.Tensor:
        """(batch, seq, hidden) -> (batch, heads, seq, head_dim)."""
        x = tf.reshape(x, (batch_size, -1, self.num_attention_heads, self.attention_head_size))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        past_key_value: tuple[tf.Tensor, ...] | None = None,
        output_attentions: bool = False,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor | None, tuple[tf.Tensor, tf.Tensor] | None]:
        """``(context (batch, seq, hidden), probs or None, (key, value) for the cache or None)``.

        ``attention_mask`` is the bool keep mask of :func:`attention_keep_mask`, broadcastable to
        (batch, heads, seq, key_seq); it is made additive here, in float32 (Keras would cast a
        float mask passed between layers to the compute dtype, where finfo(float32).min is -inf).
        """
        batch_size = _static_dims(hidden_states)[0]
        query = self.transpose_for_scores(self.query(hidden_states), batch_size)
        is_cross = encoder_hidden_states is not None
        if is_cross and past_key_value is not None:
            key, value = past_key_value[0], past_key_value[1]
        elif is_cross:
            key = self.transpose_for_scores(self.key(encoder_hidden_states), batch_size)
            value = self.transpose_for_scores(self.value(encoder_hidden_states), batch_size)
        else:
            key = self.transpose_for_scores(self.key(hidden_states), batch_size)
            value = self.transpose_for_scores(self.value(hidden_states), batch_size)
            if past_key_value is not None:
                key = tf.concat([tf.cast(past_key_value[0], key.dtype), key], axis=2)
                value = tf.concat([tf.cast(past_key_value[1], value.dtype), value], axis=2)
        present = (key, value) if self.is_decoder else None

        relative = self.position_embedding_type in ("relative_key", "relative_key_query")
        if not relative:
            # Scale the (seq, head_dim) queries, not the (seq, seq) scores: one pass fewer over the
            # scores (exact for a power-of-two head_dim, as 64 is).
            query = query * tf.cast(1.0 / math.sqrt(self.attention_head_size), query.dtype)
        scores = tf.matmul(query, key, transpose_b=True)  # (batch, heads, seq, key_seq)
        if relative:
            scores = scores + relative_position_scores(
                query,
                key,
                self.distance_embedding.embeddings,
                self.position_embedding_type,
                self.max_position_embeddings,
            )
        scores = tf.cast(scores, tf.float32)
        if relative:
            scores = scores / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + additive_mask(attention_mask, tf.float32)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), query.dtype)
        probs = self.dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)
        context = tf.matmul(probs, value)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (batch_size, -1, self.all_head_size))
        return context, (probs if output_attentions else None), present


class TFXLMRobertaSelfOutput(_ConfigLayer):
    """Output projection of the attention block with dropout, residual and LayerNorm."""

    input_size_field = "hidden_size"  # the config field giving the dense layer's input width

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        self.dense.build((None, None, getattr(self.config, self.input_size_field)))
        self.LayerNorm.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states: tf.Tensor, input_tensor: tf.Tensor, training: bool = False) -> tf.Tensor:
        """LayerNorm(dropout(dense(hidden_states)) + input_tensor)."""
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

    def build(self, input_shape: Any = None) -> None:
        self.self_attention.build(None)
        self.dense_output.build(None)
        self.built = True

    def call(
        self, input_tensor: tf.Tensor, output_attentions: bool = False, training: bool = False, **tensors: Any
    ) -> tuple[tf.Tensor, tf.Tensor | None, tuple[tf.Tensor, tf.Tensor] | None]:
        """``(output (batch, seq, hidden), probs or None, present key/value or None)``.

        ``tensors``: :class:`TFXLMRobertaSelfAttention`'s tensor arguments by name (``attention_mask``,
        ``head_mask``, ``encoder_hidden_states``, ``past_key_value``; Keras takes tensors or None here).
        """
        context, probs, present = self.self_attention(
            input_tensor, output_attentions=output_attentions, training=training, **tensors
        )
        return self.dense_output(context, input_tensor, training=training), probs, present


class TFXLMRobertaIntermediate(_ConfigLayer):
    """Feed-forward expansion with ``config.hidden_act``."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.dense = _dense(config, config.intermediate_size, "dense")
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def build(self, input_shape: Any = None) -> None:
        self.dense.build((None, None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        """(batch, seq, hidden) -> (batch, seq, intermediate)."""
        return self.intermediate_act_fn(self.dense(hidden_states))


class TFXLMRobertaOutput(TFXLMRobertaSelfOutput):
    """Feed-forward contraction with dropout, residual and LayerNorm (the self-output's layers,
    reading ``config.intermediate_size`` features).

    Args:
        config: The model configuration.
    """

    input_size_field = "intermediate_size"


class TFXLMRobertaLayer(_ConfigLayer):
    """One transformer layer: self-attention, optional cross-attention (decoders), feed-forward."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
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

    def build(self, input_shape: Any = None) -> None:
        self.attention.build(None)
        if self.add_cross_attention:
            self.crossattention.build(None)
        self.intermediate.build(None)
        self.bert_output.build(None)
        self.built = True

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        encoder_attention_mask: tf.Tensor | None = None,
        past_key_value: tuple[tf.Tensor, ...] | None = None,
        output_attentions: bool = False,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None, tuple[tf.Tensor, ...] | None]:
        """``(hidden (batch, seq, hidden), self-attention probs, cross-attention probs, present cache)``."""
        shared = {"head_mask": head_mask, "output_attentions": output_attentions, "training": training}
        self_past = tuple(past_key_value[:2]) if past_key_value is not None else None
        attention_output, self_probs, present = self.attention(
            hidden_states, attention_mask=attention_mask, past_key_value=self_past, **shared
        )
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            cross_past = (
                tuple(past_key_value[2:]) if past_key_value is not None and len(past_key_value) == 4 else None
            )
            attention_output, cross_probs, cross_present = self.crossattention(
                attention_output,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past,
                **shared,
            )
            present = present + cross_present
        intermediate = self.intermediate(attention_output)
        layer_output = self.bert_output(intermediate, attention_output, training=training)
        return layer_output, self_probs, cross_probs, present


class TFXLMRobertaEncoder(_ConfigLayer):
    """The stack of ``config.num_hidden_layers`` layers, named ``layer.0`` ... ``layer.N``."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.layer = [TFXLMRobertaLayer(config, name=f"layer.{i}") for i in range(config.num_hidden_layers)]

    def build(self, input_shape: Any = None) -> None:
        for layer in self.layer:
            layer.build(None)
        self.built = True

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        encoder_attention_mask: tf.Tensor | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training: bool = False,
    ) -> TFBaseModelOutputWithPastAndCrossAttentions:
        """Run every layer; collect hidden states, attentions and the cache as requested."""
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


class TFXLMRobertaPooler(_ConfigLayer):
    """tanh(dense(first token's hidden state)); for packed rows one slot per sequence."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.dense = _dense(config, config.hidden_size, "dense", activation="tanh")

    def build(self, input_shape: Any = None) -> None:
        self.dense.build((None, self.config.hidden_size))
        self.built = True

    def call(self, hidden_states: tf.Tensor, segment_ids: tf.Tensor | None = None) -> tf.Tensor:
        """(batch, seq, hidden) -> (batch, hidden); with ``segment_ids`` (batch, seq, hidden) slots
        (:func:`sequence_first_tokens`), empty slots exactly zero."""
        pooled = self.dense(sequence_first_tokens(hidden_states, segment_ids))
        return pooled if segment_ids is None else _zero_empty_slots(pooled, segment_ids)


class TFXLMRobertaMainLayer(_ConfigLayer):
    """The backbone (embeddings, encoder, optional pooler), named ``roberta`` in every model, as in HF.

    It does not check its inputs: the models do, once per call (:func:`xlmr.inputs.check_inputs`).

    Args:
        config: The model configuration.
        add_pooling_layer: Whether to build the pooler.
    """

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.is_decoder = config.is_decoder
        self.add_pooling_layer = add_pooling_layer
        self.embeddings = TFXLMRobertaEmbeddings(config, name="embeddings")
        self.encoder = TFXLMRobertaEncoder(config, name="encoder")
        self.pooler = TFXLMRobertaPooler(config, name="pooler") if add_pooling_layer else None

    def build(self, input_shape: Any = None) -> None:
        self.embeddings.build(None)
        self.encoder.build(None)
        if self.pooler is not None:
            self.pooler.build(None)
        self.built = True

    def get_head_mask(self, head_mask: TensorLike | None) -> tf.Tensor | None:
        """(heads,) or (layers, heads) -> (layers, 1, heads, 1, 1), as HF's ``get_head_mask``."""
        if head_mask is None:
            return None
        head_mask = _to_tensor(head_mask, self.compute_dtype)
        if head_mask.shape.rank == 1:
            head_mask = tf.tile(head_mask[None], (self.config.num_hidden_layers, 1))
        return head_mask[:, None, :, None, None]

    def call(
        self,
        input_ids: TensorLike | None = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        encoder_hidden_states: TensorLike | None = None,
        encoder_attention_mask: TensorLike | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFBaseModelOutputWithPoolingAndCrossAttentions:
        """Embeddings, encoder and pooler; see :class:`TFXLMRobertaModel` for the arguments."""
        config = self.config
        use_cache = bool(use_cache) if config.is_decoder else False
        input_ids = _to_tensor(input_ids, tf.int32)
        inputs_embeds = _to_tensor(inputs_embeds, self.compute_dtype)
        segment_ids = _to_tensor(segment_ids, tf.int32)
        seq_length = _static_dims(input_ids if input_ids is not None else inputs_embeds)[1]
        past_length = 0 if past_key_values is None else _static_dims(past_key_values[0][0])[2]

        embedding_output = self.embeddings(
            input_ids=input_ids,
            position_ids=_to_tensor(position_ids, tf.int32),
            token_type_ids=_to_tensor(token_type_ids, tf.int32),
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_length,
            segment_ids=segment_ids,
            training=training,
        )
        keep = attention_keep_mask(
            _to_tensor(attention_mask), segment_ids, seq_length, past_length, config.is_decoder
        )
        encoder_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            encoder_hidden_states = _to_tensor(encoder_hidden_states, self.compute_dtype)
            encoder_mask = attention_keep_mask(_to_tensor(encoder_attention_mask), None, 0, 0, False)

        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=keep,
            head_mask=self.get_head_mask(head_mask),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        sequence_output = encoder_outputs["last_hidden_state"]
        pooled = self.pooler(sequence_output, segment_ids=segment_ids) if self.pooler is not None else None
        return TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=pooled,
            past_key_values=encoder_outputs.past_key_values,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
            cross_attentions=encoder_outputs.cross_attentions,
        )


class TFXLMRobertaLMHead(_ConfigLayer):
    """dense -> gelu -> layer_norm -> decoder (the word embedding matrix when tied) + ``bias``."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.dense = _dense(config, config.hidden_size, "dense")
        self.layer_norm = _layer_norm(config, "layer_norm")
        self.decoder = None
        if not config.tie_word_embeddings:
            self.decoder = _dense(config, config.vocab_size, "decoder", use_bias=False)

    def build(self, input_shape: Any = None) -> None:
        self.dense.build((None, None, self.config.hidden_size))
        self.layer_norm.build((None, None, self.config.hidden_size))
        if self.decoder is not None:
            self.decoder.build((None, None, self.config.hidden_size))
        self.bias = self.add_weight(shape=(self.config.vocab_size,), initializer="zeros", name="bias")
        self.built = True

    def call(self, hidden_states: tf.Tensor, shared_embedding: tf.Tensor | None = None) -> tf.Tensor:
        """(batch, seq, hidden) -> (batch, seq, vocab); ``shared_embedding`` is the tied (vocab, hidden) matrix."""
        hidden_states = self.layer_norm(ACT2FN["gelu"](self.dense(hidden_states)))
        if self.decoder is not None:
            logits = self.decoder(hidden_states)
        else:
            logits = tf.matmul(
                hidden_states, tf.cast(shared_embedding, hidden_states.dtype), transpose_b=True
            )
        return logits + tf.cast(self.bias, logits.dtype)


class TFXLMRobertaClassificationHead(_ConfigLayer):
    """Sentence classifier on the first token: dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.dense = _dense(config, config.hidden_size, "dense", activation="tanh")
        rate = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = keras.layers.Dropout(rate)
        self.out_proj = _dense(config, config.num_labels, "out_proj")

    def build(self, input_shape: Any = None) -> None:
        self.dense.build((None, self.config.hidden_size))
        self.out_proj.build((None, self.config.hidden_size))
        self.built = True

    def call(
        self, features: tf.Tensor, training: bool = False, segment_ids: tf.Tensor | None = None
    ) -> tf.Tensor:
        """(batch, seq, hidden) -> (batch, num_labels); with ``segment_ids`` (batch, seq, num_labels)
        slots, one per packed sequence, empty slots exactly zero."""
        x = self.dropout(sequence_first_tokens(features, segment_ids), training=training)
        x = self.dropout(self.dense(x), training=training)
        logits = self.out_proj(x)
        return logits if segment_ids is None else _zero_empty_slots(logits, segment_ids)


# -- models -------------------------------------------------------------------------------------


def _unpack_inputs(arg_names: tuple[str, ...], args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """HF's three input conventions -- keywords, one tensor, or a list/tuple/dict in the first
    argument -- as one ``{argument name: value}`` dict (positional arguments in ``arg_names`` order)."""
    if len(args) > len(arg_names):
        raise TypeError(f"got {len(args)} positional inputs; this model takes at most {len(arg_names)}")
    values = dict(zip(arg_names, args))
    for key, value in kwargs.items():
        if key not in arg_names:
            raise TypeError(f"unexpected keyword argument {key!r}; this model takes {', '.join(arg_names)}")
        if key in values:
            raise TypeError(f"got multiple values for argument {key!r}")
        values[key] = value
    main = values.get("input_ids")
    if isinstance(main, Mapping):
        pairs, where = list(main.items()), "dict"
        for key, _ in pairs:
            if key not in arg_names:
                raise ValueError(f"unknown input {key!r}; this model takes {', '.join(arg_names)}")
    elif isinstance(main, list | tuple):
        if len(main) > len(arg_names):
            raise ValueError(
                f"got {len(main)} inputs in a list; this model takes at most {len(arg_names)}: {arg_names}"
            )
        pairs, where = list(zip(arg_names, main)), "list"
    else:
        return values
    values["input_ids"] = None
    for key, value in pairs:
        if value is None:
            continue
        if values.get(key) is not None:
            raise ValueError(f"input {key!r} was given both in the input {where} and as a keyword argument")
        values[key] = value
    return values


# The backbone's inputs among a model call's arguments.
_BACKBONE_ARGS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "head_mask",
    "inputs_embeds",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "past_key_values",
    "use_cache",
    "segment_ids",
)


class TFXLMRobertaPreTrainedModel(TFAdapterMixin, TFTrainingMixin, keras.Model):
    """Base class of the seven models: config handling, input checks, weights, Keras glue.

    A ``keras.Model`` subclass: ``compile``/``fit``/``evaluate``/``predict``, ``model.save("x.keras")`` and
    ``keras.models.load_model`` work as for any Keras model. With ``compile(optimizer)`` and no loss, the
    model's own (HF) loss is trained when the inputs carry the labels (``labels``, or
    ``start_positions`` / ``end_positions``); with a Keras loss it is applied to the head's
    prediction fields (``xlmr.heads.Head.prediction``), see :mod:`xlmr_tf.training`.

    Inputs come as HF's TF classes take them: keywords, one tensor, or a list/dict in the first
    argument (a list follows the call signature's order; ``segment_ids`` comes after HF's
    arguments). Every call is checked before Keras runs it (:func:`xlmr.inputs.check_inputs`).

    Call arguments shared by the seven models: ``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``position_ids``, ``head_mask``, ``inputs_embeds``, ``output_attentions``,
    ``output_hidden_states``, ``return_dict``, ``segment_ids`` (packed rows, see
    :class:`TFXLMRobertaModel`; refused by the heads that do not take them), ``training``. Each
    model's docstring says only what it adds (labels, decoder arguments) or lacks.

    Args:
        config: The model configuration (an :class:`xlmr.XLMRobertaConfig`, or its dict).
        add_pooling_layer: Build the backbone's pooler; None: as the head needs
            (``xlmr.heads.Head.add_pooling_layer``).
        *inputs, **kwargs: Passed to ``keras.Model`` (``name``, ``dtype``...).

    Example (every model on one tiny configuration):
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> import xlmr_tf
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                           num_attention_heads=4, intermediate_size=37, num_labels=2)
        >>> ids = np.array([[0, 5, 6, 2]])
        >>> xlmr_tf.TFXLMRobertaForMaskedLM(config).build_model().count_params() > 0
        True
        >>> out = xlmr_tf.TFXLMRobertaModel(config)(ids)
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((1, 4, 32), (1, 32))
        >>> packed = xlmr_tf.TFXLMRobertaModel(config)(np.array([[0, 5, 2, 0, 7, 8, 2, 1]]),
        ...                                            segment_ids=np.array([[1, 1, 1, 2, 2, 2, 2, 0]]))
        >>> tuple(packed.pooler_output.shape)  # slots 0 and 1 hold the two sequences
        (1, 8, 32)
        >>> decoder = xlmr_tf.TFXLMRobertaForCausalLM(config.copy(is_decoder=True))
        >>> out = decoder(ids, use_cache=True)
        >>> tuple(out.logits.shape), len(out.past_key_values)
        ((1, 4, 100), 2)
        >>> tuple(decoder(np.array([[7]]), past_key_values=out.past_key_values, use_cache=True).logits.shape)
        (1, 1, 100)
        >>> out = xlmr_tf.TFXLMRobertaForMaskedLM(config)(ids, labels=np.array([[-100, -100, 6, -100]]))
        >>> tuple(out.logits.shape), out.loss.shape
        ((1, 4, 100), TensorShape([]))
        >>> classifier = xlmr_tf.TFXLMRobertaForSequenceClassification(config.copy())
        >>> tuple(classifier(ids, labels=np.array([1])).logits.shape), classifier.config.problem_type
        ((1, 2), 'single_label_classification')
        >>> packed = classifier(np.array([[0, 5, 2, 0, 7, 2, 1]]), segment_ids=np.array([[1, 1, 1, 2, 2, 2, 0]]),
        ...                     labels=np.array([[1, 0, -100, -100, -100, -100, -100]]))
        >>> tuple(packed.logits.shape)
        (1, 7, 2)
        >>> tuple(xlmr_tf.TFXLMRobertaForMultipleChoice(config)(np.array([[[0, 5, 6, 2], [0, 7, 8, 2]]])).logits.shape)
        (1, 2)
        >>> tagger = xlmr_tf.TFXLMRobertaForTokenClassification(config)
        >>> tuple(tagger({"input_ids": ids, "labels": np.array([[-100, 1, 0, -100]])}).logits.shape)
        (1, 4, 2)
        >>> out = xlmr_tf.TFXLMRobertaForQuestionAnswering(config)(ids, start_positions=np.array([1]),
        ...                                                        end_positions=np.array([2]))
        >>> tuple(out.start_logits.shape), tuple(out.end_logits.shape)
        ((1, 4), (1, 4))
    """

    head: Head | None = None  # set by each concrete class
    base_model_prefix = "roberta"
    config_class = XLMRobertaConfig
    # The call arguments in signature order (training excepted): set from each class's ``call``.
    _arg_names: tuple[str, ...] = ()
    _checked_names: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__:
            names = tuple(inspect.signature(cls.call).parameters)[1:]
            cls._arg_names = tuple(n for n in names if n != "training")
            # Heads that take no packed rows still accept segment_ids, for the checker to refuse them.
            cls._checked_names = cls._arg_names + (() if "segment_ids" in names else ("segment_ids",))

    def __init__(
        self,
        config: XLMRobertaConfig | Mapping[str, Any],
        *inputs: Any,
        add_pooling_layer: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(config, Mapping):
            config = XLMRobertaConfig.from_dict(dict(config))
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        if self.head is None:
            raise TypeError(f"{type(self).__name__} has no head; build one of the seven model classes")
        super().__init__(*inputs, **kwargs)
        self.config = config
        self.name_or_path = config.name_or_path  # HF's attribute: where from_pretrained loaded from
        pooling = self.head.add_pooling_layer if add_pooling_layer is None else add_pooling_layer
        self.roberta = TFXLMRobertaMainLayer(config, add_pooling_layer=pooling, name="roberta")

    def build(self, input_shape: Any = None) -> None:
        """Create the backbone's and the head's variables (``xlmr.heads.Head.head_modules``)."""
        self.roberta.build(None)
        for name in self.head.head_modules:
            module = getattr(self, name)
            dense = isinstance(module, keras.layers.Dense)
            module.build((None, None, self.config.hidden_size) if dense else None)
        self.built = True

    # -- Keras serialisation -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The :class:`xlmr.XLMRobertaConfig` as a dict (Keras serialisation)."""
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> TFXLMRobertaPreTrainedModel:
        """Rebuild from :meth:`get_config` (``keras.models.load_model``)."""
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
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Any, *, dtype: Any = None, **config_overrides: Any
    ) -> TFXLMRobertaPreTrainedModel:
        """Load an HF-layout directory (config.json + any of the four weight files) or a Hub repo into this class.

        Each variable is created once, from the checkpoint's tensor (no random init for weights
        the checkpoint provides; a view of the memory-mapped file where possible).

        Args:
            pretrained_model_name_or_path: Local directory, or a Hub repo id (``org/name``,
                ``org/name@revision``) fetched through huggingface_hub: config.json and one weight
                format, ``model.safetensors`` first, then ``tf_model.h5``, then any other. Kept as
                ``model.name_or_path`` and ``config.name_or_path``.
            dtype: Keras dtype policy of the model (``"bfloat16"``: bfloat16 variables, each
                weight cast as it is read); None: the global policy (float32).
            **config_overrides: Config fields to override (``num_labels=5``...), and HF's Hub arguments
                ``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``subfolder``, ``force_download``.
        """
        return loading.from_pretrained(cls, pretrained_model_name_or_path, dtype=dtype, **config_overrides)

    def save_pretrained(self, save_directory: str | Any, format: str = "safetensors") -> Any:
        """Write ``config.json`` and the weights (``safetensors``, ``pytorch``, ``tf`` = tf_model.h5, ``flax``).

        With an adapter attached (:mod:`xlmr_tf.adapters`) the active adapter alone is written, in
        PEFT's layout (``adapter_config.json`` + ``adapter_model.safetensors``, or ``.bin`` with
        ``format="pytorch"``), as HF's ``save_pretrained`` does; :meth:`merge_adapter` first to
        write the full model.
        """
        if self._has_adapters():
            return self._save_adapter(save_directory, format)
        return loading.save_pretrained(self, save_directory, format=format)

    def canonical_state_dict(self) -> dict[str, np.ndarray]:
        """The weights as a canonical numpy state dict (HF PyTorch names and layouts, no tied aliases)."""
        return loading.canonical_state_dict(self)

    def load_canonical_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> TFXLMRobertaPreTrainedModel:
        """Assign a canonical state dict (checked loudly by ``xlmr.weights.prepare_state_dict``)."""
        return loading.load_canonical_state_dict(self, state_dict)

    def export(
        self,
        filepath: str | Any,
        format: str = "tf_saved_model",
        verbose: bool | None = None,
        input_signature: Any = None,
        **kwargs: Any,
    ) -> Any:
        """SavedModel with a ``serving_default`` signature over ``input_ids`` / ``attention_mask`` (int32).

        Other formats and explicit ``input_signature`` go to ``keras.Model.export``.
        """
        if format == "tf_saved_model" and input_signature is None and not kwargs:
            return export_saved_model(self, filepath)
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    @property
    def _default_save_signature(self) -> None:
        # Keras would trace a float "inputs" signature from build shapes; serving signatures come from
        # export_saved_model instead.
        return None

    # -- checks, then Keras' __call__ -----------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Check the inputs and labels, then run Keras' ``__call__`` (which runs ``call``).

        The checks run here because Keras rewrites the message of any exception raised inside
        ``call``; here the core's errors (:mod:`xlmr.inputs`, :mod:`xlmr.losses`) reach the caller
        as they are. Traced calls also get graph asserts on the values (see the module docstring).
        """
        keras_kwargs = {k: kwargs.pop(k) for k in ("training",) if k in kwargs}
        values = _unpack_inputs(self._checked_names, args, kwargs)
        values = self._check_call(values)
        return super().__call__(**values, **keras_kwargs)

    def _check_call(self, values: dict[str, Any]) -> dict[str, Any]:
        """Run the core's checks on one call; under tracing add graph asserts on the values."""
        config, head = self.config, self.head
        infos = {name: array_info(values.get(name)) for name in core_inputs.INPUT_NAMES}
        past = values.get("past_key_values")
        shape = check_inputs(
            config, head, **infos, past_length=_past_length(past), has_cache=past is not None
        )
        names = loss_spec(head).label_args if head.loss is not None else ()
        labels = {name: array_info(values.get(name)) for name in names if values.get(name) is not None}
        if labels:
            rows = (infos["input_ids"] or infos["inputs_embeds"]).shape[0]
            check_labels(
                head, config, labels, batch=rows, seq=shape.seq, num_choices=shape.num_choices,
                segment_ids=infos["segment_ids"],
            )  # fmt: skip
        asserts = self._value_asserts(values)
        if not asserts:
            return values
        with tf.control_dependencies(asserts):  # the inputs are used only once they passed
            return {k: tf.identity(v) if tf.is_tensor(v) else v for k, v in values.items()}

    def _value_asserts(self, values: Mapping[str, Any], y: Any = None) -> list[tf.Operation]:
        """Graph asserts on the ids and labels of a traced call (nothing for concrete values: checked).

        ``y``: Keras' targets, checked like the head's labels when they are integer class ids.
        """
        config, head = self.config, self.head
        ranges = [
            ("input_ids", config.vocab_size, "vocab_size"),
            ("token_type_ids", config.type_vocab_size, "type_vocab_size"),
        ]
        if config.position_embedding_type == "absolute":
            ranges.append(("position_ids", config.max_position_embeddings, "max_position_embeddings"))
        asserts = []
        for name, high, field in ranges:
            value = values.get(name)
            if _traced(value):
                asserts.append(
                    tf.debugging.Assert(
                        tf.logical_not(tf.reduce_any(_outside(value, high))),
                        [f"{name} holds an id outside [0, {field}={high})"],
                        name=f"check_{name}",
                    )
                )
        if head.loss is None or loss_spec(head).kind == "span":  # span positions are clamped
            return asserts
        labels = values.get(loss_spec(head).label_args[0])
        if labels is None and y is not None and not isinstance(y, Mapping | list | tuple):
            labels = y
        if _traced(labels) and labels.dtype.is_integer:
            n = num_classes(loss_spec(head), config, ())
            if n is None:  # multiple choice: the choices of the inputs
                ref = values.get("input_ids")
                ref = values.get("inputs_embeds") if ref is None else ref
                n = _static_dims(tf.convert_to_tensor(ref))[1]
            asserts.append(
                tf.debugging.Assert(
                    tf.logical_not(tf.reduce_any(_outside(labels, n, ignore=IGNORE_INDEX))),
                    [f"labels contain a class id outside [0, {n}) (use {IGNORE_INDEX} to ignore a position)"],
                    name="check_labels",
                )
            )
        return asserts

    # -- call glue -----------------------------------------------------------------------------
    def _call_args(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The call prologue: a ``call``'s ``locals()`` -> its arguments by name, conventions
        unpacked (for direct ``call`` use) and the flags resolved against the config."""
        a = _unpack_inputs(self._arg_names, (), {k: values[k] for k in self._arg_names})
        c = self.config
        for flag, default in (
            ("output_attentions", c.output_attentions),
            ("output_hidden_states", c.output_hidden_states),
            ("return_dict", c.use_return_dict),
        ):
            a[flag] = default if a.get(flag) is None else bool(a[flag])
        if "use_cache" in a:  # training a decoder (labels given) caches nothing, as HF
            a["use_cache"] = (
                False if any(a.get(n) is not None for n in self._label_args()) else a["use_cache"]
            )
            a["use_cache"] = c.use_cache if a["use_cache"] is None else bool(a["use_cache"])
        return a

    def _backbone(
        self, a: Mapping[str, Any], training: bool
    ) -> TFBaseModelOutputWithPoolingAndCrossAttentions:
        """``self.roberta`` over the call arguments ``a`` (see :meth:`_call_args`)."""
        return self.roberta(
            **{k: a.get(k) for k in _BACKBONE_ARGS},
            output_attentions=a["output_attentions"],
            output_hidden_states=a["output_hidden_states"],
            training=training,
        )

    def _finish(self, a: Mapping[str, Any], out: Mapping[str, Any], **fields: tf.Tensor) -> Any:
        """The head's output from its own ``fields`` and the backbone's ``out``, with the loss when
        the call has labels; a tuple unless ``return_dict``."""
        head = self.head
        loss = None
        if head.loss is not None:
            labels = {n: a[n] for n in loss_spec(head).label_args if a.get(n) is not None}
            if labels:
                predictions = tuple(fields[f] for f in head.prediction)
                loss = losses.head_loss(
                    head, self.config, predictions[0] if len(predictions) == 1 else predictions, labels
                )
        values = {
            name: fields[name] if name in fields else out.get(name) for name in head.outputs if name != "loss"
        }
        result = TF_OUTPUT_CLASSES[head.name](**values, **({"loss": loss} if "loss" in head.outputs else {}))
        return result if a["return_dict"] else result.to_tuple()

    def _prediction(self, out: Mapping[str, Any]) -> tf.Tensor | tuple[tf.Tensor, ...]:
        """The tensor(s) Keras losses, metrics and ``predict`` use (``xlmr.heads.Head.prediction``)."""
        fields = tuple(out[name] for name in self.head.prediction)
        return fields[0] if len(fields) == 1 else fields


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaModel(TFXLMRobertaPreTrainedModel):
    """The bare XLM-RoBERTa encoder (or decoder): hidden states and the pooled first token.

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) plus the decoder's
    ``encoder_hidden_states``, ``encoder_attention_mask``, ``past_key_values``, ``use_cache``.
    ``segment_ids`` (batch, seq) packs rows: 0 for padding, 1..k for the sequences of a row, in
    order. With ``segment_ids``
    positions restart for every sequence, attention is block-diagonal, ``attention_mask`` may be
    omitted, and ``pooler_output`` is (batch, seq, hidden) slots: slot ``[b, k - 1]`` is sequence
    ``k`` of row ``b`` and slots past a row's last sequence are zero.

    Args:
        config: The model configuration.
        add_pooling_layer: Whether to build the pooler (``pooler_output``).

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["base"]

    def __init__(
        self, config: XLMRobertaConfig, *inputs: Any, add_pooling_layer: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(config, *inputs, add_pooling_layer=add_pooling_layer, **kwargs)

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        encoder_hidden_states: TensorLike | None = None,
        encoder_attention_mask: TensorLike | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFBaseModelOutputWithPoolingAndCrossAttentions | tuple:
        a = self._call_args(locals())
        return self._finish(a, self._backbone(a, training))


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForCausalLM(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a language modeling head for causal LM (set ``config.is_decoder=True``).

    Call arguments: :class:`TFXLMRobertaModel`'s (without ``segment_ids``: a decoder does not
    take packed rows) plus ``labels`` (batch, seq): the loss is next-token cross entropy
    (``logits[:, :-1]`` against ``labels[:, 1:]``), -100 ignored. ``past_key_values`` /
    ``use_cache`` give HF v4's legacy per-layer tuples.

    Args:
        config: The model configuration.

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["causal_lm"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.lm_head = TFXLMRobertaLMHead(self.config, name="lm_head")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        encoder_hidden_states: TensorLike | None = None,
        encoder_attention_mask: TensorLike | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: TensorLike | None = None,
        training: bool = False,
    ) -> TFCausalLMOutputWithCrossAttentions | tuple:
        a = self._call_args(locals())
        out = self._backbone(a, training)
        shared = self.roberta.embeddings.word_embeddings.embeddings
        return self._finish(a, out, logits=self.lm_head(out.last_hidden_state, shared_embedding=shared))


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForMaskedLM(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a masked language modeling head (tied to the word embeddings).

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) plus ``labels`` (batch,
    seq: cross entropy over all positions, -100 ignored); packed logits stay in the packed layout.

    Args:
        config: The model configuration.

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["masked_lm"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.lm_head = TFXLMRobertaLMHead(self.config, name="lm_head")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: TensorLike | None = None,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFMaskedLMOutput | tuple:
        a = self._call_args(locals())
        out = self._backbone(a, training)
        shared = self.roberta.embeddings.word_embeddings.embeddings
        return self._finish(a, out, logits=self.lm_head(out.last_hidden_state, shared_embedding=shared))


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForSequenceClassification(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a sentence classification / regression head on the first token.

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) plus ``labels``
    (batch,): the loss of ``config.problem_type`` (inferred from the labels when None, as HF, and
    written back to the config).

    Packed rows (``segment_ids``, see :class:`TFXLMRobertaModel`): the logits are (batch, seq,
    num_labels) slots -- slot ``[b, k - 1]`` scores sequence ``k`` of row ``b``, empty slots are
    zero -- and ``labels`` are (batch, seq) slots with -100 in the empty ones (single-label
    classification only); the loss is the mean over the sequences, as over the padded batch.

    Args:
        config: The model configuration (``num_labels``, ``problem_type``).

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["sequence_classification"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        self.classifier = TFXLMRobertaClassificationHead(self.config, name="classifier")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: TensorLike | None = None,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFSequenceClassifierOutput | tuple:
        a = self._call_args(locals())
        out = self._backbone(a, training)
        segments = _to_tensor(a["segment_ids"], tf.int32)
        return self._finish(
            a, out, logits=self.classifier(out.last_hidden_state, training=training, segment_ids=segments)
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForMultipleChoice(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a multiple choice head: inputs (batch, num_choices, seq), logits (batch, num_choices).

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) without ``segment_ids``,
    plus ``labels`` (batch,): cross entropy over the choices. The choices are scored from the
    pooled first token of each (flattened) choice.

    Args:
        config: The model configuration.

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["multiple_choice"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.dropout = keras.layers.Dropout(self.config.hidden_dropout_prob)
        self.classifier = _dense(self.config, 1, "classifier")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: TensorLike | None = None,
        training: bool = False,
    ) -> TFMultipleChoiceModelOutput | tuple:
        a = self._call_args(locals())
        # (batch, num_choices, seq[, hidden]) -> (batch * num_choices, seq[, hidden]); checked rank 3 before
        ref = _to_tensor(a["input_ids"] if a["input_ids"] is not None else a["inputs_embeds"])
        num_choices, seq_length = _static_dims(ref)[1:3]
        flat = dict(a)
        for name in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
            if a[name] is not None:
                flat[name] = tf.reshape(_to_tensor(a[name]), (-1, seq_length))
        if a["inputs_embeds"] is not None:
            flat["inputs_embeds"] = tf.reshape(ref, (-1, seq_length, _static_dims(ref)[-1]))
        out = self._backbone(flat, training)
        pooled = self.dropout(out.pooler_output, training=training)
        return self._finish(a, out, logits=tf.reshape(self.classifier(pooled), (-1, num_choices)))


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForTokenClassification(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a per-token classification head (NER, POS...).

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) plus ``labels`` (batch,
    seq): cross entropy over all tokens, -100 ignored; packed logits and labels keep the packed
    layout (-100 on padding).

    Args:
        config: The model configuration (``num_labels``).

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["token_classification"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        c = self.config
        self.dropout = keras.layers.Dropout(
            c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob
        )
        self.classifier = _dense(c, c.num_labels, "classifier")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        labels: TensorLike | None = None,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFTokenClassifierOutput | tuple:
        a = self._call_args(locals())
        out = self._backbone(a, training)
        return self._finish(
            a, out, logits=self.classifier(self.dropout(out.last_hidden_state, training=training))
        )


@keras.saving.register_keras_serializable(package="xlmr")
class TFXLMRobertaForQuestionAnswering(TFXLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a span head for extractive QA: start and end logits per token.

    Call arguments: the shared ones (:class:`TFXLMRobertaPreTrainedModel`) plus ``start_positions``
    / ``end_positions`` (batch,): mean of the two cross entropies, positions clamped to [0, seq] and
    seq ignored, as HF; packed start/end logits stay in the packed layout.

    Args:
        config: The model configuration (``num_labels`` must be 2: start and end).

    Example: see :class:`TFXLMRobertaPreTrainedModel`.
    """

    head = HEADS["question_answering"]

    def __init__(self, config: XLMRobertaConfig, *inputs: Any, **kwargs: Any) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.num_labels = self.config.num_labels
        self.qa_outputs = _dense(self.config, self.config.num_labels, "qa_outputs")

    def call(
        self,
        input_ids: ModelInputs = None,
        attention_mask: TensorLike | None = None,
        token_type_ids: TensorLike | None = None,
        position_ids: TensorLike | None = None,
        head_mask: TensorLike | None = None,
        inputs_embeds: TensorLike | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        start_positions: TensorLike | None = None,
        end_positions: TensorLike | None = None,
        segment_ids: TensorLike | None = None,
        training: bool = False,
    ) -> TFQuestionAnsweringModelOutput | tuple:
        if self.config.num_labels != 2:
            raise ValueError(
                f"question answering splits the logits into start and end, so it needs config.num_labels == 2, "
                f"got {self.config.num_labels}"
            )
        a = self._call_args(locals())
        out = self._backbone(a, training)
        start_logits, end_logits = tf.unstack(self.qa_outputs(out.last_hidden_state), axis=-1)
        return self._finish(a, out, start_logits=start_logits, end_logits=end_logits)
