"""The long-running loop: poll a batch, decode, score, send dead letters and scored events, commit.

Offsets are committed only after every record of the batch was scored or dead-lettered and each message
sent was acknowledged, so a crash re-reads at most the batch in hand (at-least-once) and a clean stop
re-reads nothing. Broker outages are retried with backoff and logged once per change of state.
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

from monitor.decode import decode
from monitor.kafka_io import BrokerUnavailable, Position
from monitor.records import RawMessage, Record, Rejected
from monitor.score import Scorer

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 15.0
STATS_INTERVAL_S = 60.0
# How long one delivery or commit may take before it counts as an outage and is retried.
REQUEST_TIMEOUT_S = 10.0


class Source(Protocol):
    def next_batch(self, max_records: int, timeout_ms: int) -> list[RawMessage]: ...
    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = ...) -> None: ...
    def close(self) -> None: ...


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
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    committed_batches: int = 0

    @property
    def dead_lettered(self) -> int:
        return sum(self.rejected.values())


@dataclass
class BatchResult:
    """What one batch became; ``next_offsets`` is the commit position per partition."""

    records: list[Record]
    rejected: list[Rejected]
    next_offsets: dict[Position, int]


class Service:
    """Consumes, scores and accounts for a stream; ``run`` returns when ``stop`` is set."""

    def __init__(self, config: Any, scorer: Scorer, source: Source, sink: Sink,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.scorer = scorer
        self.source = source
        self.sink = sink
        self.counts = Counts()
        self._sleep = sleep
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._outage_since: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, commit, and return from ``run`` (safe to call from a signal handler)."""
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.config.shutdown.timeout_seconds
            self._stop.set()

    def run(self) -> None:
        log.info("consuming %s as group %r; dead letters to %r; scored events to %r",
                 ", ".join(self.config.input.topics), self.config.input.group_id, self.config.dead_letter.topic,
                 self.config.output.topic)
        last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                self.run_once()
                if time.monotonic() - last_stats >= STATS_INTERVAL_S:
                    self._log_stats()
                    last_stats = time.monotonic()
        except ShutdownTimeout:
            log.warning("stopped with the broker unreachable: the last batch was not committed and will be "
                        "read again on restart")
        finally:
            self._close()

    def run_once(self) -> BatchResult | None:
        """Poll and fully process one batch; ``None`` when nothing arrived."""
        batch = self.config.batch
        messages = self.source.next_batch(batch.max_records, batch.max_wait_ms)
        if not messages:
            return None
        result = self.process(messages)
        self._until_done("commit offsets",
                         lambda: self.source.commit(result.next_offsets, int(REQUEST_TIMEOUT_S * 1000)))
        self.counts.committed_batches += 1
        return result

    # -- one batch ------------------------------------------------------------------------------------------
    def process(self, messages: list[RawMessage]) -> BatchResult:
        """Decode, score and send; returns once everything of the batch is accounted for."""
        decoded = [decode(m, self.config.input) for m in messages]
        records = [d for d in decoded if isinstance(d, Record)]
        rejected = [d for d in decoded if isinstance(d, Rejected)]
        scored = self._score(records)
        if rejected:
            letters = [dead_letter(r) for r in rejected]
            self._until_done("send dead letters", lambda: self._send(self.config.dead_letter.topic, letters))
        if self.config.output.topic and records:
            self._until_done("send scored events", lambda: self._send(self.config.output.topic, scored))
        self._account(messages, records, rejected)
        return BatchResult(records, rejected, next_offsets(messages))

    def _score(self, records: list[Record]) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        if not records:
            return []
        sequences = [r.sequence for r in records]
        scores = self.scorer.score(sequences)
        self.counts.abnormal += int(scores.flags.sum())
        if not self.config.output.topic:
            return []
        flagged = [i for i, flag in enumerate(scores.flags) if flag]
        reasons = dict(zip(flagged, self.scorer.explain([sequences[i] for i in flagged]))) if flagged else {}
        return [scored_event(r, float(scores.errors[i]), float(scores.percentiles[i]), bool(scores.flags[i]),
                             reasons.get(i, [])) for i, r in enumerate(records)]

    def _send(self, topic: str, messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        self.sink.send_all(topic, messages, REQUEST_TIMEOUT_S)

    def _account(self, messages: list[RawMessage], records: list[Record], rejected: list[Rejected]) -> None:
        self.counts.batches += 1
        self.counts.consumed += len(messages)
        self.counts.scored += len(records)
        self.counts.rejected.update(r.reason for r in rejected)

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
        log.info("consumed %d: scored %d (%d abnormal), dead-lettered %d %s", c.consumed, c.scored, c.abnormal,
                 c.dead_lettered, dict(c.rejected) or "")

    def _close(self) -> None:
        self._log_stats()
        for name, close in (("consumer", self.source.close), ("producer", self.sink.close)):
            try:
                close()
            except Exception:  # closing is best effort: the offsets that matter are already committed
                log.warning("closing the %s failed", name, exc_info=True)


def next_offsets(messages: Sequence[RawMessage]) -> dict[Position, int]:
    """Per partition, the offset after the highest one in ``messages``."""
    positions: dict[Position, int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        positions[key] = max(positions.get(key, 0), m.offset + 1)
    return positions


def dead_letter(rejected: Rejected) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The original key and bytes, the original headers, and where it came from and why, as headers."""
    m = rejected.message
    ours = [("monitor.reason", rejected.reason), ("monitor.detail", rejected.detail),
            ("monitor.source.topic", m.topic), ("monitor.source.partition", str(m.partition)),
            ("monitor.source.offset", str(m.offset)),
            ("monitor.source.timestamp_ms", "" if m.timestamp_ms is None else str(m.timestamp_ms))]
    headers = list(m.headers) + [(k, v.encode("utf-8")) for k, v in ours]
    return m.key, m.value or b"", headers


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
    return m.key, json.dumps(body, separators=(",", ":")).encode("utf-8"), list(m.headers)
