"""How strongly a closed window departs from its baseline, as tail probabilities a handful of records cannot fake.

Reconstruction errors are heavy-tailed: a foreign string's error is thousands of times a normal one's, so an
hour's mean error mostly counts its very odd records, and one of them can move it further than any normal
hour ever moves. The verdict therefore rests on counts, whose false-alarm rates can be stated: records at or
above three error levels, each tested against the baseline's own rate of them:

- ``far_records``: the *far* level, the model's training errors' 99.99th percentile (a foreign string is
  orders of magnitude above it): few records, each very odd;
- ``flagged_records``: the model's threshold (its per-sequence flag);
- ``elevated_records``: the training errors' 90th percentile: a general shift (every record a little worse)
  moves many records past it.

(A mean with each record capped at the far level was tried as well: on clean generated streams it made
hours critical, because errors between the threshold and the cap are still heavy-tailed and a handful of
them moves the mean further than a normal approximation allows.)

Counts are tested with the beta-binomial distribution: the baseline's rate (pooled, with the training data's
rate counting as one more baseline window unless the baseline's own count rules it out), its estimation error,
and the hour-to-hour spread beyond chance (the baseline's, and at least the one consecutive hours of the
stream show, which a baseline of one or two weekly windows cannot measure), so 30 and 20,000 records an hour
are judged alike. Each test looks at the last 1 to ``CompareConfig.evidence_hours`` consecutive hours
ending at this one, each hour against its own baseline with the span's hours taken out of it (a persistent
small drift adds up; the current hour must add to the evidence, so a clean hour is not carried by the
incident before it). The p-values are multiplied by the number of spans and signals (Bonferroni), so the
stated rate is an upper bound under the model. Each span's ``outlier_records`` highest-error records are set
aside before counting (the baselines count whole, strays included): one odd record is per-record news (the
scored events flag it), not an hourly incident.

Everything is read from the windows' fixed error histograms (``monitor.hourly.histogram``), so the
levels are whole histogram bins, the same for the window and its baseline, and windows re-scored from
samples after a model change are judged the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitor.hourly.histogram import HIST_EDGES, HIST_SLOTS

ELEVATED_QUANTILE = 0.9  # the elevated level: a general shift moves many records past it
PRIOR_AGREEMENT = 1e-3  # the training rate joins a baseline whose own count is not this unlikely under it
FAR_QUANTILE = 0.9999  # the far level: beyond nearly every training error; a foreign string is orders of magnitude above
MAX_TERMS = 200_000  # a beta-binomial tail sums at most this many terms (each far smaller than the first)
# A representative error per histogram slot (underflow ~0, log-midpoints, the overflow's lower edge).
BIN_VALUES = np.concatenate([[0.0], np.sqrt(HIST_EDGES[:-1] * HIST_EDGES[1:]), [HIST_EDGES[-1]]])
SIGNALS = ("far_records", "flagged_records", "elevated_records")


def slot_of(error: float) -> int:
    """The histogram slot holding ``error`` (``monitor.hourly.histogram.ErrorHistogram.add``'s rule)."""
    return int(np.searchsorted(HIST_EDGES, error, side="right"))


@dataclass(frozen=True)
class Levels:
    """The error levels the counts use, as histogram slots (a record counts when its slot is at or above),
    with the share of the model's training records at or above each (its prior rate), by signal:
    ``far_records`` (training errors' ``FAR_QUANTILE``), ``flagged_records`` (the model's threshold) and
    ``elevated_records`` (training errors' ``ELEVATED_QUANTILE``)."""

    slots: tuple[tuple[str, int], ...]
    priors: tuple[tuple[str, float], ...]
    source: str = "model"

    @classmethod
    def of_model(cls, threshold: float, training_errors: np.ndarray) -> Levels:
        """From the model's threshold and its training errors."""
        errors = np.asarray(training_errors, dtype=np.float64)
        if not len(errors):
            errors = np.array([threshold])
        flagged = slot_of(threshold)
        slots = {"far_records": max(slot_of(float(np.quantile(errors, FAR_QUANTILE))), flagged),
                 "flagged_records": flagged,
                 "elevated_records": min(slot_of(float(np.quantile(errors, ELEVATED_QUANTILE))), flagged)}
        of_errors = np.searchsorted(HIST_EDGES, errors, side="right")
        return cls(tuple(slots.items()),
                   tuple((name, float(np.count_nonzero(of_errors >= slot)) / len(errors)) for name, slot in slots.items()))

    @classmethod
    def of_histogram(cls, counts: np.ndarray, flagged_quantile: float = 0.99) -> Levels | None:
        """From a pooled baseline histogram, when the model is known by its version alone."""
        total = float(counts.sum())
        if total <= 0:
            return None
        cumulative = np.cumsum(counts) / total

        def slot(q: float) -> int:
            return min(int(np.searchsorted(cumulative, q, side="left")) + 1, HIST_SLOTS - 1)
        flagged = slot(flagged_quantile)
        slots = {"far_records": max(slot(FAR_QUANTILE), flagged), "flagged_records": flagged,
                 "elevated_records": min(slot(ELEVATED_QUANTILE), flagged)}
        return cls(tuple(slots.items()),
                   tuple((name, float(counts[s:].sum()) / total) for name, s in slots.items()), "baseline")

    def slot(self, signal: str) -> int:
        return dict(self.slots)[signal]

    def prior(self, signal: str) -> float:
        return dict(self.priors)[signal]

    def level(self, signal: str) -> float:
        """The smallest error a record counted for ``signal`` can have."""
        slot = self.slot(signal)
        return 0.0 if slot == 0 else float(HIST_EDGES[slot - 1])


@dataclass(frozen=True)
class HourCounts:
    """One window's records (``n``) and its records at or above each level (``at``, by signal)."""

    n: float
    at: tuple[tuple[str, float], ...]

    def count(self, signal: str) -> float:
        return dict(self.at)[signal]

    @classmethod
    def of(cls, histogram: Sequence[int], levels: Levels) -> HourCounts:
        counts = np.asarray(histogram, dtype=np.float64)
        return cls(float(counts.sum()), tuple((name, float(counts[slot:].sum())) for name, slot in levels.slots))


@dataclass(frozen=True)
class Test:
    """One signal's evidence: ``observed`` records against ``expected`` over the last ``hours`` hours (the
    span that departed most), its tail probability ``p_value`` for that span and ``corrected`` for every
    span and signal tried (Bonferroni)."""

    signal: str
    observed: float
    expected: float
    hours: int
    p_value: float
    corrected: float

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "observed": self.observed, "expected": self.expected, "hours": self.hours,
                "p_value": self.p_value, "corrected": self.corrected}


