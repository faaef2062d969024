"""A bounded memo of per-string rows: identifier streams repeat (a serial, a user id, a residue triplet seen
before), and what was computed for a string once need not be computed again.

Two users: ``Preparer`` remembers each string's feature indices, ``Scorer`` each string's reconstruction
error under its model (one memo per scorer: a model of its own, a thread of its own).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

MEMO_SIZE = 200_000  # distinct strings whose rows are remembered (emptied when full)
MEMO_WINDOW = 4  # batches the memo's hit rate is measured over
MEMO_MIN_HIT_RATE = 0.05  # below it the memo is skipped (see RowMemo)
MEMO_PROBE_EVERY = 16


class RowMemo:
    """Rows computed for strings seen before (an encoding's feature indices, a model's error), kept in one
    matrix of ``dtype`` so a batch is one gather.

    Holds up to ``capacity`` rows; when a batch would overflow it, it starts over empty. Strings new to it
    are computed together, in one call.

    Looking a string up and remembering it costs about a fifth of preparing it afresh (far less than scoring
    it), so on a stream that rarely repeats (user ids, order numbers) the memo costs more than it saves: once
    fewer than ``MEMO_MIN_HIT_RATE`` of the last ``MEMO_WINDOW`` batches' strings were found, it is skipped,
    except every ``MEMO_PROBE_EVERY``-th batch, which still looks up and remembers; a probe that finds repeats
    (1 %: it only knows the probes' strings) turns it back on.
    """

    def __init__(self, capacity: int, dtype: type[np.generic] = np.int32) -> None:
        self.capacity = capacity
        self.dtype = dtype
        self._slots: dict[str, int] = {}
        self._used = 0  # rows filled (a string repeated inside one batch may fill two identical rows)
        self._rows = np.empty((0, 0), dtype=dtype)  # grown by doubling, up to ``capacity`` rows
        self.skipping = False
        self._recent: deque[tuple[int, int]] = deque(maxlen=MEMO_WINDOW)  # (found, looked up) per batch
        self._skipped = 0

    def rows(self, sequences: Sequence[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """The row of each sequence; those not seen before are computed together (``compute`` takes a list
        of strings and gives their rows) and remembered."""
        if self.skipping:
            self._skipped += 1
            if self._skipped % MEMO_PROBE_EVERY:
                return compute(list(sequences))
        return self._looked_up(sequences, compute)

    def _observe(self, found: int, looked_up: int) -> None:
        if self.skipping:
            if found >= 0.01 * looked_up:
                self.skipping = False
                self._recent.clear()
            return
        self._recent.append((found, looked_up))
        if len(self._recent) == MEMO_WINDOW:
            hits, total = map(sum, zip(*self._recent))
            if hits < MEMO_MIN_HIT_RATE * total:
                self.skipping, self._skipped = True, 0

    def _looked_up(self, sequences: Sequence[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        get = self._slots.get
        slots = np.fromiter(map(get, sequences, itertools.repeat(-1)), dtype=np.int64, count=len(sequences))
        missing = np.flatnonzero(slots < 0)
        if len(sequences):
            self._observe(len(sequences) - len(missing), len(sequences))
        if not len(missing):
            return self._rows[slots]
        if len(missing) > self.capacity:  # a batch larger than the memo: nothing to remember
            return compute(list(sequences))
        if self._used + len(missing) > self.capacity:
            self.clear()
            missing = np.arange(len(sequences))
        fresh = list(sequences) if len(missing) == len(sequences) else [sequences[i] for i in missing]
        first = self._store(compute(fresh))
        self._slots.update(zip(fresh, range(first, first + len(fresh))))
        slots[missing] = np.arange(first, first + len(fresh))
        return self._rows[slots]

    def clear(self) -> None:
        self._slots.clear()
        self._used = 0

    def forget(self) -> None:
        """Empty the memo and start remembering again."""
        self.clear()
        self.skipping = False
        self._recent.clear()

    def _store(self, rows: np.ndarray) -> int:
        """Keep ``rows`` after the rows kept; returns the slot of the first."""
        first, needed = self._used, self._used + len(rows)
        if needed > len(self._rows) or self._rows.shape[1] != rows.shape[1]:
            grown = np.empty((min(max(2 * len(self._rows), 1024, needed), self.capacity), rows.shape[1]),
                             dtype=self.dtype)
            if self._rows.shape[1] == rows.shape[1]:
                grown[: first] = self._rows[: first]
            self._rows = grown
        self._rows[first:needed] = rows
        self._used = needed
        return first
