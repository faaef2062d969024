"""Scores in, hourly reports out: event-time windows per topic, each closed window judged against history.

The record pipeline (``monitor.stream.pipeline``) drives it for every source. It holds no I/O: the caller
supplies errors, weights, event times and the clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from monitor.errors import StateError
from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.compare import Comparison, alarm_rates
from monitor.hourly.evidence import SIGNALS, Levels
from monitor.hourly.format_change import FormatChange, compare_formats, escalate
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.history import ErrorModel, History
from monitor.hourly.hour_figures import ABNORMAL, HourFigures
from monitor.hourly.reasons import Reason, summary
from monitor.hourly.sample import DEFAULT_SIZE, WindowSample
from monitor.hourly.timeline import iso_utc
from monitor.hourly.top_records import TopRecord
from monitor.hourly.window import ClosedWindow, Progress, Windows, restoring
from monitor.records import Position
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


@dataclass(frozen=True)
class WindowTotals:
    """A closed window's own figures: records, weight, weighted error sum and mean (its score; higher is more
    abnormal), the weighted share above the model's threshold, and the median and 99th percentile error."""

    count: int
    weight_sum: float
    weighted_error_sum: float
    weighted_mean: float
    above_threshold_share: float
    error_p50: float
    error_p99: float

    @classmethod
    def of(cls, total: WindowAccumulator) -> WindowTotals:
        return cls(total.count, total.weight_sum, total.weighted_error_sum, total.weighted_mean,
                   total.above_threshold_share, total.histogram.quantile(0.5), total.histogram.quantile(0.99))