@dataclass(frozen=True)
class TestedHour:
    """One hour of a span under test: its ``counts``, its highest errors (``top_errors``, highest first) and
    the windows of its own baseline as ``(start_ms, counts)``, from which the span's own hours are removed."""

    start_ms: int
    counts: HourCounts
    top_errors: tuple[float, ...]
    baseline: tuple[tuple[int, HourCounts], ...]

    def baseline_without(self, hours: set[int]) -> list[HourCounts]:
        return [counts for start, counts in self.baseline if start not in hours]


def tests(hours: Sequence[TestedHour], levels: Levels, spread: Mapping[str, float], trim: int) -> list[Test]:
    """Every signal's test of the current hour (``hours[0]``) and the consecutive hours just before it
    (``hours[1:]``, newest first), each against its own baseline, each span's ``trim`` highest-error records
    set aside; each ``corrected`` for its spans and signal."""
    return [_count_test(signal, hours, _Level(levels.slot(signal), levels.prior(signal), spread.get(signal, 0.0)),
                        trim) for signal in SIGNALS]


def combined(found: Sequence[Test]) -> float:
    """The hour's p-value: the smallest corrected one (each is corrected for its signal and spans)."""
    return min((t.corrected for t in found), default=1.0)


@dataclass(frozen=True)
class _Level:
    slot: int
    prior: float
    spread: float


