"""The packing planner: sequences of token ids -> packed rows under a token budget, and back.

Framework-neutral (numpy only); every backend runs the rows through ``segment_ids``.

How rows are made (:func:`pack_sequences`):

- Sequences longer than ``max_length`` (the model's :func:`xlmr.inputs.max_sequence_length`) are
  refused (``overflow="error"``) or truncated (``overflow="truncate"``: the first
  ``max_length - 1`` tokens and the last one, so a final ``</s>`` survives) -- never wrapped into
  positions that do not exist.
- All rows of a call have one length, the smallest of the ``row_lengths`` buckets (powers of two
  from 16, plus ``max_length`` itself) that holds the longest sequence.
- Sequences go into rows by **first fit decreasing**: longest first, each into the first row with
  room (a max segment tree finds it in O(log rows)).
- Rows are grouped into batches of ``max_batch_tokens // row_length`` rows (the token budget,
  16384 by default like text-embeddings-inference); the last batch's row count is rounded up to
  a power of two with empty rows.

So one call produces at most two batch shapes (full batches and the last one), and all calls
together at most :func:`max_shapes` -- what XLA (TF, JAX) compiles: 51 with the defaults (six
row lengths 16..512, each with its full row count and the powers of two below it), in practice
a handful.

:func:`pad_sequences` is the same budget for what cannot be packed (multiple choice, decoders):
length-sorted padded batches whose length and row count come from the same buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_BATCH_TOKENS = 16384
_MIN_ROW = 16


def row_length_buckets(max_length: int) -> tuple[int, ...]:
    """Row lengths a plan may use: powers of two from 16 below ``max_length``, then ``max_length``."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    buckets, length = [], _MIN_ROW
    while length < max_length:
        buckets.append(length)
        length *= 2
    buckets.append(max_length)
    return tuple(buckets)


