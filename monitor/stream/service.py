"""The long-running loop: poll a batch, run it through the record pipeline, checkpoint, commit.

Window sums and the offsets they are exact at are checkpointed together (``monitor.stream.state``); Kafka
offsets are committed after each checkpoint, never ahead of it, and only once every record up to them was
scored or dead-lettered and each message sent was acknowledged. A crash re-reads from the checkpoint, so no
record is counted twice in a window (scored events and dead letters may repeat: at least once); a clean
stop checkpoints last and re-reads nothing. Broker outages are retried (``monitor.stream.retry``).
Scheduled jobs (``monitor.ops.schedule``) only *request* work; the loop does it between batches, so the
state is only ever touched by one thread.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.core.score import Scorer
from monitor.counted import counted, reasons_after
from monitor.errors import ShutdownTimeout, StateError
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.judge import HourlyJudge, WindowReport
from monitor.hourly.sample import WindowSample
from monitor.hourly.shadow import ShadowReport
from monitor.hourly.timeline import iso_utc
from monitor.hourly.window import restoring
from monitor.records import Position
from monitor.stream.hooks import Hooks, Snapshot, say_unreachable
from monitor.stream.pipeline import BatchResult, Counts, RecordPipeline
from monitor.stream.retry import REQUEST_TIMEOUT_S, Retry, replaced
from monitor.stream.sources import Source
from monitor.stream.state import Accepted, Checkpoint, StateStore

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 60.0
TICK_INTERVAL_S = 1.0  # how often the hooks get a fresh snapshot (lag, open windows, readiness)


class Service:
    """Consumes ``source`` through ``pipeline``, checkpoints to ``state``; ``run`` returns after
    ``request_stop``. ``positions``: where the restored window state is exact, per partition.
    ``reconnect``: a new source resuming at the given positions, for when commits keep failing.
    ``accepted_applied``: the last accepted format the restored history took in; ``on_accepted`` is called
    (with the new ones) when operators accept more."""

    def __init__(self, config: Any, pipeline: RecordPipeline, source: Source, state: StateStore, retry: Retry,
                 positions: Mapping[Position, int] | None = None, hooks: Sequence[Hooks] = (),
                 reconnect: Callable[[Mapping[Position, int]], Source] | None = None,
                 clock: Callable[[], float] = time.time, accepted_applied: int = 0,
                 on_accepted: Callable[[list[Accepted]], None] | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.source = source
        self.reconnect = reconnect
        self.state = state
        self.retry = retry
        self.positions: dict[Position, int] = dict(positions or {})
        self.hooks = list(hooks)
        self.last_checkpoint_at = clock()
        self._clock = clock
        self._stop = threading.Event()
        self._closed_since_checkpoint: list[WindowReport] = []
        self._close_requested = threading.Event()
        self._checkpoint_requested = threading.Event()
        self._decisions: list[tuple[Scorer | None, ShadowReport]] = []
        self.accepted_applied = accepted_applied
        self.on_accepted = on_accepted
        self._lock = threading.Lock()
        self._last_tick = float("-inf")
        self._unreachable: frozenset[Position] = frozenset()  # partitions whose broker is not answering

    @property
    def scorer(self) -> Scorer:
        return self.pipeline.scorer

    @property
    def counts(self) -> Counts:
        return self.pipeline.counts

    # -- state ----------------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Store windows, history, samples, the models in use and positions in one transaction, then commit
        the positions to Kafka; then take in the formats operators accepted since."""
        judge = self.pipeline.judge
        windows, history = judge.snapshot()
        closed = self._closed_since_checkpoint
        kept = judge.history_windows()
        self.state.save(Checkpoint(dict(self.positions), windows, history, self.scorer.version,
                                   models=self.pipeline.models.snapshot(), accepted_applied=self.accepted_applied),
                        [r.to_dict() for r in closed],
                        [(r.topic, r.start_ms, kept_of(r)) for r in closed
                         if (r.sample is not None or r.format_counts is not None)
                         and r.start_ms in kept.get(r.topic, ())], kept)
        self._closed_since_checkpoint = []
        self.last_checkpoint_at = self._clock()
        for hook in self.hooks:
            hook.on_checkpoint(self.last_checkpoint_at)
        positions = dict(self.positions)
        self.retry.until_done("commit offsets", lambda: self.source.commit(positions, int(REQUEST_TIMEOUT_S * 1000)),
                              reconnect=self._reconnect_source if self.reconnect else None)

    def _reconnect_source(self) -> None:
        """Replace a consumer that keeps failing; the new one resumes where the state is exact."""
        reconnect = self.reconnect
        assert reconnect is not None
        self.source = replaced(self.source, lambda: reconnect(dict(self.positions)), lambda old: old.close(),
                               "consumer")

    # -- requests from scheduled jobs (any thread) ----------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, checkpoint, commit, and return from ``run`` (signal-handler safe)."""
        if not self._stop.is_set():
            self.retry.stop(time.monotonic() + self.config.shutdown.timeout_seconds)
            self._stop.set()

    def request_close_check(self) -> None:
        self._close_requested.set()

    def request_checkpoint(self) -> None:
        self._checkpoint_requested.set()

    def offer_decision(self, report: ShadowReport, scorer: Scorer | None) -> None:
        """A decision on a candidate model (``monitor.hourly.shadow``): recorded, and when ``scorer`` is given,
        promoted between two batches at the next window boundary."""
        with self._lock:
            self._decisions.append((scorer, report))

    # -- lifecycle ------------------------------------------------------------------------------------------
    def run(self) -> None:
        log.info("consuming %s as group %r; dead letters to %r; %s", ", ".join(self.config.input.topics),
                 self.config.input.group_id, self.config.dead_letter.topic,
                 f"scored events to {self.config.output.topic!r}" if self.config.output.topic
                 else "no scored events (output.topic is not set)")
        last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                self.run_once()
                self._do_requests()
                self.tick()
                if time.monotonic() - last_stats >= STATS_INTERVAL_S:
                    self._log_stats()
                    last_stats = time.monotonic()
            self.checkpoint()
        except ShutdownTimeout:
            log.warning("stopped with the broker unreachable: offsets after the last commit will be read "
                        "again on restart (the state file is exact; nothing is counted twice)")
        finally:
            self._close()

    def run_once(self) -> BatchResult | None:
        """Poll and fully process one batch; ``None`` when nothing arrived."""
        batch = self.config.batch
        polled = self.source.next_batch(batch.max_records, batch.max_wait_ms)
        if not polled.messages:
            return None
        progress = self.source.progress(self.config.window.quiet_seconds)
        result = self.pipeline.process(polled, now_ms=int(self._clock() * 1000), progress=progress)
        self.positions.update(result.next_offsets)
        self.source.processed(result.next_offsets)
        self._keep(result.reports)
        return result

    def _do_requests(self) -> None:
        with self._lock:
            decisions, self._decisions = self._decisions, []
        for scorer, report in decisions:
            self._decide(scorer, report)
        if self._close_requested.is_set():
            self._close_requested.clear()
            self._close_by_the_clock()
        if self._checkpoint_requested.is_set():
            self._checkpoint_requested.clear()
            self.checkpoint()
            self.apply_accepted()

    def _decide(self, scorer: Scorer | None, report: ShadowReport) -> None:
        boundary = None
        if scorer is not None:
            previous = self.scorer.version
            boundary = self.pipeline.promote(scorer)
            log.info("model %s promoted over %s (%s): it scores the windows from %s; earlier ones keep theirs",
                     scorer.version, previous, report.outcome, "the first" if boundary is None else iso_utc(boundary))
        else:
            log.warning("candidate model %s refused; %s stays: %s", report.candidate, self.scorer.version,
                        "; ".join(report.reasons))
        self.state.record_decision(report.candidate, report.outcome, boundary, report.to_dict())
        for hook in self.hooks:
            hook.on_model_decision(report.summary())
        self.checkpoint()  # the promotion is part of the state from here on

    def apply_accepted(self) -> list[Accepted]:
        """Take in the formats accepted since the last time (``python -m monitor accept``)."""
        new = self.state.accepted(self.accepted_applied)
        for accepted in new:
            windows = accepted_windows(self.pipeline.judge, accepted)
            for topic, start_ms in windows:
                self.pipeline.judge.accept(topic, start_ms)
            log.warning("format accepted (%s): the retraining corpus takes in %s, baselines take in %s again",
                        accepted.described, counted(len(accepted.sequences), "sequence"),
                        counted(len(windows), "window"))
            self.accepted_applied = accepted.id
        if new and self.on_accepted is not None:
            self.on_accepted(new)
        return new

    def _close_by_the_clock(self) -> None:
        """A quiet stream moves no watermark: idle partitions (caught up, quiet, their broker answering) stop
        holding windows, and once every one is idle the event time moves on by the wall time since its
        latest record (``monitor.hourly.window.Windows``). Reading a backlog or an outage is never idle."""
        progress = self.source.progress(self.config.window.quiet_seconds)
        self._unreachable = say_unreachable(progress.unreachable, self._unreachable)
        self._keep(self.pipeline.close_due(progress=progress, wall_ms=int(self._clock() * 1000)))

    def _keep(self, reports: Sequence[WindowReport]) -> None:
        self._closed_since_checkpoint += reports

    def tick(self) -> None:
        """Hand the hooks a fresh snapshot, at most once per ``TICK_INTERVAL_S``."""
        if not self.hooks or time.monotonic() - self._last_tick < TICK_INTERVAL_S:
            return
        self._last_tick = time.monotonic()
        snapshot = Snapshot(self.source.lag(), self.pipeline.judge.open_summary(), bool(self.source.assignment()),
                            self.scorer.bundle.info(), self.pipeline.judge.latest_event_by_topic(),
                            self.source.progress(self.config.window.quiet_seconds).unreachable)
        for hook in self.hooks:
            hook.on_tick(snapshot)

    def _log_stats(self) -> None:
        c = self.counts
        log.info("consumed %d: scored %d (%d abnormal, %d late), dead-lettered %d%s; %s closed", c.consumed,
                 c.scored, c.abnormal, c.late, c.dead_lettered, reasons_after(c.rejected),
                 counted(c.windows_closed, "window"))

    def _close(self) -> None:
        self._log_stats()
        for name, close in (("consumer", self.source.close), ("producer", self.pipeline.sink.close),
                            ("state file", self.state.close)):
            try:
                close()
            except Exception:  # closing is best effort: what matters is checkpointed and committed
                log.warning("closing the %s failed", name, exc_info=True)