def _count_test(signal: str, hours: Sequence[TestedHour], level: _Level, trim: int) -> Test:
    rates = [_baseline_rate(hours[0].baseline_without({hours[0].start_ms}), signal, level)]
    observed, expected, _ = _span_tail(signal, hours[:1], rates, level.slot, trim)
    best = Test(signal, observed, expected, 1, 1.0, 1.0)
    if observed <= expected:
        return best  # the hour itself does not lean this way: earlier hours alone make no alarm now
    for m in range(1, len(hours) + 1):
        span = hours[:m]
        # The hours under test are never their own baseline: a drift's first hour, judged normal, would
        # else raise the rate the span is tested against.
        excluded = {h.start_ms for h in span}
        baselines = [h.baseline_without(excluded) for h in span]
        if not all(baselines):
            break  # an hour of the span has no baseline left: longer spans neither
        rates = [_baseline_rate(baseline, signal, level) for baseline in baselines]
        observed, expected, p = _span_tail(signal, span, rates, level.slot, trim)
        # The current hour must add to the evidence: a clean hour after an incident is not carried by it.
        if m > 1 and p >= _span_tail(signal, span[1:], rates[1:], level.slot, trim)[2]:
            continue
        if p < best.p_value:
            best = Test(signal, observed, expected, m, p, p)
    # Bonferroni over the spans that could be tried and the signals: the stated rate is an upper bound.
    return replace(best, corrected=min(1.0, best.p_value * len(hours) * len(SIGNALS)))


def _span_tail(signal: str, span: Sequence[TestedHour], rates: Sequence[tuple[float, float, float]], slot: int,
               trim: int) -> tuple[float, float, float]:
    """The span's observed and expected records at the level once its ``trim`` highest-error records are set
    aside (the top ``trim`` of the hours' own tops: the span's), and the tail probability of so many."""
    set_aside = sorted((e for h in span for e in h.top_errors), reverse=True)[:trim]
    whole = sum(h.counts.n for h in span)
    records = whole - len(set_aside)
    observed = sum(h.counts.count(signal) for h in span) - sum(slot_of(e) >= slot for e in set_aside)
    expected = sum(h.counts.n * rate for h, (rate, _, _) in zip(span, rates)) * (records / whole if whole else 0.0)
    if records <= 0:
        return observed, expected, 1.0
    # The rate's spread: its estimation error (the thinnest baseline's), and the hour-to-hour spread beyond
    # chance (which averages down over the span's hours).
    relative = max(1.0 / (known + 1.0) for _, _, known in rates) + \
        float(np.mean([rho for _, rho, _ in rates])) / len(span)
    concentration = max(1.0 / relative - 1.0, 1e-9)
    pooled = min(max(expected / records, 1e-9), 1 - 1e-9)
    return observed, expected, beta_binomial_sf(int(round(observed)), int(round(records)), pooled * concentration,
                                                (1.0 - pooled) * concentration)


def _prior_records(baseline: Sequence[HourCounts]) -> float:
    """How many records the training data's rate counts for: one typical baseline window (so it steadies a
    young baseline and fades in a long one)."""
    sizes = [b.n for b in baseline if b.n > 0]
    return float(np.mean(sizes)) if sizes else 1.0


def _baseline_rate(baseline: Sequence[HourCounts], signal: str, level: _Level) -> tuple[float, float, float]:
    """The baseline's pooled rate, its intra-hour correlation (how much more hours vary than independent
    records would; 0: no more; at least ``level.spread``, the stream's hour-to-hour one) and how many records the
    rate rests on. The training data's rate joins the pool unless the baseline's own count rules it out
    (a weekend-only format the training never saw: the baseline alone says what such hours hold)."""
    k = np.array([b.count(signal) for b in baseline], dtype=np.float64)
    n = np.array([b.n for b in baseline], dtype=np.float64)
    prior = min(max(level.prior, 1e-6), 0.5)
    if binomial_tails(int(round(k.sum())), int(round(n.sum())), prior) >= PRIOR_AGREEMENT:
        weight = _prior_records(baseline)
        known = float(n.sum()) + weight
        rate = (float(k.sum()) + weight * prior) / known
    else:  # Jeffreys' half a record each way: the baseline alone
        known = float(n.sum()) + 1.0
        rate = (float(k.sum()) + 0.5) / known
    rate = min(max(rate, 1e-9), 1 - 1e-9)
    used = n > 0
    if used.sum() < 3:
        return rate, level.spread, known
    k, n = k[used], n[used]
    dispersion = float(np.sum(np.square(k - n * rate) / (n * rate * (1 - rate)))) / (len(n) - 1)
    mean_n = float(n.mean())
    rho = (dispersion - 1.0) / (mean_n - 1.0) if mean_n > 1 else 0.0
    return rate, max(min(max(rho, 0.0), 0.5), level.spread), known


