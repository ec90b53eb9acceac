"""XLM-RoBERTa in PyTorch: the backbone and its seven heads, with HF transformers v4's API.

Module attribute names follow HF's PyTorch classes, so ``model.named_parameters()`` yields the
canonical weight names of :mod:`xlmr.weights` unchanged (``roberta.encoder.layer.0...``).
Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` unless attention
weights are requested or a ``head_mask`` is given; then an eager path computes them.

Every call is checked once by :func:`xlmr.inputs.check_inputs` (and its labels by
:func:`xlmr.losses.check_labels`) against the rules of the head being called. Out-of-range token
ids and labels are never silent:

- eager: a ``ValueError`` (``TypeError`` for float ids) from the core checker, naming the value;
- ``torch.compile``: values are unknown while tracing, so the compiled graph asserts the ranges
  itself and raises a ``RuntimeError`` naming the argument (``torch._assert_async``);
- ``torch.jit.trace``, ``torch.onnx.export``, ``torch.export``: only the shapes are checked when
  tracing; the exported graph's own embedding lookup fails on an out-of-range id.

Packed rows (``segment_ids``, see :class:`XLMRobertaModel`) run several sequences in one row with
block-diagonal attention; per-sequence outputs come back in (batch, seq, ...) slots.

Shapes use one notation: (batch, seq, hidden), (batch, heads, seq, head_dim).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
import torch.utils.checkpoint
from torch import nn

from xlmr import _hub
from xlmr import inputs as core_inputs
from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head, head_from_architectures
from xlmr.inputs import ArrayInfo, InputShape, check_inputs
from xlmr.losses import IGNORE_INDEX, check_labels, loss_spec, num_classes, problem_type
from xlmr.outputs import OUTPUT_CLASSES, BaseModelOutputWithPastAndCrossAttentions, ModelOutput

from . import loading
from .losses import head_loss

logger = logging.getLogger("xlmr")

# A decoder's cache: per layer (self_key, self_value[, cross_key, cross_value]), each
# (batch, heads, seq, head_dim) -- HF v4's "legacy" tuple format.
LayerCache = tuple[torch.Tensor, ...]
PastKeyValues = tuple[LayerCache, ...]


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# The activations of xlmr.config.SUPPORTED_ACTIVATIONS, as HF's ACT2FN defines them.
ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def array_info(x: torch.Tensor | Any | None) -> ArrayInfo | None:
    """Shape, dtype kind and (when concrete) values of ``x`` for :func:`xlmr.inputs.check_inputs`."""
    if x is None:
        return None
    if not isinstance(x, torch.Tensor):
        return core_inputs.array_info(x)
    dtype = x.dtype
    if dtype.is_floating_point:
        kind = "f"
    elif dtype.is_complex:
        kind = "c"
    else:
        kind = "b" if dtype == torch.bool else "i" if dtype.is_signed else "u"
    shape = tuple(d if isinstance(d, int) else None for d in x.shape)  # a symbolic size is unknown
    # Values only of plain integer tensors outside tracing (the checker reads no float values).
    concrete = kind in "iub" and type(x) in (torch.Tensor, nn.Parameter) and not _tracing()
    return ArrayInfo(shape, kind, x.detach().cpu().numpy() if concrete else None)


def create_position_ids_from_input_ids(
    input_ids: torch.Tensor,
    padding_idx: int,
    past_key_values_length: int = 0,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions counted over non-padding tokens, starting at ``padding_idx + 1``; padding keeps ``padding_idx``.

    With ``segment_ids`` (packed rows) the count restarts at ``padding_idx + 1`` for every sequence
    and padding (segment 0) keeps ``padding_idx``. (batch, seq) -> (batch, seq). This is fairseq's
    ``make_positions``, as HF uses it.
    """
    mask = input_ids.ne(padding_idx).int()
    if segment_ids is None:
        incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_key_values_length) * mask
        return incremental.long() + padding_idx
    mask = mask * segment_ids.gt(0).int()
    segment_ids = segment_ids.long()
    # Tokens counted per sequence (slot 0: padding, never counted), then the count before each one.
    per_sequence = torch.zeros(
        segment_ids.shape[0], segment_ids.shape[1] + 1, dtype=mask.dtype, device=mask.device
    )
    per_sequence = per_sequence.scatter_add(1, segment_ids, mask)
    before = (torch.cumsum(per_sequence, dim=1) - per_sequence).gather(1, segment_ids)  # (batch, seq)
    incremental = (torch.cumsum(mask, dim=1) - before) * mask
    return incremental.long() + padding_idx


def relative_position_scores(
    query: torch.Tensor,
    key: torch.Tensor,
    distance_table: torch.Tensor,
    position_embedding_type: str,
    max_position_embeddings: int,
) -> torch.Tensor:
    """Relative-position logits (batch, heads, seq, key_seq); queries sit at the end of the keys.

    ``distance_table`` is the (2 * max_position_embeddings - 1, head_dim) distance embedding;
    ``relative_key_query`` adds the key term to the query term.
    """
    q_len, k_len = query.shape[2], key.shape[2]
    device = query.device
    pos_q = torch.arange(k_len - q_len, k_len, dtype=torch.long, device=device).view(-1, 1)
    pos_k = torch.arange(k_len, dtype=torch.long, device=device).view(1, -1)
    table = F.embedding(pos_q - pos_k + max_position_embeddings - 1, distance_table).to(query.dtype)
    scores = torch.einsum("bhld,lrd->bhlr", query, table)  # table: (seq, key_seq, head_dim)
    if position_embedding_type == "relative_key_query":
        scores = scores + torch.einsum("bhrd,lrd->bhlr", key, table)
    return scores


