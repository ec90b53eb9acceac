"""XLM-RoBERTa in PyTorch: the backbone and its seven heads, with HF transformers v4's API.

Module attribute names follow HF's PyTorch classes, so ``model.named_parameters()`` yields the
canonical weight names of :mod:`xlmr.weights` unchanged (``roberta.encoder.layer.0...``).
Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` unless attention
weights are requested or a ``head_mask`` is given; then an eager path computes them.

Shapes use one notation: (batch, seq, hidden), (batch, heads, seq, head_dim).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from xlmr.config import XLMRobertaConfig
from xlmr.heads import HEADS, Head, head_from_architectures
from xlmr.outputs import OUTPUT_CLASSES, BaseModelOutputWithPastAndCrossAttentions

from . import loading
from .losses import compute_loss

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


def _compiling() -> bool:
    """True while torch.compile traces: data-dependent checks are skipped then."""
    return torch.compiler.is_compiling()


def create_position_ids_from_input_ids(
    input_ids: torch.Tensor, padding_idx: int, past_key_values_length: int = 0
) -> torch.Tensor:
    """Positions counted over non-padding tokens, starting at ``padding_idx + 1``; padding keeps ``padding_idx``.

    (batch, seq) -> (batch, seq). This is fairseq's ``make_positions``, as HF uses it.
    """
    mask = input_ids.ne(padding_idx).int()
    incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_key_values_length) * mask
    return incremental.long() + padding_idx


def _additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """{1 keep, 0 drop} -> {0, finfo(dtype).min}. Never -inf, so a fully masked row stays finite."""
    return (1.0 - keep.to(dtype)) * torch.finfo(dtype).min


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------
class XLMRobertaEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    Positions start after the padding index (``pad_token_id + 1``), as in fairseq's RoBERTa.
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
    ) -> torch.Tensor:
        if position_ids is None:
            if input_ids is not None:
                position_ids = create_position_ids_from_input_ids(
                    input_ids, self.padding_idx, past_key_values_length
                )
            else:
                position_ids = self.create_position_ids_from_inputs_embeds(
                    inputs_embeds, past_key_values_length
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
        self, inputs_embeds: torch.Tensor, past_key_values_length: int = 0
    ) -> torch.Tensor:
        """Sequential positions from ``padding_idx + 1`` (padding cannot be seen in embeddings)."""
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

    def _relative_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Relative-position logits (batch, heads, seq, key_seq); queries sit at the end of the keys."""
        q_len, k_len = query.shape[2], key.shape[2]
        device = query.device
        pos_q = torch.arange(k_len - q_len, k_len, dtype=torch.long, device=device).view(-1, 1)
        pos_k = torch.arange(k_len, dtype=torch.long, device=device).view(1, -1)
        table = self.distance_embedding(pos_q - pos_k + self.max_position_embeddings - 1).to(query.dtype)
        scores = torch.einsum("bhld,lrd->bhlr", query, table)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum("bhrd,lrd->bhlr", key, table)
        return scores

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
        relative = self.position_embedding_type != "absolute"

        if not output_attentions and head_mask is None:
            # Fast path. SDPA scales q.k by 1/sqrt(head_dim); relative logits go in through the mask.
            bias = attention_mask
            if relative:
                bias = self._relative_scores(query, key) / math.sqrt(self.attention_head_size)
                if attention_mask is not None:
                    bias = (bias + attention_mask).clamp(min=torch.finfo(bias.dtype).min)
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=bias, dropout_p=self.dropout.p if self.training else 0.0
            )
            probs = None
        else:
            scores = torch.matmul(query, key.transpose(-1, -2))  # (batch, heads, seq, key_seq)
            if relative:
                scores = scores + self._relative_scores(query, key)
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

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
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
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        context, probs, present = self.self(
            hidden_states, attention_mask, head_mask, encoder_hidden_states, past_key_value, output_attentions
        )
        return self.output(context, hidden_states), probs, present