def accepted_windows(judge: HourlyJudge, accepted: Accepted) -> list[tuple[str, int]]:
    """The history windows an accepted format covers: the one named (on its topic, or every topic), or, for
    a file or a pattern, each window judged warning or critical whose sample's share of matching weight is
    at least half the window's share above the threshold (the accepted format is what flagged it)."""
    if accepted.kind == "pattern":
        pattern = re.compile(accepted.value)
        matches: Callable[[str], bool] = lambda s: pattern.search(s) is not None  # noqa: E731
    else:
        known = set(accepted.sequences)
        matches = known.__contains__
    covered = []
    for topic, history in sorted(judge.histories.items()):
        for entry in history.entries:
            if accepted.kind == "window":
                if entry.start_ms == int(accepted.value) and accepted.topic in (None, topic):
                    covered.append((topic, entry.start_ms))
                continue
            sample = history.samples.get(entry.start_ms)
            if entry.verdict not in ("warning", "critical") or sample is None or accepted.topic not in (None, topic):
                continue
            sequences, stands_for = sample.kept()
            matched = sum(w for s, w in zip(sequences, stands_for) if matches(s))
            if stands_for.sum() > 0 and matched / stands_for.sum() >= entry.above_threshold_share / 2:
                covered.append((topic, entry.start_ms))
    return covered


