"""The highest-error records of a window: the stray records an operator asks for when an hour looks odd.

``TopRecords`` keeps the ``k`` records with the largest reconstruction errors, ordered by (error descending,
text hash, event time, sequence). That order is a total order on records, so the top ``k`` of a union is the
top ``k`` of the parts' top ``k``: partitions, batches and restarts merge to exactly the same records
whatever way the window was split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_KEPT = 5


@dataclass(frozen=True)
class TopRecord:
    """One record of a window: its sequence, reconstruction error, weight and event time (ms)."""

    sequence: str
    error: float
    weight: float
    event_ms: int
    text_hash: int

    @property
    def key(self) -> tuple[float, int, int, str]:
        """Sort key: largest error first, then a fixed order among equal errors."""
        return (-self.error, self.text_hash, self.event_ms, self.sequence)

    def to_list(self) -> list[Any]:
        return [self.sequence, self.error, self.weight, self.event_ms, self.text_hash]

    @classmethod
    def from_list(cls, item: Sequence[Any]) -> TopRecord:
        return cls(str(item[0]), float(item[1]), float(item[2]), int(item[3]), int(item[4]))


class TopRecords:
    """The ``k`` highest-error records seen, mergeable exactly.

    >>> top = TopRecords(2)
    >>> top.add(np.array([0.1, 0.9, 0.5]), np.ones(3), np.array([1, 2, 3]), ["a", "b", "c"],
    ...         np.array([1, 2, 3], dtype=np.uint64))
    >>> [(r.sequence, r.error) for r in top.records]
    [('b', 0.9), ('c', 0.5)]
    """

    def __init__(self, k: int = DEFAULT_KEPT, records: Sequence[TopRecord] = ()) -> None:
        self.k = k
        self.records: tuple[TopRecord, ...] = tuple(sorted(records, key=_key)[:k])

    @property
    def floor(self) -> float:
        """An error a record must exceed (or tie) to enter: ``-inf`` while there is room."""
        return self.records[-1].error if len(self.records) >= self.k else float("-inf")

    def add(self, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray, sequences: Sequence[str],
            hashes: np.ndarray) -> None:
        """Offer a batch (aligned arrays; ``hashes``: the sequences' ``text_hashes``)."""
        if self.k == 0 or len(errors) == 0:
            return
        rows = np.flatnonzero(errors >= self.floor)  # most batches: only a handful can enter
        if len(rows) > self.k:
            kth = errors[rows[np.argpartition(-errors[rows], self.k - 1)[:self.k]]].min()
            # argpartition cuts ties at the k-th error arbitrarily: among the tied rows (a repeated sequence
            # has one error) keep the first k in the records' own order.
            above, tied = np.flatnonzero(errors > kth), np.flatnonzero(errors == kth)
            if len(tied) > self.k:
                tied = tied[np.lexsort((event_times_ms[tied], hashes[tied]))[:self.k]]
            rows = np.concatenate([above, tied])
        offered = [TopRecord(sequences[i], float(errors[i]), float(weights[i]), int(event_times_ms[i]),
                             int(hashes[i])) for i in rows.tolist()]
        self.records = tuple(sorted((*self.records, *offered), key=_key)[:self.k])

    def merge(self, other: TopRecords) -> None:
        self.records = tuple(sorted((*self.records, *other.records), key=_key)[:self.k])

    def copy(self) -> TopRecords:
        return TopRecords(self.k, self.records)

    def errors(self) -> tuple[float, ...]:
        return tuple(r.error for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and exact (floats written with ``repr``)."""
        return {"k": self.k, "records": [r.to_list() for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopRecords:
        return cls(int(data["k"]), [TopRecord.from_list(item) for item in data["records"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopRecords) and (self.k, self.records) == (other.k, other.records)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"TopRecords(k={self.k}, errors={list(self.errors())})"


def _key(record: TopRecord) -> tuple[float, int, int, str]:
    return record.key
