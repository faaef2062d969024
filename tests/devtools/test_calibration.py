"""Calibration streams: many hours at any volume, each distinct sequence scored once, and several judges fed
the same records."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.devtools.calibration import (
    CalibrationStream,
    JudgesFailed,
    Pools,
    calibration_counts,
    calibration_hours,
    general_shift,
    run_judges,
)
from monitor.settings import CompareConfig

MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def scorer(serial_bundle: Bundle) -> Scorer:
    return Scorer(serial_bundle)


@pytest.fixture(scope="module")
def pools(scorer: Scorer) -> Pools:
    return Pools(scorer, size=3000, anomalies=300)


def test_pools_score_each_sequence_once_and_keep_it_aligned(pools: Pools, scorer: Scorer) -> None:
    normal, shifted = pools["normal"], pools["shifted"]
    assert [general_shift(s) for s in normal.sequences[:50]] == shifted.sequences[:50].tolist()
    assert all(generate.is_valid("serial", s) for s in normal.sequences[:200])
    assert not any(generate.is_valid("serial", s) for s in pools["foreign"].sequences[:200])
    assert all(generate.is_valid("uid", s) for s in pools["weekend"].sequences[:200])
    some = pools["corrupt"].sequences[:20].tolist()
    assert np.allclose(pools["corrupt"].errors[:20], scorer.errors(some))
    formats = scorer.formats(normal.sequences[:20].tolist()).of_each()
    assert [pools.format_names[i] for i in normal.format_ids[:20]] == formats
    assert pools.scored < sum(len(p) for p in pools.pools.values())  # repeats are scored once


def test_a_calibration_stream_has_its_strays_background_weekends_and_drift(pools: Pools) -> None:
    stream = CalibrationStream(hours=8 * 24, records_per_hour=400, weekend_volume=0.5, weekend_share=0.05,
                               background_rate=0.002, stray_hours=0.1, drift_from_hour=7 * 24, drift_share=0.1,
                               seed=3)
    counts = calibration_counts(stream)
    weekend = np.array([stream.weekend(h) for h in range(stream.hours)])
    assert weekend[5 * 24:7 * 24].all() and not weekend[:5 * 24].any() and not weekend[7 * 24:].any()
    assert counts[weekend].mean() == pytest.approx(0.5 * counts[~weekend].mean(), rel=0.15)
    hours = list(calibration_hours(stream, pools))
    assert [len(h.errors) for h in hours] == counts.tolist()
    for h in hours:
        start = stream.start_ms + h.hour * stream.hour_ms
        assert np.all(np.diff(h.event_times_ms) >= 0) and start <= h.event_times_ms[0]
        assert h.event_times_ms[-1] < start + stream.hour_ms
        assert [h.format_names[i] for i in h.format_ids[:10]] == pools.scorer.formats(h.sequences[:10]).of_each()
    clean = hours[:5 * 24]
    strays = sum(h.count("foreign") for h in clean)
    assert 3 <= strays <= 25  # about one record in 5 % of the hours (the other half of the strays are corrupt)
    assert sum(h.count("corrupt") for h in clean) == pytest.approx(0.002 * counts[:5 * 24].sum() + strays, rel=0.4)
    assert sum(h.count("weekend") for h in clean) == 0
    on_weekends = sum(h.count("weekend") for h in hours[5 * 24:7 * 24])
    assert on_weekends == pytest.approx(0.05 * counts[5 * 24:7 * 24].sum(), rel=0.2)
    for h in hours[7 * 24:]:  # exact: the drift's share of each hour, rounded up or down
        assert abs(h.count("foreign") - 0.1 * len(h.errors)) <= 2
    shifted = list(calibration_hours(CalibrationStream(hours=30, records_per_hour=50, drift_from_hour=20,
                                                       drift="shift"), pools))
    same = list(calibration_hours(CalibrationStream(hours=30, records_per_hour=50), pools))
    assert [h.sequences for h in shifted[:20]] == [h.sequences for h in same[:20]]  # the history ignores the drift
    assert all(h.count("normal") == 0 and h.count("shifted") >= len(h.errors) - 2 for h in shifted[20:])


def test_judges_fed_the_same_records_judge_the_same_windows(pools: Pools) -> None:
    stream = CalibrationStream(hours=40, records_per_hour=300, hour_ms=MINUTE_MS, drift_from_hour=30,
                               drift_share=0.2, seed=1)
    calibrated, mean_z = run_judges(stream, pools, [CompareConfig(min_history=8),
                                                    CompareConfig(min_history=8, method="mean_z")])
    assert [stream.hour_of(r.start_ms) for r in calibrated] == list(range(40))
    assert [r.totals for r in calibrated] == [r.totals for r in mean_z]
    assert [r.totals.count for r in calibrated] == calibration_counts(stream).tolist()
    assert all(r.sample is None and r.format_counts is None and r.top_records for r in calibrated)
    for reports in (calibrated, mean_z):
        assert [r.verdict for r in reports[:8]] == ["learning"] * 8
        assert all(r.verdict == "critical" for r in reports[30:])


def test_a_judge_that_raises_leaves_the_others_to_finish(pools: Pools, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> float:
        raise OverflowError("math range error")

    monkeypatch.setattr("monitor.hourly.evidence.beta_binomial_sf", broken)  # only the calibrated way uses it
    stream = CalibrationStream(hours=20, records_per_hour=200, hour_ms=MINUTE_MS, drift_from_hour=12,
                               drift_share=0.2, seed=2)
    with pytest.raises(JudgesFailed) as failed:
        run_judges(stream, pools, [CompareConfig(min_history=8), CompareConfig(min_history=8, method="mean_z")])
    hour, error = failed.value.failures[0]
    assert list(failed.value.failures) == [0] and isinstance(error, OverflowError) and hour >= 8
    calibrated, mean_z = failed.value.reports
    assert len(calibrated) == hour and len(mean_z) == 20
