"""Scores in, hourly reports out: event-time windows per topic, each closed window judged against history.

The record pipeline (``monitor.stream.pipeline``) drives it for every source. It holds no I/O: the caller
supplies errors, weights, event times and the clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from monitor.errors import StateError
from monitor.hourly.compare import ABNORMAL, Comparison, History, HourFigures
from monitor.hourly.window import ClosedWindow, Progress, WindowAccumulator, Windows
from monitor.records import Position
from monitor.settings import CompareSettings


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
    ``to_dict``, whose keys are ``REPORT_FIELDS``."""

    topic: str
    start_ms: int
    end_ms: int
    totals: WindowTotals
    comparison: Comparison
    model_version: str

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    @property
    def abnormal(self) -> bool:
        return self.verdict in ABNORMAL

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-safe (``nan`` becomes ``None``), keys in ``REPORT_FIELDS`` order."""
        flat = {"topic": self.topic, "start_ms": self.start_ms, "end_ms": self.end_ms, **asdict(self.totals),
                **asdict(self.comparison), "model_version": self.model_version}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in flat.items()}


REPORT_FIELDS = ("topic", "start_ms", "end_ms", *(f.name for f in fields(WindowTotals)),
                 *(f.name for f in fields(Comparison)), "model_version")


class HourlyJudge:
    """Windows and history for each topic; ``add`` scores' batches, ``close_due`` yields reports."""

    def __init__(self, length_ms: int, allowed_lateness_ms: int, settings: CompareSettings) -> None:
        self.length_ms = length_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.settings = settings
        self.windows: dict[str, Windows] = {}
        self.histories: dict[str, History] = {}
        self.streaks: dict[str, int] = {}  # consecutive abnormal windows per topic

    def add(self, partition: Position, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None) -> int:
        """Account one partition's scored records; returns how many arrived after their window closed."""
        late = self._windows(partition[0]).add(partition, errors, weights, event_times_ms, flags, now_ms=now_ms)
        return int(sum(late.values()))

    def close_due(self, model_version: str, now_ms: int | None = None,
                  progress: Progress = Progress()) -> list[WindowReport]:
        """Close the windows the event-time mark (or ``now_ms``) has passed, judge them, oldest first;
        ``progress`` says which partitions hold windows open (``Windows``)."""
        reports = [self._judge(topic, closed, model_version) for topic, windows in sorted(self.windows.items())
                   for closed in windows.close_due(now_ms, progress.of_topic(topic))]
        return sorted(reports, key=lambda r: (r.start_ms, r.topic))

    def flush(self, model_version: str) -> list[WindowReport]:
        """Close every open window (the end of a replayed input)."""
        # From the open windows' ends, not the watermarks: an event time beyond the wall clock given to
        # ``add`` opens a window past the watermark, and it must close too.
        last_end = max((start + self.length_ms for w in self.windows.values() for start, _ in w.open_summary()),
                       default=0)
        far_future = max([last_end, *(w.latest_event_ms or 0 for w in self.windows.values())]) + \
            self.length_ms + self.allowed_lateness_ms + 1
        return self.close_due(model_version, now_ms=far_future)

    def open_summary(self) -> dict[str, list[tuple[int, WindowAccumulator]]]:
        return {topic: windows.open_summary() for topic, windows in self.windows.items()}

    def late_total(self) -> int:
        """Records refused as late since the start, over every topic."""
        return sum(w.late_total for w in self.windows.values())

    def _windows(self, topic: str) -> Windows:
        if topic not in self.windows:
            self.windows[topic] = Windows(self.length_ms, self.allowed_lateness_ms)
            self.histories[topic] = History(self.settings, self.length_ms)
        return self.windows[topic]

    def _judge(self, topic: str, closed: ClosedWindow, model_version: str) -> WindowReport:
        comparison = self.histories[topic].judge(HourFigures.of(closed.start_ms, closed.total, model_version))
        report = WindowReport(topic, closed.start_ms, closed.end_ms, WindowTotals.of(closed.total), comparison,
                              model_version)
        self.streaks[topic] = self.streaks.get(topic, 0) + 1 if report.abnormal else 0
        return report

    # -- state ----------------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(windows, histories) as JSON-safe dicts keyed by topic."""
        windows = {t: w.snapshot() for t, w in self.windows.items()}
        histories = {t: {"entries": h.to_list(), "streak": self.streaks.get(t, 0)} for t, h in self.histories.items()}
        return windows, histories

    def restore(self, windows: dict[str, Any], histories: dict[str, Any]) -> None:
        """Continue from ``snapshot``'s output; refuses (``StateError``) windows of another length."""
        for topic, snapshot in windows.items():
            if int(snapshot["length_ms"]) != self.length_ms:
                raise StateError(f"the saved windows of {topic!r} are {int(snapshot['length_ms']) // 1000} s long; "
                                 f"window.length_seconds is {self.length_ms // 1000}: move the state file aside to "
                                 "start afresh, or restore the window length it was written with")
        self.windows = {t: Windows.restore(s) for t, s in windows.items()}
        self.histories = {t: History.from_list(h["entries"], self.settings, self.length_ms)
                          for t, h in histories.items()}
        self.streaks = {t: int(h.get("streak", 0)) for t, h in histories.items()}
