"""Load generator: sequences to a topic at a given rate, with event times spread over simulated hours and an
optional format drift from a given hour, so hours of a stream can be replayed in seconds."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from monitor.devtools import generate
from monitor.errors import BrokerUnavailable, InputError
from monitor.hourly.timeline import HOUR_MS, iso_utc
from monitor.ops import logs
from monitor.settings import load_config
from monitor.stream.files import read_sequences
from monitor.stream.kafka import KafkaSink, is_outage


@dataclass(frozen=True)
class StreamPlan:
    """What to generate. ``hours`` of event time starting at ``start_ms`` hold ``count`` records evenly;
    from ``drift_from_hour`` on, a ``drift_share`` of them are anomalies of kind ``drift_kind``."""

    count: int
    start_ms: int
    hours: float = 1.0
    fmt: str = "serial"
    drift_from_hour: float | None = None
    drift_kind: str = "other_format"
    drift_share: float = 0.5
    seed: int = 0


def planned_stream(plan: StreamPlan, sequences: Iterable[str] | None = None) -> Iterator[tuple[int, str]]:
    """``(event_time_ms, sequence)`` pairs in time order; ``sequences`` replaces the built-in generator."""
    rng = random.Random(plan.seed)
    normal = iter(sequences) if sequences is not None else _endless(plan.fmt, plan.seed)
    drift = _endless_anomalies(plan.fmt, plan.drift_kind, plan.seed)
    step_ms = plan.hours * HOUR_MS / max(plan.count, 1)
    drift_from_ms = None if plan.drift_from_hour is None else plan.start_ms + plan.drift_from_hour * HOUR_MS
    for i in range(plan.count):
        timestamp = int(plan.start_ms + i * step_ms)
        drifting = drift_from_ms is not None and timestamp >= drift_from_ms and rng.random() < plan.drift_share
        try:
            yield timestamp, next(drift) if drifting else next(normal)
        except StopIteration:
            return


def encode_value(sequence: str, timestamp_ms: int, as_json: bool) -> bytes:
    if as_json:
        return json.dumps({"sequence": sequence, "event_time_ms": timestamp_ms}).encode("utf-8")
    return sequence.encode("utf-8")


def paced(items: Iterable[tuple[int, str]], rate_per_s: float) -> Iterator[tuple[int, str]]:
    """Yield ``items`` no faster than ``rate_per_s`` (0: as fast as possible)."""
    if rate_per_s <= 0:
        yield from items
        return
    started = time.monotonic()
    for n, item in enumerate(items):
        wait = started + n / rate_per_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield item


def _endless(fmt: str, seed: int) -> Iterator[str]:
    chunk = 0
    while True:
        yield from generate.sample(fmt, 10_000, seed=seed * 1_000 + chunk)
        chunk += 1


def _endless_anomalies(fmt: str, kind: str, seed: int) -> Iterator[str]:
    chunk = 0
    while True:
        batch = generate.anomalies(fmt, kind, 1_000, set(), seed=seed * 1_000 + chunk)
        if not batch:
            raise ValueError(f"the corruption {kind!r} does not apply to format {fmt!r}")
        yield from batch
        chunk += 1


class NewTopicNotice(logging.Filter):
    """Holds back kafka-python's error that ``topic`` is not in the cluster's metadata: for a new topic it
    comes before the broker creates the topic on the first send, which then succeeds."""

    MESSAGE = "Topic %s not found in cluster metadata"

    def __init__(self, topic: str) -> None:
        super().__init__()
        self.topic = topic

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == self.MESSAGE and record.args == (self.topic,))


def run_produce(args: argparse.Namespace) -> int:
    logs.configure()
    config = load_config(args.config)
    kafka = config.kafka
    if args.bootstrap_servers:
        kafka = dataclasses.replace(kafka, bootstrap_servers=tuple(args.bootstrap_servers.split(",")))
    topic = args.topic or config.input.topics[0]
    plan = StreamPlan(count=args.count, start_ms=_start_ms(args.start, args.hours), hours=args.hours,
                      fmt=args.format, drift_from_hour=args.drift_from_hour, drift_kind=args.drift_kind,
                      drift_share=args.drift_share, seed=args.seed)
    sequences = _file_sequences(args.input) if args.input else None
    with _unreachable_as_error(kafka.bootstrap_servers):
        sink = KafkaSink(kafka)
    sent = 0
    new_topic_notice = NewTopicNotice(topic)
    logging.getLogger("kafka.cluster").addFilter(new_topic_notice)
    try:
        with _unreachable_as_error(kafka.bootstrap_servers):
            for timestamp, sequence in paced(planned_stream(plan, sequences), args.rate):
                sink.send(topic, None, encode_value(sequence, timestamp, args.json), timestamp_ms=timestamp)
                sent += 1
            sink.flush()
    finally:
        sink.close()
        logging.getLogger("kafka.cluster").removeFilter(new_topic_notice)
    print(f"produced {sent} records to {topic}, event times from "
          f"{iso_utc(plan.start_ms)} over {args.hours:g} simulated hours")
    return 0


@contextmanager
def _unreachable_as_error(servers: Sequence[str]) -> Iterator[None]:
    """A cluster that does not answer ends ``produce`` with one line naming it (no retries: a load generator
    pointed at the wrong address should say so, not wait)."""
    try:
        yield
    except Exception as exc:  # kafka-python raises several types for "no broker"; ask is_outage
        if not is_outage(exc) and type(exc).__name__ != "NoBrokersAvailable":
            raise
        raise BrokerUnavailable(f"the Kafka cluster at {','.join(servers)} did not answer: {exc}") from exc


def _start_ms(start: str | None, hours: float) -> int:
    if start:
        try:
            moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"--start {start!r} is not an ISO 8601 time") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    now_ms = int(time.time() * 1000)
    return (now_ms - int(hours * HOUR_MS)) // HOUR_MS * HOUR_MS


def _file_sequences(path: Path) -> list[str]:
    sequences, _ = read_sequences(path)
    return sequences
