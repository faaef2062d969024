"""Simulated days of traffic through the hourly monitor: a generated stream with a daily rhythm, a steady
trickle of broken sequences and a drift from a known hour, run through the record pipeline as the Kafka
service runs it. No Kafka, no files.

How soon (and how falsely) the verdicts raise the alarm on such a stream is ``monitor.devtools.detection``;
the same stream with the model retrained on the way, ``monitor.devtools.retraining``; many hours at any
volume, each distinct sequence scored once, ``monitor.devtools.calibration``.

The demo and ``bench/detection.py`` both use it; the tests run it with one-minute "hours".
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.devtools.produce import StreamPlan, planned_stream
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.timeline import HOUR_MS
from monitor.records import RawMessage
from monitor.settings import CompareConfig
from monitor.settings import InputConfig
from monitor.stream.pipeline import RecordPipeline, drain
from monitor.stream.sources import MemorySink, MemorySource

START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z: a midnight, so simulated hour 0 is 00:00 UTC
PEAK_HOUR = 14  # the busiest hour of the simulated day
_CHUNK = 10_000
# Stream sequences are drawn with seeds far from the small ones training corpora use, so the stream's
# normal sequences are new to the model, as live traffic is.
_STREAM_SEED = 7_000_000


@dataclass(frozen=True)
class Simulation:
    """A stream of ``hours`` simulated hours of format ``fmt``, each ``hour_ms`` of event time long.

    An hour holds about ``records_per_hour`` records, more at ``PEAK_HOUR`` and fewer twelve hours later
    (``daily_swing``: relative amplitude of that daily cycle), times hour-to-hour noise (``count_noise``:
    standard deviation of a log-normal factor). Every hour an ``anomaly_rate`` share of the records are
    broken, by corruptions drawn evenly from those that apply to the format (the steady background of bad
    input a real topic has). From ``drift_from_hour`` on, a further ``drift_share`` of the records are
    anomalies of kind ``drift_kind`` (``monitor.devtools.produce.planned_stream``, as the ``produce`` command does).

    >>> sim = Simulation(hours=3, records_per_hour=50, drift_from_hour=2, seed=1)
    >>> [len(sequences) for _, sequences in hourly_batches(sim)] == list(hourly_counts(sim))
    True
    """

    hours: int = 96
    records_per_hour: int = 2_000
    daily_swing: float = 0.3
    count_noise: float = 0.1
    anomaly_rate: float = 0.01
    drift_from_hour: int | None = 72
    drift_kind: str = "other_format"
    drift_share: float = 0.15
    fmt: str = "serial"
    hour_ms: int = HOUR_MS
    start_ms: int = START_MS
    seed: int = 0

    def __post_init__(self) -> None:
        check_sizes_and_shares(self, ("daily_swing", "anomaly_rate", "drift_share"))
        if self.fmt not in generate.FORMATS:
            raise ValueError(f"fmt must be one of {sorted(generate.FORMATS)}, got {self.fmt!r}")

    def hour_of(self, start_ms: int) -> int:
        """The simulated hour a window starting at ``start_ms`` belongs to (0 = the first)."""
        return (start_ms - self.start_ms) // self.hour_ms


def check_sizes_and_shares(stream: Any, shares: Sequence[str]) -> None:
    """What every simulated stream checks: positive ``hours``, ``records_per_hour`` and ``hour_ms``, and each
    of ``shares`` in [0, 1)."""
    if stream.hours < 1 or stream.records_per_hour < 1 or stream.hour_ms < 1:
        raise ValueError(f"hours, records_per_hour and hour_ms must be positive, got {stream.hours}, "
                         f"{stream.records_per_hour} and {stream.hour_ms}")
    for name in shares:
        if not 0 <= getattr(stream, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(stream, name)}")


def hourly_counts(sim: Simulation) -> np.ndarray:
    """Records in each simulated hour: the daily cycle times log-normal noise, at least one."""
    rng = np.random.default_rng([sim.seed, 1])
    hours = np.arange(sim.hours)
    cycle = 1 + sim.daily_swing * np.cos(2 * np.pi * (hours - PEAK_HOUR) / 24)
    noise = rng.lognormal(-sim.count_noise ** 2 / 2, sim.count_noise, sim.hours)  # mean 1
    return np.maximum(np.rint(sim.records_per_hour * cycle * noise), 1).astype(np.int64)


def hourly_batches(sim: Simulation) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Each simulated hour's ``(event_times_ms, sequences)``, in time order."""
    background = _background(sim)
    for hour, count in enumerate(hourly_counts(sim)):
        drifting = sim.drift_from_hour is not None and hour >= sim.drift_from_hour
        plan = StreamPlan(count=int(count), start_ms=sim.start_ms + hour * sim.hour_ms,
                          hours=sim.hour_ms / HOUR_MS, fmt=sim.fmt, drift_from_hour=0.0 if drifting else None,
                          drift_kind=sim.drift_kind, drift_share=sim.drift_share,
                          seed=_STREAM_SEED + sim.seed * 10_000 + hour)
        pairs = list(planned_stream(plan, background))
        yield np.fromiter((t for t, _ in pairs), np.int64, len(pairs)), [s for _, s in pairs]


def hourly_messages(sim: Simulation, topic: str) -> Iterator[list[RawMessage]]:
    """Each simulated hour as one batch of messages of partition 0 of ``topic``."""
    offset = 0
    for times, sequences in hourly_batches(sim):
        yield [RawMessage(topic, 0, offset + i, int(t), None, s.encode("utf-8"))
               for i, (t, s) in enumerate(zip(times, sequences))]
        offset += len(sequences)


def applicable_corruptions(fmt: str) -> list[str]:
    """The corruptions of ``monitor.devtools.generate`` that can break a sequence of format ``fmt``."""
    return [kind for kind in generate.CORRUPTIONS if generate.anomalies(fmt, kind, 5, set(), seed=0)]


def _background(sim: Simulation) -> Iterator[str]:
    """Normal sequences with an ``anomaly_rate`` share replaced by corruptions of mixed kinds, endless."""
    rng = random.Random(f"background/{sim.seed}")
    kinds = applicable_corruptions(sim.fmt)
    per_kind = math.ceil(_CHUNK * sim.anomaly_rate / max(len(kinds), 1)) + 1
    for chunk in itertools.count():
        seed = _STREAM_SEED + sim.seed * 1_000 + chunk
        broken = [a for kind in kinds for a in generate.anomalies(sim.fmt, kind, per_kind, set(), seed=seed)]
        for sequence in generate.sample(sim.fmt, _CHUNK, seed=seed):
            yield rng.choice(broken) if broken and rng.random() < sim.anomaly_rate else sequence


def run(sim: Simulation, scorer: Scorer, settings: CompareConfig = CompareConfig(),
        topic: str = "simulated") -> list[WindowReport]:
    """Every simulated hour through the record pipeline as plain-text messages whose timestamps are their
    event times (windows of ``sim.hour_ms``, no lateness, weight 1 each), one batch per hour; the report
    of every window, oldest first."""
    pipeline = RecordPipeline(scorer, HourlyJudge(sim.hour_ms, 0, settings), InputConfig(), MemorySink())
    return drain(MemorySource(hourly_messages(sim, topic)), pipeline, _CHUNK)