def hour_to_hour_spread(pairs: Sequence[tuple[HourCounts, HourCounts]], signal: str) -> float:
    """The intra-hour correlation that consecutive hours' counts show (``pairs``: hours a window apart): a
    stream's own overdispersion, which a slow daily or weekly rhythm hardly touches, so a baseline of one or
    two windows (a weekly one, early on) borrows it instead of assuming none."""
    pairs = [(one, two) for one, two in pairs if one.n > 0 and two.n > 0]
    records = sum(one.n + two.n for one, two in pairs)
    rate = sum(one.count(signal) + two.count(signal) for one, two in pairs) / records if records else 0.0
    if len(pairs) < 3 or not 0.0 < rate < 1.0:
        return 0.0
    z2 = [(one.count(signal) / one.n - two.count(signal) / two.n) ** 2 / (rate * (1 - rate) * (1 / one.n + 1 / two.n))
          for one, two in pairs]
    size = float(np.mean([2.0 / (1 / one.n + 1 / two.n) for one, two in pairs]))  # E[z2] = 1 + rho (size - 1)
    return min(max((float(np.mean(z2)) - 1.0) / (size - 1.0), 0.0), 0.5) if size > 1 else 0.0


def binomial_tails(k: int, n: int, p: float) -> float:
    """The smaller of P(X <= k) and P(X >= k) for X ~ Binomial(n, p): how unlike ``p`` a count of ``k`` in
    ``n`` is (1 at the bulk; each tail summed outward from k until its terms are negligible).

    >>> round(binomial_tails(0, 10, 0.5), 6), round(binomial_tails(5, 10, 0.5), 1), binomial_tails(3, 10, 0.0)
    (0.000977, 1.0, 0.0)
    """
    if n <= 0:
        return 1.0
    if p <= 0.0 or p >= 1.0:
        return 1.0 if k == round(n * p) else 0.0
    mean = n * p
    if abs(k - mean) < 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_pmf(j: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q
    step = 1 if k > mean else -1
    first = log_pmf(k)
    total, j = 0.0, k
    for _ in range(MAX_TERMS):
        if not 0 <= j <= n:
            break
        term = math.exp(log_pmf(j) - first)
        total += term
        if term < 1e-17 * total:
            break
        j += step
    return min(1.0, math.exp(first + math.log(total)))


def beta_binomial_sf(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b), summed in log space (exact for tails far below 1e-16).

    >>> round(beta_binomial_sf(1, 1, 1.0, 1.0), 6), beta_binomial_sf(0, 5, 2.0, 3.0), beta_binomial_sf(6, 5, 2.0, 3.0)
    (0.5, 1.0, 0.0)
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_norm = math.lgamma(n + 1) - _log_beta(a, b)
    mode = n * a / (a + b)
    if k <= mode:  # at or below the bulk: no evidence of excess (and summing upward from k would overflow)
        return 1.0
    total = 0.0
    first = None
    for j in range(k, min(n, k + MAX_TERMS) + 1):
        log_term = log_norm - math.lgamma(j + 1) - math.lgamma(n - j + 1) + _log_beta(j + a, n - j + b)
        if first is None:
            first = log_term
        term = math.exp(log_term - first)
        total += term
        if j > mode + 1 and term < 1e-17 * total:
            break
    return min(1.0, math.exp(first + math.log(total))) if first is not None else 0.0


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
