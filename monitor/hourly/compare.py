"""A closed window's figures compared with the windows before it: how abnormal was this hour?

``History.judge`` takes each closed window's ``HourFigures``, selects a baseline from earlier windows (a
``Baseline`` strategy), scores the window against it (``compare``) and keeps it for the windows to come.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from monitor.hourly.evidence import (
    BIN_VALUES,
    SIGNALS,
    HourCounts,
    Levels,
    Test,
    TestedHour,
    combined,
    hour_to_hour_spread,
    tests,
)
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.histogram import HIST_SLOTS
from monitor.hourly.reasons import Reason, firing
from monitor.hourly.sample import WindowSample
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.percentiles import percentile_ranks
from monitor.settings import CompareSettings

VERDICT_LEVEL = {"learning": -1, "insufficient_data": -1, "normal": 0, "warning": 1, "critical": 2}
"""Each verdict as a number, for metrics and alert rules: below 0 no judgement, above 0 abnormal."""
VERDICTS = tuple(VERDICT_LEVEL)
ABNORMAL = frozenset({"warning", "critical"})
MAD_SCALE = 1.4826  # makes the median absolute deviation estimate the standard deviation of normal data
# The spread used for the robust z is never below this (besides the relative floor): a baseline of
# all-zero errors would otherwise make any positive error infinitely abnormal.
SPREAD_FLOOR = 1e-9
WEEK_MS = 7 * DAY_MS
SPREAD_WINDOWS = 168  # the recent windows whose hour-to-hour spread a thin baseline borrows


class _Histogram(Protocol):
    def to_list(self) -> list[int]: ...


class WindowTotals(Protocol):
    """What ``HourFigures.of`` reads from a window's running figures (``monitor.hourly.window.WindowAccumulator``)."""

    @property
    def count(self) -> int: ...
    @property
    def weight_sum(self) -> float: ...
    @property
    def weighted_mean(self) -> float: ...
    @property
    def above_threshold_share(self) -> float: ...
    @property
    def histogram(self) -> _Histogram: ...


