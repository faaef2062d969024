"""Scores in, hourly reports out: event-time windows per partition, closed windows assembled into each
topic's hours, each hour judged once against the topic's history.

The record pipeline (``monitor.stream.pipeline``) drives it for every source; it holds no I/O. Every window
closes on its own partition's event time (``Windows`` of the one partition: what is late does not depend on
how fast other partitions are read, nor on who reads them). A closed part and the partition's new mark
(``PartitionClose``) go to the topic's judge (``monitor.hourly.topic_judge``), which judges an hour once
every partition of the topic has passed it. Where that judge is, is the one difference between a lone
instance and a member of a group: here (a lone instance, replay and the simulation are a group of one that
assembles locally), or through a ``Route`` (a group's windows topic, ``monitor.stream.group``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from monitor.errors import IncompatibleState, StateError
from monitor.hourly.accumulator import WindowAccumulator, merged
from monitor.hourly.assembly import HourAssembler
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.history import History
from monitor.hourly.partition_close import PartitionClose, model_version
from monitor.hourly.report import WindowReport
from monitor.hourly.restoring import restoring
from monitor.hourly.sample import DEFAULT_SIZE, WindowSample
from monitor.hourly.topic_judge import ModelFor, TopicJudge
from monitor.hourly.window import ClosedWindow, Progress, Windows
from monitor.records import Position
from monitor.settings import CompareConfig, FormatConfig


class Route(Protocol):
    """Where closed partition windows go when their topic is judged elsewhere, and what that judge needs."""

    def forward(self, close: PartitionClose) -> None:
        """Send one partition's closed windows and mark to its topic's judge."""

    def partitions_of(self, topic: str) -> Collection[int]:
        """Every partition of ``topic``: an hour is judged once each has passed it."""

    def still_at(self, offsets: Mapping[Position, int]) -> Collection[Position] | None:
        """Which of these partitions still end at the given offset; ``None`` when that cannot be known now."""


class HourlyJudge:
    """The windows of the partitions read here (``partitions``), and the judging of topics (``topics``);
    ``add`` takes scored batches, ``close_due`` and ``flush`` return the hours judged."""

    def __init__(self, length_ms: int, allowed_lateness_ms: int, settings: CompareConfig,
                 sample_size: int = DEFAULT_SIZE, formats: FormatConfig = FormatConfig()) -> None:
        Windows(length_ms, allowed_lateness_ms, sample_size)  # refuses settings no window can have, now
        self.length_ms = length_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.format_settings = formats
        self.topics = TopicJudge(length_ms, settings, sample_size, formats)
        self.partitions: dict[Position, Windows] = {}
        self.outbox: list[PartitionClose] = []
        self.said_idle: dict[Position, tuple[int | None, tuple[int, ...], int | None]] = {}  # each idle one's word
        self._late_assembled: Counter[str] = Counter()

    @classmethod
    def from_config(cls, config: Any, length_ms: int | None = None) -> HourlyJudge:
        """The judge a ``MonitorConfig`` describes: its windows (``length_ms``: another length, a state file's),
        comparison, samples and formats. Every judge of the service, replay and the offline commands is made
        here."""
        window = config.window
        return cls(window.length_ms if length_ms is None else length_ms, window.allowed_lateness_ms, config.compare,
                   window.sample_size, config.formats)

    @property
    def settings(self) -> CompareConfig:
        return self.topics.settings

    @property
    def sample_size(self) -> int:
        return self.topics.sample_size

    @property
    def histories(self) -> dict[str, History]:
        return self.topics.histories

    @property
    def streaks(self) -> dict[str, int]:
        return self.topics.streaks

    @property
    def assemblers(self) -> dict[str, HourAssembler]:
        return self.topics.assemblers

    # -- the partitions read here ------------------------------------------------------------------------------
    def add(self, partition: Position, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None, sequences: Sequence[str] | None = None,
            hashes: np.ndarray | None = None, format_ids: np.ndarray | None = None,
            format_names: Sequence[str] = ()) -> int:
        """Account one partition's scored records (``sequences`` feed the windows' samples, ``hashes`` are
        their text hashes when known, ``format_ids`` index ``format_names``, their formats); returns how many
        arrived after their partition closed their window (``Windows.add``)."""
        late = self._windows(partition).add(partition, errors, weights, event_times_ms, flags, now_ms=now_ms,
                                            sequences=sequences, hashes=hashes, format_ids=format_ids,
                                            format_names=format_names)
        return int(sum(late.values()))

    def close_due(self, model_for: ModelFor | str, now_ms: int | None = None, progress: Progress = Progress(),
                  wall_ms: int | None = None, route: Route | None = None) -> list[WindowReport]:
        """Close each partition's windows its own event time has passed (``now_ms``: an explicit event time;
        an idle partition's moved on by the wall clock ``wall_ms``, ``monitor.hourly.window.Windows``), send
        what closed to the topics' judges, and return the hours judged, oldest first (``assemble``). An idle
        partition (caught up, quiet, ``progress.idle``) tells its topic's judge so, with its open windows,
        once per change. ``model_for``: which model scored each window."""
        if route is None:  # a partition assigned here that never gave a record is idle or holds like any other
            for partition in progress.assigned or ():
                self._windows(partition)
        for partition, windows in sorted(self.partitions.items()):
            before = windows.closed_before_ms
            closed = windows.close_due(now_ms, progress.of_partition(partition), wall_ms)
            self._tell(partition, windows, before, closed, model_for, progress)
        return self.assemble(model_for, route, progress)

    def _tell(self, partition: Position, windows: Windows, before: int | None, closed: list[ClosedWindow],
              model_for: ModelFor | str, progress: Progress) -> None:
        """What a partition's close says to its topic's judge, into ``outbox``: its new mark, its closed
        windows, and whether it is idle (once per change)."""
        mark = windows.closed_before_ms
        parts = {c.start_ms: c.total for c in closed}
        version = model_version(model_for, closed[0].start_ms) if closed else ""
        if partition in progress.idle:
            at = progress.idle_at.get(partition)
            said = (mark, tuple(windows.open_starts()), at)
            if self.said_idle.get(partition) != said:
                self.outbox.append(PartitionClose(partition, mark, parts, version, True, windows.open_parts(), at))
                self.said_idle[partition] = said
        elif self.said_idle.pop(partition, None) is not None and windows.open_starts():
            # Awake again: the topic's judge waits for it from its mark (or its first record's hour) on.
            self.outbox.append(PartitionClose(partition, mark if mark is not None else windows.open_starts()[0],
                                              parts, version))
        elif mark is not None and mark != before:
            self.outbox.append(PartitionClose(partition, mark, parts, version))

    def flush(self, model_for: ModelFor | str, route: Route | None = None) -> list[WindowReport]:
        """Close every open window (the end of a replayed input) and return the hours judged."""
        # From the open windows' ends, not the watermarks: an event time beyond the wall clock given to
        # ``add`` opens a window past the watermark, and it must close too.
        ends = [start + self.length_ms for w in self.partitions.values() for start in w.open_starts()]
        latest = [w.latest_event_ms or 0 for w in self.partitions.values()]
        far_future = max([0, *ends, *latest]) + self.length_ms + self.allowed_lateness_ms + 1
        return self.close_due(model_for, now_ms=far_future, route=route)

    def assemble(self, model_for: ModelFor | str, route: Route | None = None,
                 progress: Progress = Progress()) -> list[WindowReport]:
        """Send what closed to the topics' judges (here, or through ``route``) and judge every hour of a
        topic judged here that all its partitions have passed, oldest first."""
        closes, self.outbox = self.outbox, []
        if route is not None:
            for close in closes:
                route.forward(close)
            return self.topics.assemble(model_for, route.partitions_of, route.still_at)
        for close in closes:
            self.receive(close)
        return self.topics.assemble(model_for, lambda topic: self._partitions_here(topic, progress))

    def receive(self, close: PartitionClose) -> int:
        """A partition's closed windows and mark, at its topic's judge; returns the records that came after
        their hour was judged (counted as late: ``take_late_assembled``)."""
        late = self.topics.receive(close)
        self._late_assembled[close.partition[0]] += late
        return late

    def take_late_assembled(self) -> Counter[str]:
        """The records, per topic, that reached their topic's judge after their hour was judged, since the
        last call."""
        late, self._late_assembled = +self._late_assembled, Counter()
        return late

    def _partitions_here(self, topic: str, progress: Progress) -> set[int]:
        """``topic``'s partitions, as far as this instance knows them: read here, assigned or in the topic."""
        known = {n for t, n in self.partitions if t == topic}
        for partitions in (progress.partitions, progress.assigned):
            known |= {n for t, n in partitions or () if t == topic}
        return known

    def latest_event_ms(self) -> int | None:
        """The latest event time seen on any partition (``None`` before the first record)."""
        return max((w.latest_event_ms for w in self.partitions.values() if w.latest_event_ms is not None),
                   default=None)

    def latest_event_by_topic(self) -> dict[str, int]:
        """Each topic's latest event time seen (topics without a record yet left out)."""
        latest: dict[str, int] = {}
        for (topic, _), windows in self.partitions.items():
            if windows.latest_event_ms is not None:
                latest[topic] = max(latest.get(topic, windows.latest_event_ms), windows.latest_event_ms)
        return latest

    def closed_before_ms(self) -> int | None:
        """Every window starting before this is closed on every partition read here and judged on every topic
        judged here (``None`` while one has not closed any): older models are not needed here any more."""
        marks = [w.closed_before_ms for w in self.partitions.values()] + self.topics.judged_before_ms()
        return None if not marks or None in marks else min(marks)  # type: ignore[type-var]

    def late_total(self) -> int:
        """Records refused as late since the start: on their partition, or at their topic's judge."""
        return sum(w.late_total for w in self.partitions.values()) + self.topics.late_total()

    def open_summary(self) -> dict[str, list[tuple[int, WindowAccumulator]]]:
        """Running figures of the open windows read here, merged per topic (copies, no samples)."""
        by_topic: dict[str, dict[int, dict[Position, WindowAccumulator]]] = {t: {} for t, _ in self.partitions}
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
        f = self.format_settings
        return Windows(self.length_ms, self.allowed_lateness_ms, self.sample_size, f.slots, f.examples)

    # -- the topics judged here (``TopicJudge``) -----------------------------------------------------------
    def judge_window(self, topic: str, closed: ClosedWindow, model: Any) -> WindowReport:
        return self.topics.judge_window(topic, closed, model)

    def accept(self, topic: str, start_ms: int) -> bool:
        return self.topics.accept(topic, start_ms)

    def history_copies(self) -> dict[str, History]:
        return self.topics.history_copies()

    def normal_samples(self) -> list[list[str]]:
        return self.topics.normal_samples()

    def history_windows(self) -> dict[str, list[int]]:
        return self.topics.history_windows()

    # -- a group member's state, one partition or topic at a time ----------------------------------------------
    def partition_snapshot(self, partition: Position) -> dict[str, Any]:
        return self._windows(partition).snapshot()

    def own_partition(self, partition: Position, snapshot: dict[str, Any] | None) -> None:
        """Take a partition over, from its snapshot (``None``: it has none yet); ``StateError`` for one of
        another window length or of the wrong shape."""
        self.said_idle.pop(partition, None)  # a new owner says it again
        if snapshot is None:
            self.partitions[partition] = self._new_windows()
            return
        f = self.format_settings
        with restoring(f"the saved windows of {partition[0]}[{partition[1]}]"):
            length_ms = int(snapshot["length_ms"])
            if length_ms != self.length_ms:
                raise IncompatibleState(
                    f"the saved windows of {partition[0]}[{partition[1]}] are {length_ms // 1000} s long; "
                    f"window.length_seconds is {self.length_ms // 1000}: use another consumer group (or changelog "
                    "topic) to start afresh, or restore the window length they were written with")
            self.partitions[partition] = Windows.restore(snapshot, self.sample_size, f.slots, f.examples)

    def topic_snapshot(self, topic: str) -> dict[str, Any]:
        return self.topics.topic_snapshot(topic)

    def judge_topic(self, topic: str, snapshot: dict[str, Any] | None,
                    kept: dict[int, dict[str, Any]] | None = None) -> None:
        self.topics.judge_topic(topic, snapshot, kept)

    def kept_windows(self, topic: str) -> list[int]:
        return self.topics.kept_windows(topic)

    def release(self, partitions: Collection[Position] = (), topics: Collection[str] = ()) -> None:
        """Forget partitions and topics this instance no longer owns or judges."""
        for partition in partitions:
            self.partitions.pop(partition, None)
        self.outbox = [c for c in self.outbox if c.partition not in partitions]
        self.topics.release(topics)

    # -- a lone instance's state, every topic at once (the state file) -----------------------------------------
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(windows, histories) as JSON-safe dicts keyed by topic; history samples and format counts are
        stored apart (``history_copies``)."""
        windows = {}
        for topic in sorted({t for t, _ in self.partitions} | set(self.assemblers)):
            windows[topic] = {"length_ms": self.length_ms, "assembly": self.topics.topic_snapshot(topic)["assembly"],
                              "partitions": [{"partition": n, "windows": w.snapshot()}
                                             for (t, n), w in sorted(self.partitions.items()) if t == topic]}
        histories = {t: {"entries": h.to_list(), "streak": self.streaks.get(t, 0)} for t, h in self.histories.items()}
        return windows, histories

    def restore(self, windows: dict[str, Any], histories: dict[str, Any],
                samples: dict[str, dict[int, WindowSample]] | None = None,
                formats: dict[str, dict[int, FormatCounts]] | None = None) -> None:
        """Continue from ``snapshot``'s output (or a state file's that kept one ``Windows`` per topic) and the
        history's samples and format counts; refuses (``StateError``) windows of another length, and
        snapshots of the wrong shape (the judge is then as it was)."""
        partitions: dict[Position, Windows] = {}
        assemblers: dict[str, HourAssembler] = {}
        for topic, snapshot in windows.items():
            with restoring(f"the saved windows of {topic!r}"):
                length_ms = int(snapshot["length_ms"])
                if length_ms != self.length_ms:
                    raise StateError(f"the saved windows of {topic!r} are {length_ms // 1000} s long; "
                                     f"window.length_seconds is {self.length_ms // 1000}: move the state file aside "
                                     "to start afresh, or restore the window length it was written with")
                partitions_of_topic, assemblers[topic] = self._restored_topic(topic, snapshot)
                partitions.update(partitions_of_topic)
        kept: dict[str, History] = {}
        streaks: dict[str, int] = {}
        for topic, history in histories.items():
            with restoring(f"the saved history of {topic!r}"):
                kept[topic] = History.from_list(history["entries"], self.settings, self.length_ms,
                                                (samples or {}).get(topic), (formats or {}).get(topic))
                streaks[topic] = int(history.get("streak", 0))
        self.partitions, self.said_idle = partitions, {}
        self.topics.assemblers, self.topics.histories, self.topics.streaks = assemblers, kept, streaks

    def _restored_topic(self, topic: str, snapshot: dict[str, Any]) -> tuple[dict[Position, Windows], HourAssembler]:
        f = self.format_settings
        if "partitions" in snapshot:
            return ({(topic, int(item["partition"])): Windows.restore(item["windows"], self.sample_size, f.slots,
                                                                       f.examples)
                     for item in snapshot["partitions"]}, HourAssembler.restore(snapshot["assembly"]))
        # One ``Windows`` for the whole topic (state files written before windows were kept per partition):
        # each partition continues from the topic's mark, and its judge has judged every hour before it.
        whole = Windows.restore(snapshot, self.sample_size, f.slots, f.examples)
        split = whole.by_partition()
        assembler = HourAssembler(topic, self.length_ms)
        assembler.judged_before_ms, assembler.late_records = whole.closed_before_ms, whole.late_total
        if whole.closed_before_ms is not None:
            assembler.marks = {n: whole.closed_before_ms for _, n in split}
        return split, assembler
