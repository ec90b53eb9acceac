"""The one input checker of the three backends: ranks, shapes, id ranges, the sequence-length rule.

Backends describe each call argument as an :class:`ArrayInfo` (shape, numpy dtype kind, and the
values when they are concrete) and call :func:`check_inputs`. Under tracing (``torch.compile``,
``tf.function``, ``jax.jit``) values are unknown (``values=None``) and unknown dimensions are
``None``: then only what is static is checked here, and each backend guards the rest in its
compiled path (see the module docstring of each backend's ``modeling.py``). One set of error texts serves
all three backends; ``tests/test_inputs.py`` runs the same bad inputs through each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import XLMRobertaConfig
from .heads import Head

Dim = int | None


@dataclass(frozen=True)
class ArrayInfo:
    """What the checker needs to know of one argument, without importing its framework.

    Attributes:
        shape: The shape; ``None`` for a dimension unknown until run time.
        kind: numpy dtype kind: ``"i"``/``"u"`` integers, ``"b"`` bool, ``"f"`` floats (``"V"``
            for bfloat16 and other extension floats), ``"O"`` anything else.
        values: The values as a numpy array when concrete (eager), else None (traced).
    """

    shape: tuple[Dim, ...]
    kind: str
    values: np.ndarray | None = None


@dataclass(frozen=True)
class InputShape:
    """What :func:`check_inputs` found, for the backend's forward.

    Attributes:
        batch: Rows the backbone runs (``batch * num_choices`` for multiple choice).
        seq: New tokens per row.
        past_length: Cached tokens before them (0 without a cache).
        num_choices: Choices per example (multiple choice), else None.
        num_sequences: Sequences in a packed batch (with ``segment_ids`` and concrete values).
    """

    batch: Dim
    seq: Dim
    past_length: Dim = 0
    num_choices: Dim = None
    num_sequences: Dim = None

    @property
    def total(self) -> Dim:
        """Keys each token can attend to: cached plus new."""
        if self.seq is None or self.past_length is None:
            return None
        return self.past_length + self.seq


def array_info(x: Any) -> ArrayInfo | None:
    """:class:`ArrayInfo` of a numpy array, a Python (nested) list or scalar; None for None."""
    if x is None:
        return None
    array = np.asarray(x)
    return ArrayInfo(tuple(array.shape), array.dtype.kind, array)


def max_sequence_length(config: XLMRobertaConfig) -> int:
    """The longest sequence the model can position: the one sequence-length rule.

    Absolute positions start at ``pad_token_id + 1``, so ``max_position_embeddings - pad_token_id
    - 1`` tokens fit. Relative position types have no such offset: the distance table covers
    ``max_position_embeddings`` tokens.
    """
    if config.position_embedding_type == "absolute":
        return config.max_sequence_length
    return config.max_position_embeddings


def _length_limit_text(config: XLMRobertaConfig) -> str:
    if config.position_embedding_type == "absolute":
        return (
            f"config.max_sequence_length={config.max_sequence_length} (max_position_embeddings="
            f"{config.max_position_embeddings} minus the pad_token_id + 1 = {config.pad_token_id + 1} "
            "offset positions)"
        )
    return f"config.max_position_embeddings={config.max_position_embeddings}"


def _shape_text(shape: tuple[Dim, ...]) -> str:
    return (
        "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _same(a: Dim, b: Dim) -> bool:
    return a is None or b is None or a == b


def _check_integer(name: str, info: ArrayInfo) -> None:
    if info.kind not in "iub":
        raise TypeError(f"{name} must hold integer ids, got a {_kind_name(info.kind)} array")


def _kind_name(kind: str) -> str:
    return {"f": "float", "V": "float", "c": "complex", "O": "non-numeric", "U": "string", "S": "bytes"}.get(
        kind, kind
    )


def _check_range(name: str, info: ArrayInfo, high: int, what: str, noun: str = "") -> None:
    """Values of ``info`` (when concrete) must lie in ``[0, high)``; the error names the first bad one."""
    values = info.values
    if values is None or not np.size(values):
        return
    values = np.asarray(values)
    low, top = int(values.min()), int(values.max())
    if low >= 0 and top < high:
        return
    bad = top if top >= high else low
    raise ValueError(
        f"{name} holds {noun}{bad}, outside [0, {what}={high})"
        + (f" (largest {top}, smallest {low})" if noun else "")
    )


#: The array arguments :func:`check_inputs` checks, in its order (a model call's inputs by name).
INPUT_NAMES = (
    "input_ids",
    "inputs_embeds",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "head_mask",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "segment_ids",
)


def check_inputs(
    config: XLMRobertaConfig,
    head: Head,
    *,
    input_ids: ArrayInfo | None = None,
    inputs_embeds: ArrayInfo | None = None,
    attention_mask: ArrayInfo | None = None,
    token_type_ids: ArrayInfo | None = None,
    position_ids: ArrayInfo | None = None,
    head_mask: ArrayInfo | None = None,
    encoder_hidden_states: ArrayInfo | None = None,
    encoder_attention_mask: ArrayInfo | None = None,
    segment_ids: ArrayInfo | None = None,
    past_length: Dim = 0,
    mask_length: Dim = None,
    has_cache: bool = False,
) -> InputShape:
    """Check one model call's inputs; return the batch geometry. Errors name the argument and values.

    Args:
        config: The model configuration.
        head: The head being called (its ``input_rank``, ``decodes``, ``packable``).
        input_ids / inputs_embeds: Exactly one of them.
        attention_mask: (batch, mask_length) or (batch, seq, mask_length).
        token_type_ids / position_ids / segment_ids: Shaped like the ids.
        head_mask: (heads,) or (layers, heads).
        encoder_hidden_states / encoder_attention_mask: Cross-attention inputs (decoders).
        past_length: Tokens already in the cache (None when traced).
        mask_length: The attention mask's key length when it is not ``past_length + seq`` (Flax's
            fixed-size cache: its capacity).
        has_cache: A cache was passed (``past_key_values``).
    """
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
    if input_ids is None and inputs_embeds is None:
        raise ValueError("You have to specify either input_ids or inputs_embeds")
    rank = head.input_rank
    layout = "(batch, num_choices, seq)" if rank == 3 else "(batch, seq)"
    if input_ids is not None:
        if len(input_ids.shape) != rank:
            raise ValueError(f"input_ids must have shape {layout}, got shape {_shape_text(input_ids.shape)}")
        _check_integer("input_ids", input_ids)
        shape = input_ids.shape
    else:
        want = layout[:-1] + f", hidden_size={config.hidden_size})"
        if len(inputs_embeds.shape) != rank + 1 or not _same(inputs_embeds.shape[-1], config.hidden_size):
            raise ValueError(
                f"inputs_embeds must have shape {want}, got shape {_shape_text(inputs_embeds.shape)}"
            )
        if inputs_embeds.kind not in "fV":
            raise TypeError(
                f"inputs_embeds must be a float array, got a {_kind_name(inputs_embeds.kind)} array"
            )
        shape = inputs_embeds.shape[:-1]
    num_choices = shape[1] if rank == 3 else None
    batch = shape[0] if rank == 2 else (None if None in shape[:2] else shape[0] * shape[1])
    seq = shape[-1]
    if seq == 0:
        raise ValueError(
            f"the inputs have an empty sequence axis (shape {_shape_text(shape)}); every row needs at least one token"
        )

    # -- decoding ----------------------------------------------------------------------------------
    if has_cache:
        if not config.is_decoder:
            raise ValueError("past_key_values need a decoder (config.is_decoder=True)")
        if not head.decodes:
            raise ValueError(f"the {head.name} head does not decode and takes no past_key_values")
    if segment_ids is not None:
        _check_segment_ids(config, head, segment_ids, shape, has_cache, encoder_hidden_states)

    # -- the one sequence-length rule ----------------------------------------------------------------
    total = None if seq is None or past_length is None else past_length + seq
    limit = max_sequence_length(config)
    if position_ids is None and segment_ids is None and total is not None and total > limit:
        raise ValueError(
            f"sequence length {total}"
            + (f" ({past_length} cached + {seq} new)" if past_length else "")
            + f" exceeds {_length_limit_text(config)}"
        )

    if input_ids is not None:
        _check_range("input_ids", input_ids, config.vocab_size, "vocab_size", noun="token id ")

    # -- masks and per-token ids -----------------------------------------------------------------------
    keys = mask_length if mask_length is not None else total
    if attention_mask is not None:
        m = attention_mask.shape
        ok2 = len(m) == rank and all(_same(a, b) for a, b in zip(m, (*shape[:-1], keys)))
        ok3 = rank == 2 and len(m) == 3 and all(_same(a, b) for a, b in zip(m, (shape[0], seq, keys)))
        if not (ok2 or ok3):
            expected = _shape_text((*shape[:-1], keys))
            if rank == 2:
                expected += f" or {_shape_text((shape[0], seq, keys))}"
            note = f" with {past_length} cached positions" if past_length else ""
            if mask_length is not None:
                note = f" (cached decoding: the mask covers all {mask_length} cache slots)"
            raise ValueError(
                f"attention_mask has shape {_shape_text(m)}, expected {expected} to match the inputs "
                f"{_shape_text(shape)}{note}"
            )
    for name, info in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
        if info is None:
            continue
        if len(info.shape) != len(shape) or not all(_same(a, b) for a, b in zip(info.shape, shape)):
            # position_ids may broadcast over the batch (1, seq), as in HF's Flax classes.
            broadcast = name == "position_ids" and len(info.shape) == len(shape) and info.shape[0] == 1
            if not (broadcast and _same(info.shape[-1], seq)):
                raise ValueError(
                    f"{name} has shape {_shape_text(info.shape)}, expected {_shape_text(shape)} like the inputs"
                )
        _check_integer(name, info)
    if token_type_ids is not None:
        _check_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
    if position_ids is not None and config.position_embedding_type == "absolute":
        _check_range("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings")
    if head_mask is not None:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        if tuple(head_mask.shape) not in ((heads,), (layers, heads)):
            raise ValueError(
                f"head_mask has shape {_shape_text(head_mask.shape)}, expected ({heads},) or ({layers}, {heads})"
            )

    # -- cross-attention ---------------------------------------------------------------------------
    if encoder_hidden_states is not None:
        if not (config.is_decoder and config.add_cross_attention):
            raise ValueError(
                "encoder_hidden_states were passed but the model has no cross-attention layers; "
                "build it with config.is_decoder=True and config.add_cross_attention=True"
            )
        e = encoder_hidden_states.shape
        if len(e) != 3 or not _same(e[0], batch) or not _same(e[2], config.hidden_size):
            raise ValueError(
                f"encoder_hidden_states has shape {_shape_text(e)}, expected "
                f"{_shape_text((batch, None, config.hidden_size))}"
            )
        if encoder_attention_mask is not None:
            m = encoder_attention_mask.shape
            ok = (len(m) == 2 and all(_same(a, b) for a, b in zip(m, e[:2]))) or (
                len(m) == 3 and all(_same(a, b) for a, b in zip(m, (e[0], seq, e[1])))
            )
            if not ok:
                raise ValueError(
                    f"encoder_attention_mask has shape {_shape_text(m)}, expected {_shape_text(e[:2])} "
                    f"or {_shape_text((e[0], seq, e[1]))}"
                )
    elif encoder_attention_mask is not None:
        raise ValueError("encoder_attention_mask was given without encoder_hidden_states")

    num_sequences = None
    if segment_ids is not None and segment_ids.values is not None:
        num_sequences = int(np.asarray(segment_ids.values).max(axis=-1, initial=0).sum())
    return InputShape(batch, seq, past_length, num_choices, num_sequences)


def _check_segment_ids(
    config: XLMRobertaConfig,
    head: Head,
    segment_ids: ArrayInfo,
    shape: tuple[Dim, ...],
    has_cache: bool,
    encoder_hidden_states: ArrayInfo | None,
) -> None:
    """Packed rows: 0 = padding, 1..k = the row's sequences in order, each short enough to position."""
    if not head.packable:
        raise ValueError(f"the {head.name} head does not take packed inputs (segment_ids)")
    if has_cache:
        raise ValueError("segment_ids cannot be combined with a cache (past_key_values)")
    if encoder_hidden_states is not None:
        raise ValueError("segment_ids cannot be combined with cross-attention (encoder_hidden_states)")
    if config.position_embedding_type != "absolute":
        raise ValueError(
            f"segment_ids need absolute position embeddings; this model uses "
            f"position_embedding_type={config.position_embedding_type!r}"
        )
    if len(segment_ids.shape) != len(shape) or not all(_same(a, b) for a, b in zip(segment_ids.shape, shape)):
        raise ValueError(
            f"segment_ids has shape {_shape_text(segment_ids.shape)}, expected {_shape_text(shape)} like input_ids"
        )
    _check_integer("segment_ids", segment_ids)
    values = segment_ids.values
    if values is None or not np.size(values):
        return
    seg = np.asarray(values).astype(np.int64)
    if seg.min() < 0:
        raise ValueError(f"segment_ids holds {int(seg.min())}; 0 marks padding and 1..k the packed sequences")
    # Within a row: sequences 1, 2, ..., k in order, then padding (0) only at the end.
    nonzero = seg > 0
    trailing_pad_ok = ~(np.diff(nonzero.astype(np.int8), axis=-1) > 0).any(axis=-1)
    steps = np.diff(seg, axis=-1)
    inside = nonzero[:, 1:]
    ascending = ~((inside & ((steps < 0) | (steps > 1))).any(axis=-1))
    starts_at_one = (seg[:, 0] == 1) | (seg[:, 0] == 0) & ~nonzero.any(axis=-1)
    bad_rows = np.flatnonzero(~(trailing_pad_ok & ascending & starts_at_one))
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ValueError(
            f"segment_ids row {row} is {seg[row].tolist()[:32]}{'...' if seg.shape[-1] > 32 else ''}: "
            "each row must number its sequences 1, 2, ..., k in order (ascending by steps of 1), "
            "followed only by padding (0)"
        )
    # Every packed sequence must fit the position table on its own.
    limit = max_sequence_length(config)
    flat = seg.reshape(-1, seg.shape[-1])
    rows = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    ids = flat.reshape(-1)
    keep = ids > 0
    if keep.any():
        pairs = rows[keep] * (int(ids.max()) + 1) + ids[keep]
        counts = np.bincount(pairs)
        longest = int(counts.max())
        if longest > limit:
            where = int(np.argmax(counts))
            raise ValueError(
                f"segment_ids row {where // (int(ids.max()) + 1)} packs sequence {where % (int(ids.max()) + 1)} "
                f"of {longest} tokens, longer than max_position_embeddings - padding_idx - 1 = {limit}"
            )