class XLMRobertaIntermediate(nn.Module):
    """Feed-forward expansion: hidden -> intermediate, then the activation."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class XLMRobertaOutput(nn.Module):
    """Feed-forward contraction: intermediate -> hidden, dropout, residual and LayerNorm."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


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
        if self.is_decoder and encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but the model has no cross-attention layers; "
                    "build it with config.add_cross_attention=True"
                )
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
    """tanh(dense(first token)): (batch, seq, hidden) -> (batch, hidden)."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


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
    """Sentence classifier on the first token: dropout, dense, tanh, dropout, out_proj."""

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features[:, 0, :])  # <s> token, (batch, hidden)
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)  # (batch, num_labels)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
class XLMRobertaPreTrainedModel(nn.Module):
    """Base of the XLM-RoBERTa models: config, HF's weight init, embeddings, saving and loading.

    Args:
        config: An :class:`xlmr.XLMRobertaConfig` (an HF ``XLMRobertaConfig`` is converted).

    Example:
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForMaskedLM
        >>> model = XLMRobertaForMaskedLM(XLMRobertaConfig(vocab_size=99, hidden_size=32,
        ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=37))
        >>> model.num_parameters() > 0
        True
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
        **config_overrides,
    ) -> XLMRobertaPreTrainedModel:
        """Load an HF-layout directory (config.json + any of the four weight files).

        Missing head weights (a masked-LM checkpoint into a classifier) are initialised and logged.
        ``torch_dtype`` casts the model (a dtype, its name, or ``"auto"`` for ``config.torch_dtype``);
        other keyword arguments override config fields. Called on ``XLMRobertaPreTrainedModel``
        itself, the class comes from ``config.architectures``.
        """
        if cls.head is None:
            config = XLMRobertaConfig.from_pretrained(pretrained_model_name_or_path)
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

    # -- shared forward helpers -----------------------------------------------------------------
    def _finish(self, return_dict: bool | None, **fields: Any) -> Any:
        out = OUTPUT_CLASSES[self.head.name](**fields)
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        return out if return_dict else out.to_tuple()


