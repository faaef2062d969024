"""A closed window's figures against its baseline: how abnormal was this hour?

``compare`` selects the window's baseline among earlier windows (``monitor.hourly.baseline``) and judges the
window against it: by calibrated counts of records far above normal (``monitor.hourly.evidence``), or with
``compare.method: mean_z`` by the robust z of its weighted mean. ``History.judge``
(``monitor.hourly.history``) calls it for each closed window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from monitor.hourly.baseline import select_baseline, serves_in_baseline
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
from monitor.hourly.histogram import HIST_SLOTS
from monitor.hourly.hour_figures import VERDICT_LEVEL, HourFigures
from monitor.hourly.reasons import Reason, firing
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.percentiles import percentile_ranks
from monitor.settings import CompareConfig

MAD_SCALE = 1.4826  # makes the median absolute deviation estimate the standard deviation of normal data
# The spread used for the robust z is never below this (besides the relative floor): a baseline of
# all-zero errors would otherwise make any positive error infinitely abnormal.
SPREAD_FLOOR = 1e-9
SPREAD_WINDOWS = 168  # the recent windows whose hour-to-hour spread a thin baseline borrows


@dataclass(frozen=True)
class Comparison:
    """A window against its baseline. ``robust_z``, ``share_ratio``: see ``CompareConfig``; ``percentile``:
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


def compare(current: HourFigures, history: Sequence[HourFigures], settings: CompareConfig = CompareConfig(),
            length_ms: int = HOUR_MS, levels: Levels | None = None) -> Comparison:
    """Judges ``current`` against the baseline ``settings`` selects from ``history`` (earlier windows).

    With ``settings.method`` ``calibrated`` (the default) the verdict comes from ``monitor.hourly.evidence``'s
    tests (``levels``: the model's error levels; without them, the baseline's own); with ``mean_z`` from the
    robust z of the weighted mean and the share ratio (the rule before it).

    >>> past = [HourFigures(h * HOUR_MS, 100, 100.0, 0.010 + 0.001 * (h % 3), 0.01) for h in range(30)]
    >>> rule = CompareConfig(method="mean_z")  # figures alone; the calibrated way reads the histograms
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


def _figures(current: HourFigures, history: Sequence[HourFigures], settings: CompareConfig,
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

def _start(figures: HourFigures) -> int:
    return figures.start_ms


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


def _share_ratio(current: HourFigures, baseline: Sequence[HourFigures], settings: CompareConfig) -> float:
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


def _early_verdict(current: HourFigures, figures: Comparison, settings: CompareConfig) -> str | None:
    """``insufficient_data`` or ``learning`` when the window cannot be judged yet, else ``None``."""
    if current.count < settings.min_count or not math.isfinite(current.weighted_mean):
        return "insufficient_data"
    if figures.baseline_size < settings.min_history:
        return "learning"
    return None


def _verdict(current: HourFigures, figures: Comparison, settings: CompareConfig) -> str:
    """The ``mean_z`` rule: the robust z of the weighted mean, or the share ratio, past its thresholds."""
    if figures.robust_z >= settings.critical_z or figures.share_ratio >= settings.critical_share_ratio:
        return "critical"
    if figures.robust_z >= settings.warning_z or figures.share_ratio >= settings.warning_share_ratio:
        return "warning"
    return "normal"


def alarm_rates(settings: CompareConfig, length_ms: int = HOUR_MS) -> tuple[float, float]:
    """The per-window tail probabilities at which a window is critical and a warning: the settings' false
    alarms per 30 days spread over the windows of 30 days."""
    windows = 30 * DAY_MS / length_ms
    return settings.false_critical_per_30_days / windows, settings.false_warning_per_30_days / windows


def _calibrated(current: HourFigures, history: Sequence[HourFigures], figures: Comparison,
                settings: CompareConfig, length_ms: int, levels: Levels | None) -> Comparison:
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


def _consecutive_pairs(current: HourFigures, history: Sequence[HourFigures], settings: CompareConfig,
                       length_ms: int, levels: Levels) -> list[tuple[HourCounts, HourCounts]]:
    """The last ``SPREAD_WINDOWS`` usable windows' counts, as pairs of windows one after the other (the hours
    under test are left out by the caller: a drift's first hour would pass for the stream's own spread)."""
    usable = [h for h in sorted(history, key=_start) if _has_bins(h) and serves_in_baseline(h, settings)
              and not (settings.same_model_only and h.model_version != current.model_version)][-SPREAD_WINDOWS:]
    return [(HourCounts.of(one.histogram, levels), HourCounts.of(two.histogram, levels))
            for one, two in zip(usable, usable[1:]) if two.start_ms - one.start_ms == length_ms]


def _consecutive(current: HourFigures, history: Sequence[HourFigures], settings: CompareConfig,
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
