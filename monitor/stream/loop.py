"""The one live loop, for a lone instance and for a member of a group: poll a batch, hand it to the store,
do what other threads asked for between two batches, tell the observers.

Where window state is kept, where closed windows are judged and how outputs are committed is the choice of
a ``Store``: ``monitor.stream.file_store.FileStore`` (one instance, state in a SQLite file, windows judged
where they close) or ``monitor.stream.group.GroupStore`` (a member of a group, state in the Kafka changelog,
hours assembled on the member that judges the topic, exactly once). Both run the same record pipeline
(``monitor.stream.pipeline``). Scheduled jobs (``monitor.ops.schedule``) only *request* work; the loop does
it between batches, so the state is only ever touched by this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from monitor.core.score import Scorer
from monitor.counted import counted, reasons_after
from monitor.errors import ShutdownTimeout
from monitor.records import Polled, Position
from monitor.stream.hooks import Hooks, Snapshot
from monitor.stream.batch import Counts
from monitor.stream.pipeline import RecordPipeline

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 60.0
TICK_INTERVAL_S = 1.0  # how often the hooks get a fresh snapshot (lag, open windows, readiness)
BACKOFF_MAX_S = 15.0


class Store(Protocol):
    """Where a loop's window state lives and where what it closes goes."""

    source: Any  # the consumer: ``monitor.stream.sources.Source`` (``GroupSource`` in a group)

    def describe(self) -> str:
        """One line for the log when the loop starts: what is read, where state and outputs go."""

    def take(self, polled: Polled) -> None:
        """A polled batch (possibly empty) through the pipeline, and what it closed to where it goes."""

    def close_by_clock(self) -> None:
        """Move a quiet stream's event time on by the wall time watched quiet (``monitor.hourly.window``)."""

    def commit(self) -> None:
        """Make the state, the outputs since the last commit and the offsets they are exact at durable."""

    def decide(self, report: Any, scorer: Scorer | None) -> bool:
        """A decision on a candidate model: promoted (``scorer``) or refused; ``False`` when it is not this
        instance's to take (a member that no longer decides model changes)."""

    def between_batches(self, committed: bool) -> None:
        """What the store does between two batches (``committed``: a commit was just made): take in the
        accepted formats and the group's schedule, try stopped partitions again."""

    def mend(self) -> None:
        """Before a batch: repair what the last error broke (a producer, the owned state)."""

    def recover(self, exc: BaseException) -> bool:
        """After ``exc``: whether it was an error of the cluster or the group that the store recovered from
        (the loop goes on after a backoff); ``False``: a bug, raised."""

    def stopping(self, deadline: float) -> None:
        """A stop was asked for: waits for the cluster end at ``deadline`` (``time.monotonic``)."""

    def lag_and_assigned(self) -> tuple[Mapping[Position, int], bool]:
        """Consumer lag of the input partitions, and whether this instance has any."""

    def stats(self) -> str:
        """What to add to the periodic statistics line."""

    def close(self) -> None:
        """Close the clients and files (best effort)."""


class StreamLoop:
    """Runs ``store`` until ``request_stop``; ``hooks`` get a snapshot once per ``TICK_INTERVAL_S``."""

    def __init__(self, config: Any, pipeline: RecordPipeline, store: Store, hooks: Sequence[Hooks] = ()) -> None:
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.hooks = list(hooks)
        self._stop = threading.Event()
        self._close_requested = threading.Event()
        self._commit_requested = threading.Event()
        self._decisions: list[tuple[Any, Scorer | None]] = []
        self._lock = threading.Lock()
        self._last_tick = float("-inf")
        self._last_stats = time.monotonic()
        self._backoff_s = 1.0

    @property
    def scorer(self) -> Scorer:
        return self.pipeline.scorer

    @property
    def counts(self) -> Counts:
        return self.pipeline.counts

    @property
    def source(self) -> Any:
        return self.store.source

    # -- requests from other threads (scheduled jobs, signal handlers) ----------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, commit, and return from ``run`` (signal-handler safe)."""
        if not self._stop.is_set():
            self.store.stopping(time.monotonic() + self.config.shutdown.timeout_seconds)
            self._stop.set()

    def request_close_check(self) -> None:
        self._close_requested.set()

    def request_checkpoint(self) -> None:
        self._commit_requested.set()

    def offer_decision(self, report: Any, scorer: Scorer | None) -> None:
        """A decision on a candidate model (``monitor.ops.lifecycle.Promoter``): taken between two batches;
        with ``scorer`` the candidate takes over at the next window boundary."""
        with self._lock:
            self._decisions.append((report, scorer))

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        log.info(self.store.describe())
        try:
            while not self._stop.is_set():
                self.step()
            self.store.commit()
        except ShutdownTimeout:
            log.warning("stopped with the broker unreachable: the work after the last commit is done again on "
                        "restart (window figures stay exact; nothing is counted twice)")
        finally:
            self._log_stats()
            self.store.close()

    def step(self) -> None:
        """One turn: mend, one batch, the requests of other threads, the observers. An error of the cluster
        or the group is recovered from by the store, then retried after a backoff that doubles."""
        try:
            self.store.mend()
            batch = self.config.batch
            self.store.take(self.store.source.next_batch(batch.max_records, batch.max_wait_ms))
            self._do_requests()
            self._backoff_s = 1.0
        except Exception as exc:
            if not self.store.recover(exc):
                raise
            self._stop.wait(self._backoff_s)
            self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
        self.tick()
        if time.monotonic() - self._last_stats >= STATS_INTERVAL_S:
            self._log_stats()
            self._last_stats = time.monotonic()

    def _do_requests(self) -> None:
        with self._lock:
            decisions, self._decisions = self._decisions, []
        for report, scorer in decisions:
            if self.store.decide(report, scorer):
                for hook in self.hooks:
                    hook.on_model_decision(report.summary())
        if self._close_requested.is_set():
            self._close_requested.clear()
            self.store.close_by_clock()
        committed = self._commit_requested.is_set()
        if committed:
            self._commit_requested.clear()
            self.store.commit()
        self.store.between_batches(committed)

    def commit(self) -> None:
        """Commit now (what a clean stop does last)."""
        self.store.commit()

    def tick(self) -> None:
        """Hand the hooks a fresh snapshot, at most once per ``TICK_INTERVAL_S``."""
        if not self.hooks or time.monotonic() - self._last_tick < TICK_INTERVAL_S:
            return
        self._last_tick = time.monotonic()
        lag, assigned = self.store.lag_and_assigned()
        judge = self.pipeline.judge
        snapshot = Snapshot(lag, judge.open_summary(), assigned, self.scorer.bundle.info(),
                            judge.latest_event_by_topic(),
                            self.store.source.progress(self.config.window.quiet_seconds).unreachable)
        for hook in self.hooks:
            hook.on_tick(snapshot)

    def _log_stats(self) -> None:
        c = self.counts
        log.info("consumed %d: scored %d (%d abnormal, %d late), dead-lettered %d%s; %s closed%s", c.consumed,
                 c.scored, c.abnormal, c.late, c.dead_lettered, reasons_after(c.rejected),
                 counted(c.windows_closed, "window"), self.store.stats())