@dataclass(frozen=True)
class HourFigures:
    """One closed window's figures. ``weighted_mean`` is its score (higher = more abnormal);
    ``histogram`` the error counts in ``monitor.hourly.window``'s fixed bins; ``verdict`` is set once judged.

    ``sample_size`` > 0 marks figures *estimated* from that many sampled records after a model change
    (``History.rescore``), with ``standard_error`` the sampling error of the mean (0 when the sample held the
    whole window); 0 marks the figures the window was scored with live. ``accepted``: an operator declared
    what the window holds legitimate, so it serves in baselines whatever its verdict. ``top``: the window's
    highest-error records as (sequence, error), highest first (``monitor.hourly.top_records``); the calibrated
    judgement sets them aside as outliers."""

    start_ms: int
    count: int
    weight_sum: float
    weighted_mean: float
    above_threshold_share: float
    histogram: tuple[int, ...] = ()
    verdict: str = ""
    model_version: str = ""
    sample_size: int = 0
    standard_error: float = 0.0
    accepted: bool = False
    top: tuple[tuple[str, float], ...] = ()

    @property
    def top_errors(self) -> tuple[float, ...]:
        return tuple(error for _, error in self.top)

    def __post_init__(self) -> None:
        if self.verdict and self.verdict not in VERDICT_LEVEL:
            raise ValueError(f"verdict must be one of {VERDICTS} or empty, got {self.verdict!r}")

    @classmethod
    def of(cls, start_ms: int, totals: WindowTotals, model_version: str = "",
           top: tuple[tuple[str, float], ...] = ()) -> HourFigures:
        """The figures of a closed window, e.g. ``HourFigures.of(closed.start_ms, closed.total)``."""
        return cls(start_ms, totals.count, totals.weight_sum, totals.weighted_mean,
                   totals.above_threshold_share, tuple(totals.histogram.to_list()), "", model_version, top=top)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (``nan`` becomes ``None``) and exact."""
        return {"start_ms": self.start_ms, "count": self.count, "weight_sum": self.weight_sum,
                "weighted_mean": _none_if_nan(self.weighted_mean),
                "above_threshold_share": _none_if_nan(self.above_threshold_share),
                "histogram": list(self.histogram), "verdict": self.verdict, "model_version": self.model_version,
                "sample_size": self.sample_size, "standard_error": self.standard_error, "accepted": self.accepted,
                "top": [[sequence, error] for sequence, error in self.top]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HourFigures:
        return cls(int(data["start_ms"]), int(data["count"]), float(data["weight_sum"]),
                   _nan_if_none(data["weighted_mean"]), _nan_if_none(data["above_threshold_share"]),
                   tuple(int(c) for c in data["histogram"]), str(data["verdict"]), str(data["model_version"]),
                   int(data.get("sample_size", 0)), float(data.get("standard_error", 0.0)),
                   bool(data.get("accepted", False)),
                   tuple((str(sequence), float(error)) for sequence, error in data.get("top", ())))


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class Baseline(Protocol):
    """Chooses, from earlier windows (in start order), the ones a window is compared with."""

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]: ...


@dataclass(frozen=True)
class PreviousWindows:
    """The ``n`` most recent windows before the current one (gaps in the stream are skipped)."""

    n: int = 168

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        earlier = [h for h in history if h.start_ms < current_start_ms]
        return earlier[-self.n:]


@dataclass(frozen=True)
class SameHourOfDay:
    """Windows starting a whole number of days (1..``days``) before the current one: traffic with a daily
    rhythm is compared with the same time of day. For any window length the rule is the same."""

    days: int = 7

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        return [h for h in history if _days_before(current_start_ms - h.start_ms) in range(1, self.days + 1)]


def _days_before(gap_ms: int) -> int:
    return gap_ms // DAY_MS if gap_ms % DAY_MS == 0 else -1


@dataclass(frozen=True)
class SameHourOfWeek:
    """Windows starting a whole number of weeks (1..``weeks``) before the current one: a stream with a weekly
    rhythm (weekend batch jobs, a weekend-only format) is compared with the same hour of the same weekday."""

    weeks: int = 4

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        return [h for h in history if (current_start_ms - h.start_ms) % WEEK_MS == 0
                and 1 <= (current_start_ms - h.start_ms) // WEEK_MS <= self.weeks]


def baseline_strategy(settings: CompareSettings) -> Baseline:
    """The ``Baseline`` that ``settings.baseline`` names, sized by its settings."""
    if settings.baseline == "same_hour":
        return SameHourOfDay(settings.same_hour_days)
    if settings.baseline == "same_hour_of_week":
        return SameHourOfWeek(settings.same_hour_weeks)
    return PreviousWindows(settings.previous_windows)


@dataclass(frozen=True)
class Comparison:
    """A window against its baseline. ``robust_z``, ``share_ratio``: see ``CompareSettings``; ``percentile``:
    rank of the window's weighted mean among the baseline's (0-100, ties half); ``distribution_distance``:
    Jensen-Shannon distance (base 2, in [0, 1]) between the window's error histogram and the baseline's
    summed one; ``baseline_mad``: the scaled MAD before the floor; ``baseline_estimated``: how many of the
    baseline's windows are estimates re-scored from samples after a model change (``HourFigures``). Figures
    without a baseline are ``nan``. ``p_value``: the calibrated judgement's tail probability for the hour
    (``monitor.hourly.evidence``; ``nan`` when not judged that way); ``signal``: the signal behind the verdict
    (``""`` for a normal one); ``reasons``: every signal that fired, and outliers set aside
    (``monitor.hourly.reasons``)."""

    verdict: str
    robust_z: float
    percentile: float
    share_ratio: float
    distribution_distance: float
    baseline_median: float
    baseline_mad: float
    baseline_size: int
    baseline_estimated: int = 0
    p_value: float = float("nan")
    signal: str = ""
    reasons: tuple[Reason, ...] = ()

    @property
    def level(self) -> int:
        return VERDICT_LEVEL[self.verdict]


def compare(current: HourFigures, history: Sequence[HourFigures], settings: CompareSettings = CompareSettings(),
            length_ms: int = HOUR_MS, levels: Levels | None = None) -> Comparison:
    """Judges ``current`` against the baseline ``settings`` selects from ``history`` (earlier windows).

    With ``settings.method`` ``calibrated`` (the default) the verdict comes from ``monitor.hourly.evidence``'s
    tests (``levels``: the model's error levels; without them, the baseline's own); with ``mean_z`` from the
    robust z of the weighted mean and the share ratio (the rule before it).

    >>> past = [HourFigures(h * HOUR_MS, 100, 100.0, 0.010 + 0.001 * (h % 3), 0.01) for h in range(30)]
    >>> rule = CompareSettings(method="mean_z")  # figures alone; the calibrated way reads the histograms
    >>> compare(HourFigures(30 * HOUR_MS, 100, 100.0, 0.011, 0.01), past, rule).verdict
    'normal'
    >>> compare(HourFigures(30 * HOUR_MS, 100, 100.0, 0.05, 0.01), past, rule).verdict
    'critical'
    >>> compare(HourFigures(30 * HOUR_MS, 100, 100.0, 0.05, 0.01), past[:5]).verdict
    'learning'
    """
    figures = _figures(current, history, settings, length_ms)
    early = _early_verdict(current, figures, settings)
    if early is not None:
        return replace(figures, verdict=early)
    if settings.method == "mean_z":
        return replace(figures, verdict=_verdict(current, figures, settings))
    return _calibrated(current, history, figures, settings, length_ms, levels)


def _figures(current: HourFigures, history: Sequence[HourFigures], settings: CompareSettings,
             length_ms: int) -> Comparison:
    """The descriptive figures of ``current`` against its baseline (verdict not yet set)."""
    baseline = select_baseline(current, history, settings, length_ms)
    means = np.array([h.weighted_mean for h in baseline])
    median, mad = _median_mad(means)
    spread = max(mad, settings.min_relative_spread * abs(median), SPREAD_FLOOR,
                 _sampling_noise(current, baseline), _estimate_noise(current, baseline))
    figures = Comparison("normal", (current.weighted_mean - median) / spread,
                         _percentile(current.weighted_mean, means), _share_ratio(current, baseline, settings),
                         _baseline_distance(current, baseline), median, mad, len(baseline),
                         sum(h.sample_size > 0 for h in baseline))
    return figures


def select_baseline(current: HourFigures, history: Sequence[HourFigures], settings: CompareSettings,
                    length_ms: int = HOUR_MS) -> list[HourFigures]:
    """The windows ``current`` is compared with: usable ones only, then the strategy's choice."""
    # A weekly baseline keeps windows of every verdict: a weekend-only pattern judged abnormal on its first
    # weekend must be what the second one is compared with (its median across weeks resists one incident).
    serves = _usable if settings.baseline != "same_hour_of_week" else _finite
    usable = [h for h in sorted(history, key=_start) if serves(h, settings)
              and not (settings.same_model_only and h.model_version != current.model_version)]
    return baseline_strategy(settings).select(usable, current.start_ms, length_ms)


