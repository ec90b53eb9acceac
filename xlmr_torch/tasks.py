"""The forwards the task pipelines (:mod:`xlmr.pipelines`) run: numpy in, numpy out.

Only the forward lives here; pre- and post-processing are framework-neutral, in ``xlmr/``.
Inputs are ``input_ids`` with ``attention_mask`` (padded rows) or ``segment_ids`` (packed rows).
PyTorch runs eagerly under ``torch.inference_mode``, so batches may take any shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from xlmr.pipelines._fill_mask import last_layer_prunable

# Whether batches should come in a few fixed shapes (compiled backends) or any shape.
STATIC_SHAPES = False

Inputs = Mapping[str, np.ndarray]


def prepare(model: Any) -> Any:
    """The model in inference mode (dropout off)."""
    return model.eval()


def accepts_segment_ids(model: Any) -> bool:
    """Whether the model's forward takes packed rows (``segment_ids``)."""
    return "segment_ids" in inspect.signature(model.forward).parameters


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _feed(model: Any, inputs: Inputs) -> dict[str, torch.Tensor]:
    device = _device(model)
    return {k: torch.from_numpy(np.asarray(v, np.int64)).to(device) for k, v in inputs.items()}


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def head_forward(model: Any, fields: Sequence[str]) -> Callable[[Inputs], dict[str, np.ndarray]]:
    """``inputs -> {field: array}``: the head's output ``fields`` (``logits``, ``start_logits``...)."""

    def run(inputs: Inputs) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = model(**_feed(model, inputs), return_dict=True)
        return {name: _numpy(out[name]) for name in fields}

    return run


def _backbone(model: Any) -> Any:
    """The bare backbone of a head model (the model itself for the base model)."""
    return getattr(model, model.head.prefix) if model.head.prefix else model


def backbone_forward(model: Any) -> Callable[[Inputs], np.ndarray]:
    """``inputs -> last_hidden_state`` (batch, seq, hidden) of the model's backbone (any head)."""
    backbone = _backbone(model)

    def run(inputs: Inputs) -> np.ndarray:
        with torch.inference_mode():
            out = backbone(**_feed(model, inputs), return_dict=True)
        return _numpy(out.last_hidden_state)

    return run


