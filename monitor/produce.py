"""Load generator: sequences to a topic at a given rate, with event times spread over simulated hours and an
optional format drift from a given hour, so hours of a stream can be replayed in seconds."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from monitor import generate

HOUR_MS = 3_600_000


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
