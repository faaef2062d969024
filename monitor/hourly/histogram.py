"""The fixed log-spaced error histogram every window keeps: counts per bin, merge, quantiles."""

from __future__ import annotations

import numpy as np

HIST_LOWER = 1e-7
HIST_UPPER = 10.0
HIST_BINS = 64
# Shared by every histogram so any two can be merged or compared bin by bin; log-spaced because
# reconstruction errors span orders of magnitude. Slot 0 is the underflow (< HIST_LOWER, zero included),
# slots 1..HIST_BINS the regular bins [edge[i-1], edge[i]), the last slot the overflow (>= HIST_UPPER).
HIST_EDGES = np.logspace(np.log10(HIST_LOWER), np.log10(HIST_UPPER), HIST_BINS + 1)
HIST_SLOTS = HIST_BINS + 2


class ErrorHistogram:
    """Counts of reconstruction errors in the fixed log-spaced bins ``HIST_EDGES`` (records, not weight).

    >>> h = ErrorHistogram()
    >>> h.add(np.array([0.0, 1e-3, 1e-3, 50.0]))
    >>> int(h.counts[0]), int(h.counts[-1]), h.total
    (1, 1, 4)
    >>> 1e-3 <= h.quantile(0.5) < 1e-3 * 10 ** (1 / 8)  # within the bin of 1e-3, one eighth of a decade
    True
    """

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self._counts = np.zeros(HIST_SLOTS, dtype=np.int64) if counts is None else counts.astype(np.int64)

    @property
    def counts(self) -> np.ndarray:
        """A copy of the slot counts: underflow, the ``HIST_BINS`` bins, overflow."""
        return self._counts.copy()

    @property
    def total(self) -> int:
        return int(self._counts.sum())

    def add(self, errors: np.ndarray) -> None:
        slots = np.searchsorted(HIST_EDGES, np.asarray(errors, dtype=np.float64), side="right")
        self._counts += np.bincount(slots, minlength=HIST_SLOTS)

    def merge(self, other: ErrorHistogram) -> None:
        self._counts += other._counts

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), spreading each bin's records evenly in log scale across the bin.

        The underflow and overflow slots only know their side of the range: they give ``HIST_LOWER`` and
        ``HIST_UPPER``. An empty histogram gives ``nan``.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        total = self.total
        if total == 0:
            return float("nan")
        return _interpolate(self._counts, q * total)

    def to_list(self) -> list[int]:
        return [int(c) for c in self._counts]

    @classmethod
    def from_list(cls, counts: list[int]) -> ErrorHistogram:
        if len(counts) != HIST_SLOTS:
            raise ValueError(f"a histogram has {HIST_SLOTS} slots, got {len(counts)}")
        return cls(np.asarray(counts, dtype=np.int64))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorHistogram) and bool(np.array_equal(self._counts, other._counts))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ErrorHistogram(total={self.total})"


def _interpolate(counts: np.ndarray, target: float) -> float:
    cumulative = np.cumsum(counts)
    # The first slot whose cumulative count reaches the target; never an empty one (q = 0).
    slot = max(int(np.searchsorted(cumulative, target, side="left")), int(np.flatnonzero(counts)[0]))
    if slot == 0:
        return HIST_LOWER
    if slot == HIST_SLOTS - 1:
        return HIST_UPPER
    before = cumulative[slot] - counts[slot]
    fraction = min(max((target - before) / counts[slot], 0.0), 1.0)
    low, high = np.log10(HIST_EDGES[slot - 1]), np.log10(HIST_EDGES[slot])
    return float(10.0 ** (low + fraction * (high - low)))
