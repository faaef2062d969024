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
rate counting as one more baseline window) with its estimation error and the hour-to-hour spread the baseline shows beyond
chance, so 30 and 20,000 records an hour are judged alike. Each test looks at the last 1 to
``CompareSettings.evidence_hours`` consecutive hours ending at this one (a persistent small drift adds up,
one odd hour does not carry the next: the current hour must lean the same way), and the smallest p-value
is multiplied by the number of spans and tests (Bonferroni), so the stated rate is an upper bound under
the model. Each tested hour's ``outlier_records`` highest-error records are set aside before counting (the
baseline's hours count whole, strays included): one odd record is per-record news (the scored events flag
it), not an hourly incident.

Everything is read from the windows' fixed error histograms (``monitor.hourly.histogram``), so the
levels are whole histogram bins, the same for the window and its baseline, and windows re-scored from
samples after a model change are judged the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.hourly.histogram import HIST_EDGES, HIST_SLOTS

ELEVATED_QUANTILE = 0.9  # the elevated level: a general shift moves many records past it
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
    """One window's records (``n``) and its records at or above each level (``at``, by signal), after
    setting aside its ``trimmed`` highest-error records."""

    n: float
    at: tuple[tuple[str, float], ...]
    trimmed: int = 0

    def count(self, signal: str) -> float:
        return dict(self.at)[signal]

    @classmethod
    def of(cls, histogram: Sequence[int], top_errors: Sequence[float], levels: Levels, trim: int) -> HourCounts:
        counts = np.asarray(histogram, dtype=np.float64).copy()
        trimmed = 0
        for error in list(top_errors)[:trim]:
            slot = slot_of(error)
            if counts[slot] > 0:
                counts[slot] -= 1
                trimmed += 1
        return cls(float(counts.sum()), tuple((name, float(counts[slot:].sum())) for name, slot in levels.slots),
                   trimmed)


@dataclass(frozen=True)
class Test:
    """One signal's evidence: ``observed`` records against ``expected`` over the last ``hours`` hours (the
    span that departed most), its tail probability ``p_value`` for that span and ``corrected`` for every
    span tried."""

    signal: str
    observed: float
    expected: float
    hours: int
    p_value: float
    corrected: float

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "observed": self.observed, "expected": self.expected, "hours": self.hours,
                "p_value": self.p_value, "corrected": self.corrected}


def tests(current: HourCounts, recent: Sequence[HourCounts], baseline: Sequence[HourCounts],
          levels: Levels) -> list[Test]:
    """Every signal's test of ``current`` (with ``recent``: the consecutive hours just before it, newest
    last) against ``baseline``; each ``corrected`` for the spans it tried."""
    spans = [current, *reversed(recent)]  # spans[:m]: the last m hours
    return [_count_test(signal, spans, baseline, levels.prior(signal)) for signal in SIGNALS]


def combined(found: Sequence[Test]) -> float:
    """The hour's p-value: the smallest corrected one, times the number of signals (Bonferroni)."""
    return min(1.0, len(found) * min((t.corrected for t in found), default=1.0))


def _count_test(signal: str, spans: Sequence[HourCounts], baseline: Sequence[HourCounts], prior: float) -> Test:
    rate, rho = _baseline_rate(baseline, signal, prior)
    current = spans[0]
    best = Test(signal, current.count(signal), current.n * rate, 1, 1.0, 1.0)
    if current.count(signal) <= current.n * rate:
        return best  # the hour itself does not lean this way: earlier hours alone make no alarm now
    known = sum(b.n for b in baseline) + _prior_records(baseline)
    observed = records = 0.0
    for m, hour in enumerate(spans, start=1):
        observed += hour.count(signal)
        records += hour.n
        # The rate's spread for this span: its estimation error, and the hour-to-hour spread beyond chance
        # (which averages down over m hours).
        relative = 1.0 / (known + 1.0) + rho / m
        concentration = max(1.0 / relative - 1.0, 1e-9)
        p = beta_binomial_sf(int(round(observed)), int(round(records)), rate * concentration,
                             (1.0 - rate) * concentration)
        if p < best.p_value:
            best = Test(signal, observed, records * rate, m, p, p)
    return Test(best.signal, best.observed, best.expected, best.hours, best.p_value,
                min(1.0, best.p_value * len(spans)))


def _prior_records(baseline: Sequence[HourCounts]) -> float:
    """How many records the training data's rate counts for: one typical baseline window (so it steadies a
    young baseline and fades in a long one; a weekly baseline of two windows is not drowned by it)."""
    sizes = [b.n for b in baseline if b.n > 0]
    return float(np.mean(sizes)) if sizes else 1.0


def _baseline_rate(baseline: Sequence[HourCounts], signal: str, prior: float) -> tuple[float, float]:
    """The baseline's pooled rate (with the prior) and its intra-hour correlation: how much more hours vary
    than independent records would (0: no more)."""
    k = np.array([b.count(signal) for b in baseline], dtype=np.float64)
    n = np.array([b.n for b in baseline], dtype=np.float64)
    prior = min(max(prior, 1e-6), 0.5)
    weight = _prior_records(baseline)
    rate = (float(k.sum()) + weight * prior) / (float(n.sum()) + weight)
    rate = min(max(rate, 1e-9), 1 - 1e-9)
    used = n > 0
    if used.sum() < 3:
        return rate, 0.0
    k, n = k[used], n[used]
    dispersion = float(np.sum(np.square(k - n * rate) / (n * rate * (1 - rate)))) / (len(n) - 1)
    mean_n = float(n.mean())
    rho = (dispersion - 1.0) / (mean_n - 1.0) if mean_n > 1 else 0.0
    return rate, min(max(rho, 0.0), 0.5)


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
