"""The packing planner (xlmr._packing): every token placed once, order restored, budget kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlmr._packing import (
    max_shapes,
    pack_sequences,
    pad_sequences,
    restore_order,
    row_length_buckets,
)

lengths_strategy = st.lists(st.integers(min_value=1, max_value=70), min_size=0, max_size=120)


def _sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    # Distinct token values per sequence so that misplacement is visible.
    return [rng.integers(3, 1000, size=n) for n in lengths]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(lengths=lengths_strategy, budget=st.sampled_from([64, 100, 256, 1024]))
def test_pack_places_every_token_once_within_budget(lengths, budget):
    seqs = _sequences(lengths)
    batches = pack_sequences(
        seqs, max_length=64, max_batch_tokens=budget, overflow="truncate", pad_token_id=1
    )
    fitted = [s if len(s) <= 64 else np.concatenate([s[:63], s[-1:]]) for s in seqs]
    seen = np.zeros(len(seqs), int)
    buckets = row_length_buckets(64)
    for b in batches:
        rows, row_len = b.shape
        assert row_len in buckets
        assert rows * row_len <= max(budget, row_len), "token budget"
        assert b.segment_ids.shape == b.input_ids.shape
        # Rows: sequences numbered 1..k in order, padding only at the end.
        for r in range(rows):
            seg = b.segment_ids[r]
            k = seg.max()
            real = seg[seg > 0]
            assert np.array_equal(real, np.sort(real)) and set(real) == set(range(1, k + 1))
            assert not np.any(seg[len(real) :])
        # Each sequence's tokens are exactly where the batch says; restored in input order.
        for i, tokens in zip(b.index, b.tokens(b.input_ids)):
            assert np.array_equal(tokens, fitted[i])
            seen[i] += 1
        assert np.array_equal(
            b.sequences(np.arange(rows * row_len).reshape(rows, row_len)), b.row * row_len + b.slot
        )
        # Padding everywhere else.
        covered = np.zeros(b.shape, bool)
        for r, s, n in zip(b.row, b.start, b.length):
            assert not covered[r, s : s + n].any()
            covered[r, s : s + n] = True
        assert np.all(b.input_ids[~covered] == 1) and np.all(b.segment_ids[~covered] == 0)
    assert np.all(seen == 1), "every sequence exactly once"
    restored = restore_order(batches, [b.tokens(b.input_ids) for b in batches])
    assert all(np.array_equal(a, f) for a, f in zip(restored, fitted))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(lengths=lengths_strategy)
def test_pad_sorted_batches(lengths):
    seqs = _sequences(lengths, seed=1)
    batches = pad_sequences(seqs, max_length=64, max_batch_tokens=256, overflow="truncate", max_rows=8)
    seen = []
    for b in batches:
        rows, length = b.shape
        assert rows <= 8 and rows * length <= 256 and length in row_length_buckets(64)
        for r, i in enumerate(b.index):
            n = min(len(seqs[i]), 64)
            assert b.attention_mask[r, :n].all() and not b.attention_mask[r, n:].any()
        seen.extend(b.index.tolist())
    assert sorted(seen) == list(range(len(seqs)))
    if batches:
        firsts = [len(seqs[b.index[0]]) for b in batches]
        assert firsts == sorted(firsts, reverse=True), "longest first"


def test_first_fit_decreasing_fills_rows():
    # 6 sequences of 10 and 6 of 5 into rows of 16: FFD puts a 10 and a 5 in each of six rows.
    seqs = _sequences([10] * 6 + [5] * 6)
    (batch,) = pack_sequences(seqs, max_length=16, max_batch_tokens=16 * 8)
    assert batch.shape == (8, 16)  # 6 rows used, rounded up to a power of two
    assert sorted((batch.segment_ids > 0).sum(1).tolist()) == [0, 0, 15, 15, 15, 15, 15, 15]


def test_shapes_per_call_and_bound():
    seqs = _sequences(np.random.default_rng(2).integers(1, 60, size=500))
    batches = pack_sequences(seqs, max_length=64, max_batch_tokens=512)
    assert len({b.shape for b in batches}) <= 2
    assert max_shapes(512) == 51


def test_overflow_is_refused_or_truncated_never_wrapped():
    long = np.arange(3, 3 + 70)
    with pytest.raises(ValueError, match="sequence 1 has 70 tokens, more than max_length=64"):
        pack_sequences([[5, 6], long], max_length=64)
    (batch,) = pack_sequences([long], max_length=64, overflow="truncate")
    (tokens,) = batch.tokens(batch.input_ids)
    assert len(tokens) == 64 and tokens[-1] == long[-1] and np.array_equal(tokens[:63], long[:63])


@pytest.mark.parametrize(
    "bad, error, fragment",
    [
        ([[1, 2], []], ValueError, "sequence 1 is empty"),
        ([[1.5, 2.0]], TypeError, "sequence 0 must hold integer token ids"),
        ([[[1, 2]]], ValueError, "sequence 0 must be a flat list"),
    ],
)
def test_bad_sequences(bad, error, fragment):
    with pytest.raises(error, match=fragment):
        pack_sequences(bad, max_length=16)


def test_empty_input():
    assert pack_sequences([], max_length=16) == []
    assert pad_sequences([], max_length=16) == []
