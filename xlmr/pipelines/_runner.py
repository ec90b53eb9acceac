"""Run a model over many token-id sequences: planned batches, one backend forward each, results in input order.

The planner (:mod:`xlmr._packing`) sorts and packs; the backend's ``tasks`` module runs only the
forward. Packed rows (``segment_ids``) are used where the head and the backend take them, padded
length-sorted batches elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._packing import DEFAULT_MAX_BATCH_TOKENS, PackedBatch, PaddedBatch, pack_sequences, pad_sequences
from ._model import backend_of, import_tasks

# Lists at least this long get a progress bar (when stderr is a terminal).
PROGRESS_MIN_ITEMS = 256


class Runner:
    """One xlmr model of one backend behind the three forwards the tasks need.

    Args:
        model: An xlmr model of any backend (in inference mode after this).
        batch_size: Most sequences per forward (HF's ``batch_size``); None: as many as
            ``max_batch_tokens`` allows.
        max_batch_tokens: Token budget of one forward (rows x row length).
        packed: Pack sequences into rows with ``segment_ids`` (True), pad them (False), or pack
            when the head and the backend allow it (None).
        progress: Show a progress bar (True / False); None: on lists of at least
            :data:`PROGRESS_MIN_ITEMS` when stderr is a terminal.
    """

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        packed: bool | None = None,
        progress: bool | None = None,
    ) -> None:
        backend = backend_of(model)
        if backend is None:
            raise TypeError(
                f"expected an xlmr model (xlmr_torch, xlmr_tf or xlmr_flax), got {type(model).__name__}"
            )
        self.backend = backend
        self.tasks = import_tasks(backend)
        self.model = self.tasks.prepare(model)
        self.config = model.config
        self.head = model.head
        self.max_length = self.config.max_sequence_length
        self.batch_size = check_batch_size(batch_size)
        if max_batch_tokens < self.max_length:
            raise ValueError(
                f"max_batch_tokens={max_batch_tokens} cannot hold one sequence of the model's "
                f"{self.max_length} positions"
            )
        self.max_batch_tokens = max_batch_tokens
        can_pack = bool(self.head.packable) and self.tasks.accepts_segment_ids(model)
        if packed and not can_pack:
            raise ValueError(
                f"packed=True, but {type(model).__name__} does not take segment_ids (packed rows) in this "
                "version of its backend; use packed=None or False"
            )
        self.packed = can_pack if packed is None else bool(packed)
        self.progress = progress
        self._forwards: dict[Any, Callable] = {}

    # -- planning -------------------------------------------------------------------------------
    def _row_lengths(self) -> tuple[int, ...] | None:
        """Eager backends pad to the next multiple of 8; compiled ones to the planner's few buckets."""
        if self.tasks.STATIC_SHAPES:
            return None
        return (*range(8, self.max_length, 8), self.max_length)

    def plan(self, sequences: Sequence[Sequence[int]], batch_size: int | None = None) -> list:
        """Batches (packed or padded) covering ``sequences``; ``batch.index`` are positions in it."""
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        lengths = np.array([len(s) for s in sequences])
        if batch_size is None or batch_size >= len(sequences):
            groups = [np.arange(len(sequences))]
        else:  # at most batch_size sequences per forward: length-sorted groups, each planned alone
            order = np.argsort(-lengths, kind="stable")
            groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        options = dict(
            max_length=self.max_length,
            pad_token_id=self.config.pad_token_id,
            max_batch_tokens=self.max_batch_tokens,
            row_lengths=self._row_lengths(),
        )
        batches = []
        for group in groups:
            subset = [sequences[int(i)] for i in group]
            if self.packed and len(subset) > 1:  # (one sequence alone: a plain row, no block mask)
                planned = pack_sequences(subset, **options)
            elif len(subset) == 1 and not self.tasks.STATIC_SHAPES:
                # One sequence in an eager backend: its own length, no padding (and so no mask).
                one = dict(options, row_lengths=(max(1, len(subset[0])), self.max_length))
                planned = pad_sequences(subset, max_rows=batch_size, **one)
            else:
                planned = pad_sequences(subset, max_rows=batch_size, **options)
            for batch in planned:
                batch.index = group[batch.index]
                batches.append(self._trim(batch))
        return batches

    def _trim(self, batch):
        """Eager backends drop the empty rows the planner adds to round the row count."""
        if self.tasks.STATIC_SHAPES:
            return batch
        if isinstance(batch, PackedBatch):
            used = int(batch.row.max()) + 1
            batch.input_ids, batch.segment_ids = batch.input_ids[:used], batch.segment_ids[:used]
        else:
            used = len(batch.index)
            batch.input_ids, batch.attention_mask = batch.input_ids[:used], batch.attention_mask[:used]
        return batch

    # -- running --------------------------------------------------------------------------------
    def _forward(self, key: Any, make: Callable[[], Callable]) -> Callable:
        if key not in self._forwards:
            self._forwards[key] = make()
        return self._forwards[key]

    @staticmethod
    def _inputs(batch) -> dict[str, np.ndarray]:
        if isinstance(batch, PackedBatch):
            return {"input_ids": batch.input_ids, "segment_ids": batch.segment_ids}
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

    def _bar(self, total: int, desc: str):
        show = self.progress
        if show is None:
            show = None if total >= PROGRESS_MIN_ITEMS else False  # None: tqdm shows it on a terminal
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc, unit="seq", leave=False, disable=(not show) if show is not None else None
        )

    def _each(self, sequences, batch_size, desc, per_batch: Callable[[Any], list]) -> list:
        out: list = [None] * len(sequences)
        if not len(sequences):
            return out
        batches = self.plan(sequences, batch_size)
        with self._bar(len(sequences), desc) as bar:
            for batch in batches:
                for i, result in zip(batch.index, per_batch(batch), strict=True):
                    out[int(i)] = result
                bar.update(len(batch.index))
        return out

    def head_outputs(
        self, sequences: Sequence[Sequence[int]], fields: Sequence[str], *, batch_size=None, desc: str = ""
    ) -> list[dict[str, np.ndarray]]:
        """The head's output ``fields`` per sequence: (length, ...) per token, or one row per sequence."""
        fields = tuple(fields)
        forward = self._forward(("head", fields), lambda: self.tasks.head_forward(self.model, fields))
        per_sequence = bool(self.head.per_sequence)

        def run(batch) -> list[dict[str, np.ndarray]]:
            outputs = forward(self._inputs(batch))
            split = {}
            for name in fields:
                value = np.asarray(outputs[name])
                if per_sequence:
                    split[name] = list(_sequences(batch, value))
                else:
                    split[name] = _tokens(batch, value)
            return [{name: split[name][j] for name in fields} for j in range(len(batch.index))]

        return self._each(sequences, batch_size, desc, run)

    def hidden_states(self, sequences: Sequence[Sequence[int]], *, batch_size=None, desc: str = "") -> list:
        """The backbone's last hidden states per sequence, (length, hidden) each."""
        forward = self._forward("backbone", lambda: self.tasks.backbone_forward(self.model))
        return self._each(
            sequences, batch_size, desc, lambda b: _tokens(b, np.asarray(forward(self._inputs(b))))
        )

    def masked_lm_logits(
        self,
        sequences: Sequence[Sequence[int]],
        positions: Sequence[Sequence[int]],
        *,
        batch_size=None,
        desc: str = "",
    ) -> list[np.ndarray]:
        """Vocabulary logits at ``positions[i]`` of each sequence only, (len(positions[i]), vocab) each."""
        forward = self._forward("masked_lm", lambda: self.tasks.masked_lm_forward(self.model))

        def run(batch) -> list[np.ndarray]:
            rows, cols, counts = [], [], []
            for j, i in enumerate(batch.index):
                pos = np.asarray(positions[int(i)], np.int64)
                if isinstance(batch, PackedBatch):
                    rows.append(np.full(len(pos), batch.row[j])), cols.append(batch.start[j] + pos)
                else:
                    rows.append(np.full(len(pos), j)), cols.append(pos)
                counts.append(len(pos))
            rows, cols = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
            n = len(rows)
            if self.tasks.STATIC_SHAPES:  # a few gather sizes only: pad the index lists to a power of two
                size = 1 << max(0, (n - 1).bit_length())
                rows, cols = np.pad(rows, (0, size - n)), np.pad(cols, (0, size - n))
            logits = np.asarray(forward(self._inputs(batch), rows, cols))[:n]
            return np.split(logits, np.cumsum(counts)[:-1])

        return self._each(sequences, batch_size, desc, run)


def check_batch_size(batch_size: int | None) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return int(batch_size)


def _tokens(batch: PackedBatch | PaddedBatch, output: np.ndarray) -> list[np.ndarray]:
    """Per-token output of a batch -> one (length, ...) array per sequence, in batch order."""
    if isinstance(batch, PackedBatch):
        return batch.tokens(output)
    return [output[j, :n] for j, n in enumerate(batch.length)]


def _sequences(batch: PackedBatch | PaddedBatch, output: np.ndarray) -> np.ndarray:
    """Per-sequence output (padded rows, or packed slots) -> (n, ...) in batch order."""
    if isinstance(batch, PackedBatch):
        return batch.sequences(output)
    return output[: len(batch.index)]
