"""The hourly judgement across model changes: each window scored by one model, history re-scored from the
windows' samples, no learning gap, an incident after a change still caught.

The models here are arithmetic (``ScaledModel``): the judge only needs a version, a threshold and errors of
sequences, and scales that differ by model are exactly what a real model change brings.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.timeline import HOUR_MS
from monitor.settings import CompareConfig

START_MS = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
DRIFT = "DRIFT"


class ScaledModel:
    """Errors of a sequence: a fixed per-sequence value (from its hash) times this model's scale; a drifted
    sequence costs ~50 times a normal one. The threshold flags ~1 % of normal sequences."""

    def __init__(self, version: str, scale: float) -> None:
        self.version, self.scale = version, scale
        normal = self.errors([f"N{i}" for i in range(20_000)])
        self.threshold = float(np.quantile(normal, 0.99))

    def errors(self, sequences: Sequence[str]) -> np.ndarray:
        unit = np.array([zlib.crc32(s.encode()) / 2 ** 32 for s in sequences])
        base = 0.01 * np.exp(unit - 0.5)
        return self.scale * base * np.array([50.0 if s.startswith(DRIFT) else 1.0 for s in sequences])


def hour_of_records(hour: int, records: int, drift_share: float) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(hour)
    drifted = rng.random(records) < drift_share
    sequences = [f"{DRIFT}{hour}-{i}" if d else f"N{hour}-{i}" for i, d in enumerate(drifted)]
    times = START_MS + hour * HOUR_MS + np.sort(rng.integers(0, HOUR_MS, records))
    return sequences, times


def run(hours: int, versions: dict[int, ScaledModel], drift_from: int, judge: HourlyJudge,
        records: int = 2000) -> list[WindowReport]:
    """Hour by hour: each hour scored by the model in use when it started (``versions``: first hour -> model)."""
    def model_for(start_ms: int) -> ScaledModel:
        hour = (start_ms - START_MS) // HOUR_MS
        return versions[max(h for h in versions if h <= hour)]

    reports: list[WindowReport] = []
    for hour in range(hours):
        sequences, times = hour_of_records(hour, records, 0.15 if hour >= drift_from else 0.0)
        model = model_for(START_MS + hour * HOUR_MS)
        errors = model.errors(sequences)
        judge.add(("t", 0), errors, np.ones(records), times, errors > model.threshold, sequences=sequences)
        reports += judge.close_due(model_for, now_ms=START_MS + (hour + 1) * HOUR_MS)
    return reports


def test_model_changes_cause_no_learning_gap_and_an_incident_after_them_is_critical_within_two_hours() -> None:
    # The reproduction: 80 hourly windows of 2,000 records, versions change at hours 30 and 54, and from
    # hour 60 15 % of the records drift to ~50 times the error. Default compare settings.
    versions = {0: ScaledModel("v1", 1.0), 30: ScaledModel("v2", 3.0), 54: ScaledModel("v3", 0.4)}
    reports = run(80, versions, drift_from=60, judge=HourlyJudge(HOUR_MS, 0, CompareConfig()))
    verdicts = [r.verdict for r in reports]
    assert len(reports) == 80
    assert [r.model_version for r in reports] == ["v1"] * 30 + ["v2"] * 24 + ["v3"] * 26
    assert "learning" not in verdicts[24:]
    assert "critical" not in verdicts[:60] and "warning" not in verdicts[:60]
    assert "critical" in verdicts[60:62]
    assert set(verdicts[60:]) == {"critical"}  # the drift stays critical: it never becomes the baseline


def test_windows_after_a_change_are_compared_with_estimates_marked_with_their_sample_size() -> None:
    versions = {0: ScaledModel("v1", 1.0), 30: ScaledModel("v2", 3.0)}
    judge = HourlyJudge(HOUR_MS, 0, CompareConfig(), sample_size=500)
    reports = run(32, versions, drift_from=99, judge=judge)
    assert reports[30].comparison.baseline_estimated == reports[30].comparison.baseline_size == 30
    entries = judge.histories["t"].entries
    assert {(e.model_version, e.sample_size) for e in entries[:30]} == {("v2", 500)}
    assert all(e.standard_error > 0 for e in entries[:30])
    assert {(e.model_version, e.sample_size) for e in entries[30:]} == {("v2", 0)}
    # The estimates land near what v2 would have given, three times v1's means, by about their standard
    # error: within 4 of them each, and within 1 for a good share of them.
    off = np.array([abs(e.weighted_mean - 3 * r.totals.weighted_mean) / e.standard_error
                    for e, r in zip(entries[:30], reports[:30])])
    assert off.max() < 4 and (off < 1).mean() > 0.5


def test_without_samples_a_model_change_starts_learning_afresh_as_before() -> None:
    versions = {0: ScaledModel("v1", 1.0), 30: ScaledModel("v2", 3.0)}
    reports = run(40, versions, drift_from=99, judge=HourlyJudge(HOUR_MS, 0, CompareConfig(), sample_size=0))
    assert {r.verdict for r in reports[30:40]} == {"learning"}
