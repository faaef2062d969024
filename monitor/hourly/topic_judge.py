"""A topic's judge: its hours put together from its partitions' closed windows, each judged once against the
topic's history.

Windows close per partition (``monitor.hourly.judge.HourlyJudge``); each partition's closed windows and mark
reach its topic's judge as a ``PartitionClose``, on the same instance (a lone instance is a group of one) or
through the windows topic (``monitor.stream.group``). ``receive`` hands them to the topic's
``HourAssembler``; ``assemble`` judges the hours every partition has passed (``judge_window``). Each judged
topic has a snapshot of its own (``topic_snapshot``), so judging moves between instances one topic at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from monitor.hourly.assembly import HourAssembler
from monitor.hourly.compare import alarm_rates
from monitor.hourly.evidence import SIGNALS, Levels
from monitor.hourly.format_change import compare_formats, escalate
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.history import ErrorModel, History
from monitor.hourly.hour_figures import HourFigures
from monitor.hourly.partition_close import PartitionClose, StillAt
from monitor.hourly.reasons import Reason
from monitor.hourly.report import WindowReport, WindowTotals
from monitor.hourly.restoring import restoring
from monitor.hourly.sample import WindowSample
from monitor.hourly.timeline import iso_utc
from monitor.hourly.top_records import TopRecord
from monitor.hourly.window import ClosedWindow
from monitor.settings import CompareConfig, FormatConfig

log = logging.getLogger(__name__)

ModelFor = Callable[[int], ErrorModel]
"""The model that scores the window starting at the given time (ms): each window has exactly one."""


@runtime_checkable
class TrainingFormats(Protocol):
    """A model that knows its training data's formats (``monitor.core.score.Scorer`` does)."""

    def training_format_shares(self) -> Mapping[str, float]: ...


@runtime_checkable
class TrainingErrors(Protocol):
    """A model that knows its training errors (``monitor.core.score.Scorer`` does): the judgement's levels."""

    @property
    def threshold(self) -> float: ...
    @property
    def training_errors(self) -> np.ndarray: ...


