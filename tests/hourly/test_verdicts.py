"""The calibrated hourly verdict on scored streams: one odd record is not an incident, drifts are, and every
alarm says why. A real (small) model scores generated serials; the judge runs as the service runs it."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import numpy as np
import pytest

from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.settings import CompareConfig
from monitor.stream.hooks import WindowLog

ODD = ("ORD-2024-11-05-0042", "zz-99-??", "PHE-SER-CYS", "usr-104512-DE", "INV-2024-004512", "ab121e")
START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
Extra = Callable[[int, random.Random], list[str]]  # hour -> sequences added to it


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    """The default model on 20,000 serials (about 12 s): the session's small test model separates a foreign
    string from a serial by a factor of ten, a trained default one by a thousand, as real models do."""
    return Scorer(train(generate.sample("serial", 20_000, seed=0), verbose=0))


def run_stream(scorer: Scorer, hours: int, per_hour: int | Callable[[int], int], extra: Extra | None = None,
               settings: CompareConfig = CompareConfig(), seed: int = 1) -> list[WindowReport]:
    """Hourly windows of fresh serials (with a 0.05 % background of corrupted ones), plus ``extra``'s."""
    rng = random.Random(seed)
    judge = HourlyJudge(HOUR_MS, 0, settings)
    normal = iter(generate.sample("serial", hours * (per_hour if isinstance(per_hour, int) else 200) * 2,
                                  seed=7_000_000 + seed))
    reports: list[WindowReport] = []
    for h in range(hours):
        n = per_hour if isinstance(per_hour, int) else per_hour(h)
        sequences = [next(normal) + ("X" if rng.random() < 0.0005 else "") for _ in range(n)]
        sequences += extra(h, rng) if extra else []
        rng.shuffle(sequences)
        errors = scorer.errors(sequences)
        formats = scorer.formats(sequences)
        times = START_MS + h * HOUR_MS + np.sort(np.array([rng.randrange(HOUR_MS) for _ in sequences]))
        judge.add(("t", 0), errors, np.ones(len(errors)), times, errors > scorer.threshold, sequences=sequences,
                  format_ids=formats.ids, format_names=formats.names)
        reports += judge.close_due(lambda start: scorer, now_ms=START_MS + (h + 1) * HOUR_MS)
    return reports


def hour_of(report: WindowReport) -> int:
    return (report.start_ms - START_MS) // HOUR_MS


@pytest.mark.slow
@pytest.mark.parametrize("per_hour", [30, 150, 2000])
def test_one_odd_record_is_not_critical_and_is_named_in_top_records(scorer: Scorer, per_hour: int) -> None:
    odd_hours = {h: ODD[i % len(ODD)] for i, h in enumerate(range(30, 72, 7))}
    reports = run_stream(scorer, 72, per_hour, lambda h, _: [odd_hours[h]] if h in odd_hours else [])
    judged = [r for r in reports if r.verdict not in ("learning", "insufficient_data")]
    assert len(judged) >= 40
    for report in reports:
        if hour_of(report) in odd_hours:
            assert report.verdict != "critical", report.reasons_summary()
            assert odd_hours[hour_of(report)] in [t.sequence for t in report.top_records]
    assert not [r.reasons_summary() for r in judged if r.verdict == "critical"]


@pytest.mark.slow
def test_a_three_percent_foreign_drift_is_critical_within_two_hours_and_says_why(scorer: Scorer) -> None:
    drift_from = 40
    reports = run_stream(scorer, 46, 150, lambda h, rng: generate.sample(
        "uid", np.random.default_rng(h).binomial(150, 0.03), seed=h) if h >= drift_from else [])
    before = [r for r in reports if hour_of(r) < drift_from]
    assert not [r for r in before if r.verdict == "critical"]
    first = next(r for r in reports if hour_of(r) >= drift_from and r.verdict == "critical")
    assert hour_of(first) - drift_from <= 1  # the drift's first or second hour
    far = next(reason for reason in first.reasons if reason.signal == "far_records")
    assert far.observed > far.expected and far.p_value is not None and far.p_value < 1e-4
    assert far.records and all(record.startswith("usr-") for record in far.records)
    assert first.comparison.signal == "far_records" and first.comparison.p_value < 1e-4


