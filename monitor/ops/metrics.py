"""The service's metrics, read at scrape time: with ``monitor.ops.export`` (the HTTP endpoint that serves
them), the only prometheus_client user.

The service calls the hooks below from its loop; they copy what a scrape needs into a snapshot under a lock,
and a collector turns the snapshot into metric families when Prometheus asks. Labels stay low-cardinality:
topic, partition, outcome, reason, verdict, signal (``monitor.hourly.reasons.SIGNAL_TEXT``), never a sequence or
a key.

With ``state.store: kafka`` the instances of a consumer group share the input partitions and the judging of
topics; ``on_assignment`` and ``on_transaction_abort`` feed the group's gauges and counters (partitions owned,
judge role, rebalances, restores, aborts). With the SQLite store they are never called: those gauges are absent
and the counters stay 0.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.hour_figures import VERDICT_LEVEL
from monitor.hourly.report import WindowReport
from monitor.hourly.reasons import LEVELS, SIGNAL_TEXT
from monitor.ops.buckets import BATCH_BUCKETS, RESTORE_BUCKETS, cumulative
from monitor.records import Position
from monitor.stream.batch import BatchResult
from monitor.stream.hooks import Snapshot

PREFIX = "sequence_monitor"


@dataclass
class _TopicWindowState:
    last: WindowReport | None = None
    streak: int = 0
    open_figures: list[tuple[int, WindowAccumulator]] = field(default_factory=list)


class Metrics(Collector):
    """Service hooks that feed a scrape-time collector; register it on ``registry``. ``clock``: wall-clock
    seconds (Unix time), for the checkpoint age and the time a window was judged."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...], model: dict[str, str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.buckets = np.asarray(buckets)
        self.model = model
        self.records: Counter[tuple[str, str]] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self.abnormal: Counter[str] = Counter()
        self.windows_closed: Counter[tuple[str, str]] = Counter()
        self.error_counts: dict[str, np.ndarray] = {}
        self.error_sums: Counter[str] = Counter()
        self.batch_counts = np.zeros(len(BATCH_BUCKETS) + 1, dtype=np.int64)
        self.batch_sum = 0.0
        self.topics: dict[str, _TopicWindowState] = {}
        self.lag: dict[Position, int] = {}
        self.latest_event_ms: dict[str, int] = {}
        self.unreachable: frozenset[Position] = frozenset()
        self.last_checkpoint: float | None = None
        self.decisions: Counter[str] = Counter()
        self.candidate: dict[str, Any] | None = None
        self.ready = False
        # When this instance last judged a window of each topic (Unix time); both stores.
        self.judged_at: dict[str, float] = {}
        # The consumer group (state.store: kafka): None until the first assignment.
        self.owned: Counter[str] | None = None
        self.judged: set[str] | None = None
        self.group_topics: set[str] = set()  # every input topic ever assigned here: owned 0 once it moved away
        self.rebalances = 0
        self.restore_counts = np.zeros(len(RESTORE_BUCKETS) + 1, dtype=np.int64)
        self.restore_sum = 0.0
        self.last_restore: float | None = None
        self.aborts: Counter[str] = Counter()
        self.unreadable: Counter[tuple[str, str]] = Counter()
        self.stopped: list[Position] = []
        self.offsets_pending_s = 0.0
        registry.register(self)

    # -- hooks (service loop thread) ------------------------------------------------------------------------
    def on_batch(self, result: BatchResult, seconds: float) -> None:
        with self._lock:
            for rejected in result.rejected:
                topic = rejected.message.topic
                self.records[(topic, "dead_lettered")] += 1
                self.dead_letters[(topic, rejected.reason)] += 1
            for topic, n in result.late.items():
                if n:
                    self.records[(topic, "late")] += n
            self._observe_errors(result)
            self.batch_counts[np.searchsorted(BATCH_BUCKETS, seconds)] += 1
            self.batch_sum += seconds

    def _observe_errors(self, result: BatchResult) -> None:
        # Per partition, not per record: the loop's grouping is reused so a batch costs a few numpy calls.
        for (topic, _), idx in result.by_partition.items():
            errors, flags = result.errors[idx], result.flags[idx]
            counts = self.error_counts.setdefault(topic, np.zeros(len(self.buckets) + 1, dtype=np.int64))
            counts += np.bincount(np.searchsorted(self.buckets, errors, side="left"), minlength=len(counts))
            self.records[(topic, "scored")] += len(idx)
            self.error_sums[topic] += float(errors.sum())
            self.abnormal[topic] += int(flags.sum())

    def on_window_closed(self, report: WindowReport, streak: int) -> None:
        with self._lock:
            state = self.topics.setdefault(report.topic, _TopicWindowState())
            state.last, state.streak = report, streak
            self.windows_closed[(report.topic, report.verdict)] += 1
            self.judged_at[report.topic] = self._clock()

    def on_checkpoint(self, saved_at: float) -> None:
        with self._lock:
            self.last_checkpoint = saved_at

    def on_model_decision(self, summary: Mapping[str, Any]) -> None:
        with self._lock:
            self.decisions[str(summary["outcome"])] += 1
            self.candidate = dict(summary)

    def on_assignment(self, partitions: Sequence[Position], judged_topics: Sequence[str],
                      restore_seconds: float) -> None:
        """After every rebalance (and every recovery from an aborted transaction): what this instance owns and
        judges now. A topic judged elsewhere now loses its judged-at time here, so only its judge reports it."""
        with self._lock:
            self.owned = Counter(topic for topic, _ in partitions)
            self.judged = set(judged_topics)
            self.group_topics.update(self.owned, self.judged)
            self.judged_at = {t: at for t, at in self.judged_at.items() if t in self.judged}
            # The last window's gauges of a topic judged elsewhere now are its judge's to report: kept here,
            # an old critical verdict would go on firing from this instance.
            for topic in [t for t in self.topics if t not in self.judged]:
                self.topics[topic] = _TopicWindowState(open_figures=self.topics[topic].open_figures)
            self.rebalances += 1
            if partitions or judged_topics:  # nothing to take over is no restore
                self.restore_counts[np.searchsorted(RESTORE_BUCKETS, restore_seconds)] += 1
                self.restore_sum += restore_seconds
                self.last_restore = restore_seconds

    def on_transaction_abort(self, reason: str) -> None:
        with self._lock:
            self.aborts[reason] += 1

    def on_unreadable_state(self, topic: str, outcome: str) -> None:
        with self._lock:
            self.unreadable[(topic, outcome)] += 1

    def on_stopped(self, partitions: Sequence[Position]) -> None:
        with self._lock:
            self.stopped = list(partitions)

    def on_offsets_pending(self, seconds: float) -> None:
        with self._lock:
            self.offsets_pending_s = seconds

    def on_tick(self, snapshot: Snapshot) -> None:
        """Copy what a scrape reads from the loop's state (consumer lag, open windows, readiness, model)."""
        with self._lock:
            self.lag = dict(snapshot.lag)
            self.latest_event_ms = dict(snapshot.latest_event_ms)
            self.unreachable = snapshot.unreachable
            for topic, figures in snapshot.open_windows.items():
                self.topics.setdefault(topic, _TopicWindowState()).open_figures = list(figures)
            self.ready = snapshot.assigned
            self.model = dict(snapshot.model)

    # -- scrape (HTTP thread) -------------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        with self._lock:
            yield from self._counters()
            yield from self._histograms()
            yield from self._window_gauges()
            yield from self._format_gauges()
            yield from self._signal_gauges()
            yield from self._operational_gauges()
            yield from self._model_decisions()
            yield from self._group()

    def _counters(self) -> Iterator[Any]:
        records = CounterMetricFamily(f"{PREFIX}_records", "Records consumed, by outcome: scored, "
                                      "dead_lettered (undecodable), late (scored after their window closed)",
                                      labels=["topic", "outcome"])
        for (topic, outcome), n in sorted(self.records.items()):
            records.add_metric([topic, outcome], n)
        dead = CounterMetricFamily(f"{PREFIX}_dead_letters", "Records sent to the dead-letter topic, by reason",
                                   labels=["topic", "reason"])
        for (topic, reason), n in sorted(self.dead_letters.items()):
            dead.add_metric([topic, reason], n)
        abnormal = CounterMetricFamily(f"{PREFIX}_abnormal_records",
                                       "Records whose error exceeded the model's threshold", labels=["topic"])
        for topic, n in sorted(self.abnormal.items()):
            abnormal.add_metric([topic], n)
        closed = CounterMetricFamily(f"{PREFIX}_windows_closed", "Windows closed, by verdict",
                                     labels=["topic", "verdict"])
        for (topic, verdict), n in sorted(self.windows_closed.items()):
            closed.add_metric([topic, verdict], n)
        yield from (records, dead, abnormal, closed)

    def _histograms(self) -> Iterator[Any]:
        errors = HistogramMetricFamily(f"{PREFIX}_reconstruction_error",
                                       "Per-record reconstruction error (mean squared)", labels=["topic"])
        for topic, counts in sorted(self.error_counts.items()):
            errors.add_metric([topic], cumulative(self.buckets, counts), self.error_sums[topic])
        batch = HistogramMetricFamily(f"{PREFIX}_batch_duration_seconds",
                                      "Time to decode, score, window and deliver one batch")
        batch.add_metric([], cumulative(np.asarray(BATCH_BUCKETS), self.batch_counts), self.batch_sum)
        yield from (errors, batch)

    def _window_gauges(self) -> Iterator[Any]:
        families = {name: GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["topic"])
                    for name, help_text in _WINDOW_GAUGES.items()}
        for topic, state in sorted(self.topics.items()):
            for name, value in _window_values(state).items():
                if value is not None and not math.isnan(value):
                    families[name].add_metric([topic], value)
        yield from families.values()

    def _format_gauges(self) -> Iterator[Any]:
        # Series per format are bounded: the last window's top formats (formats.metrics_top) and at most
        # a few new or vanished ones per topic; a format not among them has no series.
        share = GaugeMetricFamily(f"{PREFIX}_format_share", "Share of the last closed window's records in "
                                  "each of its most common formats", labels=["topic", "format"])
        new = GaugeMetricFamily(f"{PREFIX}_new_format_share", "Share of the last closed window's records in a "
                                "format new to its baseline (or to training, before there is one)",
                                labels=["topic", "format"])
        vanished = GaugeMetricFamily(f"{PREFIX}_vanished_format_baseline_share", "Baseline share of a format the "
                                     "last closed window no longer had", labels=["topic", "format"])
        distance = GaugeMetricFamily(f"{PREFIX}_format_distance", "Jensen-Shannon distance between the last "
                                     "closed window's format shares and its baseline's (0-1)", labels=["topic"])
        for topic, state in sorted(self.topics.items()):
            if state.last is None:
                continue
            change = state.last.formats
            for name, value in change.top:
                share.add_metric([topic, name], value)
            for shift in change.new:
                new.add_metric([topic, shift.format], shift.share)
            for shift in change.vanished:
                vanished.add_metric([topic, shift.format], shift.baseline_share)
            if not math.isnan(change.distance):
                distance.add_metric([topic], change.distance)
        yield from (share, new, vanished, distance)

    def _signal_gauges(self) -> Iterator[Any]:
        # Why the last closed window got its verdict: one series per signal among its reasons at warning or
        # critical level, valued by that level (the strongest if a signal is named twice). Signals come from
        # SIGNAL_TEXT only, so a topic has at most len(SIGNAL_TEXT) series; like the format gauges they are
        # read from the last report, so the next window's replace them and a normal window has none.
        signal = GaugeMetricFamily(f"{PREFIX}_window_signal", "Signals behind the last closed window's warning or "
                                   "critical verdict, one series each: 1 warning, 2 critical (the level of its "
                                   "reason); none for a normal window", labels=["topic", "signal"])
        for topic, state in sorted(self.topics.items()):
            if state.last is not None:
                for name, level in sorted(window_signals(state.last).items()):
                    signal.add_metric([topic, name], level)
        yield signal

    def _operational_gauges(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(f"{PREFIX}_consumer_lag_records", "Records between the consumer's position "
                                "and the end of the partition", labels=["topic", "partition"])
        for (topic, partition), n in sorted(self.lag.items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        behind = GaugeMetricFamily(f"{PREFIX}_event_time_lag_seconds", "Wall time minus the latest event time "
                                   "seen on the topic: about the input's delay live, days for a backfill or replay",
                                   labels=["topic"])
        for topic, latest in sorted(self.latest_event_ms.items()):
            behind.add_metric([topic], self._clock() - latest / 1000)
        yield behind
        unreachable = GaugeMetricFamily(f"{PREFIX}_partitions_unreachable", "Assigned partitions whose broker is "
                                        "not answering: their hours stay open until it answers (an outage is not "
                                        "quiet)", labels=["topic"])
        for topic in sorted({t for t, _ in self.lag} | {t for t, _ in self.unreachable}):
            unreachable.add_metric([topic], sum(1 for t, _ in self.unreachable if t == topic))
        yield unreachable
        if self.last_checkpoint is not None:
            yield GaugeMetricFamily(f"{PREFIX}_checkpoint_age_seconds", "Seconds since the last checkpoint of "
                                    "windows and offsets", value=max(0.0, self._clock() - self.last_checkpoint))
        info = InfoMetricFamily(f"{PREFIX}_model", "The model bundle in use")
        info.add_metric([], {k: str(v) for k, v in self.model.items()})
        yield info
        yield GaugeMetricFamily(f"{PREFIX}_ready", "1 when the model is loaded, the state restored and "
                                "partitions assigned", value=1.0 if self.ready else 0.0)

    def _model_decisions(self) -> Iterator[Any]:
        decisions = CounterMetricFamily(f"{PREFIX}_model_decisions", "Decisions on candidate models, by outcome: "
                                        "promoted, promoted_unshadowed (too little history to compare), refused",
                                        labels=["outcome"])
        for outcome in ("promoted", "promoted_unshadowed", "refused"):
            decisions.add_metric([outcome], self.decisions.get(outcome, 0))
        yield decisions
        c = self.candidate
        if c is None:
            return
        figures = {"normal_kept_ratio": (c["normal_kept"], c["normal"], "Share of the hours judged normal that the "
                                         "last candidate judged normal too"),
                   "flagged_kept_ratio": (c["flagged_kept"], c["flagged"], "Share of the hours judged warning or "
                                          "critical (not accepted) that the last candidate still flagged")}
        for name, (kept, total, help_text) in figures.items():
            if total:
                yield GaugeMetricFamily(f"{PREFIX}_candidate_{name}", help_text, value=kept / total)
        for name, help_text in (("flag_rate", "Share of the normal hours' weight above the last candidate's "
                                 "threshold"), ("expected_flag_rate", "What the last candidate's threshold quantile "
                                                "expects of that share")):
            if c.get(name) is not None:
                yield GaugeMetricFamily(f"{PREFIX}_candidate_{name}", help_text, value=float(c[name]))

    def _group(self) -> Iterator[Any]:
        judged_at = GaugeMetricFamily(f"{PREFIX}_window_judged_timestamp_seconds", "When this instance last judged "
                                      "a window of the topic (Unix time); only on the topic's judge",
                                      labels=["topic"])
        for topic, at in sorted(self.judged_at.items()):
            judged_at.add_metric([topic], at)
        yield judged_at
        rebalances = CounterMetricFamily(f"{PREFIX}_rebalances", "Assignments of partitions and judged topics to "
                                         "this instance (rebalances of the consumer group, and recoveries from "
                                         "an aborted transaction)", value=self.rebalances)
        restores = CounterMetricFamily(f"{PREFIX}_restores", "Assignments that took partitions or judged topics "
                                       "over from the changelog", value=int(self.restore_counts.sum()))
        restore = HistogramMetricFamily(f"{PREFIX}_restore_seconds", "Time to take the assigned partitions and "
                                        "judged topics over from the changelog")
        restore.add_metric([], cumulative(np.asarray(RESTORE_BUCKETS), self.restore_counts), self.restore_sum)
        aborts = CounterMetricFamily(f"{PREFIX}_transaction_aborts", "Transactions aborted (their work is done "
                                     "again), by reason: the error's type", labels=["reason"])
        for reason, n in sorted(self.aborts.items()):
            aborts.add_metric([reason], n)
        unreadable = CounterMetricFamily(f"{PREFIX}_state_unreadable_records", "Unreadable records found on "
                                         "the group's internal topics, by topic and what was done (older value "
                                         "used, stopped, left out, skipped)", labels=["topic", "outcome"])
        for (topic, outcome), n in sorted(self.unreadable.items()):
            unreadable.add_metric([topic, outcome], n)
        stopped = GaugeMetricFamily(f"{PREFIX}_state_stopped_partitions", "Partitions this instance stopped "
                                    "because their state in the changelog is unreadable (their hours wait)",
                                    labels=["topic", "partition"])
        for topic, number in self.stopped:
            stopped.add_metric([topic, str(number)], 1)
        yield from (rebalances, restores, restore, aborts, unreadable, stopped)
        yield GaugeMetricFamily(f"{PREFIX}_committed_offsets_wait_seconds", "How long the take-over of the "
                                "assigned partitions has waited for their committed offsets, which a former "
                                "owner's open transaction holds (0: not waiting)", value=self.offsets_pending_s)
        if self.last_restore is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_restore_seconds", "Time the last take-over from the "
                                    "changelog took", value=self.last_restore)
        if self.owned is None or self.judged is None:
            return  # the SQLite store: no consumer group to report on
        owned = GaugeMetricFamily(f"{PREFIX}_partitions_owned", "Input partitions this instance owns now",
                                  labels=["topic"])
        for topic in sorted(self.group_topics):
            owned.add_metric([topic], self.owned.get(topic, 0))
        role = GaugeMetricFamily(f"{PREFIX}_judge_role", "1 for each input topic this instance judges now "
                                 "(merges its partitions' closed windows and judges the hours)", labels=["topic"])
        for topic in sorted(self.judged):
            role.add_metric([topic], 1)
        yield from (owned, role)


# Gauges of the last closed window, each the report field it shows (``WindowReport.to_dict``).
_REPORT_GAUGES = {
    "window_weighted_mean_error": ("weighted_mean", "Weighted mean error of the last closed window"),
    "window_weight_sum": ("weight_sum", "Weight sum of the last closed window"),
    "window_weighted_error_sum": ("weighted_error_sum", "Weighted error sum of the last closed window"),
    "window_records": ("count", "Records in the last closed window"),
    "window_above_threshold_ratio": ("above_threshold_share",
                                     "Weighted share of the last closed window above the threshold"),
    "window_zscore": ("robust_z", "Robust z-score of the last closed window against its baseline"),
    "window_percentile": ("percentile", "Percentile rank (0-100) of the last closed window among its baseline"),
    "window_distribution_distance": ("distribution_distance",
                                     "Jensen-Shannon distance of the last window's errors to the baseline's"),
    "baseline_median_error": ("baseline_median", "Median weighted mean error of the baseline windows"),
    "baseline_mad_error": ("baseline_mad", "Scaled median absolute deviation of the baseline windows' errors"),
    "baseline_windows": ("baseline_size", "Windows in the baseline the last window was compared with"),
    "window_p_value": ("p_value", "Calibrated tail probability of the last closed window's error counts: the "
                                  "chance of so many records so far above normal in a normal window, corrected for "
                                  "the levels and hours tried (absent while learning and with compare.method mean_z)"),
}
# Gauges of the open (current) window, each the accumulator attribute it shows.
_OPEN_GAUGES = {
    "open_window_weighted_mean_error": ("weighted_mean", "Weighted mean error of the open (current) window so far"),
    "open_window_weight_sum": ("weight_sum", "Weight sum of the open window so far"),
    "open_window_weighted_error_sum": ("weighted_error_sum", "Weighted error sum of the open window so far"),
    "open_window_records": ("count", "Records in the open window so far"),
}
_WINDOW_GAUGES = {
    **{name: help_text for name, (_, help_text) in _OPEN_GAUGES.items()},
    **{name: help_text for name, (_, help_text) in _REPORT_GAUGES.items()},
    "window_verdict": "Verdict of the last closed window: -1 learning, 0 normal, 1 warning, 2 critical",
    "window_start_timestamp_seconds": "Start of the last closed window (Unix time)",
    "window_abnormal_streak": "Consecutive closed windows judged warning or critical",
    "window_outliers": "1 when the last closed window departed by its top records only (they were set aside: an "
                       "outliers reason), else 0",
}


def _window_values(state: _TopicWindowState) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    if state.open_figures:
        _, acc = state.open_figures[-1]  # the newest open window is "the current hour"
        values.update({name: getattr(acc, attribute) for name, (attribute, _) in _OPEN_GAUGES.items()})
    report = state.last
    if report is not None:
        fields = report.to_dict()
        values.update({name: fields[key] for name, (key, _) in _REPORT_GAUGES.items()})
        values.update(window_verdict=VERDICT_LEVEL[report.verdict], window_start_timestamp_seconds=report.start_ms / 1000,
                      window_abnormal_streak=state.streak,
                      window_outliers=float(any(r.signal == "outliers" for r in report.reasons)))
    return values


def window_signals(report: WindowReport) -> dict[str, int]:
    """The signals behind ``report``'s verdict, each with the level of its reason (1 warning, 2 critical):
    the reasons at warning or critical level, at most one entry per signal of ``SIGNAL_TEXT``."""
    signals: dict[str, int] = {}
    for reason in report.reasons:
        level = LEVELS.index(reason.level)  # info 0, warning 1, critical 2: VERDICT_LEVEL's scale
        if level > 0 and reason.signal in SIGNAL_TEXT:
            signals[reason.signal] = max(level, signals.get(reason.signal, 0))
    return signals
