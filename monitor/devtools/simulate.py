"""Simulated days of traffic through the hourly monitor: a generated stream with a daily rhythm, a steady
trickle of broken sequences and a drift from a known hour, run through the record pipeline as the Kafka
service runs it, and how soon (and how falsely) the verdicts raise the alarm. No Kafka, no files.

``run_with_retraining`` runs such a stream with the model retrained every so many hours from the samples of
the windows judged normal, each candidate shadowed and promoted as the service does, so the verdicts across
model changes can be measured too.

``CalibrationStream`` and ``run_judges`` are for many hours at any volume (30 days of 20,000 records an hour):
records are drawn from ``Pools`` of sequences each scored once, and the same scored records are fed to several
``HourlyJudge`` s at once, so that judgements are compared on identical hours.

The demo and ``bench/detection.py`` both use it; the tests run it with one-minute "hours".
"""

from __future__ import annotations

import itertools
import math
import random
import re
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.devtools import generate
from monitor.devtools.produce import StreamPlan, planned_stream
from monitor.hourly.compare import VERDICT_LEVEL
from monitor.hourly.judge import HourlyJudge, WindowReport
from monitor.hourly.sample import DEFAULT_SIZE, text_hashes
from monitor.hourly.shadow import shadow
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.ops.lifecycle import settings_of
from monitor.records import Polled, RawMessage
from monitor.settings import CompareSettings, InputConfig, PromotionConfig
from monitor.stream.pipeline import RecordPipeline, drain
from monitor.stream.sources import MemorySink, MemorySource

START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z: a midnight, so simulated hour 0 is 00:00 UTC
PEAK_HOUR = 14  # the busiest hour of the simulated day
CRITICAL = VERDICT_LEVEL["critical"]
WARNING = VERDICT_LEVEL["warning"]
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
        _check_sizes_and_shares(self, ("daily_swing", "anomaly_rate", "drift_share"))
        if self.fmt not in generate.FORMATS:
            raise ValueError(f"fmt must be one of {sorted(generate.FORMATS)}, got {self.fmt!r}")

    def hour_of(self, start_ms: int) -> int:
        """The simulated hour a window starting at ``start_ms`` belongs to (0 = the first)."""
        return (start_ms - self.start_ms) // self.hour_ms


def _check_sizes_and_shares(stream: Any, shares: Sequence[str]) -> None:
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


def run(sim: Simulation, scorer: Scorer, settings: CompareSettings = CompareSettings(),
        topic: str = "simulated") -> list[WindowReport]:
    """Every simulated hour through the record pipeline as plain-text messages whose timestamps are their
    event times (windows of ``sim.hour_ms``, no lateness, weight 1 each), one batch per hour; the report
    of every window, oldest first."""
    pipeline = RecordPipeline(scorer, HourlyJudge(sim.hour_ms, 0, settings), InputConfig(), MemorySink())
    return drain(MemorySource(hourly_messages(sim, topic)), pipeline, _CHUNK)


# -- retraining on the way ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retraining:
    """One retrain, at the start of simulated hour ``hour`` (every hour before it fed, its last window still
    open). ``corpus``: the sampled normal sequences the candidate was trained on (those there were, when
    skipped). ``candidate``: ``None`` when nothing was trained, there being fewer than ``min_records`` of them
    (``outcome`` "skipped"); otherwise ``outcome`` is the shadow's ("promoted", "promoted_unshadowed" or
    "refused", with its ``reasons``) and ``from_hour`` the first hour the candidate scored (``None`` unless
    promoted)."""

    hour: int
    corpus: int
    candidate: Scorer | None
    outcome: str
    reasons: tuple[str, ...] = ()
    from_hour: int | None = None

    @property
    def promoted(self) -> bool:
        return self.from_hour is not None


