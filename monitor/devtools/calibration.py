"""Calibration streams: many simulated hours at any volume (30 days of 20,000 records an hour), to measure
how often clean hours alarm and how soon drifts go critical.

Records are drawn from ``Pools`` of sequences each scored once, whatever pool and however many records it
appears in, so a record costs an index; ``CalibrationStream`` adds weekends, stray records and a weekend-only
format to ``monitor.devtools.simulate``'s daily cycle. ``run_judges`` feeds the same scored records to
several ``HourlyJudge`` s at once, so that judgements are compared on identical hours.

``bench/detection.py --scenario calibration`` uses it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.devtools.simulate import PEAK_HOUR, START_MS, applicable_corruptions, check_sizes_and_shares
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.sample import DEFAULT_SIZE, text_hashes
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.settings import CompareConfig

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
        check_sizes_and_shares(self, ("daily_swing", "background_rate", "stray_hours", "weekend_share",
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


def run_judges(stream: CalibrationStream, pools: Pools, settings: Sequence[CompareConfig],
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
