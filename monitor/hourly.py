"""Scores in, hourly reports out: event-time windows per topic, each closed window judged against history.

The Kafka service and ``replay`` both drive this class, so for the same records they produce the same
window figures. It holds no I/O: the caller supplies errors, weights, event times and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from monitor.compare import ABNORMAL, CompareSettings, Comparison, History, HourFigures
from monitor.window import ClosedWindow, WindowAccumulator, Windows

Partition = tuple[str, int]


@dataclass(frozen=True)
class WindowReport:
    """One closed window of one topic and its verdict against history: the window's totals followed by
    every field of its ``Comparison``, flat, as the state file, replay's CSV and the metrics read them."""

    topic: str
    start_ms: int
    end_ms: int
    count: int
    weight_sum: float
    weighted_error_sum: float
    weighted_mean: float
    above_threshold_share: float
    error_p50: float
    error_p99: float
    verdict: str
    robust_z: float
    percentile: float
    share_ratio: float
    distribution_distance: float
    baseline_median: float
    baseline_mad: float
    baseline_size: int
    model_version: str

    @property
    def abnormal(self) -> bool:
        return self.verdict in ABNORMAL

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``nan`` becomes ``None``."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


class HourlyPipeline:
    """Windows and history for each topic; ``add`` scores' batches, ``close_due`` yields reports."""

    def __init__(self, length_ms: int, allowed_lateness_ms: int, settings: CompareSettings) -> None:
        self.length_ms = length_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.settings = settings
        self.windows: dict[str, Windows] = {}
        self.histories: dict[str, History] = {}
        self.streaks: dict[str, int] = {}  # consecutive abnormal windows per topic

    def add(self, partition: Partition, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, now_ms: int | None = None) -> int:
        """Account one partition's scored records; returns how many arrived after their window closed."""
        late = self._windows(partition[0]).add(partition, errors, weights, event_times_ms, flags, now_ms=now_ms)
        return int(sum(late.values()))

    def close_due(self, model_version: str, now_ms: int | None = None) -> list[WindowReport]:
        """Close the windows the watermark (or ``now_ms``) has passed, judge them, oldest first."""
        reports = [self._judge(topic, closed, model_version)
                   for topic, windows in sorted(self.windows.items()) for closed in windows.close_due(now_ms)]
        return sorted(reports, key=lambda r: (r.start_ms, r.topic))

    def flush(self, model_version: str) -> list[WindowReport]:
        """Close every open window (the end of a replayed input)."""
        # From the open windows' ends, not the watermarks: an event time beyond the wall clock given to
        # ``add`` opens a window past the watermark, and it must close too.
        last_end = max((start + self.length_ms for w in self.windows.values() for start, _ in w.open_summary()),
                       default=0)
        far_future = max([last_end, *(w.watermark_ms or 0 for w in self.windows.values())]) + \
            self.length_ms + self.allowed_lateness_ms + 1
        return self.close_due(model_version, now_ms=far_future)

    def open_summary(self) -> dict[str, list[tuple[int, WindowAccumulator]]]:
        return {topic: windows.open_summary() for topic, windows in self.windows.items()}

    def late_total(self) -> int:
        return sum(w.late_total for w in self.windows.values())

    def _windows(self, topic: str) -> Windows:
        if topic not in self.windows:
            self.windows[topic] = Windows(self.length_ms, self.allowed_lateness_ms)
            self.histories[topic] = History(self.settings, self.length_ms)
        return self.windows[topic]

    def _judge(self, topic: str, closed: ClosedWindow, model_version: str) -> WindowReport:
        figures = HourFigures.of(closed.start_ms, closed.total, model_version)
        comparison = self.histories[topic].judge(figures)
        report = _report(topic, closed, figures, comparison)
        self.streaks[topic] = self.streaks.get(topic, 0) + 1 if report.abnormal else 0
        return report

    # -- state ----------------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(windows, histories) as JSON-safe dicts keyed by topic."""
        windows = {t: w.snapshot() for t, w in self.windows.items()}
        histories = {t: {"entries": h.to_list(), "streak": self.streaks.get(t, 0)} for t, h in self.histories.items()}
        return windows, histories

    def restore(self, windows: dict[str, Any], histories: dict[str, Any]) -> None:
        self.windows = {t: Windows.restore(s) for t, s in windows.items()}
        self.histories = {t: History.from_list(h["entries"], self.settings, self.length_ms)
                          for t, h in histories.items()}
        self.streaks = {t: int(h.get("streak", 0)) for t, h in histories.items()}


def _report(topic: str, closed: ClosedWindow, figures: HourFigures, c: Comparison) -> WindowReport:
    total = closed.total
    return WindowReport(
        topic=topic, start_ms=closed.start_ms, end_ms=closed.end_ms, count=total.count,
        weight_sum=total.weight_sum, weighted_error_sum=total.weighted_error_sum,
        weighted_mean=total.weighted_mean, above_threshold_share=total.above_threshold_share,
        error_p50=total.histogram.quantile(0.5), error_p99=total.histogram.quantile(0.99),
        model_version=figures.model_version, **asdict(c))


def compare_settings(config: Any) -> CompareSettings:
    """``CompareSettings`` from the ``compare`` config section (it validates the combination)."""
    return CompareSettings(**config.to_dict())


def group_by_partition(partitions: Iterable[Partition]) -> dict[Partition, np.ndarray]:
    """Indices of each partition's records in a batch, in order."""
    keys = list(partitions)
    groups: dict[Partition, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}