@dataclass(frozen=True)
class RetrainRun:
    """One stream run with retraining: every window's report, oldest first, and every retrain."""

    sim: Simulation
    settings: CompareSettings
    reports: list[WindowReport]
    retrainings: list[Retraining]

    @property
    def detection(self) -> Detection:
        return Detection.of(verdict_levels(self.reports, self.sim), self.sim.drift_from_hour)

    @property
    def learning_hours(self) -> int:
        """Hours judged ``learning`` after the first ``min_history`` hours of the stream (when a history
        should long be there): the hours a model change left without a baseline."""
        return sum(r.verdict == "learning" and self.sim.hour_of(r.start_ms) >= self.settings.min_history
                   for r in self.reports)

    @property
    def promoted(self) -> int:
        return sum(r.promoted for r in self.retrainings)

    @property
    def refused(self) -> int:
        return sum(r.outcome == "refused" for r in self.retrainings)

    def candidates(self) -> dict[int, Scorer]:
        """The candidate of each retrain that trained one, by hour (to offer the same ones to another run)."""
        return {r.hour: r.candidate for r in self.retrainings if r.candidate is not None}


def run_with_retraining(sim: Simulation, scorer: Scorer, settings: CompareSettings = CompareSettings(),
                        every_hours: int = 24, *, train_settings: TrainSettings | None = None,
                        max_records: int = 20_000, min_records: int = 10_000,
                        promotion: PromotionConfig = PromotionConfig(), sample_size: int = DEFAULT_SIZE,
                        candidates: Mapping[int, Scorer] | None = None, topic: str = "simulated") -> RetrainRun:
    """``sim`` through the record pipeline one hour per batch, as ``run`` does, starting with ``scorer`` and
    retraining at the start of every ``every_hours``-th hour, as the service's retrainer and promoter do:
    trained (``train_settings``; ``None``: those of the model in use) on the newest ``max_records`` sampled
    sequences of the windows judged normal (none when fewer than ``min_records``), shadowed on the
    windows' samples (``monitor.hourly.shadow``, ``promotion``) and, if it passes, promoted from the next
    window boundary. ``candidates``: offer these, by hour, instead of training (an hour without one is
    skipped), e.g. another run's ``RetrainRun.candidates()``. ``sample_size`` 0 keeps no samples: history is
    then never re-scored, and nothing can be shadowed (every candidate is promoted unseen)."""
    if every_hours < 1:
        raise ValueError(f"every_hours must be positive, got {every_hours}")
    judge = HourlyJudge(sim.hour_ms, 0, settings, sample_size)
    pipeline = RecordPipeline(scorer, judge, InputConfig(), MemorySink())
    reports: list[WindowReport] = []
    retrainings: list[Retraining] = []
    for hour, messages in enumerate(hourly_messages(sim, topic)):
        if hour and hour % every_hours == 0:
            if candidates is None:
                candidate, corpus = _trained(pipeline, train_settings, max_records, min_records)
            else:
                candidate = candidates.get(hour)
                corpus = 0 if candidate is None else int(candidate.bundle.metadata.get("training_rows", 0))
            retrainings.append(_offer(pipeline, sim, hour, candidate, corpus, settings, promotion))
        reports += pipeline.process(Polled(messages, {(topic, 0): messages[-1].offset + 1})).reports
    return RetrainRun(sim, settings, reports + pipeline.flush(), retrainings)


def _trained(pipeline: RecordPipeline, train_settings: TrainSettings | None, max_records: int,
             min_records: int) -> tuple[Scorer | None, int]:
    """A candidate trained on the newest ``max_records`` sampled normal sequences (``None`` when there are
    fewer than ``min_records``, or none), and how many it was trained on."""
    corpus = [s for window in pipeline.judge.normal_samples() for s in window][-max_records:]
    if not corpus or len(corpus) < min_records:
        return None, len(corpus)
    return Scorer(train(corpus, train_settings or settings_of(pipeline.scorer.bundle), verbose=0)), len(corpus)