def attention_keep_mask(
    attention_mask: torch.Tensor | None,
    segment_ids: torch.Tensor | None,
    seq_length: int,
    past_length: int,
    is_decoder: bool,
) -> torch.Tensor | None:
    """Which keys each query may attend to: bool (batch or 1, 1, seq or 1, past + seq), True = attend.

    Combines the padding mask (2-D or 3-D ``attention_mask``), the causal mask of decoders and the
    block-diagonal mask of packed rows (a token attends only to tokens of its own sequence).
    Returns None when nothing is masked.
    """
    keep = None
    if attention_mask is not None:
        if attention_mask.dim() == 3:
            keep = attention_mask[:, None].bool()  # (batch, 1, seq, total)
        elif _tracing() or not bool(attention_mask.all()):
            # An all-ones mask is dropped in plain eager execution only (SDPA then picks its fastest
            # kernel); a traced or exported graph must keep it for the padded batches it will see.
            keep = attention_mask[:, None, None, :].bool()  # (batch, 1, 1, total)
    if is_decoder:
        # Query i sits at past_length + i and sees keys 0 .. past_length + i.
        device = next((t.device for t in (attention_mask, segment_ids) if t is not None), None)
        rows = torch.arange(past_length, past_length + seq_length, device=device)[:, None]
        causal = torch.arange(past_length + seq_length, device=device)[None, :] <= rows  # (seq, total)
        keep = causal[None, None] if keep is None else keep & causal
    if segment_ids is not None:
        # A token sees the tokens of its own sequence; padding (segment 0) is no key for anyone, as
        # if ``attention_mask = segment_ids > 0`` were given.
        same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]  # (batch, 1, seq, seq)
        same = same & (segment_ids > 0)[:, None, None, :]
        keep = same if keep is None else keep & same
    return keep


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """{True keep, False drop} -> {0, finfo(dtype).min}. Never -inf, so a fully masked row stays finite."""
    return (~keep).to(dtype) * torch.finfo(dtype).min


def sequence_first_tokens(hidden_states: torch.Tensor, segment_ids: torch.Tensor | None) -> torch.Tensor:
    """The first token of each packed sequence in slots: (batch, seq, hidden) -> (batch, seq, hidden).

    Slot ``[b, k - 1]`` holds the first token of sequence ``k`` of row ``b``; slots past the row's
    last sequence are zero. Without ``segment_ids``: the first token of each row, (batch, hidden).
    """
    if segment_ids is None:
        return hidden_states[:, 0]
    batch, seq, hidden = hidden_states.shape
    segment_ids = segment_ids.long()
    previous = F.pad(segment_ids[:, :-1], (1, 0))
    first = (segment_ids > 0) & (segment_ids != previous)
    slot = torch.where(first, segment_ids - 1, seq)  # every other token goes to a dropped extra slot
    slots = hidden_states.new_zeros(batch, seq + 1, hidden)
    slots = slots.scatter(1, slot[..., None].expand(-1, -1, hidden), hidden_states)
    return slots[:, :seq]


# ------------------------------------------------------------------------------------------------
# Private helpers
# ------------------------------------------------------------------------------------------------
def _tracing() -> bool:
    """True under torch.compile, torch.export, torch.jit.trace and torch.onnx.export: values are unknown
    there (or must not steer the graph), so value checks and value shortcuts are skipped."""
    return (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
    )


def _compiling_graph() -> bool:
    """True while torch.compile (not torch.export) traces: the graph asserts value ranges itself."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def _assert_in_range(
    name: str, values: torch.Tensor, high: int, what: str, ignore: int | None = None
) -> torch.Tensor:
    """Inside a torch.compile graph: a RuntimeError naming ``name`` unless every value is in ``[0, high)``.

    Returns ``values`` with the bad ones replaced (by ``ignore``, else 0), so that no lookup of the
    graph fails first with a message that names nothing.
    """
    ok = (values >= 0) & (values < high)
    if ignore is not None:
        ok = ok | (values == ignore)
    torch._assert_async(
        ok.all(),
        f"{name} holds a value outside [0, {what}={high}) (checked inside the torch.compile graph; "
        "call the model eagerly to see which)",
    )
    return torch.where(ok, values, ignore if ignore is not None else 0)


def _filled_slots(values: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Zero the per-sequence slots (batch, seq, ...) past each row's last packed sequence."""
    count = segment_ids.amax(dim=-1, keepdim=True)  # sequences in each row
    filled = torch.arange(segment_ids.shape[-1], device=segment_ids.device)[None, :] < count
    return torch.where(filled[..., None], values, torch.zeros((), dtype=values.dtype, device=values.device))


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    """Labels given as numpy arrays or lists become tensors; anything else is a TypeError naming them."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor, array or list of numbers, got {type(value).__name__}"
        ) from None


def _legacy_cache(past_key_values: Any, num_layers: int) -> PastKeyValues | None:
    """HF v4's legacy tuple cache from a tuple or a cache object (``to_legacy_cache()``); None when empty."""
    if past_key_values is None:
        return None
    if hasattr(past_key_values, "to_legacy_cache"):
        past_key_values = past_key_values.to_legacy_cache()
    # HF's legacy views may pad a layer with None (an empty cross-attention cache).
    past_key_values = tuple(tuple(t for t in layer if t is not None) for layer in past_key_values)
    if not past_key_values or not past_key_values[0]:
        return None
    if len(past_key_values) != num_layers:
        raise ValueError(f"past_key_values holds {len(past_key_values)} layers, the model has {num_layers}")
    return past_key_values