class XLMRobertaModel(XLMRobertaPreTrainedModel):
    """The bare XLM-RoBERTa encoder (a decoder when ``config.is_decoder``), with an optional pooler.

    Args:
        config: Model configuration.
        add_pooling_layer: Whether to build the pooler (tanh(dense(first token))).

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaModel
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37)
        >>> model = XLMRobertaModel(config).eval()
        >>> out = model(torch.tensor([[0, 5, 6, 2]]))
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((1, 4, 32), (1, 32))
    """

    head = HEADS["base"]

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = XLMRobertaEmbeddings(self.config)
        self.encoder = XLMRobertaEncoder(self.config)
        self.pooler = XLMRobertaPooler(self.config) if add_pooling_layer else None
        self.post_init()

    # -- input checks (cheap; data-dependent ones are skipped under torch.compile) -------------------
    def _check_inputs(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        past_length: int,
    ) -> tuple[int, int]:
        config = self.config
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
            batch, seq = input_ids.shape
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
                raise ValueError(
                    f"inputs_embeds must be (batch, seq, hidden_size={config.hidden_size}), "
                    f"got shape {tuple(inputs_embeds.shape)}"
                )
            batch, seq = inputs_embeds.shape[:2]
        total = past_length + seq
        relative = config.position_embedding_type != "absolute"
        limit = config.max_position_embeddings if relative else config.max_sequence_length
        if total > limit and position_ids is None:
            what = "config.max_position_embeddings" if relative else "config.max_sequence_length"
            raise ValueError(
                f"sequence length {total}"
                + (f" ({past_length} cached + {seq} new)" if past_length else "")
                + f" exceeds {what}={limit}"
                + (
                    ""
                    if relative
                    else f" (max_position_embeddings={config.max_position_embeddings} minus "
                    f"pad_token_id + 1 = {config.pad_token_id + 1} offset positions)"
                )
            )
        if attention_mask is not None:
            ok = (attention_mask.dim() == 2 and tuple(attention_mask.shape) == (batch, total)) or (
                attention_mask.dim() == 3 and tuple(attention_mask.shape) == (batch, seq, total)
            )
            if not ok:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but the input is (batch, seq) = "
                    f"({batch}, {seq})"
                    + (f" with {past_length} cached positions" if past_length else "")
                    + f"; expected ({batch}, {total}) or ({batch}, {seq}, {total})"
                )
        for name, tensor in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
            if tensor is not None and tensor.shape[-1] != seq:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected ({batch}, {seq})")
        if _compiling():
            return batch, seq
        if input_ids is not None and input_ids.numel():
            low, high = torch.aminmax(input_ids)
            low, high = int(low), int(high)
            if low < 0 or high >= config.vocab_size:
                bad = high if high >= config.vocab_size else low
                raise ValueError(
                    f"input_ids holds token id {bad}, outside [0, vocab_size={config.vocab_size}) "
                    f"(largest id {high}, smallest {low})"
                )
        if token_type_ids is not None and token_type_ids.numel():
            low, high = (int(v) for v in torch.aminmax(token_type_ids))
            if low < 0 or high >= config.type_vocab_size:
                bad = high if high >= config.type_vocab_size else low
                raise ValueError(
                    f"token_type_ids holds {bad}, outside [0, type_vocab_size={config.type_vocab_size})"
                )
        if position_ids is not None and position_ids.numel() and not relative:
            low, high = (int(v) for v in torch.aminmax(position_ids))
            if low < 0 or high >= config.max_position_embeddings:
                bad = high if high >= config.max_position_embeddings else low
                raise ValueError(
                    f"position_ids holds {bad}, outside [0, max_position_embeddings={config.max_position_embeddings})"
                )
        return batch, seq

    def _self_attention_mask(
        self,
        attention_mask: torch.Tensor | None,
        batch: int,
        seq: int,
        past_length: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Additive mask (batch, 1, seq or 1, past + seq): padding, plus the causal mask for decoders."""
        total = past_length + seq
        if not self.config.is_decoder:
            if attention_mask is None:
                return None
            if attention_mask.dim() == 2:
                if not _compiling() and bool(attention_mask.all()):
                    return None  # nothing to mask: lets SDPA pick its fastest kernel
                return _additive_mask(attention_mask[:, None, None, :], dtype)  # (batch, 1, 1, total)
            return _additive_mask(attention_mask[:, None, :, :], dtype)  # (batch, 1, seq, total)
        # Decoder: position i (at past_length + i) sees keys 0..past_length + i.
        rows = torch.arange(past_length, total, device=device)[:, None]
        causal = (torch.arange(total, device=device)[None, :] <= rows).to(dtype)  # (seq, total)
        keep = causal[None, None]
        if attention_mask is not None:
            keep = keep * (
                attention_mask[:, None, None, :]
                if attention_mask.dim() == 2
                else attention_mask[:, None, :, :]
            ).to(dtype)
        return _additive_mask(keep, dtype)  # (batch or 1, 1, seq, total)

    def _head_mask(self, head_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(heads,) or (layers, heads) -> (layers, 1, heads, 1, 1), 1.0 keeping a head."""
        if head_mask is None:
            return None
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if head_mask.dim() == 1:
            head_mask = head_mask[None].expand(layers, -1)
        if tuple(head_mask.shape) != (layers, heads):
            raise ValueError(
                f"head_mask has shape {tuple(head_mask.shape)}; expected ({heads},) or ({layers}, {heads})"
            )
        return head_mask[:, None, :, None, None].to(self.dtype)

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
    ) -> Any:
        """Encode ``input_ids`` (batch, seq) or ``inputs_embeds`` (batch, seq, hidden).

        Returns ``BaseModelOutputWithPoolingAndCrossAttentions`` (a tuple when ``return_dict=False``).
        ``past_key_values`` is HF v4's legacy tuple (or any object with ``to_legacy_cache()``).
        """
        config = self.config
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        )
        use_cache = (use_cache if use_cache is not None else config.use_cache) if config.is_decoder else False
        if past_key_values is not None and hasattr(past_key_values, "to_legacy_cache"):
            past_key_values = past_key_values.to_legacy_cache()
        if past_key_values is not None:
            # HF's legacy views may pad a layer with None (an empty cross-attention cache).
            past_key_values = tuple(tuple(t for t in layer if t is not None) for layer in past_key_values)
            if not past_key_values or not past_key_values[0]:
                past_key_values = None
        if past_key_values is not None and len(past_key_values) != config.num_hidden_layers:
            raise ValueError(
                f"past_key_values holds {len(past_key_values)} layers, the model has {config.num_hidden_layers}"
            )
        past_length = past_key_values[0][0].shape[-2] if past_key_values is not None else 0

        batch, seq = self._check_inputs(
            input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids, past_length
        )
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_length,
        )  # (batch, seq, hidden)
        dtype, device = embedding_output.dtype, embedding_output.device
        extended_mask = self._self_attention_mask(attention_mask, batch, seq, past_length, dtype, device)

        encoder_extended_mask = None
        if config.is_decoder and encoder_hidden_states is not None and encoder_attention_mask is not None:
            if encoder_attention_mask.dim() == 2:
                encoder_extended_mask = _additive_mask(encoder_attention_mask[:, None, None, :], dtype)
            elif encoder_attention_mask.dim() == 3:
                encoder_extended_mask = _additive_mask(encoder_attention_mask[:, None, :, :], dtype)
            else:
                raise ValueError(
                    f"encoder_attention_mask must be 2-D or 3-D, got shape {tuple(encoder_attention_mask.shape)}"
                )

        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=extended_mask,
            head_mask=self._head_mask(head_mask),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        sequence_output = encoder_outputs.last_hidden_state
        return self._finish(
            return_dict,
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            hidden_states=encoder_outputs.hidden_states,
            past_key_values=encoder_outputs.past_key_values,
            attentions=encoder_outputs.attentions,
            cross_attentions=encoder_outputs.cross_attentions,
        )