def _offer(pipeline: RecordPipeline, sim: Simulation, hour: int, candidate: Scorer | None, corpus: int,
           settings: CompareSettings, promotion: PromotionConfig) -> Retraining:
    """``candidate`` shadowed beside the model in use and, if it passes, promoted from the next boundary."""
    if candidate is None:
        return Retraining(hour, corpus, None, "skipped")
    outcome = "promoted_unshadowed"
    if promotion.shadow:
        report = shadow(pipeline.judge.history_copies(), pipeline.scorer, candidate,
                        1 - candidate.bundle.threshold_quantile, settings, promotion)
        if not report.promote:
            return Retraining(hour, corpus, candidate, report.outcome, report.reasons)
        outcome = report.outcome
    boundary = pipeline.promote(candidate)
    return Retraining(hour, corpus, candidate, outcome, (), None if boundary is None else sim.hour_of(boundary))


def hourly_messages(sim: Simulation, topic: str) -> Iterator[list[RawMessage]]:
    """Each simulated hour as one batch of messages of partition 0 of ``topic``."""
    offset = 0
    for times, sequences in hourly_batches(sim):
        yield [RawMessage(topic, 0, offset + i, int(t), None, s.encode("utf-8"))
               for i, (t, s) in enumerate(zip(times, sequences))]
        offset += len(sequences)


# -- how well the alarms did --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """Alarms of one rule on one stream, hours counted from the stream's start.

    ``first_alarm_hour``: the first critical hour at or after the drift (``None``: never, or no drift);
    ``false_critical`` / ``false_warning``: such hours before the drift (all hours without a drift);
    ``drift_hours_critical`` of ``drift_hours``: how much of the drift stayed critical.
    """

    drift_hour: int | None
    first_alarm_hour: int | None
    false_critical: int
    false_warning: int
    drift_hours_critical: int
    drift_hours: int

    @property
    def delay_hours(self) -> int | None:
        if self.first_alarm_hour is None or self.drift_hour is None:
            return None
        return self.first_alarm_hour - self.drift_hour

    @classmethod
    def of(cls, levels: Sequence[int], drift_hour: int | None) -> Detection:
        """From a level per hour (``VERDICT_LEVEL``: 2 critical, 1 warning, lower no alarm).

        >>> d = Detection.of([0, 1, 0, 0, 2, 2], drift_hour=3)
        >>> d.delay_hours, d.false_critical, d.false_warning, d.drift_hours_critical, d.drift_hours
        (1, 0, 1, 2, 3)
        """
        split = len(levels) if drift_hour is None else min(drift_hour, len(levels))
        before, during = levels[:split], levels[split:]
        first = next((split + i for i, level in enumerate(during) if level >= CRITICAL), None)
        return cls(drift_hour, first, sum(level >= CRITICAL for level in before),
                   sum(level == WARNING for level in before), sum(level >= CRITICAL for level in during),
                   len(during))


def verdict_levels(reports: Sequence[WindowReport], sim: Simulation) -> list[int]:
    """The monitor's level of each simulated hour (an hour without a report counts as no alarm)."""
    levels = [VERDICT_LEVEL["insufficient_data"]] * sim.hours
    for report in reports:
        levels[sim.hour_of(report.start_ms)] = VERDICT_LEVEL[report.verdict]
    return levels


def static_rule(reports: Sequence[WindowReport], training_errors: np.ndarray, quantile: float = 0.99) -> list[bool]:
    """Naive reference: an hour alarms when its mean error exceeds the ``quantile`` of the mean of as many
    training errors (normal approximation: training mean + z * std / sqrt(count)). No history involved."""
    mean, std = float(np.mean(training_errors)), float(np.std(training_errors))
    z = statistics.NormalDist().inv_cdf(quantile)
    return [r.totals.weighted_mean > mean + z * std / math.sqrt(max(r.totals.count, 1)) for r in reports]


def rolling_rule(reports: Sequence[WindowReport], history: int = 24, k: float = 3.0) -> list[bool]:
    """Naive reference: an hour alarms when its mean error exceeds the mean of the ``history`` hours before
    it plus ``k`` standard deviations of them (all of them, alarming or not; no alarm before ``history``)."""
    means = [r.totals.weighted_mean for r in reports]
    flags = []
    for i, mean in enumerate(means):
        past = means[max(0, i - history):i]
        flags.append(len(past) == history and mean > statistics.fmean(past) + k * statistics.pstdev(past))
    return flags