def _start(figures: HourFigures) -> int:
    return figures.start_ms


def _usable(figures: HourFigures, settings: CompareSettings) -> bool:
    """Whether a window may serve in a baseline, whatever the window being judged."""
    if not _finite(figures, settings):
        return False
    return figures.accepted or not (settings.exclude_abnormal and figures.verdict in ABNORMAL)


def _finite(figures: HourFigures, settings: CompareSettings) -> bool:
    return figures.count >= settings.min_count and math.isfinite(figures.weighted_mean)


def _sampling_noise(current: HourFigures, baseline: Sequence[HourFigures]) -> float:
    """Standard error of a mean of ``current.count`` records drawn from the baseline's error distribution.

    Per-record errors are heavy-tailed (a rare broken record costs ~1000x a clean one), so a window of a few
    dozen records moves far more by chance than hourly windows of thousands: without this floor one broken
    record in a sparse window reads as z in the thousands. Estimated from the pooled histograms.
    """
    same_bins = [h.histogram for h in baseline if len(h.histogram) == len(BIN_VALUES)]
    if not same_bins or current.count <= 0:
        return 0.0
    pooled = np.sum(np.asarray(same_bins, dtype=np.float64), axis=0)
    total = pooled.sum()
    if total <= 0:
        return 0.0
    mean = float(pooled @ BIN_VALUES) / total
    variance = max(float(pooled @ np.square(BIN_VALUES)) / total - mean * mean, 0.0)
    return math.sqrt(variance / current.count)


