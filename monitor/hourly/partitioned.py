"""The hourly judgement divided the way a consumer group divides a stream: windows per partition on the
instance that reads it, hours assembled and judged on the instance that judges the topic.

``PartitionedJudge`` stands in for ``HourlyJudge`` in the record pipeline when state is kept in Kafka
(``monitor.stream.group``). Its ``add`` feeds the window of one owned partition alone, which closes on that
partition's own event time (a record is late when its own partition has passed its window: what is late
does not depend on how fast other partitions are read, nor on who reads them). A closed part and the
partition's new mark wait in ``outbox`` until the service sends them to the topic's judge; there
``receive`` hands them to the topic's ``HourAssembler`` and ``assemble`` judges the hours every partition
has passed, with the topic's history (an ``HourlyJudge``).

Each owned partition and each judged topic has a snapshot of its own (``partition_snapshot``,
``topic_snapshot``), so state moves between instances one partition or topic at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.errors import IncompatibleState
from monitor.hourly.accumulator import WindowAccumulator, merged
from monitor.hourly.assembly import HourAssembler
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.history import History
from monitor.hourly.judge import HourlyJudge, ModelFor, WindowReport
from monitor.hourly.sample import WindowSample
from monitor.hourly.window import Progress, Windows, restoring
from monitor.records import Position

StillAt = Callable[[Mapping[Position, int]], Collection[Position] | None]
"""Which of these partitions still end at the given offset (nothing written to them since); ``None`` when
that cannot be known now (the cluster does not answer)."""


@dataclass(frozen=True)
class PartitionClose:
    """What one partition tells its topic's judge: its new mark (every window starting before it is closed
    on the partition; ``None`` before it has closed any) and the windows it closed, by start. ``idle``: the
    partition is idle (caught up, quiet, its broker answering), so the topic's hours need not wait for it;
    ``open_parts`` are then its open windows as they stand, to be merged into an hour judged while it is
    idle (its final part, when the partition closes the window itself, adds only what came after), and
    ``idle_at`` the offset it was read to: the judge checks that its end is still there before judging an
    hour without it (a word that it is idle can reach the judge after its next records were written)."""

    partition: Position
    mark_ms: int | None
    parts: dict[int, WindowAccumulator] = field(default_factory=dict)
    model_version: str = ""  # the model that scored the first part: members must agree on it
    idle: bool = False
    open_parts: dict[int, WindowAccumulator] = field(default_factory=dict)
    idle_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.partition[0], "partition": self.partition[1], "mark_ms": self.mark_ms,
                "model_version": self.model_version, "idle": self.idle, "idle_at": self.idle_at,
                "parts": _parts_list(self.parts), "open_parts": _parts_list(self.open_parts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionClose:
        mark, idle_at = data["mark_ms"], data.get("idle_at")
        return cls((str(data["topic"]), int(data["partition"])), None if mark is None else int(mark),
                   _parts_of(data["parts"]), str(data.get("model_version", "")), bool(data.get("idle", False)),
                   _parts_of(data.get("open_parts", [])), None if idle_at is None else int(idle_at))


def _parts_list(parts: dict[int, WindowAccumulator]) -> list[dict[str, Any]]:
    return [{"start_ms": start, "accumulator": acc.to_dict()} for start, acc in sorted(parts.items())]


def _parts_of(items: list[dict[str, Any]]) -> dict[int, WindowAccumulator]:
    return {int(p["start_ms"]): WindowAccumulator.from_dict(p["accumulator"]) for p in items}


class PartitionedJudge:
    """Windows of the owned partitions, assemblers and histories of the judged topics (``hourly``)."""

    def __init__(self, hourly: HourlyJudge) -> None:
        self.hourly = hourly
        self.partitions: dict[Position, Windows] = {}
        self.assemblers: dict[str, HourAssembler] = {}
        self.outbox: list[PartitionClose] = []
        self.said_idle: dict[Position, tuple[int | None, tuple[int, ...], int | None]] = {}  # each idle one's word

    @property
    def length_ms(self) -> int:
        return self.hourly.length_ms

    @property
    def streaks(self) -> dict[str, int]:
        return self.hourly.streaks

    @property
    def histories(self) -> dict[str, History]:
        return self.hourly.histories

    def history_copies(self) -> dict[str, History]:
        """Copies of the judged topics' histories (``HourlyJudge.history_copies``), for shadowing a candidate."""
        return self.hourly.history_copies()

    # -- the owned partitions' side (what the record pipeline calls) ----------------------------------------
    def add(self, partition: Position, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None, sequences: Sequence[str] | None = None,
            hashes: np.ndarray | None = None, format_ids: np.ndarray | None = None,
            format_names: Sequence[str] = ()) -> int:
        """``HourlyJudge.add`` for one owned partition; returns the records late on it."""
        late = self._windows(partition).add(partition, errors, weights, event_times_ms, flags, now_ms=now_ms,
                                            sequences=sequences, hashes=hashes, format_ids=format_ids,
                                            format_names=format_names)
        return int(sum(late.values()))

    def close_due(self, model_for: ModelFor | str, now_ms: int | None = None,
                  progress: Progress = Progress(), wall_ms: int | None = None) -> list[WindowReport]:
        """Close each owned partition's windows its own event time has passed; an idle partition (caught up,
        quiet, ``progress.idle``) tells its topic's judge so, with its open windows, once per change (its own
        event time moves on by the wall time since its latest record, ``wall_ms``). What closes goes to
        ``outbox``; the reports come from ``assemble`` on the topic's judge, so this returns none (``now_ms``:
        an explicit event time, as for ``HourlyJudge``)."""
        for partition, windows in sorted(self.partitions.items()):
            before = windows.closed_before_ms
            closed = windows.close_due(now_ms, progress.of_partition(partition), wall_ms)
            mark = windows.closed_before_ms
            parts = {c.start_ms: c.total for c in closed}
            version = model_version(model_for, closed[0].start_ms) if closed else ""
            if partition in progress.idle:
                at = progress.idle_at.get(partition)
                said = (mark, tuple(windows.open_starts()), at)
                if self.said_idle.get(partition) != said:
                    self.outbox.append(PartitionClose(partition, mark, parts, version, True, windows.open_parts(),
                                                      at))
                    self.said_idle[partition] = said
            elif self.said_idle.pop(partition, None) is not None and windows.open_starts():
                # Awake again: the topic's judge waits for it from its mark (or its first record's hour) on.
                self.outbox.append(PartitionClose(partition, mark if mark is not None else windows.open_starts()[0],
                                                  parts, version))
            elif mark is not None and mark != before:
                self.outbox.append(PartitionClose(partition, mark, parts, version))
        return []

    def flush(self, model_for: ModelFor | str) -> list[WindowReport]:
        raise NotImplementedError("a partitioned judge runs live; replay uses HourlyJudge")

    def take_outbox(self) -> list[PartitionClose]:
        taken, self.outbox = self.outbox, []
        return taken

    def latest_event_ms(self) -> int | None:
        return max((w.latest_event_ms for w in self.partitions.values() if w.latest_event_ms is not None),
                   default=None)

    def latest_event_by_topic(self) -> dict[str, int]:
        """Each topic's latest event time seen on the owned partitions."""
        latest: dict[str, int] = {}
        for (topic, _), windows in self.partitions.items():
            if windows.latest_event_ms is not None:
                latest[topic] = max(latest.get(topic, windows.latest_event_ms), windows.latest_event_ms)
        return latest

    def closed_before_ms(self) -> int | None:
        """Every window starting before this is closed on every owned partition and judged on every judged
        topic (``None`` while one has not closed any): older models are not needed here any more."""
        marks = [w.closed_before_ms for w in self.partitions.values()]
        marks += [a.judged_before_ms for a in self.assemblers.values()]
        return None if not marks or None in marks else min(marks)  # type: ignore[type-var]

    def late_total(self) -> int:
        return sum(w.late_total for w in self.partitions.values())

    def open_summary(self) -> dict[str, list[tuple[int, WindowAccumulator]]]:
        """Running figures of the owned partitions' open windows, merged per topic (copies, no samples)."""
        by_topic: dict[str, dict[int, dict[Position, WindowAccumulator]]] = {}
        for partition, windows in self.partitions.items():
            for start, acc in windows.open_summary():
                by_topic.setdefault(partition[0], {}).setdefault(start, {})[partition] = acc
        return {topic: [(start, merged(parts, samples=False)) for start, parts in sorted(starts.items())]
                for topic, starts in by_topic.items()}

    def _windows(self, partition: Position) -> Windows:
        if partition not in self.partitions:
            self.partitions[partition] = self._new_windows()
        return self.partitions[partition]

    def _new_windows(self) -> Windows:
        h, f = self.hourly, self.hourly.format_settings
        return Windows(h.length_ms, h.allowed_lateness_ms, h.sample_size, f.slots, f.examples)

    # -- the judged topics' side -----------------------------------------------------------------------------
    def receive(self, close: PartitionClose) -> int:
        """A partition's closed windows and mark, at its topic's judge; returns the records too late."""
        topic, number = close.partition
        return self._assembler(topic).offer(number, close.mark_ms, close.parts, close.idle, close.open_parts,
                                            close.idle_at)

    def assemble(self, model_for: ModelFor | str, partitions_of: Callable[[str], Collection[int]],
                 still_at: StillAt | None = None) -> list[WindowReport]:
        """Judge every hour of a judged topic that all its partitions (``partitions_of``) have passed, an idle
        one only if ``still_at`` confirms nothing was written to it since its owner said so."""
        if isinstance(model_for, str):
            version = model_for
            model_for = lambda start_ms: version  # type: ignore[assignment,return-value] # noqa: E731
        reports = [self.hourly.judge_window(topic, closed, model_for(closed.start_ms))  # type: ignore[operator]
                   for topic, assembler in sorted(self.assemblers.items())
                   for closed in assembler.due(partitions_of(topic), _of_topic(still_at, topic))]
        return sorted(reports, key=lambda r: (r.start_ms, r.topic))

    def _assembler(self, topic: str) -> HourAssembler:
        if topic not in self.assemblers:
            self.assemblers[topic] = HourAssembler(topic, self.length_ms)
        return self.assemblers[topic]

    # -- ownership and state --------------------------------------------------------------------------------
    def partition_snapshot(self, partition: Position) -> dict[str, Any]:
        return self._windows(partition).snapshot()

    def own_partition(self, partition: Position, snapshot: dict[str, Any] | None) -> None:
        """Take a partition over, from its snapshot (``None``: it has none yet); ``StateError`` for one of
        another window length or of the wrong shape."""
        self.said_idle.pop(partition, None)  # a new owner says it again
        if snapshot is None:
            self.partitions[partition] = self._new_windows()
            return
        f = self.hourly.format_settings
        with restoring(f"the saved windows of {partition[0]}[{partition[1]}]"):
            length_ms = int(snapshot["length_ms"])
            if length_ms != self.length_ms:
                raise IncompatibleState(
                    f"the saved windows of {partition[0]}[{partition[1]}] are {length_ms // 1000} s long; "
                    f"window.length_seconds is {self.length_ms // 1000}: use another consumer group (or changelog "
                    "topic) to start afresh, or restore the window length they were written with")
            self.partitions[partition] = Windows.restore(snapshot, self.hourly.sample_size, f.slots, f.examples)

    def topic_snapshot(self, topic: str) -> dict[str, Any]:
        """The topic's assembly and history figures (each kept window's sample and format counts are stored
        apart, once: ``WindowReport`` of its judging)."""
        history = self.hourly.histories.get(topic)
        return {"assembly": self._assembler(topic).snapshot(),
                "history": history.to_list() if history is not None else [],
                "streak": self.hourly.streaks.get(topic, 0)}

    def judge_topic(self, topic: str, snapshot: dict[str, Any] | None,
                    kept: dict[int, dict[str, Any]] | None = None) -> None:
        """Take over judging ``topic`` from its snapshot and its kept windows' samples and format counts
        (by start; ``None``: a topic never judged yet); ``StateError`` for a snapshot of the wrong shape."""
        h = self.hourly
        if snapshot is None:
            self.assemblers[topic] = HourAssembler(topic, self.length_ms)
            h.histories[topic] = History(h.settings, h.length_ms)
            h.streaks[topic] = 0
            return
        kept = kept or {}
        with restoring(f"the saved judging of {topic!r}"):
            samples = {start: WindowSample.from_dict(k) for start, k in kept.items() if "sequences" in k}
            formats = {start: FormatCounts.from_dict(k["formats"]) for start, k in kept.items() if "formats" in k}
            assembler = HourAssembler.restore(snapshot["assembly"])
            history = History.from_list(snapshot["history"], h.settings, h.length_ms, samples, formats)
            streak = int(snapshot.get("streak", 0))
        self.assemblers[topic], h.histories[topic], h.streaks[topic] = assembler, history, streak

    def release(self, partitions: Collection[Position] = (), topics: Collection[str] = ()) -> None:
        """Forget partitions and topics this instance no longer owns or judges."""
        for partition in partitions:
            self.partitions.pop(partition, None)
        self.outbox = [c for c in self.outbox if c.partition not in partitions]
        for topic in topics:
            self.assemblers.pop(topic, None)
            self.hourly.histories.pop(topic, None)
            self.hourly.streaks.pop(topic, None)

    def kept_windows(self, topic: str) -> list[int]:
        """The starts of ``topic``'s history windows (each has a stored sample and format counts)."""
        history = self.hourly.histories.get(topic)
        return [] if history is None else sorted({e.start_ms for e in history.entries})


def _of_topic(still_at: StillAt | None, topic: str) -> Callable[[Mapping[int, int]], Collection[int] | None] | None:
    """``still_at`` for one topic's partitions by number."""
    if still_at is None:
        return None

    def of_topic(offsets: Mapping[int, int]) -> Collection[int] | None:
        confirmed = still_at({(topic, n): o for n, o in offsets.items()})
        return None if confirmed is None else {n for t, n in confirmed if t == topic}
    return of_topic


def model_version(model_for: ModelFor | str, start_ms: int) -> str:
    """The version of the model that scores the window starting at ``start_ms``."""
    return model_for if isinstance(model_for, str) else model_for(start_ms).version