def _register_output_pytrees() -> None:
    """Register the output classes as torch pytrees (torch.export / torch.onnx.export with return_dict=True)."""
    for cls in (*OUTPUT_CLASSES.values(), BaseModelOutputWithPastAndCrossAttentions):
        if cls in pytree.SUPPORTED_NODES:
            continue
        pytree.register_pytree_node(
            cls,
            lambda out: (list(out.values()), list(out.keys())),
            lambda values, keys, cls=cls: cls(**dict(zip(keys, values, strict=True))),
            serialized_type_name=f"{cls.__module__}.{cls.__name__}",
            flatten_with_keys_fn=lambda out: (
                [(pytree.MappingKey(k), v) for k, v in out.items()],
                list(out.keys()),
            ),
        )


_register_output_pytrees()


class _Run(NamedTuple):
    """One call, from ``_backbone`` to ``_finish``: the backbone's outputs and the checked labels."""

    outputs: ModelOutput  # BaseModelOutputWithPoolingAndCrossAttentions
    labels: dict[str, torch.Tensor]
    num_choices: int | None  # multiple choice: choices per example


# The call arguments that the core checker sees (and the backbone takes, besides its flags).
_CHECKED_ARGS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "head_mask",
    "inputs_embeds",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "segment_ids",
)
# Per-token inputs of multiple choice: (batch, num_choices, seq, ...) -> (batch * num_choices, seq, ...).
_PER_CHOICE_ARGS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------
class XLMRobertaEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    Positions start after the padding index (``pad_token_id + 1``), as in fairseq's RoBERTa; with
    ``segment_ids`` they restart for every packed sequence.
    """

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        # `LayerNorm` is not snake-cased: the name is part of the checkpoint keys (HF kept TF's spelling).
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type
        self.padding_idx = config.pad_token_id

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values_length: int = 0,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if position_ids is None:
            if input_ids is not None:
                position_ids = create_position_ids_from_input_ids(
                    input_ids, self.padding_idx, past_key_values_length, segment_ids
                )
            else:
                position_ids = self.create_position_ids_from_inputs_embeds(
                    inputs_embeds, past_key_values_length, segment_ids
                )
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        if token_type_ids is None:
            token_type_ids = torch.zeros(
                inputs_embeds.shape[:-1], dtype=torch.long, device=inputs_embeds.device
            )
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.position_embedding_type == "absolute":
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))

    def create_position_ids_from_inputs_embeds(
        self,
        inputs_embeds: torch.Tensor,
        past_key_values_length: int = 0,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sequential positions from ``padding_idx + 1`` (padding cannot be seen in embeddings).

        With ``segment_ids`` they restart for every packed sequence; padding keeps ``padding_idx``.
        """
        if segment_ids is not None:
            no_padding = torch.full_like(segment_ids, self.padding_idx + 1)  # every token counts
            return create_position_ids_from_input_ids(no_padding, self.padding_idx, 0, segment_ids)
        batch, seq = inputs_embeds.shape[:2]
        start = self.padding_idx + 1 + past_key_values_length
        positions = torch.arange(start, start + seq, dtype=torch.long, device=inputs_embeds.device)
        return positions.unsqueeze(0).expand(batch, seq)


class XLMRobertaSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention (self- or cross-), with optional relative positions.

    Returns the context (batch, seq, hidden), the attention probabilities (batch, heads, seq, key_seq)
    when ``output_attentions`` (else None), and this call's keys/values for the cache.
    """

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_dim
        self.all_head_size = config.hidden_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        if self.position_embedding_type in ("relative_key", "relative_key_query"):
            self.max_position_embeddings = config.max_position_embeddings
            # One row per signed distance in [-(max_pos - 1), max_pos - 1].
            self.distance_embedding = nn.Embedding(
                2 * config.max_position_embeddings - 1, self.attention_head_size
            )

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        batch, q_len, _ = hidden_states.shape
        query = self._split_heads(self.query(hidden_states))  # (batch, heads, seq, head_dim)
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = past_key_value  # cross-attention: the encoder's keys/values never change
        else:
            source = encoder_hidden_states if encoder_hidden_states is not None else hidden_states
            key = self._split_heads(self.key(source))
            value = self._split_heads(self.value(source))
            if past_key_value is not None:
                key = torch.cat([past_key_value[0], key], dim=2)
                value = torch.cat([past_key_value[1], value], dim=2)
        relative = None
        if self.position_embedding_type != "absolute":
            relative = relative_position_scores(
                query,
                key,
                self.distance_embedding.weight,
                self.position_embedding_type,
                self.max_position_embeddings,
            )

        if not output_attentions and head_mask is None:
            # Fast path. SDPA scales q.k by 1/sqrt(head_dim); relative logits go in through the mask.
            bias = attention_mask
            if relative is not None:
                bias = relative / math.sqrt(self.attention_head_size)
                if attention_mask is not None:
                    bias = (bias + attention_mask).clamp(min=torch.finfo(bias.dtype).min)
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=bias, dropout_p=self.dropout.p if self.training else 0.0
            )
            probs = None
        else:
            scores = torch.matmul(query, key.transpose(-1, -2))  # (batch, heads, seq, key_seq)
            if relative is not None:
                scores = scores + relative
            # Softmax in float32: half-precision logits plus the mask must neither overflow nor round.
            scores = scores.float() / math.sqrt(self.attention_head_size)
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = self.dropout(torch.softmax(scores, dim=-1).to(query.dtype))
            if head_mask is not None:
                probs = probs * head_mask
            context = torch.matmul(probs, value)
        context = context.transpose(1, 2).reshape(batch, q_len, self.all_head_size)  # (batch, seq, hidden)
        return context, probs if output_attentions else None, (key, value)


class XLMRobertaSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and LayerNorm."""

    input_size_field = "hidden_size"  # the config field giving the dense layer's input width

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(getattr(config, self.input_size_field), config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class XLMRobertaAttention(nn.Module):
    """Self-attention (or cross-attention) followed by its output block."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None) -> None:
        super().__init__()
        self.self = XLMRobertaSelfAttention(config, position_embedding_type=position_embedding_type)
        self.output = XLMRobertaSelfOutput(config)

    def forward(
        self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """:class:`XLMRobertaSelfAttention` (``args``, ``kwargs``: its arguments after ``hidden_states``),
        then the output block: ``(output, probs or None, (key, value))``."""
        context, probs, present = self.self(hidden_states, *args, **kwargs)
        return self.output(context, hidden_states), probs, present


class XLMRobertaIntermediate(nn.Module):
    """Feed-forward expansion: hidden -> intermediate, then the activation."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class XLMRobertaOutput(XLMRobertaSelfOutput):
    """Feed-forward contraction: intermediate -> hidden, dropout, residual and LayerNorm (the
    self-output's layers, reading ``config.intermediate_size`` features)."""

    input_size_field = "intermediate_size"


class XLMRobertaLayer(nn.Module):
    """One transformer layer: self-attention, optional cross-attention (decoders), feed-forward."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.attention = XLMRobertaAttention(config)
        self.is_decoder = config.is_decoder
        self.add_cross_attention = config.add_cross_attention
        if self.add_cross_attention:
            if not self.is_decoder:
                raise ValueError("add_cross_attention=True needs is_decoder=True")
            # HF builds cross-attention with absolute positions whatever the config says.
            self.crossattention = XLMRobertaAttention(config, position_embedding_type="absolute")
        self.intermediate = XLMRobertaIntermediate(config)
        self.output = XLMRobertaOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_value: LayerCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, LayerCache]:
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden, self_probs, present = self.attention(
            hidden_states, attention_mask, head_mask, None, self_past, output_attentions
        )
        cross_probs = None
        if self.add_cross_attention and encoder_hidden_states is not None:
            cross_past = (
                past_key_value[2:4] if past_key_value is not None and len(past_key_value) == 4 else None
            )
            hidden, cross_probs, cross_present = self.crossattention(
                hidden,
                encoder_attention_mask,
                head_mask,
                encoder_hidden_states,
                cross_past,
                output_attentions,
            )
            present = present + cross_present
        layer_output = self.output(self.intermediate(hidden), hidden)
        return layer_output, self_probs, cross_probs, present


class XLMRobertaEncoder(nn.Module):
    """The stack of layers; collects hidden states, attentions and the cache as asked."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([XLMRobertaLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | list[None] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        checkpointing = self.gradient_checkpointing and self.training
        use_cache = use_cache and not checkpointing  # the cache is useless when training with checkpoints
        all_hidden = () if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and self.config.add_cross_attention else None
        cache = () if use_cache else None
        for i, layer in enumerate(self.layer):
            if output_hidden_states:
                all_hidden += (hidden_states,)
            args = (
                hidden_states,
                attention_mask,
                head_mask[i] if head_mask is not None else None,
                encoder_hidden_states,
                encoder_attention_mask,
                past_key_values[i] if past_key_values is not None else None,
                output_attentions,
            )
            if checkpointing:
                hidden_states, self_probs, cross_probs, present = torch.utils.checkpoint.checkpoint(
                    layer, *args, use_reentrant=False
                )
            else:
                hidden_states, self_probs, cross_probs, present = layer(*args)
            if use_cache:
                cache += (present,)
            if output_attentions:
                all_self += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=cache,
            hidden_states=all_hidden,
            attentions=all_self,
            cross_attentions=all_cross,
        )


class XLMRobertaPooler(nn.Module):
    """tanh(dense(first token)): (batch, seq, hidden) -> (batch, hidden).

    With ``segment_ids``: the first token of every packed sequence, in (batch, seq, hidden) slots
    (see :func:`sequence_first_tokens`); empty slots are zero.
    """

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.activation(self.dense(sequence_first_tokens(hidden_states, segment_ids)))
        return pooled if segment_ids is None else _filled_slots(pooled, segment_ids)


class XLMRobertaLMHead(nn.Module):
    """dense -> gelu -> layer_norm -> decoder (vocabulary logits).

    ``decoder.bias`` *is* ``bias`` (one Parameter), and with ``tie_word_embeddings`` the model ties
    ``decoder.weight`` to the word embeddings.
    """

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(features)))
        return self.decoder(x)  # (batch, seq, vocab)


class XLMRobertaClassificationHead(nn.Module):
    """Sentence classifier on the first token: dropout, dense, tanh, dropout, out_proj.

    (batch, seq, hidden) -> (batch, num_labels); with ``segment_ids`` one row per packed sequence in
    (batch, seq, num_labels) slots, empty slots zero.
    """

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(sequence_first_tokens(features, segment_ids))  # <s> tokens
        x = self.dropout(torch.tanh(self.dense(x)))
        logits = self.out_proj(x)
        return logits if segment_ids is None else _filled_slots(logits, segment_ids)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
