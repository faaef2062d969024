"""Simulated traffic through the hourly monitor: a realistic stream, and a drift caught in its first hour.

The last test is the detection benchmark (``bench/detection.py``) in small: one-minute windows instead of
hours, a quarter of the records per window, the same verdict rules and the same target.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.devtools.detection import Detection, evaluate
from monitor.devtools.simulate import Simulation, hourly_batches, hourly_counts
from monitor.settings import CompareConfig

MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def scorer(serial_bundle: Bundle) -> Scorer:
    return Scorer(serial_bundle)


def test_hourly_counts_follow_a_daily_cycle_with_noise() -> None:
    counts = hourly_counts(Simulation(hours=96, records_per_hour=1000, seed=4))
    by_hour_of_day = counts.reshape(4, 24).mean(axis=0)
    assert 900 < counts.mean() < 1100
    assert by_hour_of_day[14] > 1.3 * by_hour_of_day[2]  # busy afternoons, quiet nights
    assert len(set(counts.tolist())) > 80  # noise: hardly two hours alike
    assert np.array_equal(counts, hourly_counts(Simulation(hours=96, records_per_hour=1000, seed=4)))


def test_each_hour_has_its_steady_broken_share_and_the_drift_adds_to_it() -> None:
    sim = Simulation(hours=6, records_per_hour=3000, anomaly_rate=0.02, drift_from_hour=4, drift_share=0.2,
                     hour_ms=MINUTE_MS, seed=2)
    hours = list(hourly_batches(sim))
    for hour, (times, sequences) in enumerate(hours):
        start = sim.start_ms + hour * MINUTE_MS
        assert np.all(np.diff(times) >= 0) and start <= times[0] and times[-1] < start + MINUTE_MS
        broken = np.mean([not generate.is_valid("serial", s) for s in sequences])
        expected = 0.02 if hour < 4 else 0.02 * 0.8 + 0.2
        assert broken == pytest.approx(expected, abs=0.012), hour
    drifted = [s for s in hours[5][1] if generate.is_valid("uid", s) or generate.is_valid("residues", s)
               or generate.is_valid("plate", s)]
    assert len(drifted) > 400 and not any(generate.is_valid("uid", s) for s in hours[3][1])


def test_a_drift_goes_critical_in_its_first_hour_and_no_hour_before_it(scorer: Scorer) -> None:
    sim = Simulation(hours=40, records_per_hour=400, drift_from_hour=30, seed=1)
    result = evaluate(sim, scorer, CompareConfig(min_history=8))
    assert [sim.hour_of(r.start_ms) for r in result.reports] == list(range(40))
    assert [r.verdict for r in result.reports[:8]] == ["learning"] * 8
    assert result.monitor == Detection(drift_hour=30, first_alarm_hour=30, false_critical=0,
                                       false_warning=result.monitor.false_warning, drift_hours_critical=10,
                                       drift_hours=10)
    assert result.monitor.false_warning <= 2


@pytest.mark.parametrize("seed", [0, 1])
def test_detection_benchmark_with_minute_windows_meets_the_target(scorer: Scorer, seed: int) -> None:
    sim = Simulation(hours=96, records_per_hour=500, drift_from_hour=72, hour_ms=MINUTE_MS, seed=seed)
    result = evaluate(sim, scorer, CompareConfig())
    assert result.monitor.delay_hours is not None and result.monitor.delay_hours < 2
    assert result.monitor.false_critical == 0
    assert result.monitor.drift_hours_critical == 24  # abnormal windows stay out of the baseline
    # The references, on the same windows: a limit from training errors alone alarms most of the time (the
    # steady broken share is not in the training data), and a rolling mean + 3 std soon takes the drift for
    # the new normal.
    assert result.static.false_critical > 72 // 2
    assert result.rolling.drift_hours_critical < 12