def _estimate_noise(current: HourFigures, baseline: Sequence[HourFigures]) -> float:
    """The sampling error of estimated figures: a baseline re-scored from samples after a model change
    scatters by it beyond the windows' own variation, so the spread is never below it."""
    errors = [h.standard_error for h in baseline if h.sample_size > 0]
    typical = float(np.median(errors)) if errors else 0.0
    return math.sqrt(typical ** 2 + current.standard_error ** 2)


def _median_mad(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    median = float(np.median(values))
    return median, MAD_SCALE * float(np.median(np.abs(values - median)))


def _percentile(value: float, values: np.ndarray) -> float:
    if not math.isfinite(value):
        return float("nan")
    return float(percentile_ranks(np.array([value]), np.sort(values))[0])


def _share_ratio(current: HourFigures, baseline: Sequence[HourFigures], settings: CompareSettings) -> float:
    shares = [h.above_threshold_share for h in baseline if math.isfinite(h.above_threshold_share)]
    if not shares:
        return float("nan")
    return current.above_threshold_share / max(float(np.median(shares)), settings.share_floor)


def _baseline_distance(current: HourFigures, baseline: Sequence[HourFigures]) -> float:
    same_bins = [h.histogram for h in baseline if len(h.histogram) == len(current.histogram)]
    if not current.histogram or not same_bins:
        return float("nan")
    return js_distance(np.asarray(current.histogram), np.sum(np.asarray(same_bins), axis=0))


def js_distance(counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """Jensen-Shannon distance between two count vectors over the same bins: 0 same shape, 1 disjoint.

    >>> js_distance(np.array([1, 0]), np.array([5, 0])), js_distance(np.array([1, 0]), np.array([0, 2]))
    (0.0, 1.0)
    """
    total_a, total_b = float(np.sum(counts_a)), float(np.sum(counts_b))
    if total_a <= 0 or total_b <= 0:
        return float("nan")
    p, q = counts_a / total_a, counts_b / total_b
    middle = (p + q) / 2
    divergence = (_kl_bits(p, middle) + _kl_bits(q, middle)) / 2
    return float(math.sqrt(min(max(divergence, 0.0), 1.0)))


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    present = p > 0
    return float(np.sum(p[present] * np.log2(p[present] / q[present])))


def _early_verdict(current: HourFigures, figures: Comparison, settings: CompareSettings) -> str | None:
    """``insufficient_data`` or ``learning`` when the window cannot be judged yet, else ``None``."""
    if current.count < settings.min_count or not math.isfinite(current.weighted_mean):
        return "insufficient_data"
    if figures.baseline_size < settings.min_history:
        return "learning"
    return None


def _verdict(current: HourFigures, figures: Comparison, settings: CompareSettings) -> str:
    """The ``mean_z`` rule: the robust z of the weighted mean, or the share ratio, past its thresholds."""
    if figures.robust_z >= settings.critical_z or figures.share_ratio >= settings.critical_share_ratio:
        return "critical"
    if figures.robust_z >= settings.warning_z or figures.share_ratio >= settings.warning_share_ratio:
        return "warning"
    return "normal"


def alarm_rates(settings: CompareSettings, length_ms: int = HOUR_MS) -> tuple[float, float]:
    """The per-window tail probabilities at which a window is critical and a warning: the settings' false
    alarms per 30 days spread over the windows of 30 days."""
    windows = 30 * DAY_MS / length_ms
    return settings.false_critical_per_30_days / windows, settings.false_warning_per_30_days / windows


def _calibrated(current: HourFigures, history: Sequence[HourFigures], figures: Comparison,
                settings: CompareSettings, length_ms: int, levels: Levels | None) -> Comparison:
    """The verdict from ``monitor.hourly.evidence``: counts a handful of records cannot fake, each tested hour's
    top ``outlier_records`` set aside and each hour set against its own baseline (a weekly baseline's Sunday
    night is not Monday morning's)."""
    recent = _consecutive(current, history, settings, length_ms)
    baselines = {h.start_ms: [b for b in select_baseline(h, history, settings, length_ms) if _has_bins(b)]
                 for h in (current, *recent)}
    if levels is None:
        own = baselines[current.start_ms]
        pooled = np.sum([np.asarray(h.histogram, dtype=np.float64) for h in own], axis=0) if own else None
        levels = None if pooled is None else Levels.of_histogram(pooled)
    if levels is None or not _has_bins(current):
        return replace(figures, verdict="normal")

    # Baselines count whole: their rates are what hours hold, strays included. Setting each span's top
    # records aside can then only weaken the evidence, never make it.
    counted = {b.start_ms: HourCounts.of(b.histogram, levels) for bs in baselines.values() for b in bs}
    tested = {r.start_ms for r in recent}
    pairs = _consecutive_pairs(current, [h for h in history if h.start_ms not in tested], settings, length_ms, levels)
    spread = {signal: hour_to_hour_spread(pairs, signal) for signal in SIGNALS}
    hours = [TestedHour(h.start_ms, HourCounts.of(h.histogram, levels), tuple(h.top_errors),
                        tuple((b.start_ms, counted[b.start_ms]) for b in baselines[h.start_ms]))
             for h in (current, *reversed(recent))]

    critical_at, warning_at = alarm_rates(settings, length_ms)

    def severity(p: float) -> str:
        return "critical" if p <= critical_at else "warning" if p <= warning_at else "normal"

    trimmed, whole = tests(hours, levels, spread, settings.outlier_records), tests(hours, levels, spread, 0)
    p_trimmed, p_whole = combined(trimmed), combined(whole)
    verdict = severity(p_trimmed)
    reasons = [_reason(t, severity(t.corrected), levels) for t in trimmed if severity(t.corrected) != "normal"]
    if VERDICT_LEVEL[severity(p_whole)] > VERDICT_LEVEL[verdict]:
        level = "warning" if settings.outliers_verdict == "warning" else "info"
        span = min(whole, key=lambda t: t.corrected).hours
        outliers = _top_of([current, *recent[::-1]][:span], settings.outlier_records)
        n = len(outliers)
        reasons.append(Reason(
            "outliers", level, f"{'the hour departs' if span == 1 else f'the last {span} hours depart'} only by "
            f"{'its' if span == 1 else 'their'} top {n} record{'s' if n != 1 else ''}: p {p_whole:.1e} "
            f"with {'them' if n != 1 else 'it'}, {p_trimmed:.2g} without; per-record news (see the scored events), "
            "not an hourly incident", p_value=p_whole, hours=span, records=outliers))
        if level == "warning" and verdict == "normal":
            verdict = "warning"
    return replace(figures, verdict=verdict, p_value=p_trimmed, signal=firing(reasons), reasons=tuple(reasons))


def _top_of(hours: Sequence[HourFigures], k: int) -> tuple[str, ...]:
    """The ``k`` highest-error sequences of ``hours`` (each keeps its own top records)."""
    return tuple(sequence for sequence, _ in sorted((r for h in hours for r in h.top), key=lambda r: -r[1])[:k])


def _reason(test: Test, level: str, levels: Levels) -> Reason:
    p = test.corrected
    span = f"over the last {test.hours} hours" if test.hours > 1 else "this hour"
    detail = (f"{test.observed:.0f} records at or above error {levels.level(test.signal):.3g} {span}, "
              f"{test.expected:.2f} expected; p {p:.1e}")
    return Reason(test.signal, level, detail, test.observed, test.expected, p, test.hours)


def _has_bins(figures: HourFigures) -> bool:
    return len(figures.histogram) == HIST_SLOTS


def _consecutive_pairs(current: HourFigures, history: Sequence[HourFigures], settings: CompareSettings,
                       length_ms: int, levels: Levels) -> list[tuple[HourCounts, HourCounts]]:
    """The last ``SPREAD_WINDOWS`` usable windows' counts, as pairs of windows one after the other (the hours
    under test are left out by the caller: a drift's first hour would pass for the stream's own spread)."""
    usable = [h for h in sorted(history, key=_start) if _has_bins(h) and _usable(h, settings)
              and not (settings.same_model_only and h.model_version != current.model_version)][-SPREAD_WINDOWS:]
    return [(HourCounts.of(one.histogram, levels), HourCounts.of(two.histogram, levels))
            for one, two in zip(usable, usable[1:]) if two.start_ms - one.start_ms == length_ms]


def _consecutive(current: HourFigures, history: Sequence[HourFigures], settings: CompareSettings,
                 length_ms: int) -> list[HourFigures]:
    """The windows just before ``current`` with no gap, newest last, at most ``evidence_hours - 1`` of them
    (of any verdict: an ongoing drift's earlier hours are evidence too)."""
    by_start = {h.start_ms: h for h in history if _has_bins(h) and h.count > 0
                and not (settings.same_model_only and h.model_version != current.model_version)}
    recent: list[HourFigures] = []
    for back in range(1, settings.evidence_hours):
        earlier = by_start.get(current.start_ms - back * length_ms)
        if earlier is None:
            break
        recent.append(earlier)
    return recent[::-1]


class ErrorModel(Protocol):
    """What re-scoring a window's sample needs of a model (``monitor.core.score.Scorer`` is one)."""

    @property
    def version(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    def errors(self, sequences: Sequence[str]) -> np.ndarray: ...


class History:
    """Judged windows, oldest first, kept as long as a baseline may need them, each with its sample.

    It keeps the newest ``capacity`` windows and also the newest ``capacity`` usable ones, so that during a
    long incident excluded from baselines the last normal windows stay available; memory stays bounded.
    When windows scored by another model come to be judged, ``rescore`` estimates every kept window's figures
    under that model from its sample, so the baseline carries over a model change. ``formats``: each kept
    window's format counts, for the format comparison (``monitor.hourly.format_change``).
    """

    def __init__(self, settings: CompareSettings = CompareSettings(), length_ms: int = HOUR_MS,
                 entries: Iterable[HourFigures] = (), samples: dict[int, WindowSample] | None = None,
                 formats: dict[int, FormatCounts] | None = None) -> None:
        self.settings = settings
        self.length_ms = length_ms
        self.capacity = max(settings.previous_windows, settings.same_hour_days * DAY_MS // length_ms,
                            settings.same_hour_weeks * WEEK_MS // length_ms if settings.baseline == "same_hour_of_week"
                            else 0, settings.evidence_hours) + 1
        self._entries: list[HourFigures] = []
        self.samples: dict[int, WindowSample] = {}
        self.formats: dict[int, FormatCounts] = {}
        for figures in entries:
            self._insert(figures)
        starts = {h.start_ms for h in self._entries}
        self.samples = {start: sample for start, sample in (samples or {}).items() if start in starts}
        self.formats = {start: counts for start, counts in (formats or {}).items() if start in starts}

    @property
    def entries(self) -> tuple[HourFigures, ...]:
        return tuple(self._entries)

    @property
    def model_version(self) -> str | None:
        """The model version of the newest window (``None`` while empty)."""
        return self._entries[-1].model_version if self._entries else None

    def judge(self, figures: HourFigures, sample: WindowSample | None = None,
              levels: Levels | None = None) -> Comparison:
        """Compares a closed window with its baseline, then keeps it (with its verdict and sample) for later
        windows."""
        comparison = self.compare(figures, levels)
        self.keep(replace(figures, verdict=comparison.verdict), sample)
        return comparison

    def compare(self, figures: HourFigures, levels: Levels | None = None) -> Comparison:
        """A closed window against its baseline among the kept windows (nothing is kept)."""
        return compare(figures, self._entries, self.settings, self.length_ms, levels)

    def baseline_formats(self, figures: HourFigures) -> list[FormatCounts]:
        """The format counts of the windows ``figures`` is compared with (those that have them)."""
        baseline = select_baseline(figures, self._entries, self.settings, self.length_ms)
        return [self.formats[h.start_ms] for h in baseline if h.start_ms in self.formats]

    def keep(self, figures: HourFigures, sample: WindowSample | None = None,
             formats: FormatCounts | None = None) -> None:
        """Keep a judged window (``figures.verdict`` set) with its sample and format counts for later ones."""
        if sample is not None:
            self.samples[figures.start_ms] = sample
        if formats is not None:
            self.formats[figures.start_ms] = formats
        self._insert(figures)

    def rescore(self, model: ErrorModel) -> int:
        """Every kept window not scored by ``model``, estimated under it from its sample (verdicts stay as
        judged); returns how many. Windows without a sample keep their figures and version."""
        stale = [i for i, h in enumerate(self._entries)
                 if h.model_version != model.version and len(self.samples.get(h.start_ms, ()))]
        if not stale:
            return 0
        kept = [self.samples[self._entries[i].start_ms].kept()[0] for i in stale]
        tops = [[sequence for sequence, _ in self._entries[i].top] for i in stale]
        errors = model.errors([s for sequences in (*kept, *tops) for s in sequences])  # one call: the model's pace
        bounds = np.cumsum([0, *(len(k) for k in (*kept, *tops))])
        for n, (i, low, high) in enumerate(zip(stale, bounds[:-1], bounds[1:])):
            old = self._entries[i]
            estimate = self.samples[old.start_ms].estimate(errors[low:high], model.threshold)
            low, high = bounds[len(stale) + n], bounds[len(stale) + n + 1]
            top = tuple(sorted(zip(tops[n], errors[low:high].tolist()), key=lambda r: (-r[1], r[0])))
            self._entries[i] = replace(old, weighted_mean=estimate.weighted_mean, top=top,
                                       above_threshold_share=estimate.above_threshold_share,
                                       histogram=estimate.histogram, model_version=model.version,
                                       sample_size=estimate.sample_size,
                                       standard_error=0.0 if estimate.exact else estimate.standard_error)
        return len(stale)

    def accept(self, start_ms: int) -> bool:
        """Mark the window at ``start_ms`` accepted (usable in baselines whatever its verdict)."""
        for i, h in enumerate(self._entries):
            if h.start_ms == start_ms:
                self._entries[i] = replace(h, accepted=True)
                return True
        return False

    def normal_samples(self) -> list[tuple[int, list[str]]]:
        """(start, sampled sequences) of each kept window judged normal or accepted, oldest first."""
        return [(h.start_ms, self.samples[h.start_ms].kept()[0]) for h in self._entries
                if (h.verdict == "normal" or h.accepted) and h.start_ms in self.samples]

    def _insert(self, figures: HourFigures) -> None:
        # A window judged again (re-read after a restart) replaces its earlier figures.
        starts = [h.start_ms for h in self._entries]
        index = bisect.bisect_left(starts, figures.start_ms)
        replaced = index < len(starts) and starts[index] == figures.start_ms
        self._entries[index:index + replaced] = [figures]
        self._prune()

    def _prune(self) -> None:
        kept: list[HourFigures] = []
        usable = 0
        for rank, figures in enumerate(reversed(self._entries)):
            is_usable = _usable(figures, self.settings)
            if rank < self.capacity or (is_usable and usable < self.capacity):
                kept.append(figures)
            usable += is_usable
        self._entries = kept[::-1]
        if len(self.samples) > len(self._entries) or len(self.formats) > len(self._entries):
            starts = {h.start_ms for h in self._entries}
            self.samples = {start: sample for start, sample in self.samples.items() if start in starts}
            self.formats = {start: counts for start, counts in self.formats.items() if start in starts}

    def to_list(self) -> list[dict[str, Any]]:
        """The figures (samples are stored apart: they are written once, when a window closes)."""
        return [figures.to_dict() for figures in self._entries]

    @classmethod
    def from_list(cls, items: Iterable[dict[str, Any]], settings: CompareSettings = CompareSettings(),
                  length_ms: int = HOUR_MS, samples: dict[int, WindowSample] | None = None,
                  formats: dict[int, FormatCounts] | None = None) -> History:
        return cls(settings, length_ms, (HourFigures.from_dict(item) for item in items), samples, formats)
