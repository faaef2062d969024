"""The long-running loop: poll a batch, decode, score, window, send dead letters and scored events,
checkpoint, commit.

Window sums and the offsets they are exact at are checkpointed together (``monitor.state``); Kafka offsets
are committed after each checkpoint, never ahead of it, and only once every record up to them was scored or
dead-lettered and each message sent was acknowledged. A crash re-reads from the checkpoint, so no record is
counted twice in a window (scored events and dead letters may repeat: at least once); a clean stop
checkpoints last and re-reads nothing. Broker outages are retried with backoff and logged once per change
of state. Scheduled jobs (``monitor.schedule``) only *request* work; the loop does it between batches, so
the state is only ever touched by one thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from monitor.decode import Decoded, decode_batch
from monitor.hourly import HourlyPipeline, WindowReport, group_by_partition
from monitor.kafka_io import BrokerUnavailable
from monitor.records import Polled, Position, RawMessage, Record, Rejected
from monitor.score import Scorer
from monitor.state import Checkpoint, StateStore

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 15.0
STATS_INTERVAL_S = 60.0
# How long one delivery or commit may take before it counts as an outage and is retried.
REQUEST_TIMEOUT_S = 10.0


class Source(Protocol):
    def next_batch(self, max_records: int, timeout_ms: int) -> Polled: ...
    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = ...) -> None: ...
    def processed(self, next_offsets: Mapping[Position, int]) -> None: ...
    def close(self) -> None: ...


class Hooks(Protocol):
    """What the service tells an observer (the metrics exporter); every method is optional to act on."""

    def on_batch(self, result: BatchResult, seconds: float) -> None: ...
    def on_window_closed(self, report: WindowReport, streak: int) -> None: ...
    def on_checkpoint(self, saved_at: float) -> None: ...
    def on_tick(self, service: Service) -> None: ...


class NoHooks:
    def on_batch(self, result: BatchResult, seconds: float) -> None:
        pass

    def on_window_closed(self, report: WindowReport, streak: int) -> None:
        pass

    def on_checkpoint(self, saved_at: float) -> None:
        pass

    def on_tick(self, service: Service) -> None:
        pass


class Sink(Protocol):
    def send_all(self, topic: str, messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
                 timeout_s: float = ...) -> int: ...
    def close(self, timeout_s: float = ...) -> None: ...


class ShutdownTimeout(Exception):
    """The stop deadline passed while the broker was still unreachable."""


@dataclass
class Counts:
    """Running totals since start: every consumed message is either scored or rejected."""

    consumed: int = 0
    scored: int = 0
    abnormal: int = 0
    late: int = 0
    windows_closed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    committed_batches: int = 0

    @property
    def dead_lettered(self) -> int:
        return sum(self.rejected.values())


@dataclass
class BatchResult:
    """What one batch became; ``next_offsets`` is the resume position per partition."""

    decoded: Decoded
    next_offsets: dict[Position, int]
    errors: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    late: Counter[str] = field(default_factory=Counter)  # records after their window closed, by topic
    by_partition: dict[Position, np.ndarray] = field(default_factory=dict)  # record indices per partition

    @property
    def rejected(self) -> list[Rejected]:
        return self.decoded.rejected


class Service:
    """Consumes, scores, windows and accounts for a stream; ``run`` returns after ``request_stop``."""

    def __init__(self, config: Any, scorer: Scorer, source: Source, sink: Sink, state: StateStore,
                 pipeline: HourlyPipeline, hooks: Sequence[Hooks] = (),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.scorer = scorer
        self.source = source
        self.sink = sink
        self.state = state
        self.pipeline = pipeline
        self.hooks = list(hooks)
        self.counts = Counts()
        self.positions: dict[Position, int] = {}  # where the window state is exact, per partition
        self.last_record_at = clock()  # "quiet" counts from the start, not from 1970
        self.last_checkpoint_at = clock()
        self._sleep = sleep
        self._clock = clock
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._outage_since: float | None = None
        self._closed_since_checkpoint: list[WindowReport] = []
        self._close_requested = threading.Event()
        self._checkpoint_requested = threading.Event()
        self._next_scorer: Scorer | None = None
        self._lock = threading.Lock()
        self.retrainer: Any = None  # set by the runner when scheduled retraining is on

    # -- state ----------------------------------------------------------------------------------------------
    def restore(self) -> Checkpoint | None:
        """Load the last checkpoint into the windows; returns it (``None`` on a first start)."""
        checkpoint = self.state.load()
        if checkpoint is not None:
            self.pipeline.restore(checkpoint.windows, checkpoint.history)
            self.positions = dict(checkpoint.offsets)
            log.info("state restored from %s: %d partitions, checkpoint of %s", self.state.path,
                     len(self.positions), time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime(checkpoint.saved_at_ms / 1000)))
        return checkpoint

    def checkpoint(self) -> None:
        """Store windows, history and positions in one transaction, then commit the positions to Kafka."""
        windows, history = self.pipeline.snapshot()
        self.state.save(Checkpoint(dict(self.positions), windows, history, self.scorer.bundle.version),
                        [r.to_dict() for r in self._closed_since_checkpoint])
        self._closed_since_checkpoint = []
        self.last_checkpoint_at = self._clock()
        for hook in self.hooks:
            hook.on_checkpoint(self.last_checkpoint_at)
        positions = dict(self.positions)
        self._until_done("commit offsets", lambda: self.source.commit(positions, int(REQUEST_TIMEOUT_S * 1000)))
        self.counts.committed_batches = self.counts.batches

    # -- requests from scheduled jobs (any thread) ----------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, checkpoint, commit, and return from ``run`` (signal-handler safe)."""
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.config.shutdown.timeout_seconds
            self._stop.set()

    def request_close_check(self) -> None:
        self._close_requested.set()

    def request_checkpoint(self) -> None:
        self._checkpoint_requested.set()

    def offer_scorer(self, scorer: Scorer) -> None:
        """Swap to ``scorer`` (a validated, newly published bundle) between two batches."""
        with self._lock:
            self._next_scorer = scorer

    # -- lifecycle ------------------------------------------------------------------------------------------
    def run(self) -> None:
        log.info("consuming %s as group %r; dead letters to %r; scored events to %r",
                 ", ".join(self.config.input.topics), self.config.input.group_id, self.config.dead_letter.topic,
                 self.config.output.topic)
        last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                self.run_once()
                self._do_requests()
                for hook in self.hooks:
                    hook.on_tick(self)
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
        started = time.perf_counter()
        result = self.process(polled.messages, polled.next_offsets)
        self.positions.update(result.next_offsets)
        self.source.processed(result.next_offsets)
        self.last_record_at = self._clock()
        self._close_windows(now_ms=None)
        seconds = time.perf_counter() - started
        for hook in self.hooks:
            hook.on_batch(result, seconds)
        return result

    def _do_requests(self) -> None:
        with self._lock:
            scorer, self._next_scorer = self._next_scorer, None
        if scorer is not None:
            log.info("model bundle %s replaces %s", scorer.bundle.version, self.scorer.bundle.version)
            self.scorer = scorer
        if self._close_requested.is_set():
            self._close_requested.clear()
            if self._clock() - self.last_record_at >= self.config.window.quiet_seconds:
                # A quiet stream moves no watermark: let the wall clock close what is due.
                self._close_windows(now_ms=int(self._clock() * 1000))
        if self._checkpoint_requested.is_set():
            self._checkpoint_requested.clear()
            self.checkpoint()

    # -- one batch ------------------------------------------------------------------------------------------
    def process(self, messages: Sequence[RawMessage], next_offsets: dict[Position, int]) -> BatchResult:
        """Decode, score, window and send; returns once everything of the batch is accounted for.

        ``next_offsets``: where each partition resumes after ``messages`` (the source knows it from the poll)."""
        decoded = decode_batch(messages, self.config.input)
        result = BatchResult(decoded, next_offsets)
        scored = self._score(decoded, result)
        result.late = self._window(decoded, result)
        if decoded.rejected:
            letters = [dead_letter(r, self.config.dead_letter.max_value_bytes) for r in decoded.rejected]
            self._until_done("send dead letters", lambda: self._send(self.config.dead_letter.topic, letters))
        if self.config.output.topic and len(decoded):
            self._until_done("send scored events", lambda: self._send(self.config.output.topic, scored))
        self._account(messages, result)
        return result

    def _score(self, decoded: Decoded, result: BatchResult
               ) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        if not len(decoded):
            return []
        sequences = decoded.sequences
        scores = self.scorer.score(sequences)
        result.errors, result.flags = scores.errors, scores.flags
        if not self.config.output.topic:
            return []
        flagged = [i for i, flag in enumerate(scores.flags) if flag]
        reasons = dict(zip(flagged, self.scorer.explain([sequences[i] for i in flagged]))) if flagged else {}
        return [scored_event(r, float(scores.errors[i]), float(scores.percentiles[i]), bool(scores.flags[i]),
                             reasons.get(i, [])) for i, r in enumerate(decoded.records())]

    def _window(self, decoded: Decoded, result: BatchResult) -> Counter[str]:
        late: Counter[str] = Counter()
        if not len(decoded):
            return late
        weights, times = decoded.weights, decoded.event_times_ms
        now_ms = int(self._clock() * 1000)
        if len(result.next_offsets) == 1:  # the usual batch: one partition, no grouping needed
            result.by_partition = {next(iter(result.next_offsets)): np.arange(len(decoded))}
        else:
            result.by_partition = group_by_partition((m.topic, m.partition) for m in decoded.messages)
        for partition, idx in result.by_partition.items():
            late[partition[0]] += self.pipeline.add(partition, result.errors[idx], weights[idx], times[idx],
                                                    result.flags[idx], now_ms=now_ms)
        return late

    def _close_windows(self, now_ms: int | None) -> None:
        for report in self.pipeline.close_due(self.scorer.bundle.version, now_ms):
            self.counts.windows_closed += 1
            self._closed_since_checkpoint.append(report)
            streak = self.pipeline.streaks.get(report.topic, 0)
            log_level = logging.WARNING if report.abnormal else logging.INFO
            log.log(log_level, "window %s %s closed: %d records, weighted mean error %.6g, z %.2f, verdict %s",
                    report.topic, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.start_ms / 1000)),
                    report.count, report.weighted_mean, report.robust_z, report.verdict)
            for hook in self.hooks:
                hook.on_window_closed(report, streak)

    def _send(self, topic: str, messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        self.sink.send_all(topic, messages, REQUEST_TIMEOUT_S)

    def _account(self, messages: Sequence[RawMessage], result: BatchResult) -> None:
        self.counts.batches += 1
        self.counts.consumed += len(messages)
        self.counts.scored += len(result.decoded)
        self.counts.abnormal += int(result.flags.sum())
        self.counts.late += sum(result.late.values())
        self.counts.rejected.update(r.reason for r in result.rejected)

    # -- outages --------------------------------------------------------------------------------------------
    def _until_done(self, what: str, action: Callable[[], object]) -> None:
        """Run ``action`` until it succeeds, backing off while the broker is unavailable."""
        delay = BACKOFF_INITIAL_S
        while True:
            try:
                action()
            except BrokerUnavailable as exc:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning("broker unavailable (%s): %s; retrying with backoff", what, exc)
                if self._stop_deadline is not None and time.monotonic() + delay > self._stop_deadline:
                    raise ShutdownTimeout(what) from exc
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self._outage_since is not None:
                log.warning("broker reachable again after %.1fs; resuming", time.monotonic() - self._outage_since)
                self._outage_since = None
            return

    def _log_stats(self) -> None:
        c = self.counts
        log.info("consumed %d: scored %d (%d abnormal, %d late), dead-lettered %d %s; %d windows closed",
                 c.consumed, c.scored, c.abnormal, c.late, c.dead_lettered, dict(c.rejected) or "", c.windows_closed)

    def _close(self) -> None:
        self._log_stats()
        for name, close in (("consumer", self.source.close), ("producer", self.sink.close),
                            ("state file", self.state.close)):
            try:
                close()
            except Exception:  # closing is best effort: what matters is checkpointed and committed
                log.warning("closing the %s failed", name, exc_info=True)


def dead_letter(rejected: Rejected, max_value_bytes: int | None = None
                ) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The original key and bytes (cut to ``max_value_bytes``), the original headers, and where it came from
    and why, as headers."""
    m = rejected.message
    value = m.value or b""
    ours = [("monitor.reason", rejected.reason), ("monitor.detail", rejected.detail),
            ("monitor.source.topic", m.topic), ("monitor.source.partition", str(m.partition)),
            ("monitor.source.offset", str(m.offset)),
            ("monitor.source.timestamp_ms", "" if m.timestamp is None or m.timestamp < 0 else str(m.timestamp))]
    if max_value_bytes is not None and len(value) > max_value_bytes:
        ours.append(("monitor.value_cut_from_bytes", str(len(value))))
        value = value[:max_value_bytes]
    headers = source_headers(m) + [(k, v.encode("utf-8")) for k, v in ours]
    return m.key, value, headers


def scored_event(record: Record, error: float, percentile: float, abnormal: bool,
                 reasons: list[tuple[str, float]]) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """A JSON scored event keyed and headed like its source message."""
    m = record.message
    body = {
        "sequence": record.sequence, "error": error, "percentile": round(percentile, 4), "abnormal": abnormal,
        "explanation": [{"part": part, "share": share} for part, share in reasons],
        "weight": record.weight, "event_time_ms": record.event_time_ms,
        "source": {"topic": m.topic, "partition": m.partition, "offset": m.offset},
    }
    return m.key, json.dumps(body, separators=(",", ":")).encode("utf-8"), source_headers(m)


def source_headers(message: RawMessage) -> list[tuple[str, bytes]]:
    """The message's headers to send on; a header without a value gets an empty one."""
    return [(k, v or b"") for k, v in message.headers] if message.headers else []