class TopicJudge:
    """The assembler, history and abnormal streak of each judged topic."""

    def __init__(self, length_ms: int, settings: CompareConfig, sample_size: int,
                 formats: FormatConfig = FormatConfig()) -> None:
        self.length_ms = length_ms
        self.settings = settings
        self.sample_size = sample_size
        self.format_settings = formats
        self.assemblers: dict[str, HourAssembler] = {}
        self.histories: dict[str, History] = {}
        self.streaks: dict[str, int] = {}  # consecutive abnormal windows per topic
        self._levels_cache: dict[str, Levels] = {}

    # -- assembling ------------------------------------------------------------------------------------------
    def receive(self, close: PartitionClose) -> int:
        """A partition's closed windows and mark; returns the records that came after their hour was judged."""
        topic, number = close.partition
        return self._assembler(topic).offer(number, close.mark_ms, close.parts, close.idle, close.open_parts,
                                            close.idle_at)

    def assemble(self, model_for: ModelFor | str, partitions_of: Callable[[str], Collection[int]],
                 still_at: StillAt | None = None) -> list[WindowReport]:
        """Judge every hour of a judged topic that all its partitions (``partitions_of``) have passed, an idle
        one only if ``still_at`` confirms nothing was written to it since its owner said so; oldest first."""
        if isinstance(model_for, str):
            version = model_for
            model_for = lambda start_ms: version  # type: ignore[assignment,return-value] # noqa: E731
        reports = [self.judge_window(topic, closed, model_for(closed.start_ms))  # type: ignore[operator]
                   for topic, assembler in sorted(self.assemblers.items())
                   for closed in assembler.due(partitions_of(topic), _of_topic(still_at, topic))]
        return sorted(reports, key=lambda r: (r.start_ms, r.topic))

    def _assembler(self, topic: str) -> HourAssembler:
        if topic not in self.assemblers:
            self.assemblers[topic] = HourAssembler(topic, self.length_ms)
        return self.assemblers[topic]

    def judged_before_ms(self) -> list[int | None]:
        """Each judged topic's mark: every hour before it is judged (``None``: none yet)."""
        return [a.judged_before_ms for a in self.assemblers.values()]

    def late_total(self) -> int:
        return sum(a.late_records for a in self.assemblers.values())

    # -- judging ---------------------------------------------------------------------------------------------
    def judge_window(self, topic: str, closed: ClosedWindow, model: ErrorModel | str) -> WindowReport:
        """Judge a closed window of ``topic`` against its history, and keep it there."""
        history = self.histories.setdefault(topic, History(self.settings, self.length_ms))
        version = model if isinstance(model, str) else model.version
        if history.model_version not in (None, version) and not isinstance(model, str):
            # The first window of a new model: the baseline carries over, estimated from the samples.
            rescored = history.rescore(model)
            log.info("model %s takes over %s at %s: %d history windows re-scored from their samples",
                     model.version, topic, iso_utc(closed.start_ms), rescored)
        sample = closed.total.sample if self.sample_size else None
        top = closed.total.top.records
        figures = HourFigures.of(closed.start_ms, closed.total, version, tuple((r.sequence, r.error) for r in top))
        counts = closed.total.formats
        training = model.training_format_shares() if isinstance(model, TrainingFormats) else {}
        moved_p = alarm_rates(self.settings, self.length_ms)[1] if self.settings.method == "calibrated" else 1.0
        change = compare_formats(counts, history.baseline_formats(figures), training, self.format_settings, moved_p)
        levels = self._levels(model)
        comparison = escalate(history.compare(figures, levels), change)
        comparison = replace(comparison, reasons=tuple(_named(r, top, levels) for r in comparison.reasons))
        history.keep(replace(figures, verdict=comparison.verdict), sample, counts)
        report = WindowReport(topic, closed.start_ms, closed.end_ms, WindowTotals.of(closed.total), comparison,
                              version, change, sample, counts, top)
        self.streaks[topic] = self.streaks.get(topic, 0) + 1 if report.abnormal else 0
        return report

    def _levels(self, model: ErrorModel | str) -> Levels | None:
        """The model's error levels for the judgement (``None`` for a model known by its version alone: the
        baseline's own levels are used)."""
        if not isinstance(model, TrainingErrors):
            return None
        cached = self._levels_cache.get(model.version)  # type: ignore[attr-defined]
        if cached is None:
            cached = self._levels_cache[model.version] = Levels.of_model(  # type: ignore[attr-defined]
                model.threshold, model.training_errors)
        return cached

    def accept(self, topic: str, start_ms: int) -> bool:
        """Let the closed window of ``topic`` at ``start_ms`` serve in baselines whatever its verdict."""
        history = self.histories.get(topic)
        return history is not None and history.accept(start_ms)

    def history_copies(self) -> dict[str, History]:
        """Copies of each topic's history (figures and samples; closed samples never change), safe to read
        from another thread while the loop goes on."""
        return {topic: History(self.settings, self.length_ms, history.entries, dict(history.samples),
                               dict(history.formats))
                for topic, history in dict(self.histories).items()}

    def normal_samples(self) -> list[list[str]]:
        """The sampled sequences of every kept window judged normal or accepted, per window, oldest first
        (safe to call from another thread)."""
        windows = [(start, topic, sequences) for topic, history in sorted(self.history_copies().items())
                   for start, sequences in history.normal_samples()]
        return [sequences for _, _, sequences in sorted(windows, key=lambda w: (w[0], w[1]))]

    def history_windows(self) -> dict[str, list[int]]:
        """Each topic's kept window starts (those with a sample or format counts stored)."""
        return {topic: sorted(set(history.samples) | set(history.formats)) for topic, history in self.histories.items()}

    def kept_windows(self, topic: str) -> list[int]:
        """The starts of ``topic``'s history windows (each has a stored sample and format counts)."""
        history = self.histories.get(topic)
        return [] if history is None else sorted({e.start_ms for e in history.entries})

    # -- state -----------------------------------------------------------------------------------------------
    def topic_snapshot(self, topic: str) -> dict[str, Any]:
        """The topic's assembly and history figures (each kept window's sample and format counts are stored
        apart, once: ``WindowReport`` of its judging)."""
        history = self.histories.get(topic)
        return {"assembly": self._assembler(topic).snapshot(),
                "history": history.to_list() if history is not None else [],
                "streak": self.streaks.get(topic, 0)}

    def judge_topic(self, topic: str, snapshot: dict[str, Any] | None,
                    kept: dict[int, dict[str, Any]] | None = None) -> None:
        """Take over judging ``topic`` from its snapshot and its kept windows' samples and format counts
        (by start; ``None``: a topic never judged yet); ``StateError`` for a snapshot of the wrong shape."""
        if snapshot is None:
            self.assemblers[topic] = HourAssembler(topic, self.length_ms)
            self.histories[topic] = History(self.settings, self.length_ms)
            self.streaks[topic] = 0
            return
        kept = kept or {}
        with restoring(f"the saved judging of {topic!r}"):
            samples = {start: WindowSample.from_dict(k) for start, k in kept.items() if "sequences" in k}
            formats = {start: FormatCounts.from_dict(k["formats"]) for start, k in kept.items() if "formats" in k}
            assembler = HourAssembler.restore(snapshot["assembly"])
            history = History.from_list(snapshot["history"], self.settings, self.length_ms, samples, formats)
            streak = int(snapshot.get("streak", 0))
        self.assemblers[topic], self.histories[topic], self.streaks[topic] = assembler, history, streak

    def release(self, topics: Collection[str]) -> None:
        """Forget topics this instance no longer judges."""
        for topic in topics:
            self.assemblers.pop(topic, None)
            self.histories.pop(topic, None)
            self.streaks.pop(topic, None)


def _of_topic(still_at: StillAt | None, topic: str) -> Callable[[Mapping[int, int]], Collection[int] | None] | None:
    """``still_at`` for one topic's partitions by number."""
    if still_at is None:
        return None

    def of_topic(offsets: Mapping[int, int]) -> Collection[int] | None:
        confirmed = still_at({(topic, n): o for n, o in offsets.items()})
        return None if confirmed is None else {n for t, n in confirmed if t == topic}
    return of_topic


def _named(reason: Reason, top: tuple[TopRecord, ...], levels: Levels | None) -> Reason:
    """``reason`` with the window's records that drove it: those at or above its level, highest first."""
    if reason.records or not top:
        return reason
    if reason.signal in SIGNALS and levels is not None:
        return reason.with_records(tuple(r.sequence for r in top if r.error >= levels.level(reason.signal)))
    return reason
