"""One input topic's hours put together from its partitions' closed windows, once every partition has
passed them.

When several instances share a topic, each reads some of its partitions and closes a partition's windows on
that partition's own event time (``Windows`` of the one partition). A closed part travels with the
partition's *mark* (every window starting before it is closed there) to the member that judges the topic.
That member waits until every partition of the topic that is not idle has a mark past the hour (an idle
partition's owner says so, with its open windows as they stand, which join the hour, and the offset it read
to: the judge checks that nothing was written to it since before judging an hour without it), merges the parts in
partition order, so the float sums come out the same however the partitions were divided among instances,
and the hour is judged once.

>>> from monitor.hourly.accumulator import WindowAccumulator
>>> one = WindowAccumulator(count=2, weight_sum=2.0, weighted_error_sum=1.0)
>>> a = HourAssembler("t", 3_600_000)
>>> a.offer(0, 3_600_000, {0: one})
0
>>> a.due([0, 1])  # partition 1 has not passed the hour yet
[]
>>> a.offer(1, 3_600_000, {})
0
>>> [(w.start_ms, w.total.count) for w in a.due([0, 1])]
[(0, 2)]
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from monitor.hourly.accumulator import WindowAccumulator, merged
from monitor.hourly.window import ClosedWindow


class HourAssembler:
    """Pending parts by window start and partition, each partition's mark, and how far the topic's hours
    have been judged (``judged_before_ms``: every hour starting before it). A part of an hour already judged
    that was never received before is *late*: its records are counted (``late_records``), not merged.

    An *idle* partition (its owner says so) holds no hour open: an hour is judged once every partition not
    idle has passed it, with the idle ones' open windows as they stood (``provisional``). When such a
    partition later closes the window itself, only what it gained since counts as late. When every
    partition is idle, the hours before the furthest idle mark are judged (each idle partition's mark moves
    on by the wall time since its latest record).

    A word that a partition is idle can reach the judge after records were written to it (its owner said
    so, then read them): before judging an hour that needs an idle partition's word, ``due`` asks whether
    the partition still ends where its owner read to (``idle_at``); one that does not is awake again and
    holds its hours until its owner's next word."""

    def __init__(self, topic: str, length_ms: int) -> None:
        self.topic = topic
        self.length_ms = length_ms
        self.marks: dict[int, int] = {}
        self.idle: set[int] = set()
        self.idle_at: dict[int, int] = {}  # the offset each idle partition was read to, when its owner said
        self.pending: dict[int, dict[int, WindowAccumulator]] = {}
        self.provisional: dict[int, dict[int, WindowAccumulator]] = {}
        self.provisional_used: dict[tuple[int, int], int] = {}  # (start, partition): records merged so
        self.judged_before_ms: int | None = None
        self.late_records = 0

    def offer(self, partition: int, mark_ms: int | None, parts: Mapping[int, WindowAccumulator],
              idle: bool = False, open_parts: Mapping[int, WindowAccumulator] | None = None,
              idle_at: int | None = None) -> int:
        """Take a partition's closed windows (by start), its new mark and whether it is idle (with its open
        windows and the offset it was read to); returns the records that came too late to count. Offering
        the same part again (a redelivery) replaces it: a partition closes each window once."""
        late = 0
        known = self.marks.get(partition)
        for start, part in parts.items():
            self.provisional.get(start, {}).pop(partition, None)  # the final part replaces it
            if self.judged_before_ms is not None and start < self.judged_before_ms:
                used = self.provisional_used.pop((start, partition), None)
                if used is not None:  # judged with the part as it stood: what came since is late
                    late += max(0, part.count - used)
                elif known is None or known <= start:  # never received: late; else a redelivery, already merged
                    late += part.count
                continue
            self.pending.setdefault(int(start), {})[partition] = part
        if mark_ms is not None:
            self.marks[partition] = max(known if known is not None else mark_ms, mark_ms)
        if idle:
            self.idle.add(partition)
            if idle_at is None:
                self.idle_at.pop(partition, None)
            else:
                self.idle_at[partition] = int(idle_at)
            for start, part in (open_parts or {}).items():
                if self.judged_before_ms is None or start >= self.judged_before_ms:
                    self.provisional.setdefault(int(start), {})[partition] = part
        elif partition in self.idle:
            self._wake(partition)  # it holds its hours again and will close them itself
        self.late_records += late
        return late

    def _wake(self, partition: int) -> None:
        self.idle.discard(partition)
        self.idle_at.pop(partition, None)
        for by_partition in self.provisional.values():
            by_partition.pop(partition, None)

    def mark(self, partitions: Collection[int], trust_idle: bool = True) -> int | None:
        """The hour every one of ``partitions`` not idle has passed (``None`` while one has given no mark);
        when every one is idle, the furthest idle mark (``None`` if none has one). ``trust_idle=False``:
        the hour every one has passed, idle or not."""
        waited = [p for p in partitions if p not in self.idle or not trust_idle]
        if any(p not in self.marks for p in waited):
            return None
        if waited:
            return min(self.marks[p] for p in waited)
        return max((self.marks[p] for p in partitions if p in self.marks), default=None)

    def due(self, partitions: Collection[int],
            still_at: Callable[[Mapping[int, int]], Collection[int] | None] | None = None) -> list[ClosedWindow]:
        """The hours every one of ``partitions`` (the topic's, all of them) has passed, merged, oldest first.

        ``still_at`` (offsets by partition -> those still ending there, ``None`` when that cannot be known
        now) checks the idle partitions an hour would be judged without; unchecked, an idle word stands."""
        mark = self._due_mark(partitions)
        if mark is not None and still_at is not None and self._leans_on_idle(partitions, mark):
            claimed = {p: self.idle_at[p] for p in partitions if p in self.idle and p in self.idle_at}
            confirmed = still_at(claimed) if claimed else set()
            if confirmed is None:
                return []  # the cluster does not answer now: the hour waits
            for p in claimed.keys() - set(confirmed):
                self._wake(p)
            mark = self._due_mark(partitions)
        if mark is None:
            return []
        self.judged_before_ms = mark
        due = sorted(start for start in set(self.pending) | set(self.provisional) if start < mark)
        closed = []
        for start in due:
            provisional, final = self.provisional.pop(start, {}), self.pending.pop(start, {})
            parts = {**provisional, **final}
            if not parts:
                continue
            for p in provisional.keys() - final.keys():  # an idle partition's window, as it stood
                self.provisional_used[(start, p)] = provisional[p].count
            by_partition = {(self.topic, p): acc for p, acc in sorted(parts.items())}
            closed.append(ClosedWindow(start, start + self.length_ms, merged(by_partition), by_partition))
        return closed

    def _due_mark(self, partitions: Collection[int]) -> int | None:
        """The mark, if it is past the hours judged so far."""
        mark = self.mark(partitions)
        if mark is None or (self.judged_before_ms is not None and mark <= self.judged_before_ms):
            return None
        return mark

    def _leans_on_idle(self, partitions: Collection[int], mark: int) -> bool:
        """Whether judging up to ``mark`` needs an idle partition's word."""
        strict = self.mark(partitions, trust_idle=False)
        return strict is None or strict < mark

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe and exact (``restore`` continues where this is)."""
        return {"topic": self.topic, "length_ms": self.length_ms, "judged_before_ms": self.judged_before_ms,
                "late_records": self.late_records, "marks": sorted([p, m] for p, m in self.marks.items()),
                "idle": sorted(self.idle), "idle_at": sorted([p, o] for p, o in self.idle_at.items()),
                "pending": _parts_list(self.pending), "provisional": _parts_list(self.provisional),
                "provisional_used": sorted([s, p, n] for (s, p), n in self.provisional_used.items())}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> HourAssembler:
        assembler = cls(str(state["topic"]), int(state["length_ms"]))
        judged = state.get("judged_before_ms")
        assembler.judged_before_ms = None if judged is None else int(judged)
        assembler.late_records = int(state.get("late_records", 0))
        assembler.marks = {int(p): int(m) for p, m in state.get("marks", [])}
        assembler.idle = {int(p) for p in [*state.get("idle", []), *state.get("empty", [])]}
        assembler.idle_at = {int(p): int(o) for p, o in state.get("idle_at", [])}
        assembler.pending = _parts_of(state.get("pending", []))
        assembler.provisional = _parts_of(state.get("provisional", []))
        assembler.provisional_used = {(int(s), int(p)): int(n) for s, p, n in state.get("provisional_used", [])}
        return assembler


def _parts_list(parts: Mapping[int, Mapping[int, WindowAccumulator]]) -> list[dict[str, Any]]:
    return [{"start_ms": start, "partition": p, "accumulator": acc.to_dict()}
            for start, by_partition in sorted(parts.items()) for p, acc in sorted(by_partition.items())]


def _parts_of(items: list[dict[str, Any]]) -> dict[int, dict[int, WindowAccumulator]]:
    parts: dict[int, dict[int, WindowAccumulator]] = {}
    for item in items:
        parts.setdefault(int(item["start_ms"]), {})[int(item["partition"])] = \
            WindowAccumulator.from_dict(item["accumulator"])
    return parts