class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a language-modeling head for left-to-right (causal) LM; set ``is_decoder=True``.

    Args:
        config: Model configuration (``is_decoder=True``; ``add_cross_attention=True`` for a seq2seq decoder).

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForCausalLM
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37, is_decoder=True)
        >>> model = XLMRobertaForCausalLM(config).eval()
        >>> ids = torch.tensor([[0, 5, 6, 7]])
        >>> out = model(ids, labels=ids)
        >>> tuple(out.logits.shape)
        (1, 4, 99)
    """

    head = HEADS["causal_lm"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        if not self.config.is_decoder:
            logger.warning("If you want to use XLMRobertaForCausalLM as a standalone, add `is_decoder=True`.")
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=False)
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
    ) -> Any:
        """Logits (batch, seq, vocab); with ``labels`` the next-token loss (labels shifted inside)."""
        if labels is not None:
            use_cache = False
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = compute_loss(self.head.loss, self.config, logits, labels) if labels is not None else None
        return self._finish(
            return_dict,
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with its masked-language-modeling head (the pre-training objective).

    Args:
        config: Model configuration.

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForMaskedLM
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37)
        >>> model = XLMRobertaForMaskedLM(config).eval()
        >>> tuple(model(torch.tensor([[0, 5, 6, 2]])).logits.shape)
        (1, 4, 99)
    """

    head = HEADS["masked_lm"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=False)
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
    ) -> Any:
        """Logits (batch, seq, vocab); with ``labels`` (-100 = ignored) the masked-LM loss."""
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = compute_loss(self.head.loss, self.config, logits, labels) if labels is not None else None
        return self._finish(
            return_dict,
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a sentence classification / regression head on the first token.

    Args:
        config: Model configuration (``num_labels``; ``problem_type`` is inferred from the labels when None).

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForSequenceClassification
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37, num_labels=3)
        >>> model = XLMRobertaForSequenceClassification(config).eval()
        >>> out = model(torch.tensor([[0, 5, 6, 2]]), labels=torch.tensor([1]))
        >>> tuple(out.logits.shape), config.problem_type
        ((1, 3), 'single_label_classification')
    """

    head = HEADS["sequence_classification"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=False)
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
    ) -> Any:
        """Logits (batch, num_labels); with ``labels`` the loss of ``config.problem_type``."""
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(outputs.last_hidden_state)
        loss = compute_loss(self.head.loss, self.config, logits, labels) if labels is not None else None
        return self._finish(
            return_dict,
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa scoring each choice from the pooled output; inputs are (batch, num_choices, seq).

    Args:
        config: Model configuration.

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForMultipleChoice
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37)
        >>> model = XLMRobertaForMultipleChoice(config).eval()
        >>> tuple(model(torch.tensor([[[0, 5, 2], [0, 6, 2]]])).logits.shape)
        (1, 2)
    """

    head = HEADS["multiple_choice"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.roberta = XLMRobertaModel(self.config)
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
    ) -> Any:
        """Logits (batch, num_choices); with ``labels`` (batch,) the cross entropy over the choices."""
        source = input_ids if input_ids is not None else inputs_embeds
        if source is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        expected_dim = 3 if input_ids is not None else 4
        if source.dim() != expected_dim:
            name = "input_ids" if input_ids is not None else "inputs_embeds"
            raise ValueError(
                f"{name} of a multiple-choice model must be (batch, num_choices, seq"
                + (", hidden)" if expected_dim == 4 else ")")
                + f", got shape {tuple(source.shape)}"
            )
        num_choices = source.shape[1]

        def flat(t: torch.Tensor | None, trailing: int = 1) -> torch.Tensor | None:
            # (batch, num_choices, seq, ...) -> (batch * num_choices, seq, ...)
            return t.reshape(-1, *t.shape[t.dim() - trailing :]) if t is not None else None

        mask_trailing = attention_mask.dim() - 2 if attention_mask is not None else 1
        outputs = self.roberta(
            flat(input_ids),
            attention_mask=flat(attention_mask, mask_trailing),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            head_mask=head_mask,
            inputs_embeds=flat(inputs_embeds, 2),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = compute_loss(self.head.loss, self.config, logits, labels) if labels is not None else None
        return self._finish(
            return_dict,
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a per-token classifier (e.g. named-entity recognition).

    Args:
        config: Model configuration (``num_labels``, ``classifier_dropout``).

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForTokenClassification
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37, num_labels=5)
        >>> model = XLMRobertaForTokenClassification(config).eval()
        >>> tuple(model(torch.tensor([[0, 5, 6, 2]])).logits.shape)
        (1, 4, 5)
    """

    head = HEADS["token_classification"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=False)
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
    ) -> Any:
        """Logits (batch, seq, num_labels); with ``labels`` (-100 = ignored) the token loss."""
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = compute_loss(self.head.loss, self.config, logits, labels) if labels is not None else None
        return self._finish(
            return_dict,
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a span head (start / end logits) for extractive question answering.

    Args:
        config: Model configuration (``num_labels=2``: start and end).

    Example:
        >>> import torch
        >>> from xlmr_torch import XLMRobertaConfig, XLMRobertaForQuestionAnswering
        >>> config = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=4, intermediate_size=37)
        >>> model = XLMRobertaForQuestionAnswering(config).eval()
        >>> out = model(torch.tensor([[0, 5, 6, 2]]))
        >>> tuple(out.start_logits.shape), tuple(out.end_logits.shape)
        ((1, 4), (1, 4))
    """

    head = HEADS["question_answering"]

    def __init__(self, config: XLMRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = self.config.num_labels
        self.roberta = XLMRobertaModel(self.config, add_pooling_layer=False)
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
    ) -> Any:
        """Start and end logits (batch, seq); with both positions the mean of the two span losses."""
        if self.num_labels != 2:
            raise ValueError(
                f"XLMRobertaForQuestionAnswering needs config.num_labels == 2 (start, end), got {self.num_labels}"
            )
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (batch, seq, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = compute_loss(
                self.head.loss, self.config, (start_logits, end_logits), start_positions, end_positions
            )
        return self._finish(
            return_dict,
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


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