def flag_levels(reports: Sequence[WindowReport], flags: Sequence[bool], sim: Simulation) -> list[int]:
    """A naive rule's flags as levels per hour: a flag is its (only) alarm, counted as critical."""
    levels = [0] * sim.hours
    for report, flag in zip(reports, flags):
        levels[sim.hour_of(report.start_ms)] = CRITICAL if flag else 0
    return levels


@dataclass(frozen=True)
class Evaluation:
    """One stream's reports and how the monitor and the two naive references did on it."""

    sim: Simulation
    reports: list[WindowReport]
    monitor: Detection
    static: Detection
    rolling: Detection


def evaluate(sim: Simulation, scorer: Scorer, settings: CompareSettings = CompareSettings()) -> Evaluation:
    """Runs ``sim`` through the monitor and judges its verdicts and the naive rules' on the same hours."""
    reports = run(sim, scorer, settings)
    return Evaluation(
        sim, reports, Detection.of(verdict_levels(reports, sim), sim.drift_from_hour),
        Detection.of(flag_levels(reports, static_rule(reports, scorer.bundle.training_errors), sim),
                     sim.drift_from_hour),
        Detection.of(flag_levels(reports, rolling_rule(reports), sim), sim.drift_from_hour))


# -- calibration: long streams at any volume, each distinct sequence scored once ----------------------------
WEEKEND_FORMAT = "uid"  # the legitimate weekend-only format of a weekly stream (foreign to a serial model)
POOLS = ("normal", "shifted", "corrupt", "foreign", "weekend")
"""The pools a calibration stream draws from: normal sequences, the same shifted (``general_shift``), mixed
corruptions, sequences of the other formats, and the weekend format."""
DRIFTS = ("foreign", "shift")
_POOL_SEED = 9_000_000  # far from the training corpora's seeds and the simulation's stream seeds
_SCORE_CHUNK = 20_000


def general_shift(text: str) -> str:
    """A record slightly changed, as a new year code changes every record: the last letter of its first run
    of letters moves on one place in the alphabet (``Z`` to ``A``, case kept); the format stays the same. A text
    without an ASCII letter is returned as is.

    >>> general_shift("AB428G"), general_shift("usr-104512-DE"), general_shift("MZ12"), general_shift("123")
    ('AC428G', 'uss-104512-DE', 'MA12', '123')
    """
    found = re.search(r"[A-Za-z]+", text)
    if found is None:
        return text
    i = found.end() - 1
    base = ord("A") if text[i].isupper() else ord("a")
    return text[:i] + chr(base + (ord(text[i]) - base + 1) % 26) + text[i + 1:]


@dataclass(frozen=True)
class Pool:
    """Sequences to draw records from, aligned with their reconstruction ``errors``, ``hashes``
    (``monitor.hourly.sample.text_hashes``) and ``format_ids`` (into the ``Pools``' ``format_names``)."""

    name: str
    sequences: np.ndarray  # of str (dtype object)
    errors: np.ndarray
    hashes: np.ndarray
    format_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.sequences)