class XLMRobertaPreTrainedModel(nn.Module):
    """Base of the XLM-RoBERTa models: config, HF's weight init, embeddings, saving and loading.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig` (an HF ``XLMRobertaConfig`` is converted).

    Example (every model on one tiny configuration):
        >>> import torch
        >>> import xlmr_torch
        >>> config = xlmr_torch.XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37, num_labels=2)
        >>> ids = torch.tensor([[0, 5, 6, 2]])
        >>> xlmr_torch.XLMRobertaForMaskedLM(config).num_parameters() > 0
        True
        >>> model = xlmr_torch.XLMRobertaModel(config).eval()
        >>> out = model(ids)
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((1, 4, 32), (1, 32))
        >>> packed = model(torch.tensor([[0, 5, 2, 0, 7, 8, 2, 1]]),
        ...     segment_ids=torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]]))
        >>> tuple(packed.pooler_output.shape)  # slots 0 and 1 hold the two sequences
        (1, 8, 32)
        >>> decoder = xlmr_torch.XLMRobertaForCausalLM(config.copy(is_decoder=True)).eval()
        >>> tuple(decoder(ids, labels=ids).logits.shape)
        (1, 4, 99)
        >>> tuple(xlmr_torch.XLMRobertaForMaskedLM(config).eval()(ids).logits.shape)
        (1, 4, 99)
        >>> classifier = xlmr_torch.XLMRobertaForSequenceClassification(config.copy()).eval()
        >>> tuple(classifier(ids, labels=torch.tensor([1])).logits.shape), classifier.config.problem_type
        ((1, 2), 'single_label_classification')
        >>> tuple(xlmr_torch.XLMRobertaForMultipleChoice(config).eval()(torch.tensor([[[0, 5, 2], [0, 6, 2]]])).logits.shape)
        (1, 2)
        >>> tuple(xlmr_torch.XLMRobertaForTokenClassification(config).eval()(ids).logits.shape)
        (1, 4, 2)
        >>> out = xlmr_torch.XLMRobertaForQuestionAnswering(config).eval()(ids)
        >>> tuple(out.start_logits.shape), tuple(out.end_logits.shape)
        ((1, 4), (1, 4))
    """

    config_class = XLMRobertaConfig
    base_model_prefix = "roberta"
    supports_gradient_checkpointing = True
    head: Head | None = None  # set by each concrete class

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        if not isinstance(config, XLMRobertaConfig):
            if not hasattr(config, "to_dict"):
                raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
            config = XLMRobertaConfig.from_dict(config.to_dict())
        self.config = config
        self.name_or_path = config.name_or_path  # HF's attribute (PEFT records it as the base model)

    # -- init and ties ------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        """HF's init: N(0, initializer_range) for Linear/Embedding, zero biases and padding rows, LN = (1, 0)."""
        std = self.config.initializer_range
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(mean=0.0, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(mean=0.0, std=std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, XLMRobertaLMHead):
                module.bias.zero_()

    def post_init(self) -> None:
        """Initialise every weight, then tie the LM decoder."""
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        """``lm_head.decoder.bias`` := ``lm_head.bias``; with ``tie_word_embeddings`` the decoder
        weight := the word embeddings (the same Parameter)."""
        lm_head = getattr(self, "lm_head", None)
        if lm_head is None:
            return
        lm_head.decoder.bias = lm_head.bias
        if self.config.tie_word_embeddings:
            lm_head.decoder.weight = self.get_input_embeddings().weight

    # -- embeddings -----------------------------------------------------------------------------
    @property
    def base_model(self) -> XLMRobertaModel:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear | None:
        lm_head = getattr(self, "lm_head", None)
        return lm_head.decoder if lm_head is not None else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None
    ) -> nn.Embedding:
        """Resize the vocabulary to ``new_num_tokens`` rows (rounded up to ``pad_to_multiple_of``).

        Old rows are kept; new rows are initialised as HF's ``_init_weights`` does (HF's
        ``mean_resizing=False``); the LM decoder (tied or not) and ``lm_head.bias`` follow, and
        ``config.vocab_size`` is updated.
        """
        old = self.get_input_embeddings()
        if new_num_tokens is not None and pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if new_num_tokens is None or new_num_tokens == old.num_embeddings:
            return old
        if not isinstance(new_num_tokens, int) or new_num_tokens <= 0:
            raise ValueError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
        pad = self.config.pad_token_id
        if pad is not None and pad >= new_num_tokens:
            raise ValueError(f"new_num_tokens={new_num_tokens} would drop pad_token_id={pad}")
        keep = min(old.num_embeddings, new_num_tokens)
        new = nn.Embedding(new_num_tokens, old.embedding_dim, padding_idx=old.padding_idx)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        self._init_weights(new)
        with torch.no_grad():
            new.weight[:keep] = old.weight[:keep]
        self.set_input_embeddings(new)
        lm_head = getattr(self, "lm_head", None)
        if lm_head is not None:
            old_bias = lm_head.bias
            lm_head.bias = nn.Parameter(old_bias.new_zeros(new_num_tokens))
            with torch.no_grad():
                lm_head.bias[:keep] = old_bias[:keep]
            old_decoder = lm_head.decoder
            decoder = nn.Linear(old_decoder.in_features, new_num_tokens)
            decoder.to(device=old_decoder.weight.device, dtype=old_decoder.weight.dtype)
            if not self.config.tie_word_embeddings:
                self._init_weights(decoder)
                with torch.no_grad():
                    decoder.weight[:keep] = old_decoder.weight[:keep]
            lm_head.decoder = decoder
        self.config.vocab_size = new_num_tokens
        self.tie_weights()
        return new

    # -- training utilities ---------------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer in the backward pass (``torch.utils.checkpoint``) to save memory."""
        self.base_model.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.encoder.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.base_model.encoder.gradient_checkpointing

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of (unique) parameters, optionally only trainable ones or without embedding tables."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(
            p.numel()
            for p in self.parameters()
            if (p.requires_grad or not only_trainable) and not (exclude_embeddings and id(p) in embeddings)
        )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str,
        *,
        torch_dtype: torch.dtype | str | None = None,
        **config_overrides: Any,
    ) -> XLMRobertaPreTrainedModel:
        """Load an HF-layout directory (config.json + any of the four weight files) or a Hub repo.

        ``pretrained_model_name_or_path`` is a local directory or a Hub repo id (``org/name``,
        ``org/name@revision``), fetched through huggingface_hub into its cache with HF's arguments
        ``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``subfolder`` and
        ``force_download`` (``HF_HUB_OFFLINE=1`` honoured): config.json and one weight format,
        ``model.safetensors`` first, then ``pytorch_model.bin``, then any other. The name is kept
        as ``model.name_or_path`` and ``config.name_or_path``.

        Missing head weights (a masked-LM checkpoint into a classifier) are initialised and logged.
        ``torch_dtype`` gives the model that dtype (a dtype, its name, or ``"auto"`` for
        ``config.torch_dtype``), each weight cast once as it is loaded. ``torch.bfloat16`` is the
        fast CPU path: the matrix multiplications run in bf16 while softmax and LayerNorm statistics
        stay float32 (torch's CPU attention and LayerNorm kernels accumulate in float32; the eager
        attention path casts the scores to float32). Other keyword arguments override config
        fields. Called on ``XLMRobertaPreTrainedModel`` itself, the class comes from
        ``config.architectures``.
        """
        if cls.head is None:
            config = XLMRobertaConfig.from_pretrained(
                pretrained_model_name_or_path, **_hub.hub_kwargs(config_overrides)
            )
            head = head_from_architectures(config.architectures)
            if head is None:
                raise ValueError(
                    f"{pretrained_model_name_or_path}: config.json names no XLM-RoBERTa architecture; "
                    "call from_pretrained on a concrete class such as XLMRobertaModel"
                )
            cls = _CLASSES[head.name]
        return loading.from_pretrained(
            cls, pretrained_model_name_or_path, torch_dtype=torch_dtype, **config_overrides
        )

    def save_pretrained(
        self, save_directory: str, safe_serialization: bool = True, format: str | None = None
    ) -> None:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin`` when
        ``safe_serialization=False``; ``format`` picks any of safetensors/pytorch/tf/flax)."""
        loading.save_pretrained(self, save_directory, safe_serialization=safe_serialization, format=format)

    def canonical_state_dict(self) -> dict[str, Any]:
        """The weights as ``{canonical key: numpy array}`` (tied aliases left out, copies)."""
        return loading.canonical_state_dict(self)

    def load_canonical_state_dict(self, state_dict: dict[str, Any]) -> XLMRobertaPreTrainedModel:
        """Copy a canonical numpy state dict in; its keys must be exactly the model's weights."""
        loading.load_canonical_state_dict(self, state_dict)
        return self

    # -- inference variants -----------------------------------------------------------------------
    def quantize_dynamic_int8(self) -> XLMRobertaPreTrainedModel:
        """A copy of this model for CPU inference with int8 ``nn.Linear`` layers.

        Dynamic quantization through ``torch.ao.quantization.quantize_dynamic``: the weights of
        every Linear layer (attention, feed-forward, pooler and heads, the LM decoder) are stored
        as int8 with one scale per output channel, activations are quantized per batch on the fly,
        and embeddings, LayerNorm and softmax stay float32. The copy is in eval mode and meant for
        inference only (it holds no float Linear weights to train or save); this model is untouched.

        Example:
            >>> import torch
            >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaModel
            >>> model = XLMRobertaModel(XLMRobertaConfig(vocab_size=99, hidden_size=32,
            ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)).eval()
            >>> int8 = model.quantize_dynamic_int8()
            >>> tuple(int8(torch.tensor([[0, 5, 6, 2]])).last_hidden_state.shape)
            (1, 4, 32)
        """
        model = copy.deepcopy(self).float().eval()
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True
        )

    # -- the one call path of the seven classes -------------------------------------------------
    def _check_inputs(
        self, inputs: Mapping[str, torch.Tensor | None], past_length: int, has_cache: bool
    ) -> InputShape:
        """:func:`xlmr.inputs.check_inputs` for this head.

        Inside a torch.compile graph the token-id range is asserted by the graph, and
        ``inputs["input_ids"]`` is replaced by the asserted ids.
        """
        shape = check_inputs(
            self.config,
            self.head,
            **{name: array_info(value) for name, value in inputs.items()},
            past_length=past_length,
            has_cache=has_cache,
        )
        if _compiling_graph() and inputs["input_ids"] is not None:
            inputs["input_ids"] = _assert_in_range(
                "input_ids", inputs["input_ids"], self.config.vocab_size, "vocab_size"
            )
        return shape

    def _labels(
        self, args: Mapping[str, Any], shape: InputShape, segment_ids: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The call's labels as tensors, checked (:func:`xlmr.losses.check_labels`) against its inputs."""
        head, config = self.head, self.config
        if head.loss is None:
            return {}
        spec = loss_spec(head)
        labels = {
            name: _as_tensor(args[name], name) for name in spec.label_args if args.get(name) is not None
        }
        if not labels:
            return {}
        infos = {name: array_info(value) for name, value in labels.items()}
        batch = shape.batch
        if shape.num_choices is not None and batch is not None:
            batch //= shape.num_choices  # labels are per example, not per choice
        check_labels(
            head, config, infos, batch=batch, seq=shape.seq, num_choices=shape.num_choices,
            segment_ids=None if segment_ids is None else array_info(segment_ids),
        )  # fmt: skip
        if _compiling_graph():  # values unknown now: the graph asserts the class ids itself
            kind = infos[spec.label_args[0]].kind
            classes = spec.kind != "sequence_classification" or (
                problem_type(config, kind, write_back=False) == "single_label_classification"
            )
            n = num_classes(spec, config, ()) if spec.class_axis else shape.num_choices  # spans: None
            if classes and n is not None:
                what = spec.class_axis or "num_choices"
                for name, value in labels.items():
                    labels[name] = _assert_in_range(name, value, n, what, ignore=IGNORE_INDEX)
        return labels

    def _backbone(self, args: Mapping[str, Any]) -> _Run:
        """Check one call (once, against this head's rules) and run the backbone on it.

        ``args`` are the forward's arguments (its ``locals()``): inputs, flags and labels. Inputs
        of multiple choice (batch, num_choices, seq) are checked, then flattened to
        (batch * num_choices, seq).
        """
        config, head = self.config, self.head
        inputs = {name: args.get(name) for name in _CHECKED_ARGS}
        past = _legacy_cache(args.get("past_key_values"), config.num_hidden_layers)
        past_length = past[0][0].shape[-2] if past is not None else 0
        shape = self._check_inputs(inputs, past_length, past is not None)
        labels = self._labels(args, shape, inputs["segment_ids"])
        num_choices = None
        if head.input_rank == 3:
            source = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
            num_choices = source.shape[1]
            for name in _PER_CHOICE_ARGS:
                if inputs[name] is not None:
                    inputs[name] = inputs[name].flatten(0, 1)
        use_cache = args.get("use_cache")
        use_cache = (
            config.is_decoder and not labels and (use_cache if use_cache is not None else config.use_cache)
        )

        def flag(name: str) -> bool:
            value = args.get(name)
            return bool(value if value is not None else getattr(config, name))

        outputs = self.base_model._encode(
            **inputs,
            past_key_values=past,
            use_cache=use_cache,
            output_attentions=flag("output_attentions"),
            output_hidden_states=flag("output_hidden_states"),
        )
        return _Run(outputs, labels, num_choices)

    def _finish(self, return_dict: bool | None, run: _Run, **predictions: torch.Tensor) -> Any:
        """The head's loss (when labels were given) and HF's output class (a tuple with ``return_dict=False``)."""
        head = self.head
        fields = {name: run.outputs.get(name) for name in head.outputs if name in run.outputs._fields}
        fields.update(predictions)
        if run.labels:
            prediction = tuple(predictions[name] for name in head.prediction)
            fields["loss"] = head_loss(
                head, self.config, prediction if len(prediction) > 1 else prediction[0], run.labels
            )
        out = OUTPUT_CLASSES[head.name](**fields)
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        return out if return_dict else out.to_tuple()


class XLMRobertaModel(XLMRobertaPreTrainedModel):
    """The bare XLM-RoBERTa encoder (a decoder when ``config.is_decoder``), with an optional pooler.

    Packed rows: with ``segment_ids`` (batch, seq) -- 0 for padding, 1..k for the k sequences
    packed into a row, in order -- every sequence runs as if alone: positions restart at
    ``pad_token_id + 1``, attention is block-diagonal, token types default to zeros and
    ``attention_mask`` may be left out (when given it is combined). ``last_hidden_state`` keeps the
    packed layout; ``pooler_output`` is (batch, seq, hidden) slots, slot ``[b, k - 1]`` holding
    sequence ``k`` of row ``b`` and empty slots zero. Decoders with a cache, cross-attention and
    relative positions refuse ``segment_ids``.

    Args:
        config: Model configuration.
        add_pooling_layer: Whether to build the pooler (tanh(dense(first token))).

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["base"]

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = XLMRobertaEmbeddings(self.config)
        self.encoder = XLMRobertaEncoder(self.config)
        self.pooler = XLMRobertaPooler(self.config) if add_pooling_layer else None
        self.post_init()

    def _head_mask(self, head_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(heads,) or (layers, heads) -> (layers, 1, heads, 1, 1), 1.0 keeping a head."""
        if head_mask is None:
            return None
        if head_mask.dim() == 1:
            head_mask = head_mask[None].expand(self.config.num_hidden_layers, -1)
        return head_mask[:, None, :, None, None].to(self.dtype)

    def _encode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        head_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None,
        past_key_values: PastKeyValues | None,
        use_cache: bool,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> ModelOutput:
        """The backbone on checked inputs: embeddings, masks, layers, pooler (all base outputs)."""
        past_length = past_key_values[0][0].shape[-2] if past_key_values is not None else 0
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_length,
            segment_ids=segment_ids,
        )  # (batch, seq, hidden)
        dtype, device = embedding_output.dtype, embedding_output.device
        seq = embedding_output.shape[1]
        keep = attention_keep_mask(attention_mask, segment_ids, seq, past_length, self.config.is_decoder)
        cross_keep = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            cross_keep = attention_keep_mask(encoder_attention_mask, None, seq, 0, False)
        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=additive_mask(keep.to(device), dtype) if keep is not None else None,
            head_mask=self._head_mask(head_mask),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=additive_mask(cross_keep, dtype) if cross_keep is not None else None,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        sequence_output = encoder_outputs.last_hidden_state
        return OUTPUT_CLASSES[self.head.name](
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output, segment_ids) if self.pooler is not None else None,
            hidden_states=encoder_outputs.hidden_states,
            past_key_values=encoder_outputs.past_key_values,
            attentions=encoder_outputs.attentions,
            cross_attentions=encoder_outputs.cross_attentions,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: PastKeyValues | Any | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Encode ``input_ids`` (batch, seq) or ``inputs_embeds`` (batch, seq, hidden).

        Returns ``BaseModelOutputWithPoolingAndCrossAttentions`` (a tuple when ``return_dict=False``).
        ``past_key_values`` is HF v4's legacy tuple (or any object with ``to_legacy_cache()``);
        ``segment_ids`` (batch, seq) packs several sequences per row (see the class docstring).
        """
        return self._finish(return_dict, self._backbone(locals()))


class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a language-modeling head for left-to-right (causal) LM; set ``is_decoder=True``.

    Args:
        config: Model configuration (``is_decoder=True``; ``add_cross_attention=True`` for a seq2seq decoder).

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["causal_lm"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        if not self.config.is_decoder:
            logger.warning("If you want to use XLMRobertaForCausalLM as a standalone, add `is_decoder=True`.")
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        self.lm_head = XLMRobertaLMHead(self.config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: PastKeyValues | Any | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits (batch, seq, vocab); with ``labels`` the next-token loss (labels shifted inside).

        ``segment_ids`` is refused (a ValueError): this head does not take packed rows.
        """
        run = self._backbone(locals())
        return self._finish(return_dict, run, logits=self.lm_head(run.outputs.last_hidden_state))


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with its masked-language-modeling head (the pre-training objective).

    Args:
        config: Model configuration.

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["masked_lm"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        self.lm_head = XLMRobertaLMHead(self.config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits (batch, seq, vocab); with ``labels`` (-100 = ignored) the masked-LM loss.

        With ``segment_ids`` the logits and ``labels`` keep the packed layout.
        """
        run = self._backbone(locals())
        return self._finish(return_dict, run, logits=self.lm_head(run.outputs.last_hidden_state))


class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a sentence classification / regression head on the first token.

    Args:
        config: Model configuration (``num_labels``; ``problem_type`` is inferred from the labels when None).

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["sequence_classification"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        self.classifier = XLMRobertaClassificationHead(self.config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits (batch, num_labels); with ``labels`` the loss of ``config.problem_type``.

        With ``segment_ids``: logits in (batch, seq, num_labels) slots, one per packed sequence
        (slot ``[b, k - 1]`` = sequence ``k``, empty slots zero), and single-label ``labels`` in the
        same (batch, seq) slots, -100 in the empty ones.
        """
        run = self._backbone(locals())
        logits = self.classifier(run.outputs.last_hidden_state, segment_ids)
        return self._finish(return_dict, run, logits=logits)


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa scoring each choice from the pooled output; inputs are (batch, num_choices, seq).

    Args:
        config: Model configuration.

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["multiple_choice"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = nn.Linear(self.config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits (batch, num_choices); with ``labels`` (batch,) the cross entropy over the choices.

        ``segment_ids`` is refused (a ValueError): this head does not take packed rows.
        """
        run = self._backbone(locals())
        logits = self.classifier(self.dropout(run.outputs.pooler_output)).view(-1, run.num_choices)
        return self._finish(return_dict, run, logits=logits)


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a per-token classifier (e.g. named-entity recognition).

    Args:
        config: Model configuration (``num_labels``, ``classifier_dropout``).

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["token_classification"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        dropout = self.config.classifier_dropout
        self.dropout = nn.Dropout(dropout if dropout is not None else self.config.hidden_dropout_prob)
        self.classifier = nn.Linear(self.config.hidden_size, self.config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Logits (batch, seq, num_labels); with ``labels`` (-100 = ignored) the token loss.

        With ``segment_ids`` the logits and ``labels`` keep the packed layout (-100 on padding).
        """
        run = self._backbone(locals())
        logits = self.classifier(self.dropout(run.outputs.last_hidden_state))
        return self._finish(return_dict, run, logits=logits)


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a span head (start / end logits) for extractive question answering.

    Args:
        config: Model configuration (``num_labels=2``: start and end).

    Example: see :class:`XLMRobertaPreTrainedModel`.
    """

    head = HEADS["question_answering"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=self.head.add_pooling_layer)
        self.qa_outputs = nn.Linear(self.config.hidden_size, self.config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> Any:
        """Start and end logits (batch, seq); with both positions the mean of the two span losses.

        With ``segment_ids`` the logits keep the packed layout (the span loss takes unpacked rows only).
        """
        if self.num_labels != 2:
            raise ValueError(
                f"XLMRobertaForQuestionAnswering needs config.num_labels == 2 (start, end), got {self.num_labels}"
            )
        run = self._backbone(locals())
        logits = self.qa_outputs(run.outputs.last_hidden_state)  # (batch, seq, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        return self._finish(return_dict, run, start_logits=start_logits, end_logits=end_logits)


# head name -> class (for XLMRobertaPreTrainedModel.from_pretrained and the tools).
_CLASSES: dict[str, type[XLMRobertaPreTrainedModel]] = {
    cls.head.name: cls
    for cls in (
        XLMRobertaModel,
        XLMRobertaForCausalLM,
        XLMRobertaForMaskedLM,
        XLMRobertaForSequenceClassification,
        XLMRobertaForMultipleChoice,
        XLMRobertaForTokenClassification,
        XLMRobertaForQuestionAnswering,
    )
}