@dataclass(frozen=True)
class WindowReport:
    """One closed window of one topic: its totals, its comparison with history, and the model version that
    scored it. Every output (replay's CSV and JSON lines, the state file, the gauges) derives from
    ``to_dict``, whose keys are ``REPORT_FIELDS``. ``formats``: what changed in its formats (which may have
    raised the verdict). ``sample`` and ``format_counts``: the window's sample and format counts, stored beside
    the report (not part of it)."""

    topic: str
    start_ms: int
    end_ms: int
    totals: WindowTotals
    comparison: Comparison
    model_version: str
    formats: FormatChange = field(default_factory=FormatChange)
    sample: WindowSample | None = field(default=None, compare=False, repr=False)
    format_counts: FormatCounts | None = field(default=None, compare=False, repr=False)
    top_records: tuple[TopRecord, ...] = ()

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.comparison.reasons

    def reasons_summary(self) -> str:
        """The reasons in one readable line (empty for a window with none)."""
        return summary(self.comparison.reasons)

    def top_records_dicts(self) -> list[dict[str, Any]]:
        """The top records with their share of the window's weighted error sum."""
        total = self.totals.weighted_error_sum
        return [{"sequence": r.sequence, "error": r.error, "weight": r.weight, "event_time": iso_utc(r.event_ms),
                 "error_share": r.error * r.weight / total if total > 0 else None} for r in self.top_records]

    @property
    def abnormal(self) -> bool:
        return self.verdict in ABNORMAL

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-safe (``nan`` becomes ``None``), keys in ``REPORT_FIELDS`` order."""
        comparison = {f.name: getattr(self.comparison, f.name) for f in fields(Comparison) if f.name != "reasons"}
        flat = {"topic": self.topic, "start_ms": self.start_ms, "end_ms": self.end_ms, **asdict(self.totals),
                **comparison, "model_version": self.model_version}
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in flat.items()}
        return {**row, "formats": self.formats.to_dict(), "reasons": [r.to_dict() for r in self.reasons],
                "top_records": self.top_records_dicts()}


REPORT_FIELDS = ("topic", "start_ms", "end_ms", *(f.name for f in fields(WindowTotals)),
                 *(f.name for f in fields(Comparison) if f.name != "reasons"), "model_version", "formats", "reasons",
                 "top_records")


class HourlyJudge:
    """Windows and history for each topic; ``add`` scores' batches, ``close_due`` yields reports."""

    def __init__(self, length_ms: int, allowed_lateness_ms: int, settings: CompareConfig,
                 sample_size: int = DEFAULT_SIZE, formats: FormatConfig = FormatConfig()) -> None:
        self.length_ms = length_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.settings = settings
        self.sample_size = sample_size
        self.format_settings = formats
        self.windows: dict[str, Windows] = {}
        self.histories: dict[str, History] = {}
        self.streaks: dict[str, int] = {}  # consecutive abnormal windows per topic
        self._levels_cache: dict[str, Levels] = {}

    @classmethod
    def from_config(cls, config: Any, length_ms: int | None = None) -> HourlyJudge:
        """The judge a ``MonitorConfig`` describes: its windows (``length_ms``: another length, a state file's),
        comparison, samples and formats. Every judge of the service, replay and the offline commands is made
        here."""
        window = config.window
        return cls(window.length_ms if length_ms is None else length_ms, window.allowed_lateness_ms, config.compare,
                   window.sample_size, config.formats)

    def add(self, partition: Position, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None, sequences: Sequence[str] | None = None,
            hashes: np.ndarray | None = None, format_ids: np.ndarray | None = None,
            format_names: Sequence[str] = ()) -> int:
        """Account one partition's scored records (``sequences`` feed the windows' samples, ``hashes`` are
        their text hashes when known, ``format_ids`` index ``format_names``, their formats); returns how many
        arrived after their window closed."""
        late = self._windows(partition[0]).add(partition, errors, weights, event_times_ms, flags, now_ms=now_ms,
                                               sequences=sequences, hashes=hashes, format_ids=format_ids,
                                               format_names=format_names)
        return int(sum(late.values()))

    def close_due(self, model_for: ModelFor | str, now_ms: int | None = None,
                  progress: Progress = Progress(), wall_ms: int | None = None) -> list[WindowReport]:
        """Close the windows the event-time mark (or ``now_ms``, an explicit event time) has passed, judge
        them, oldest first; ``progress`` says which partitions hold windows open and ``wall_ms`` is the wall
        clock an idle stream's event time moves on by (``Windows``); ``model_for`` which model scored each
        window (a version alone names a model that cannot re-score history)."""
        if isinstance(model_for, str):
            version = model_for
            model_for = lambda start_ms: version  # type: ignore[assignment,return-value] # noqa: E731
        reports = [self.judge_window(topic, closed, model_for(closed.start_ms))  # type: ignore[operator]
                   for topic, windows in sorted(self.windows.items())
                   for closed in windows.close_due(now_ms, progress.of_topic(topic), wall_ms)]
        return sorted(reports, key=lambda r: (r.start_ms, r.topic))

    def flush(self, model_for: ModelFor | str) -> list[WindowReport]:
        """Close every open window (the end of a replayed input)."""
        # From the open windows' ends, not the watermarks: an event time beyond the wall clock given to
        # ``add`` opens a window past the watermark, and it must close too.
        last_end = max((start + self.length_ms for w in self.windows.values() for start, _ in w.open_summary()),
                       default=0)
        far_future = max([last_end, *(w.latest_event_ms or 0 for w in self.windows.values())]) + \
            self.length_ms + self.allowed_lateness_ms + 1
        return self.close_due(model_for, now_ms=far_future)

    def open_summary(self) -> dict[str, list[tuple[int, WindowAccumulator]]]:
        return {topic: windows.open_summary() for topic, windows in self.windows.items()}

    def latest_event_ms(self) -> int | None:
        """The latest event time seen on any topic (``None`` before the first record)."""
        return max((w.latest_event_ms for w in self.windows.values() if w.latest_event_ms is not None), default=None)

    def latest_event_by_topic(self) -> dict[str, int]:
        """Each topic's latest event time seen (topics without a record yet left out)."""
        return {topic: w.latest_event_ms for topic, w in self.windows.items() if w.latest_event_ms is not None}

    def closed_before_ms(self) -> int | None:
        """Every window starting before this has closed, on every topic (``None``: not yet on one)."""
        marks = [w.closed_before_ms for w in self.windows.values()]
        return None if not marks or None in marks else min(marks)  # type: ignore[type-var]

    def late_total(self) -> int:
        """Records refused as late since the start, over every topic."""
        return sum(w.late_total for w in self.windows.values())

    def _windows(self, topic: str) -> Windows:
        if topic not in self.windows:
            self.windows[topic] = Windows(self.length_ms, self.allowed_lateness_ms, self.sample_size,
                                          self.format_settings.slots, self.format_settings.examples)
            self.histories[topic] = History(self.settings, self.length_ms)
        return self.windows[topic]

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

    # -- state ----------------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(windows, histories) as JSON-safe dicts keyed by topic; history samples and format counts are
        stored apart (``history_copies``)."""
        windows = {t: w.snapshot() for t, w in self.windows.items()}
        histories = {t: {"entries": h.to_list(), "streak": self.streaks.get(t, 0)} for t, h in self.histories.items()}
        return windows, histories

    def restore(self, windows: dict[str, Any], histories: dict[str, Any],
                samples: dict[str, dict[int, WindowSample]] | None = None,
                formats: dict[str, dict[int, FormatCounts]] | None = None) -> None:
        """Continue from ``snapshot``'s output and the history's samples and format counts; refuses
        (``StateError``) windows of another length, and snapshots of the wrong shape (the judge is then as it
        was)."""
        slots, examples = self.format_settings.slots, self.format_settings.examples
        restored: dict[str, Windows] = {}
        for topic, snapshot in windows.items():
            with restoring(f"the saved windows of {topic!r}"):
                length_ms = int(snapshot["length_ms"])
                if length_ms != self.length_ms:
                    raise StateError(f"the saved windows of {topic!r} are {length_ms // 1000} s long; "
                                     f"window.length_seconds is {self.length_ms // 1000}: move the state file aside "
                                     "to start afresh, or restore the window length it was written with")
                restored[topic] = Windows.restore(snapshot, self.sample_size, slots, examples)
        kept: dict[str, History] = {}
        streaks: dict[str, int] = {}
        for topic, history in histories.items():
            with restoring(f"the saved history of {topic!r}"):
                kept[topic] = History.from_list(history["entries"], self.settings, self.length_ms,
                                                (samples or {}).get(topic), (formats or {}).get(topic))
                streaks[topic] = int(history.get("streak", 0))
        self.windows, self.histories, self.streaks = restored, kept, streaks


def _named(reason: Reason, top: tuple[TopRecord, ...], levels: Levels | None) -> Reason:
    """``reason`` with the window's records that drove it: those at or above its level, highest first."""
    if reason.records or not top:
        return reason
    if reason.signal in SIGNALS and levels is not None:
        return reason.with_records(tuple(r.sequence for r in top if r.error >= levels.level(reason.signal)))
    return reason