@pytest.mark.slow
def test_a_ten_percent_drift_is_critical_by_its_second_hour_at_thirty_records_an_hour(scorer: Scorer) -> None:
    """The issue's target is the first hour; three foreign records of thirty, one set aside as the hour's
    outlier, give p 0.016 against 1.4e-4 for critical (docs/benchmarks.md, the calibration scenario, says why
    no calibrated test can do better); the two hours together are critical. Kept at what holds, so the test
    tells if it gets worse."""
    drift_from = 40
    reports = run_stream(scorer, 44, 30, lambda h, rng: generate.sample("uid", 3, seed=h) if h >= drift_from else [])
    assert not [r for r in reports if hour_of(r) < drift_from and r.abnormal]
    first = next(r for r in reports if hour_of(r) >= drift_from and r.verdict == "critical")
    assert hour_of(first) - drift_from <= 1
    assert all(r.abnormal for r in reports if hour_of(r) > drift_from)


@pytest.mark.slow
def test_the_weekly_stream_does_not_alarm_after_its_first_week(scorer: Scorer) -> None:
    """A legitimate weekend-only format at 5 % on Saturdays and Sundays, fewer records at night and at the
    weekend: judged against the same hour of the week, its second and third weekends are normal."""
    def weekend(h: int) -> bool:
        return (START_MS + h * HOUR_MS) // DAY_MS % 7 in (5, 6)  # 2024-01-01 is a Monday

    def volume(h: int) -> int:
        return (40 if weekend(h) else 60) + (20 if 8 <= h % 24 < 20 else 0)

    settings = CompareConfig(baseline="same_hour_of_week", min_history=1)
    reports = run_stream(scorer, 21 * 24, volume, lambda h, _: generate.sample(
        "plate", 3, seed=h) if weekend(h) else [], settings)
    first_week = [r for r in reports if hour_of(r) < 7 * 24]
    later = [r for r in reports if hour_of(r) >= 7 * 24]
    assert {r.verdict for r in first_week} == {"learning"}  # no same hour of the week before yet
    assert [(hour_of(r), r.reasons_summary()) for r in later if r.abnormal] == []


@pytest.mark.slow
def test_reasons_reach_the_window_log_line(scorer: Scorer, caplog: pytest.LogCaptureFixture) -> None:
    reports = run_stream(scorer, 42, 150, lambda h, rng: generate.sample("uid", 15, seed=h) if h >= 40 else [])
    drifted = reports[-1]
    assert drifted.verdict == "critical"
    with caplog.at_level(logging.INFO):
        WindowLog().on_window_closed(drifted, 1)
    line = caplog.records[-1].getMessage()
    assert "verdict critical" in line and "reasons: critical far_records:" in line and "usr-" in line


def test_an_hour_departing_only_by_its_top_record_is_normal_with_an_outliers_reason() -> None:
    """Judged from figures: 29 quiet hours, then one whose single record far above normal is the departure."""
    from monitor.hourly.history import History

    from .figures import OUTLIER, QUIET_LEVELS, quiet_history, tiny_hour

    levels, figures, history = QUIET_LEVELS, tiny_hour, quiet_history()
    whole = History(CompareConfig(min_history=24, outlier_records=0), entries=history.entries)
    assert whole.compare(figures(29, 1), levels).verdict in ("warning", "critical")  # without setting it aside
    judged = history.compare(figures(29, 1), levels)
    assert judged.verdict == "normal" and [r.signal for r in judged.reasons] == ["outliers"]
    assert judged.reasons[0].records == (OUTLIER,) and judged.reasons[0].level == "info"
    warned = History(CompareConfig(min_history=24, outliers_verdict="warning"), entries=history.entries)
    assert warned.compare(figures(29, 1), levels).verdict == "warning"


