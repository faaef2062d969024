"""What the stream tells its observers (metrics, logs, retraining): the hooks it calls, and the frozen
snapshot of the loop's state that a tick hands them, so no observer ever reads the service itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.report import WindowReport
from monitor.hourly.timeline import iso_utc
from monitor.records import Position
from monitor.stream.batch import BatchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The loop's state as a scrape needs it, copied once a tick: consumer lag per partition, the running
    figures of each topic's open windows (start order), whether partitions are assigned, the model in use
    (``Bundle.info``), each topic's latest event time and the partitions whose broker is not answering."""

    lag: Mapping[Position, int]
    open_windows: Mapping[str, Sequence[tuple[int, WindowAccumulator]]]
    assigned: bool
    model: Mapping[str, str]
    latest_event_ms: Mapping[str, int] = field(default_factory=dict)
    unreachable: frozenset[Position] = frozenset()


def say_unreachable(now: frozenset[Position], before: frozenset[Position]) -> frozenset[Position]:
    """Log when partitions become unreachable (their hours wait) and when they answer again; returns ``now``."""
    if now - before:
        log.warning("the broker of %s is not answering: an outage, not a quiet stream; their hours stay open "
                    "until it answers (sequence_monitor_partitions_unreachable)", _names(now - before))
    if before - now:
        log.info("the broker of %s answers again", _names(before - now))
    return now


def _names(partitions: frozenset[Position]) -> str:
    return ", ".join(f"{topic}[{number}]" for topic, number in sorted(partitions))


class Hooks(Protocol):
    """Called from the loop thread; every method may do nothing."""

    def on_batch(self, result: BatchResult, seconds: float) -> None: ...
    def on_window_closed(self, report: WindowReport, streak: int) -> None: ...
    def on_checkpoint(self, saved_at: float) -> None: ...
    def on_tick(self, snapshot: Snapshot) -> None: ...
    def on_model_decision(self, summary: Mapping[str, Any]) -> None: ...
    def on_assignment(self, partitions: Sequence[Position], judged_topics: Sequence[str], restore_seconds: float) -> None: ...
    def on_transaction_abort(self, reason: str) -> None: ...
    def on_unreadable_state(self, topic: str, outcome: str) -> None: ...
    def on_stopped(self, partitions: Sequence[Position]) -> None: ...
    def on_offsets_pending(self, seconds: float) -> None: ...


class NoHooks:
    """Hooks that do nothing: a base for observers that act on some of them."""

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        pass

    def on_window_closed(self, report: WindowReport, streak: int) -> None:
        pass

    def on_checkpoint(self, saved_at: float) -> None:
        pass

    def on_tick(self, snapshot: Snapshot) -> None:
        pass

    def on_model_decision(self, summary: Mapping[str, Any]) -> None:
        """A candidate model was promoted or refused (``monitor.hourly.shadow.ShadowReport.summary``)."""

    def on_assignment(self, partitions: Sequence[Position], judged_topics: Sequence[str],
                      restore_seconds: float) -> None:
        """The group gave this instance ``partitions`` and the judging of ``judged_topics``; taking them over
        from the changelog took ``restore_seconds`` (state kept in Kafka only)."""

    def on_transaction_abort(self, reason: str) -> None:
        """A transaction was aborted (``reason``: the error's type); the work is done again."""

    def on_unreadable_state(self, topic: str, outcome: str) -> None:
        """An unreadable record on an internal topic (``outcome``: ``older value used``, ``stopped``,
        ``left out`` or ``skipped``)."""

    def on_stopped(self, partitions: Sequence[Position]) -> None:
        """The partitions stopped now because their state in the changelog is unreadable (empty: none)."""

    def on_offsets_pending(self, seconds: float) -> None:
        """The take-over of the assigned partitions has waited ``seconds`` for their committed offsets (a
        former owner's open transaction holds them); 0 once it is done."""


class WindowLog(NoHooks):
    """One log line per closed window: a warning when its verdict is warning or critical."""

    def on_window_closed(self, report: WindowReport, streak: int) -> None:
        reasons = report.reasons_summary()
        log.log(logging.WARNING if report.abnormal else logging.INFO,
                "window %s %s closed: %d records, weighted mean error %.6g, p %.2g, verdict %s%s",
                report.topic, iso_utc(report.start_ms), report.totals.count, report.totals.weighted_mean,
                report.comparison.p_value, report.verdict, f"; reasons: {reasons}" if reasons else "")
