"""The calibrated judgement from figures alone: young baselines, the hours after an incident, thin weekly
baselines, and the tail probabilities it rests on."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.hourly.baseline import WEEK_MS
from monitor.hourly.compare import compare
from monitor.hourly.evidence import (
    HourCounts,
    Levels,
    beta_binomial_sf,
    binomial_tails,
    hour_to_hour_spread,
    slot_of,
)
from monitor.hourly.hour_figures import HourFigures
from monitor.hourly.timeline import HOUR_MS
from monitor.settings import CompareConfig

NORMAL, FAR = 1e-5, 1.0
# A model whose training errors sit at 1e-5, one in a thousand at 1e-3: 1.0 is far above normal.
LEVELS = Levels.of_model(2e-5, np.concatenate([np.full(9_990, NORMAL), np.full(10, 1e-3)]))


def hour(index: int, records: int, far: int = 0, start_ms: int = 0) -> HourFigures:
    """An hour of ``records``, ``far`` of them far above normal (its top records those)."""
    histogram = [0] * 66
    histogram[slot_of(NORMAL)] = records - far
    histogram[slot_of(FAR)] += far
    top = tuple((f"odd-{index}-{i}", FAR) for i in range(min(far, 5))) or (("AB121E", NORMAL),)
    return HourFigures(start_ms or index * HOUR_MS, records, float(records), NORMAL + far * FAR / records,
                       far / records, tuple(histogram), top=top)


def judged(hours: list[HourFigures], settings: CompareConfig) -> list[str]:
    """Each hour judged against the ones before it, as ``History`` does (verdicts kept for baselines)."""
    history: list[HourFigures] = []
    verdicts = []
    for figures in hours:
        comparison = compare(figures, history, settings, HOUR_MS, LEVELS)
        history.append(HourFigures(**{**figures.__dict__, "verdict": comparison.verdict}))
        verdicts.append(comparison.verdict)
    return verdicts


def test_a_young_history_judges_the_current_hour_against_every_hour_before_it() -> None:
    """Two learning hours and two judged ones, all within the six hours a span may reach: the fifth hour,
    half of it far above normal, is critical (no span may empty the current hour's baseline)."""
    hours = [hour(h, 6_000, far=3_000 if h == 4 else 3) for h in range(6)]
    verdicts = judged(hours, CompareConfig(min_history=2))
    assert verdicts == ["learning", "learning", "normal", "normal", "critical", "normal"]


def test_a_clean_hour_after_an_incident_is_not_carried_by_it() -> None:
    """The hour after a critical one leans a little above its rate (6 far records, ~3 expected): spans
    reaching back into the incident are strong only because of the incident, so they do not count."""
    hours = [hour(h, 2_000, far=3) for h in range(30)] + [hour(30, 2_000, far=600), hour(31, 2_000, far=6)]
    verdicts = judged(hours, CompareConfig(min_history=24))
    assert verdicts[30] == "critical" and verdicts[31] == "normal"


def test_a_persistent_small_rise_adds_up_over_consecutive_hours() -> None:
    """Twice the usual far records hour after hour: no single hour is critical, a few of them together are."""
    hours = [hour(h, 2_000, far=10) for h in range(48)] + [hour(48 + h, 2_000, far=24) for h in range(6)]
    comparisons = []
    history: list[HourFigures] = []
    for figures in hours:
        comparisons.append(compare(figures, history, CompareConfig(), HOUR_MS, LEVELS))
        history.append(HourFigures(**{**figures.__dict__, "verdict": comparisons[-1].verdict}))
    assert "critical" not in [c.verdict for c in comparisons[:48]]
    first = next(i for i, c in enumerate(comparisons) if c.verdict == "critical")
    assert 48 < first <= 53 and comparisons[first].reasons[0].hours > 1


def test_a_weekly_baseline_of_one_window_trusts_what_that_window_held_over_the_training_rate() -> None:
    """A weekend-only format far above normal at 5 %: its second weekend is compared with the first, whose
    own count rules the training rate out, so the same share again is normal."""
    weekly = CompareConfig(baseline="same_hour_of_week", min_history=1)
    first = hour(0, 1_000, far=50, start_ms=WEEK_MS)
    second = hour(1, 1_000, far=55, start_ms=2 * WEEK_MS)
    history = [HourFigures(**{**first.__dict__, "verdict": "critical"})]
    assert compare(second, history, weekly, HOUR_MS, LEVELS).verdict == "normal"
    assert compare(hour(2, 1_000, far=200, start_ms=2 * WEEK_MS), history, weekly, HOUR_MS, LEVELS).verdict \
        == "critical"


def test_the_hour_to_hour_spread_is_none_for_steady_counts_and_grows_with_uneven_ones() -> None:
    def counts(far: int) -> HourCounts:
        return HourCounts.of(hour(0, 1_000, far=far).histogram, LEVELS)
    steady = [(counts(10), counts(10)) for _ in range(20)]
    uneven = [(counts(2), counts(40)) for _ in range(20)]
    assert hour_to_hour_spread(steady, "far_records") == 0.0
    assert hour_to_hour_spread(uneven, "far_records") > 0.01
    assert hour_to_hour_spread(steady[:2], "far_records") == 0.0  # too few pairs to tell


@pytest.mark.parametrize(("k", "n", "p"), [(0, 20, 0.1), (7, 20, 0.1), (2, 20, 0.1), (40, 1_000, 0.02)])
def test_binomial_tails_match_a_direct_sum(k: int, n: int, p: float) -> None:
    from math import comb
    pmf = [comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(n + 1)]
    expected = min(sum(pmf[:k + 1]), sum(pmf[k:]))
    assert binomial_tails(k, n, p) == pytest.approx(1.0 if abs(k - n * p) < 1 else expected, rel=1e-9)


def test_the_beta_binomial_tail_approaches_the_binomial_one_as_the_rate_grows_certain() -> None:
    from math import comb
    binomial = sum(comb(200, j) * 0.01 ** j * 0.99 ** (200 - j) for j in range(8, 201))
    assert beta_binomial_sf(8, 200, 0.01 * 1e7, 0.99 * 1e7) == pytest.approx(binomial, rel=1e-3)
    assert beta_binomial_sf(8, 200, 0.01 * 50, 0.99 * 50) > 5 * binomial  # an uncertain rate: heavier tail