class Pools:
    """The ``POOLS`` of format ``fmt`` scored by ``scorer``, each distinct sequence once, whatever pool and
    however many records it appears in: ``size`` normal sequences (drawn with replacement, a pool of them
    repeats as live identifiers do; ``shifted``: the same through ``general_shift``), and ``anomalies`` mixed
    corruptions (every kind of ``applicable_corruptions``, as many of each), sequences of the other formats,
    and sequences of ``weekend_fmt``. ``scored``: distinct sequences scored; ``seconds``: time it took.

    A record drawn from a pool costs an index: 30 days of 20,000 records an hour is as quick to judge as the
    judgement itself is."""

    def __init__(self, scorer: Scorer, fmt: str = "serial", size: int = 200_000, anomalies: int = 30_000,
                 weekend_fmt: str = WEEKEND_FORMAT, seed: int = 0) -> None:
        if weekend_fmt == fmt:
            raise ValueError(f"the weekend format must differ from the stream's, both are {fmt!r}")
        started = time.perf_counter()
        self.scorer = scorer
        self.fmt = fmt
        base = _POOL_SEED + 10_000 * seed
        normal = generate.sample(fmt, size, seed=base)
        kinds = applicable_corruptions(fmt)
        corrupt = [a for n, kind in enumerate(kinds)
                   for a in generate.anomalies(fmt, kind, anomalies // max(len(kinds), 1), set(), seed=base + 1 + n)]
        texts = {"normal": normal, "shifted": [general_shift(s) for s in normal], "corrupt": corrupt,
                 "foreign": generate.anomalies(fmt, "other_format", anomalies, set(), seed=base),
                 "weekend": generate.sample(weekend_fmt, anomalies, seed=base)}
        distinct = list(dict.fromkeys(s for sequences in texts.values() for s in sequences))
        errors, names = np.empty(len(distinct)), np.empty(len(distinct), dtype=np.int32)
        self.format_names: list[str] = []
        ids: dict[str, int] = {}
        for low in range(0, len(distinct), _SCORE_CHUNK):
            chunk = distinct[low:low + _SCORE_CHUNK]
            errors[low:low + len(chunk)] = scorer.errors(chunk)
            formats = scorer.formats(chunk)
            mine = np.array([ids.setdefault(name, len(ids)) for name in formats.names], dtype=np.int32)
            names[low:low + len(chunk)] = mine[formats.ids]
        self.format_names = list(ids)
        row = {s: i for i, s in enumerate(distinct)}
        hashes = text_hashes(distinct)
        self.pools: dict[str, Pool] = {}
        for name, sequences in texts.items():
            rows = np.fromiter((row[s] for s in sequences), np.int64, len(sequences))
            self.pools[name] = Pool(name, np.array(sequences, dtype=object), errors[rows], hashes[rows], names[rows])
        self.scored = len(distinct)
        self.seconds = time.perf_counter() - started

    def __getitem__(self, name: str) -> Pool:
        return self.pools[name]


@dataclass(frozen=True)
class CalibrationStream:
    """``hours`` simulated hours of format ``fmt`` drawn from ``Pools``: about ``records_per_hour`` records an
    hour, with ``Simulation``'s daily cycle (``daily_swing``) and noise (``count_noise``), times
    ``weekend_volume`` on Saturdays and Sundays (hour 0 is Monday 00:00 UTC).

    Every hour holds a ``background_rate`` share of corrupted records (binomial), and a ``stray_hours`` share
    of the hours one stray record more, foreign or corrupted (even odds): the realistic odd records of a clean
    stream. On Saturdays and Sundays a ``weekend_share`` of the records (binomial) are of the weekend format.
    From ``drift_from_hour`` on, ``drift`` ``foreign``: a ``drift_share`` of each hour's records are of other
    formats (``drift_draw`` ``exact``: that share of the hour's records, rounded up or down at random to keep
    the mean; ``binomial``: each record independently); ``shift``: every normal record is ``general_shift``-ed.
    The hours before ``drift_from_hour`` do not depend on the drift: streams of one seed differing in their
    drift only have the same history.

    >>> s = CalibrationStream(hours=48, records_per_hour=100, weekend_volume=0.5)
    >>> s.weekend(5 * 24), s.weekend(4 * 24 + 23), s.weekend(7 * 24)
    (True, False, False)
    """

    hours: int = 720
    records_per_hour: int = 2_000
    daily_swing: float = 0.3
    count_noise: float = 0.1
    weekend_volume: float = 1.0
    background_rate: float = 0.0005
    stray_hours: float = 0.1
    weekend_share: float = 0.0
    drift_from_hour: int | None = None
    drift: str = "foreign"
    drift_share: float = 0.0
    drift_draw: str = "exact"
    hour_ms: int = HOUR_MS
    start_ms: int = START_MS
    seed: int = 0

    def __post_init__(self) -> None:
        _check_sizes_and_shares(self, ("daily_swing", "background_rate", "stray_hours", "weekend_share",
                                       "drift_share"))
        if self.weekend_volume <= 0:
            raise ValueError(f"weekend_volume must be positive, got {self.weekend_volume}")
        if self.drift not in DRIFTS or self.drift_draw not in ("exact", "binomial"):
            raise ValueError(f"drift must be one of {DRIFTS} and drift_draw exact or binomial, got {self.drift!r} "
                             f"and {self.drift_draw!r}")

    def hour_of(self, start_ms: int) -> int:
        """The simulated hour a window starting at ``start_ms`` belongs to (0 = the first)."""
        return (start_ms - self.start_ms) // self.hour_ms

    def weekend(self, hour: int) -> bool:
        """Whether simulated ``hour`` falls on a Saturday or a Sunday (UTC)."""
        day = (self.start_ms + hour * self.hour_ms) // DAY_MS
        return (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday

    def drifting(self, hour: int) -> bool:
        return self.drift_from_hour is not None and hour >= self.drift_from_hour


@dataclass(frozen=True)
class ScoredHour:
    """One simulated hour's records, scored, in event-time order: ``sources`` names each record's pool
    (an index into ``POOLS``); ``format_ids`` index ``format_names``, the hour's formats."""

    hour: int
    start_ms: int
    event_times_ms: np.ndarray
    sequences: list[str]
    errors: np.ndarray
    hashes: np.ndarray
    format_ids: np.ndarray
    format_names: list[str]
    sources: np.ndarray

    def count(self, pool: str) -> int:
        return int(np.count_nonzero(self.sources == POOLS.index(pool)))


def calibration_counts(stream: CalibrationStream) -> np.ndarray:
    """Records in each simulated hour: the daily cycle times log-normal noise, times the weekend volume on
    weekends, at least one."""
    rng = np.random.default_rng([stream.seed, 1])
    hours = np.arange(stream.hours)
    cycle = 1 + stream.daily_swing * np.cos(2 * np.pi * (hours - PEAK_HOUR) / 24)
    noise = rng.lognormal(-stream.count_noise ** 2 / 2, stream.count_noise, stream.hours)  # mean 1
    weekly = np.array([stream.weekend_volume if stream.weekend(h) else 1.0 for h in range(stream.hours)])
    return np.maximum(np.rint(stream.records_per_hour * cycle * noise * weekly), 1).astype(np.int64)


def calibration_hours(stream: CalibrationStream, pools: Pools) -> Iterator[ScoredHour]:
    """Each simulated hour of ``stream``, drawn from ``pools``, in time order."""
    rng = np.random.default_rng([stream.seed, 2])
    for hour, n in enumerate(calibration_counts(stream).tolist()):
        stray = "foreign" if rng.random() < 0.5 else "corrupt"
        counts = {"corrupt": int(rng.binomial(n, stream.background_rate)),
                  "foreign": 0, "weekend": 0, "shifted": 0}
        if rng.random() < stream.stray_hours:
            counts[stray] += 1
        if stream.weekend_share and stream.weekend(hour):
            counts["weekend"] = int(rng.binomial(n, stream.weekend_share))
        normal = "normal"
        if stream.drifting(hour):
            # Drawn only once drifting: the hours before the drift are the same whatever the drift.
            drift_rng = np.random.default_rng([stream.seed, 3, hour])
            if stream.drift == "shift":
                normal = "shifted"
            elif stream.drift_draw == "binomial":
                counts["foreign"] += int(drift_rng.binomial(n, stream.drift_share))
            else:
                whole, part = divmod(n * stream.drift_share, 1.0)
                counts["foreign"] += int(whole) + int(drift_rng.random() < part)
        counts[normal] = max(n - sum(counts.values()), 0)
        yield _drawn(hour, stream.start_ms + hour * stream.hour_ms, stream.hour_ms, counts, pools, rng)


def _drawn(hour: int, start_ms: int, hour_ms: int, counts: Mapping[str, int], pools: Pools,
           rng: np.random.Generator) -> ScoredHour:
    parts = [(POOLS.index(name), pools[name], rng.integers(len(pools[name]), size=k))
             for name, k in counts.items() if k > 0]
    order = rng.permutation(sum(len(rows) for _, _, rows in parts))
    sequences = np.concatenate([pool.sequences[rows] for _, pool, rows in parts])[order]
    global_ids = np.concatenate([pool.format_ids[rows] for _, pool, rows in parts])[order]
    present, format_ids = np.unique(global_ids, return_inverse=True)
    return ScoredHour(
        hour, start_ms, np.sort(rng.integers(start_ms, start_ms + hour_ms, size=len(order))), sequences.tolist(),
        np.concatenate([pool.errors[rows] for _, pool, rows in parts])[order],
        np.concatenate([pool.hashes[rows] for _, pool, rows in parts])[order],
        format_ids.astype(np.int32), [pools.format_names[i] for i in present.tolist()],
        np.concatenate([np.full(len(rows), code, dtype=np.int8) for code, _, rows in parts])[order])


class JudgesFailed(RuntimeError):
    """Judges of ``run_judges`` raised: ``failures`` maps each one's index (in the settings) to the simulated
    hour whose window it was judging and the exception; ``reports`` holds every judge's reports (a failed
    one's up to its failure), so the others' are not lost."""

    def __init__(self, failures: dict[int, tuple[int, Exception]], reports: list[list[WindowReport]]) -> None:
        super().__init__("; ".join(f"judge {i} raised {type(exc).__name__} judging hour {hour}: {exc}"
                                   for i, (hour, exc) in sorted(failures.items())))
        self.failures = failures
        self.reports = reports


def run_judges(stream: CalibrationStream, pools: Pools, settings: Sequence[CompareSettings],
               sample_size: int = DEFAULT_SIZE, topic: str = "simulated") -> list[list[WindowReport]]:
    """Every hour of ``stream``, scored once (``pools``' model), fed to one ``HourlyJudge`` per ``settings`` as
    the record pipeline feeds its judge (weight 1, flagged above the model's threshold, with sequences, text
    hashes and formats; windows of ``stream.hour_ms``, no lateness), each window closed at its hour's end.
    Returns each judge's reports, oldest first, without their samples and format counts (30 days of them
    would hold millions of sequences). A judge that raises is fed no more, the others go on to the end; then
    ``JudgesFailed`` is raised."""
    scorer = pools.scorer
    judges = [HourlyJudge(stream.hour_ms, 0, s, sample_size) for s in settings]
    reports: list[list[WindowReport]] = [[] for _ in judges]
    failures: dict[int, tuple[int, Exception]] = {}
    partition = (topic, 0)
    last = -1
    for hour in calibration_hours(stream, pools):
        weights = np.ones(len(hour.errors))
        flags = hour.errors > scorer.threshold
        last = hour.hour
        for i, (judge, out) in enumerate(zip(judges, reports)):
            if i in failures:
                continue
            try:
                judge.add(partition, hour.errors, weights, hour.event_times_ms, flags, sequences=hour.sequences,
                          hashes=hour.hashes, format_ids=hour.format_ids, format_names=hour.format_names)
                closed = judge.close_due(lambda start_ms: scorer, now_ms=hour.start_ms + stream.hour_ms)
            except Exception as exc:  # noqa: BLE001 - told to the caller with the hour, the others go on
                failures[i] = (hour.hour, exc)
                continue
            out += [replace(r, sample=None, format_counts=None) for r in closed]
    for i, (judge, out) in enumerate(zip(judges, reports)):
        if i in failures:
            continue
        try:
            out += [replace(r, sample=None, format_counts=None) for r in judge.flush(lambda start_ms: scorer)]
        except Exception as exc:  # noqa: BLE001
            failures[i] = (last, exc)
    if failures:
        raise JudgesFailed(failures, reports)
    return reports