def _bucket(value: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if b >= value:
            return b
    return buckets[-1]


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def max_shapes(max_length: int, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> int:
    """Upper bound on distinct (rows, row_length) shapes :func:`pack_sequences` can ever produce."""
    total = 0
    for length in row_length_buckets(max_length):
        rows = max(1, max_batch_tokens // length)
        total += int(rows).bit_length() + (0 if rows & (rows - 1) == 0 else 1)
    return total


@dataclass
class PackedBatch:
    """One batch of packed rows and where each of its sequences went.

    Attributes:
        input_ids: (rows, row_length) token ids; padding is ``pad_token_id``.
        segment_ids: (rows, row_length): 0 padding, 1..k the sequences of the row in order.
        index: (n,) position of each sequence of this batch in the caller's input list.
        row / slot / start / length: (n,) row of each sequence, its number in the row minus one
            (its slot in per-sequence outputs), first token and token count.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    index: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    start: np.ndarray
    length: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)  # type: ignore[return-value]

    @property
    def num_tokens(self) -> int:
        return int(self.length.sum())

    @property
    def attention_mask(self) -> np.ndarray:
        """1 for real tokens, 0 for padding (what ``segment_ids > 0`` says)."""
        return (self.segment_ids > 0).astype(self.input_ids.dtype)

    def tokens(self, output: np.ndarray) -> list[np.ndarray]:
        """Per-token output (rows, row_length, ...) -> one (length, ...) array per sequence, batch order."""
        output = np.asarray(output)
        return [output[r, s : s + n] for r, s, n in zip(self.row, self.start, self.length)]

    def sequences(self, output: np.ndarray) -> np.ndarray:
        """Per-sequence output in slots (rows, row_length, ...) -> (n, ...) in batch order."""
        return np.asarray(output)[self.row, self.slot]

    def pooled(self, output: np.ndarray, reduce: str = "mean") -> np.ndarray:
        """Mean / max / sum of each sequence's tokens of a per-token output -> (n, ...)."""
        output = np.asarray(output)
        rows = []
        for r, s, n in zip(self.row, self.start, self.length):
            part = output[r, s : s + n]
            rows.append(getattr(part, reduce)(axis=0))
        return np.stack(rows) if rows else np.zeros((0, *output.shape[2:]), output.dtype)


@dataclass
class PaddedBatch:
    """One length-sorted padded batch: ``input_ids``/``attention_mask`` (rows, length); ``index``
    maps row i (for i < n) to its position in the caller's list; rows past n are empty."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    index: np.ndarray
    length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)  # type: ignore[return-value]


def _as_lists(sequences: Iterable[Sequence[int]]) -> list[np.ndarray]:
    out = []
    for i, seq in enumerate(sequences):
        array = np.asarray(seq)
        if array.ndim != 1:
            raise ValueError(f"sequence {i} must be a flat list of token ids, got shape {array.shape}")
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"sequence {i} must hold integer token ids, got dtype {array.dtype}")
        if array.size == 0:
            raise ValueError(f"sequence {i} is empty; every sequence needs at least one token")
        out.append(array.astype(np.int64, copy=False))
    return out


def _fit_lengths(seqs: list[np.ndarray], max_length: int, overflow: str) -> list[np.ndarray]:
    if overflow not in ("error", "truncate"):
        raise ValueError(f"overflow must be 'error' or 'truncate', got {overflow!r}")
    out = []
    for i, s in enumerate(seqs):
        if len(s) > max_length:
            if overflow == "error":
                raise ValueError(
                    f"sequence {i} has {len(s)} tokens, more than max_length={max_length} "
                    "(the model's positions); truncate it or pass overflow='truncate'"
                )
            s = np.concatenate([s[: max_length - 1], s[-1:]])
        out.append(s)
    return out


class _FirstFit:
    """Rows of equal capacity; :meth:`place` puts a length into the first row with room."""

    def __init__(self, capacity: int, max_rows: int) -> None:
        self.capacity = capacity
        self.size = 1
        while self.size < max(1, max_rows):
            self.size *= 2
        self.tree = np.full(2 * self.size, capacity, np.int64)  # max free space per subtree
        self.rows = 0

    def place(self, length: int) -> int:
        node = 1
        if self.tree[1] < length:
            raise AssertionError("no row can hold the sequence")  # capacity >= every length
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= length else 2 * node + 1
        row = node - self.size
        self.tree[node] -= length
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2
        self.rows = max(self.rows, row + 1)
        return row


def pack_sequences(
    sequences: Iterable[Sequence[int]],
    *,
    max_length: int,
    pad_token_id: int = 1,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    overflow: str = "error",
    row_lengths: Sequence[int] | None = None,
) -> list[PackedBatch]:
    """Pack token-id sequences into batches of rows (see the module docstring).

    Args:
        sequences: Token-id lists (each already with its special tokens).
        max_length: Longest sequence the model positions (``xlmr.inputs.max_sequence_length``).
        pad_token_id: Id that fills the rows' padding.
        max_batch_tokens: Token budget of one batch (rows x row length).
        overflow: ``"error"`` or ``"truncate"`` for sequences longer than ``max_length``.
        row_lengths: Row-length buckets (default :func:`row_length_buckets`).

    Returns:
        Batches in order; each sequence sits in exactly one batch (``batch.index``).
    """
    seqs = _fit_lengths(_as_lists(sequences), max_length, overflow)
    if not seqs:
        return []
    buckets = tuple(sorted(row_lengths)) if row_lengths else row_length_buckets(max_length)
    lengths = np.array([len(s) for s in seqs])
    row_length = _bucket(int(lengths.max()), buckets)
    if row_length < lengths.max():
        raise ValueError(f"no row length in {buckets} holds a sequence of {int(lengths.max())} tokens")
    rows_per_batch = max(1, max_batch_tokens // row_length)

    order = np.argsort(-lengths, kind="stable")
    fit = _FirstFit(row_length, len(seqs))
    placed_row = np.empty(len(seqs), np.int64)
    for i in order:
        placed_row[i] = fit.place(int(lengths[i]))
    num_rows = fit.rows

    # Within a row, sequences keep their input order (stable and readable).
    by_row = np.lexsort((np.arange(len(seqs)), placed_row))
    row_fill = np.zeros(num_rows, np.int64)
    row_count = np.zeros(num_rows, np.int64)
    start = np.empty(len(seqs), np.int64)
    slot = np.empty(len(seqs), np.int64)
    for i in by_row:
        r = placed_row[i]
        start[i], slot[i] = row_fill[r], row_count[r]
        row_fill[r] += lengths[i]
        row_count[r] += 1

    batches = []
    for first in range(0, num_rows, rows_per_batch):
        last = min(first + rows_per_batch, num_rows)
        n_rows = last - first if last - first == rows_per_batch else _pow2_at_least(last - first)
        n_rows = min(n_rows, rows_per_batch)
        ids = np.full((n_rows, row_length), pad_token_id, np.int64)
        seg = np.zeros((n_rows, row_length), np.int64)
        members = by_row[(placed_row[by_row] >= first) & (placed_row[by_row] < last)]
        for i in members:
            r, s, n = placed_row[i] - first, start[i], lengths[i]
            ids[r, s : s + n] = seqs[i]
            seg[r, s : s + n] = slot[i] + 1
        batches.append(
            PackedBatch(
                input_ids=ids,
                segment_ids=seg,
                index=members.astype(np.int64),
                row=(placed_row[members] - first).astype(np.int64),
                slot=slot[members],
                start=start[members],
                length=lengths[members].astype(np.int64),
            )
        )
    return batches


def pad_sequences(
    sequences: Iterable[Sequence[int]],
    *,
    max_length: int,
    pad_token_id: int = 1,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    overflow: str = "error",
    row_lengths: Sequence[int] | None = None,
    max_rows: int | None = None,
) -> list[PaddedBatch]:
    """Length-sorted padded batches under the same token budget (for what cannot be packed).

    Sequences are sorted longest first; each batch is padded to the bucket of its longest
    sequence and holds at most ``max_batch_tokens // length`` rows (and ``max_rows``, e.g. a
    caller's ``batch_size``); a short last batch's row count is rounded up to a power of two.
    """
    seqs = _fit_lengths(_as_lists(sequences), max_length, overflow)
    if not seqs:
        return []
    buckets = tuple(sorted(row_lengths)) if row_lengths else row_length_buckets(max_length)
    lengths = np.array([len(s) for s in seqs])
    order = np.argsort(-lengths, kind="stable")
    batches = []
    i = 0
    while i < len(order):
        length = _bucket(int(lengths[order[i]]), buckets)
        cap = max(1, max_batch_tokens // length)
        if max_rows is not None:
            cap = min(cap, max_rows)
        members = order[i : i + cap]
        i += len(members)
        n_rows = len(members) if len(members) == cap else min(cap, _pow2_at_least(len(members)))
        ids = np.full((n_rows, length), pad_token_id, np.int64)
        mask = np.zeros((n_rows, length), np.int64)
        for r, j in enumerate(members):
            ids[r, : lengths[j]] = seqs[j]
            mask[r, : lengths[j]] = 1
        batches.append(PaddedBatch(ids, mask, members.astype(np.int64), lengths[members].astype(np.int64)))
    return batches


def restore_order(batches: Sequence[PackedBatch | PaddedBatch], per_batch: Sequence[Sequence]) -> list:
    """Per-batch results (one item per sequence of each batch, in batch order) -> input order."""
    total = sum(len(b.index) for b in batches)
    out: list = [None] * total
    for batch, results in zip(batches, per_batch, strict=True):
        if len(results) != len(batch.index):
            raise ValueError(f"a batch of {len(batch.index)} sequences got {len(results)} results")
        for i, result in zip(batch.index, results):
            out[int(i)] = result
    return out
