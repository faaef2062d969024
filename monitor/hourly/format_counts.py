"""Records per format signature in a window: a bounded, mergeable count, with a few example sequences per format.

A space-saving summary (Metwally, Agrawal and El Abbadi, "Efficient computation of frequent and top-k elements
in data streams", 2005) of at most ``slots`` formats, mergeable in the sense of Agarwal, Cormode, Huang,
Phillips, Wei and Yi ("Mergeable summaries", 2012): the summary of two parts of a window, made from their two
summaries, keeps the guarantees of one made from all the records. Each kept format has a ``count`` and an
``error``; the summary has a ``floor``, the most records any format it does not keep can have had.

A batch is the exact summary of its records (floor 0), so adding a batch is a merge. The merge rule: a format
missing from one side is counted there as that side's floor, in its count and in its error (the most it can
have had there); counts, errors and floors add; if more than ``slots`` formats remain, the highest counts stay,
equal counts by name, and the floor rises to the largest count evicted.

Invariants, through every add and merge in any order (N records, k slots):

- count - error <= true count <= count, and error <= floor;
- a format not kept has at most ``floor`` records; every kept count is at least ``floor``; the kept counts sum
  to at most N; a floor above 0 means all k slots are in use. Hence floor <= N / k: every format with more than
  N / k records (a heavy hitter) is kept, and its count overstates by at most N / k.

What does not depend on how the records were split into batches and partitions, nor on the order of merges:

- ``total``; and, when the window has at most ``slots`` formats, the whole summary: every count exact, every
  error and the floor 0, the same examples (summaries compare equal);
- every single step, since evictions break ties by name, not by arrival: a merge is commutative (``a.merge(b)``
  leaves ``a`` equal to what ``b.merge(a)`` leaves ``b``), adding a batch is merging in the batch's exact
  summary, and neither the order of ``names`` in a batch nor that of a state file's keys matters;
- a format with error 0: it was kept everywhere since its first record (an eviction raises its summary's floor
  to at least 1, which a format coming back takes as error), so its count is its true count and its examples
  are the bottom-k of all its records. A format that, in every part, after every batch, has more than (the part's
  records so far) / slots records is never evicted, in any order of merges (k counts at least as high would
  sum to more than the records): it always has error 0.

With more formats than slots, which of the lighter formats are kept, their counts and errors and the floor
depend on the split and the order; only the bounds above hold.

Examples: per kept format, its ``examples`` distinct sequences of smallest (hash, sequence), a bottom-k sample:
the same for any split of the records. An evicted format loses its examples and, if it comes back, starts
collecting again.

>>> counts = FormatCounts(slots=2, examples=1)
>>> counts.add(np.array([0, 1, 0, 2]), ["AA9", "99", "A-9"], ["AB1", "12", "CD2", "X-1"], np.array([7, 5, 3, 9]))
>>> counts.top(2), counts.error("99"), counts.floor, counts.examples("AA9")
([('AA9', 2), ('99', 1)], 0, 1, ['CD2'])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

DEFAULT_SLOTS = 64
DEFAULT_EXAMPLES = 3
_NO_LIMIT = 2 ** 64 - 1  # the largest uint64: no hash is above it

Example = tuple[int, str]  # (hash of the sequence's text, the sequence)


class _Kept(NamedTuple):
    count: int
    error: int
    examples: tuple[Example, ...]  # distinct sequences, smallest (hash, sequence) first


class FormatCounts:
    """Records per format in a window: a space-saving summary with ``slots`` counters (exact while a window has
    at most ``slots`` formats), plus up to ``examples`` example sequences per format."""

    def __init__(self, slots: int = DEFAULT_SLOTS, examples: int = DEFAULT_EXAMPLES) -> None:
        self.slots = _whole(slots, "slots", 1)
        self.max_examples = _whole(examples, "examples", 0)
        self.total = 0  # every record added, also those whose format was not kept
        self.floor = 0  # the most records a format not kept can have had
        self._kept: dict[str, _Kept] = {}

    def add(self, format_ids: np.ndarray, names: Sequence[str], sequences: Sequence[str],
            hashes: np.ndarray) -> None:
        """A batch: ``format_ids[i]`` indexes ``names`` (the batch's distinct formats), aligned with ``sequences``
        and their uint64 ``hashes`` (a hash of each sequence's text)."""
        ids, hashes = _checked_batch(format_ids, names, sequences, hashes)
        if len(ids) == 0:
            return
        counts = np.bincount(ids, minlength=len(names))
        self.total += len(ids)
        self._absorb({names[j]: _Kept(int(counts[j]), 0, ()) for j in np.flatnonzero(counts).tolist()}, 0)
        if self.max_examples:  # after the counts: only the formats still kept need examples
            self._collect_examples(ids, names, sequences, hashes)

    def merge(self, other: FormatCounts) -> None:
        """Become the summary of both windows' records together (see the module's invariants)."""
        if (other.slots, other.max_examples) != (self.slots, self.max_examples):
            raise ValueError(f"cannot merge a summary of {other.slots} slots and {other.max_examples} examples "
                             f"into one of {self.slots} slots and {self.max_examples} examples")
        self.total += other.total
        self._absorb(other._kept, other.floor)

    def _absorb(self, entries: dict[str, _Kept], floor: int) -> None:
        # A format missing on one side may have had up to that side's floor there: count it, as error too.
        mine, theirs = _Kept(self.floor, self.floor, ()), _Kept(floor, floor, ())
        union = {name: _joined(self._kept.get(name, mine), entries.get(name, theirs), self.max_examples)
                 for name in self._kept.keys() | entries.keys()}
        self.floor += floor
        if len(union) > self.slots:
            # Ties by name, not by arrival, so that each step is a function of its two summaries.
            ranked = sorted(union, key=lambda name: (-union[name].count, name))
            self.floor = max(self.floor, union[ranked[self.slots]].count)
            union = {name: union[name] for name in ranked[:self.slots]}
        self._kept = union

    def _collect_examples(self, ids: np.ndarray, names: Sequence[str], sequences: Sequence[str],
                          hashes: np.ndarray) -> None:
        """Offer the batch's sequences as examples of their formats, if kept."""
        kept = [self._kept.get(name) for name in names]
        wanted = np.array([entry is not None for entry in kept], dtype=bool)
        # Rows above a format's largest example hash cannot enter: most rows, once a window is under way.
        limits = np.array([self._limit(entry) for entry in kept], dtype=np.uint64)
        rows = np.flatnonzero(wanted[ids] & (hashes <= limits[ids]))
        rows = _candidate_rows(rows, ids[rows], hashes[rows], sequences, self.max_examples)
        found: dict[int, list[Example]] = {}
        for j, h, i in zip(ids[rows].tolist(), hashes[rows].tolist(), rows.tolist()):
            found.setdefault(j, []).append((h, sequences[i]))
        for j, pairs in found.items():
            entry = self._kept[names[j]]
            self._kept[names[j]] = entry._replace(examples=_bottom([*entry.examples, *pairs], self.max_examples))

    def _limit(self, entry: _Kept | None) -> int:
        if entry is None or len(entry.examples) < self.max_examples:
            return _NO_LIMIT
        return entry.examples[-1][0]

    def shares(self) -> dict[str, float]:
        """Each kept format's count / total (their sum is at most 1)."""
        return {name: kept.count / self.total for name, kept in self._kept.items()}

    def top(self, k: int) -> list[tuple[str, int]]:
        """The ``k`` kept formats of highest count with their counts, highest first, equal counts by name."""
        k = _whole(k, "k", 0)
        return sorted(((name, kept.count) for name, kept in self._kept.items()), key=lambda nc: (-nc[1], nc[0]))[:k]

    def count(self, name: str) -> int:
        """The format's count (an upper bound of its records); 0 if not kept."""
        kept = self._kept.get(name)
        return 0 if kept is None else kept.count

    def error(self, name: str) -> int:
        """The most ``count(name)`` may overstate (0: exact); 0 if not kept (such a format has <= ``floor``)."""
        kept = self._kept.get(name)
        return 0 if kept is None else kept.error

    def examples(self, name: str) -> list[str]:
        """The format's example sequences, smallest hash first; none if not kept."""
        kept = self._kept.get(name)
        return [] if kept is None else [sequence for _, sequence in kept.examples]

    def copy(self) -> FormatCounts:
        twin = FormatCounts(self.slots, self.max_examples)
        twin.total, twin.floor, twin._kept = self.total, self.floor, dict(self._kept)  # entries are immutable
        return twin

    def __len__(self) -> int:
        return len(self._kept)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FormatCounts) and \
            (self.slots, self.max_examples, self.total, self.floor, self._kept) == \
            (other.slots, other.max_examples, other.total, other.floor, other._kept)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"FormatCounts(slots={self.slots}, kept={len(self)}, total={self.total}, floor={self.floor})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and exact (hashes as ints: Python's JSON keeps all 64 bits); formats sorted by name."""
        formats = {name: {"count": kept.count, "error": kept.error, "examples": [list(e) for e in kept.examples]}
                   for name, kept in sorted(self._kept.items())}
        return {"slots": self.slots, "examples": self.max_examples, "total": self.total, "floor": self.floor,
                "formats": formats}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FormatCounts:
        counts = cls(int(data["slots"]), int(data["examples"]))
        counts.total, counts.floor = int(data["total"]), int(data["floor"])
        counts._kept = {str(name): _Kept(int(kept["count"]), int(kept["error"]),
                                         tuple((int(h), str(s)) for h, s in kept["examples"]))
                        for name, kept in data["formats"].items()}
        if len(counts._kept) > counts.slots:
            raise ValueError(f"a summary of {counts.slots} slots cannot keep {len(counts._kept)} formats")
        return counts


def _whole(value: Any, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{what} must be a whole number of at least {least}, got {value!r}")
    return int(value)


def _checked_batch(format_ids: Any, names: Sequence[str], sequences: Sequence[str],
                   hashes: Any) -> tuple[np.ndarray, np.ndarray]:
    """``format_ids`` as int64 and ``hashes`` as uint64, or a ValueError naming what is wrong with the batch."""
    ids, hashes = np.asarray(format_ids), np.asarray(hashes)
    if ids.ndim != 1 or hashes.ndim != 1 or not len(ids) == len(sequences) == len(hashes):
        raise ValueError(f"format_ids, sequences and hashes must be aligned 1-D, got shapes {ids.shape}, "
                         f"({len(sequences)},) and {hashes.shape}")
    if len(set(names)) != len(names):
        raise ValueError("names must be the batch's distinct formats, but some appear twice")
    if len(ids) == 0:
        return ids.astype(np.int64), hashes.astype(np.uint64)
    if ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(names):
        raise ValueError(f"format_ids must be whole numbers indexing the {len(names)} names")
    if hashes.dtype.kind not in "iu" or (hashes.dtype.kind == "i" and hashes.min() < 0):
        raise ValueError(f"hashes must be unsigned 64-bit integers, got {hashes.dtype}")
    return ids.astype(np.int64, copy=False), hashes.astype(np.uint64, copy=False)


def _candidate_rows(rows: np.ndarray, ids: np.ndarray, hashes: np.ndarray, sequences: Sequence[str],
                    k: int) -> np.ndarray:
    """Of ``rows`` (their ``ids`` and ``hashes`` aligned), those that may be among their format's ``k``
    smallest-hash distinct sequences: in each format, the first row of each of its ``k`` smallest hashes, and
    any other row of those hashes whose text differs from that first row's (a hash collision)."""
    if len(rows) == 0:
        return rows
    order = np.argsort(hashes)  # then stably by format (faster than np.lexsort); equal hashes form one run
    order = order[np.argsort(ids[order], kind="stable")]
    ids, hashes = ids[order], hashes[order]
    new_format = np.r_[True, ids[1:] != ids[:-1]]
    new_run = new_format | np.r_[True, hashes[1:] != hashes[:-1]]
    run = np.cumsum(new_run) - 1
    rank = run - run[new_format][np.cumsum(new_format) - 1]  # of a row's hash among its format's hashes
    keep = (rank < k) & new_run
    repeats = np.flatnonzero((rank < k) & ~new_run)  # mostly the same sequence again; compare the texts
    if len(repeats):
        firsts = np.flatnonzero(new_run)[run[repeats]]
        keep[repeats[_texts(sequences, rows[order[repeats]]) != _texts(sequences, rows[order[firsts]])]] = True
    return rows[order[keep]]


def _texts(sequences: Sequence[str], rows: np.ndarray) -> np.ndarray:
    # An object array, so that numpy compares the strings without a Python loop.
    return np.fromiter(map(sequences.__getitem__, rows.tolist()), dtype=object, count=len(rows))


def _joined(a: _Kept, b: _Kept, k: int) -> _Kept:
    if not b.count:  # missing from a summary with floor 0: nothing to add
        return a
    if not a.count:
        return b
    examples = _bottom([*a.examples, *b.examples], k) if a.examples and b.examples else a.examples or b.examples
    return _Kept(a.count + b.count, a.error + b.error, examples)


def _bottom(pairs: Iterable[Example], k: int) -> tuple[Example, ...]:
    """The ``k`` smallest (hash, sequence) of distinct sequences."""
    kept: list[Example] = []
    seen: set[str] = set()
    for pair in sorted(pairs):
        if pair[1] not in seen:
            seen.add(pair[1])
            kept.append(pair)
            if len(kept) == k:
                break
    return tuple(kept)