def kept_of(report: WindowReport) -> dict[str, Any]:
    """What the state keeps of a closed window beside its figures: its sample and its format counts."""
    sample = report.sample if report.sample is not None else WindowSample(0)
    return {**sample.to_dict(), **({"formats": report.format_counts.to_dict()} if report.format_counts else {})}


def restore(state: StateStore, judge: HourlyJudge) -> Checkpoint | None:
    """Load the last checkpoint of ``state`` (and the samples of its history) into the judge; returns it
    (``None`` on a first start): its offsets are where the restored windows are exact. State that cannot be
    restored is refused with ``StateError`` naming the file, which nothing has written to yet."""
    checkpoint = state.load()
    if checkpoint is None:
        return None
    stored = state.samples()
    try:
        with restoring("the saved samples of the history"):
            samples = {topic: {start: WindowSample.from_dict(s) for start, s in by_start.items()}
                       for topic, by_start in stored.items()}
            formats = {topic: {start: FormatCounts.from_dict(s["formats"]) for start, s in by_start.items()
                               if "formats" in s}
                       for topic, by_start in stored.items()}
        judge.restore(checkpoint.windows, checkpoint.history, samples, formats)
    except StateError as exc:
        raise StateError(f"{state.path}: {exc}; it was left untouched") from exc
    log.info("state restored from %s: %d partitions, checkpoint of %s", state.path, len(checkpoint.offsets),
             iso_utc(checkpoint.saved_at_ms))
    return checkpoint
