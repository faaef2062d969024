"""Event-time tumbling windows: a watermark per partition, lateness, closing and checkpoints.

A record belongs to the window ``[start, start + length)`` that holds its event time, aligned to UTC epoch
boundaries. ``Windows`` keeps one ``WindowAccumulator`` (``monitor.hourly.accumulator``: the window's exact,
mergeable figures) per open window and source partition, closes windows
once the watermark (or the wall clock, on a quiet stream) has passed their end plus the allowed lateness, and
counts the records that arrive after their window closed instead of dropping them silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.errors import ConfigError
from monitor.hourly.accumulator import FormatRows, WindowAccumulator, merged
from monitor.hourly.format_counts import DEFAULT_EXAMPLES, DEFAULT_SLOTS, FormatCounts
from monitor.hourly.sample import (
    DEFAULT_SIZE,
    WindowSample,
    record_priorities,
    text_hashes,
)
from monitor.hourly.timeline import HOUR_MS, window_start
from monitor.hourly.top_records import DEFAULT_KEPT, TopRecords
from monitor.records import Position

SNAPSHOT_FORMAT = 5  # 5: top records; 4: format counts; 3: samples; 2: a watermark per partition (1: one); all read
# Late counters older than this many windows before the closing mark are folded into ``late_total`` only.
LATE_WINDOWS_KEPT = 1000
# More wall time than this between two looks at the stream (``close_due``) is time nobody watched it (a loop
# blocked in a commit through an outage, a restart): it does not count as quiet time.
UNWATCHED_MS = 5_000

LateCounts = dict[int, int]
"""Records refused as late, per window start (ms)."""


@dataclass(frozen=True)
class ClosedWindow:
    """A window that will receive no more records: its figures in total and per source partition.

    Records of it that still arrive are late: ``Windows.late`` counts them by start. A window that got no
    record in time is never returned, so a silent hour shows as a missing start.
    """

    start_ms: int
    end_ms: int
    total: WindowAccumulator
    by_partition: dict[Position, WindowAccumulator]


@dataclass(frozen=True)
class Progress:
    """What the reader knows of its partitions beyond their records, for closing windows.

    ``assigned``: the partitions read now (``None``: not known, as for a file or a list in memory; then
    every partition seen counts). ``behind``: assigned partitions with records still to read, or whose end
    is not known yet. ``idle``: partitions caught up with their end, quiet for a while, their broker
    answering. ``unreachable``: caught up and quiet as far as the client knows, but their broker is not
    answering: an outage, not quiet, so they hold their windows like any partition not idle. ``partitions``:
    every partition of the topics (``None``: not known); one not assigned now that has given no record yet
    may hold records: it holds every window, like a partition behind its end. ``idle_at``: the offset each
    idle partition was read to (its end when a fetch last confirmed it), so a judge elsewhere can check that
    nothing was written to it since.
    """

    assigned: frozenset[Position] | None = None
    behind: frozenset[Position] = frozenset()
    idle: frozenset[Position] = frozenset()
    unreachable: frozenset[Position] = frozenset()
    partitions: frozenset[Position] | None = None
    idle_at: Mapping[Position, int] = field(default_factory=dict)

    def of_topic(self, topic: str) -> Progress:
        def mine(partitions: frozenset[Position]) -> frozenset[Position]:
            return frozenset(p for p in partitions if p[0] == topic)
        return Progress(None if self.assigned is None else mine(self.assigned), mine(self.behind), mine(self.idle),
                        mine(self.unreachable), None if self.partitions is None else mine(self.partitions),
                        {p: o for p, o in self.idle_at.items() if p[0] == topic})

    def of_partition(self, partition: Position) -> Progress:
        """What is known of one partition alone (it is the only one assigned)."""
        mine = frozenset({partition})
        return Progress(mine, self.behind & mine, self.idle & mine, self.unreachable & mine, mine,
                        {p: o for p, o in self.idle_at.items() if p == partition})

    def unheard(self) -> frozenset[Position]:
        """The partitions that may still give records: behind their end, or not assigned now."""
        if self.partitions is None or self.assigned is None:
            return self.behind
        return self.behind | (self.partitions - self.assigned)


class Windows:
    """The open tumbling windows of a stream, per source partition, with a watermark per partition and
    allowed lateness.

    Each partition's watermark is the largest event time seen on it (never past the wall clock given to
    ``add``). Windows close by the *slowest* partition that still holds them: the smallest watermark among
    partitions that are not idle (``Progress``), assigned or not: a partition handed to no one yet keeps its
    last watermark and holds its windows until it is read again. So a backlog read faster on one partition
    than on another loses nothing: the fast one's records wait in their windows. A partition that is caught
    up and quiet is idle and holds nothing, so one silent partition does not stall the rest; a partition that
    has never given a record has no watermark: it holds every window while it is behind its end (its records
    are yet to come) and nothing once it is idle.

    When every partition with a watermark is idle, the stream's event time moves on by the wall time
    (``wall_ms`` given to ``close_due``) it has been *watched* quiet since its latest event time was seen: the
    last hour of a stopped real-time stream closes about when it would have, and a stream of past event times
    (a backfill, an export) is never pushed to today's date, so what it sends next is not late. Time during
    which a partition holding a watermark was unreachable, or nobody looked (more than ``UNWATCHED_MS``
    between two ``close_due``, or before the first one after a restart), does not count: an outage or a
    stalled reader is not a quiet stream, and what producers held back meanwhile is not late. Event time and
    wall time are never compared directly.

    Window ``[start, end)`` closes in ``close_due`` once that event-time mark, or ``now_ms`` (an explicit
    event time, for a replay's end or a simulation's clock), is at or past ``end + allowed_lateness_ms``.
    Because the rule is monotone in ``start``, windows close in start order and one mark,
    ``closed_before_ms``, describes every closed window: all starts below it. ``add`` never closes anything; a
    record whose window start is below the mark is *late*: counted per window start (``late``,
    ``late_total``), not added.

    >>> w = Windows(HOUR_MS, allowed_lateness_ms=60_000)
    >>> one = (np.ones(1), np.ones(1), np.array([10]), np.zeros(1, bool))  # errors, weights, times, flags
    >>> w.add(("topic", 0), *one)
    {}
    >>> w.close_due(now_ms=3_659_999)
    []
    >>> [(c.start_ms, c.end_ms, c.total.count) for c in w.close_due(now_ms=3_660_000)]
    [(0, 3600000, 1)]
    >>> w.add(("topic", 0), *one), w.late_total
    ({0: 1}, 1)
    """

    def __init__(self, length_ms: int = HOUR_MS, allowed_lateness_ms: int = 0,
                 sample_size: int = DEFAULT_SIZE, format_slots: int = DEFAULT_SLOTS,
                 format_examples: int = DEFAULT_EXAMPLES) -> None:
        _check_setting("length_ms", length_ms, 1)
        _check_setting("allowed_lateness_ms", allowed_lateness_ms, 0)
        _check_setting("sample_size", sample_size, 0)
        self.length_ms = length_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.sample_size = sample_size
        self.format_slots = format_slots
        self.format_examples = format_examples
        self.watermarks: dict[Position, int] = {}
        # The wall clock when the latest event time was last raised, moved on by time not watched quiet.
        self.latest_seen_ms: int | None = None
        self._watched_ms: int | None = None  # the wall clock of the last look (close_due); not kept in snapshots
        self.closed_before_ms: int | None = None
        self.late: LateCounts = {}
        self.late_total = 0
        self._open: dict[int, dict[Position, WindowAccumulator]] = {}

    def add(self, partition: Position, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None, sequences: Sequence[str] | None = None,
            hashes: np.ndarray | None = None, format_ids: np.ndarray | None = None,
            format_names: Sequence[str] = ()) -> LateCounts:
        """Adds a scored batch from one partition; returns the records refused as late, per window start.

        With ``now_ms``, event times beyond the wall clock still count in their window but move the
        watermark no further than ``now_ms``: one record from a wrong clock cannot close every window.
        ``sequences`` (aligned with the arrays) feed the windows' samples; ``hashes``, their ``text_hashes``
        when known; ``format_ids`` (indices into ``format_names``, aligned) their format counts.
        """
        errors, weights, times, flags = _checked_batch(errors, weights, event_times_ms, flags)
        if len(times) == 0:
            return {}
        starts = times - np.mod(times, self.length_ms)
        late_mask = np.zeros(len(times), bool) if self.closed_before_ms is None else starts < self.closed_before_ms
        late = self._count_late(starts[late_mask])
        keep = np.flatnonzero(~late_mask)
        counted = format_ids is not None and self.format_slots
        sampled: Sequence[str] | None = None
        priorities, formats, kept_hashes = None, None, None
        if sequences is not None and len(keep):
            every = len(keep) == len(times)
            sampled = sequences if every else [sequences[i] for i in keep]
            kept_hashes = text_hashes(sampled) if hashes is None else hashes if every else hashes[keep]
            if self.sample_size:
                priorities = record_priorities(sampled, weights[keep], times[keep], kept_hashes)
            if counted:
                formats = (format_ids if every else format_ids[keep], format_names, kept_hashes)  # type: ignore[index]
        self._accumulate(partition, starts[keep], errors[keep], weights[keep], times[keep], flags[keep],
                         sampled, priorities, formats, kept_hashes)
        latest = int(times.max()) if now_ms is None else min(int(times.max()), now_ms)
        if now_ms is not None and (self.latest_event_ms is None or latest >= self.latest_event_ms):
            self.latest_seen_ms = now_ms
        self.watermarks[partition] = max(self.watermarks.get(partition, latest), latest)
        return late

    def _count_late(self, starts: np.ndarray) -> LateCounts:
        values, counts = np.unique(starts, return_counts=True)
        late = {int(s): int(n) for s, n in zip(values, counts)}
        for start, n in late.items():
            self.late[start] = self.late.get(start, 0) + n
        self.late_total += int(counts.sum())
        return late

    def _accumulate(self, partition: Position, starts: np.ndarray, errors: np.ndarray, weights: np.ndarray,
                    times: np.ndarray, flags: np.ndarray, sequences: Sequence[str] | None,
                    priorities: np.ndarray | None, formats: FormatRows | None,
                    hashes: np.ndarray | None = None) -> None:
        if len(starts) and starts[0] == starts[-1] and np.all(starts == starts[0]):  # the usual batch: one window
            groups: Any = [(starts[0], slice(None))]
        else:
            values, inverse, counts = np.unique(starts, return_inverse=True, return_counts=True)
            order = np.argsort(inverse, kind="stable")
            groups = zip(values, np.split(order, np.cumsum(counts)[:-1]))
        for start, rows in groups:
            by_partition = self._open.setdefault(int(start), {})
            accumulator = by_partition.get(partition)
            if accumulator is None:
                accumulator = by_partition[partition] = self._accumulator()
            if sequences is None:
                accumulator.add(errors[rows], weights[rows], times[rows], flags[rows])
                continue
            # The sample looks up only the rows that can enter it, so sequences are not copied per window.
            part = sequences if isinstance(rows, slice) else _Rows(sequences, rows)
            accumulator.add(errors[rows], weights[rows], times[rows], flags[rows], part,
                            None if priorities is None else priorities[rows],
                            None if formats is None else (formats[0][rows], formats[1], formats[2][rows]),
                            None if hashes is None else hashes[rows])

    def _accumulator(self) -> WindowAccumulator:
        return WindowAccumulator(sample=WindowSample(self.sample_size),
                                 formats=FormatCounts(max(self.format_slots, 1), self.format_examples),
                                 top=TopRecords(DEFAULT_KEPT))

    @property
    def latest_event_ms(self) -> int | None:
        """The largest watermark of any partition (``None`` before the first record)."""
        return max(self.watermarks.values(), default=None)

    def event_time_mark(self, progress: Progress = Progress(), wall_ms: int | None = None) -> int | None:
        """The event time every partition that holds windows has reached (see the class docstring): the
        smallest watermark of the partitions not idle; when every one is idle, the latest event time moved on
        by the wall time since it was seen (``wall_ms``; without it, the latest event time itself)."""
        if any(p not in self.watermarks for p in progress.unheard()):
            return None  # a partition that may hold records has not been heard from yet
        holding = [ms for p, ms in self.watermarks.items() if p not in progress.idle]
        if holding:
            return min(holding)
        latest = self.latest_event_ms
        if latest is None or wall_ms is None or self.latest_seen_ms is None:
            return latest
        return latest + max(0, wall_ms - self.latest_seen_ms)

    def close_due(self, now_ms: int | None = None, progress: Progress = Progress(),
                  wall_ms: int | None = None) -> list[ClosedWindow]:
        """Closes and returns, in start order, every open window due under the event-time mark (``wall_ms``:
        the wall clock, for idle partitions) or ``now_ms``, an explicit event time."""
        self._discount_unwatched(progress, wall_ms)
        reference = max((t for t in (self.event_time_mark(progress, wall_ms), now_ms) if t is not None),
                        default=None)
        if reference is None:
            return []
        mark = window_start(reference - self.allowed_lateness_ms, self.length_ms)
        if self.closed_before_ms is not None and mark <= self.closed_before_ms:
            return []
        self.closed_before_ms = mark
        self._prune_late(mark)
        due = sorted(start for start in self._open if start < mark)
        return [self._close(start) for start in due]

    def _discount_unwatched(self, progress: Progress, wall_ms: int | None) -> None:
        """Moves ``latest_seen_ms`` on by the wall time since the last look that was not watched quiet."""
        if wall_ms is None:
            return
        last, self._watched_ms = self._watched_ms, wall_ms
        if self.latest_seen_ms is None:
            return
        outage = not progress.unreachable.isdisjoint(self.watermarks)
        if last is None:
            self.latest_seen_ms = max(self.latest_seen_ms, wall_ms)
        elif outage or wall_ms - last > UNWATCHED_MS:
            self.latest_seen_ms = min(wall_ms, self.latest_seen_ms + max(0, wall_ms - last))

    def _close(self, start: int) -> ClosedWindow:
        by_partition = dict(sorted(self._open.pop(start).items()))
        return ClosedWindow(start, start + self.length_ms, merged(by_partition), by_partition)

    def _prune_late(self, closed_before_ms: int) -> None:
        # Keeps memory bounded however long the stream runs; late_total still holds every late record.
        oldest_kept = closed_before_ms - LATE_WINDOWS_KEPT * self.length_ms
        self.late = {start: n for start, n in self.late.items() if start >= oldest_kept}

    def open_starts(self) -> list[int]:
        """The open windows' starts, in order."""
        return sorted(self._open)

    def open_parts(self) -> dict[int, WindowAccumulator]:
        """Each open window as it stands, merged over its partitions (copies, samples included)."""
        return {start: merged(parts) for start, parts in sorted(self._open.items())}

    def open_summary(self) -> list[tuple[int, WindowAccumulator]]:
        """Running figures of each open window, merged over partitions, in start order (copies, no samples)."""
        return [(start, merged(self._open[start], samples=False)) for start in sorted(self._open)]

    def snapshot(self) -> dict[str, Any]:
        """The full state as JSON-safe values; ``Windows.restore`` of it continues exactly where this is."""
        return {"format": SNAPSHOT_FORMAT, "length_ms": self.length_ms,
                "allowed_lateness_ms": self.allowed_lateness_ms,
                "watermarks": [[topic, number, ms] for (topic, number), ms in sorted(self.watermarks.items())],
                "latest_seen_ms": self.latest_seen_ms, "closed_before_ms": self.closed_before_ms,
                "late_total": self.late_total,
                "late": [[start, n] for start, n in sorted(self.late.items())],
                "open": [{"start_ms": start, "topic": topic, "partition": number, "accumulator": acc.to_dict()}
                         for start, parts in sorted(self._open.items())
                         for (topic, number), acc in sorted(parts.items())]}

    def by_partition(self) -> dict[Position, Windows]:
        """These windows as one ``Windows`` per partition, each closed where these are (what a state saved
        with one ``Windows`` per topic becomes when windows are kept per partition). Late counts stay here."""
        partitions = set(self.watermarks) | {p for parts in self._open.values() for p in parts}
        split: dict[Position, Windows] = {}
        for partition in sorted(partitions):
            one = split[partition] = Windows(self.length_ms, self.allowed_lateness_ms, self.sample_size,
                                             self.format_slots, self.format_examples)
            if partition in self.watermarks:
                one.watermarks[partition] = self.watermarks[partition]
            one.closed_before_ms, one.latest_seen_ms = self.closed_before_ms, self.latest_seen_ms
            one._open = {start: {partition: parts[partition]} for start, parts in sorted(self._open.items())
                         if partition in parts}
        return split

    @classmethod
    def restore(cls, state: dict[str, Any], sample_size: int = DEFAULT_SIZE, format_slots: int = DEFAULT_SLOTS,
                format_examples: int = DEFAULT_EXAMPLES) -> Windows:
        if state.get("format") not in (1, 2, 3, 4, SNAPSHOT_FORMAT):
            raise ValueError(f"window snapshot format {state.get('format')!r} is not {SNAPSHOT_FORMAT}")
        windows = cls(int(state["length_ms"]), int(state["allowed_lateness_ms"]), sample_size, format_slots,
                      format_examples)
        windows.watermarks = {(str(topic), int(number)): int(ms) for topic, number, ms in state.get("watermarks", [])}
        windows.closed_before_ms = _optional_int(state["closed_before_ms"])
        windows.latest_seen_ms = _optional_int(state.get("latest_seen_ms"))
        windows.late_total = int(state["late_total"])
        windows.late = {int(start): int(n) for start, n in state["late"]}
        for item in state["open"]:
            parts = windows._open.setdefault(int(item["start_ms"]), {})
            parts[(str(item["topic"]), int(item["partition"]))] = WindowAccumulator.from_dict(
                item["accumulator"], sample_size, format_slots)
        if state["format"] == 1 and state["watermark_ms"] is not None:
            # Format 1 kept one watermark for the stream: every partition with an open window starts from it.
            windows.watermarks = {p: int(state["watermark_ms"]) for parts in windows._open.values() for p in parts}
        return windows


class _Rows:
    """``sequences[rows[i]]`` as item ``i``, without copying: a window's share of a batch."""

    def __init__(self, sequences: Sequence[str], rows: np.ndarray) -> None:
        self.sequences, self.rows = sequences, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> str:
        return self.sequences[self.rows[i]]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_setting(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _checked_batch(errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
                   flags: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = (np.asarray(errors, dtype=np.float64), np.asarray(weights, dtype=np.float64),
              np.asarray(event_times_ms, dtype=np.int64), np.asarray(flags, dtype=bool))
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"errors, weights, event times and flags must be 1-D of one length, got "
                         f"{[a.shape for a in arrays]}")
    if not np.all(np.isfinite(arrays[0])):
        raise ValueError("errors must be finite")
    if np.any(arrays[1] < 0) or not np.all(np.isfinite(arrays[1])):
        raise ValueError("weights must be finite and non-negative")
    return arrays