class _FusedLayers:
    """The encoder layers through PyTorch's fused inference kernel, ``torch._transformer_encoder_layer_fwd``.

    It is the kernel behind ``nn.TransformerEncoderLayer``'s inference fast path (and HF Optimum's
    BetterTransformer for RoBERTa): the whole post-LayerNorm layer -- fused query/key/value
    projection, attention, output projection, residual + LayerNorm, exact-GELU feed-forward,
    residual + LayerNorm -- in one native call, the same arithmetic as the layer's modules
    (outputs within float32 rounding of them) with far less dispatch between operations. Used
    for rows without a mask (one unpadded sequence), in float32, when every layer is made of the
    plain modules (no adapter, quantized or hooked module); anything else runs the layers as
    modules. The fused query/key/value weights are concatenated once and rebuilt when a weight
    changes (in-place updates bump its version).
    """

    def __init__(self, backbone: Any) -> None:
        self.backbone = backbone
        self._key: tuple | None = None
        self._args: list[tuple] = []

    def _modules(self, layer: Any) -> tuple[Any, ...]:
        a, o = layer.attention.self, layer.attention.output
        return (a.query, a.key, a.value, o.dense, o.LayerNorm, layer.intermediate.dense,
                layer.output.dense, layer.output.LayerNorm)  # fmt: skip

    def usable(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> bool:
        config = self.backbone.config
        if (
            mask is not None
            or hidden.dtype != torch.float32
            or self.backbone.training
            or torch.is_grad_enabled()
            or config.hidden_act != "gelu"
            or not hasattr(torch, "_transformer_encoder_layer_fwd")
            or torch.nn.modules.module._global_forward_hooks
            or torch.nn.modules.module._global_forward_pre_hooks
        ):
            return False
        for layer in self.backbone.encoder.layer:
            if (
                layer.attention.self.all_head_size != config.hidden_size
                or layer.attention.output.LayerNorm.eps != layer.output.LayerNorm.eps
            ):
                return False
            for module in self._modules(layer):
                kind = type(module)
                if (
                    kind not in (torch.nn.Linear, torch.nn.LayerNorm)
                    or module._forward_hooks
                    or module._forward_pre_hooks
                ):
                    return False
                if module.weight is None or module.bias is None:
                    return False
        return True

    def _arguments(self) -> list[tuple]:
        layers = self.backbone.encoder.layer
        tensors = [t for layer in layers for m in self._modules(layer) for t in (m.weight, m.bias)]
        key = tuple((id(t), t.data_ptr(), _version(t)) for t in tensors)
        if key != self._key:
            args = []
            for layer in layers:
                a, o = layer.attention.self, layer.attention.output
                qkv_weight = torch.cat([a.query.weight, a.key.weight, a.value.weight])
                qkv_bias = torch.cat([a.query.bias, a.key.bias, a.value.bias])
                out, ffn = layer.output, layer.intermediate
                args.append((
                    qkv_weight, qkv_bias, o.dense.weight, o.dense.bias, o.LayerNorm.eps,
                    o.LayerNorm.weight, o.LayerNorm.bias, out.LayerNorm.weight, out.LayerNorm.bias,
                    ffn.dense.weight, ffn.dense.bias, out.dense.weight, out.dense.bias, out.LayerNorm.eps,
                ))  # fmt: skip
            self._key, self._args = key, args
        return self._args

    def run(self, hidden: torch.Tensor, count: int) -> torch.Tensor:
        """The first ``count`` layers on ``hidden`` (batch, seq, hidden), no mask."""
        config = self.backbone.config
        for args in self._arguments()[:count]:
            (qkv_w, qkv_b, proj_w, proj_b, eps1, ln1_w, ln1_b, ln2_w, ln2_b,
             ffn1_w, ffn1_b, ffn2_w, ffn2_b, eps2) = args  # fmt: skip
            hidden = torch._transformer_encoder_layer_fwd(
                hidden, config.hidden_size, config.num_attention_heads, qkv_w, qkv_b, proj_w, proj_b,
                True, False, eps1, ln1_w, ln1_b, ln2_w, ln2_b, ffn1_w, ffn1_b, ffn2_w, ffn2_b, None, None,
            )  # fmt: skip
        return hidden


def _version(tensor: torch.Tensor) -> object:
    """The tensor's in-place version counter (a fresh object, never equal, for inference tensors: none)."""
    try:
        return tensor._version
    except RuntimeError:
        return object()


def _hidden_at(
    backbone: Any, fused: _FusedLayers, feed: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """The last layer's output at tokens ``[rows[i], cols[i]]`` only, (n, hidden).

    Every layer but the last runs on the whole batch (its keys and values are needed), through
    :class:`_FusedLayers` where it applies. The last layer computes keys and values for every
    token of the rows it reads and everything else -- the query, attention, output projection and
    feed-forward -- at the picked tokens only: the rest of its output is never read by the
    masked-LM head.
    """
    from .modeling import additive_mask, attention_keep_mask

    input_ids = feed["input_ids"]
    segment_ids = feed.get("segment_ids")
    hidden = backbone.embeddings(input_ids=input_ids, segment_ids=segment_ids)  # (batch, seq, hidden)
    seq = hidden.shape[1]
    keep = attention_keep_mask(feed.get("attention_mask"), segment_ids, seq, 0, False)
    mask = additive_mask(keep, hidden.dtype) if keep is not None else None
    layers = backbone.encoder.layer
    if fused.usable(hidden, mask):
        hidden = fused.run(hidden, len(layers) - 1)
    else:
        for layer in layers[:-1]:
            hidden = layer(hidden, mask)[0]
    last = layers[-1]
    attention = last.attention.self
    picked = hidden[rows, cols]  # (n, hidden)
    n = picked.shape[0]
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(picked).view(n, heads, 1, head_dim)
    used, where = torch.unique(rows, return_inverse=True)  # the batch rows read, each once
    source = hidden[used]
    key = attention._split_heads(attention.key(source))[where]  # (n, heads, seq, head_dim)
    value = attention._split_heads(attention.value(source))[where]
    if mask is not None:  # (batch or 1, 1, seq or 1, seq) -> each picked query's row of it
        mask = mask[
            rows if mask.shape[0] > 1 else torch.zeros_like(rows),
            :,
            cols if mask.shape[2] > 1 else torch.zeros_like(cols),
        ][:, :, None]  # (n, 1, 1, seq)
    context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    attended = last.attention.output(context.reshape(n, attention.all_head_size), picked)
    return last.output(last.intermediate(attended), attended)  # (n, hidden)


def masked_lm_forward(model: Any) -> Callable[[Inputs, np.ndarray, np.ndarray], np.ndarray]:
    """``(inputs, rows, cols) -> logits`` (n, vocab) of the masked-LM head at tokens ``[rows[i], cols[i]]``.

    The backbone runs on the whole batch but its last layer only at the picked tokens (where the
    model allows, see :func:`_hidden_at`); the LM head (the vocabulary projection, most of the
    cost of a masked-LM forward) runs on the picked hidden states alone.
    """
    backbone = _backbone(model)
    prune = last_layer_prunable(model.config)
    fused = _FusedLayers(backbone)

    def run(inputs: Inputs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        device = _device(model)
        feed = _feed(model, inputs)
        rows_t, cols_t = torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
        with torch.inference_mode():
            if prune:
                picked = _hidden_at(backbone, fused, feed, rows_t, cols_t)
            else:
                hidden = backbone(**feed, return_dict=True).last_hidden_state
                picked = hidden[rows_t, cols_t]  # (n, hidden)
            return _numpy(model.lm_head(picked))  # (n, vocab)

    return run
