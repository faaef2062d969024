"""A simulated stream with a retrain on the way: the model changes at a window boundary, and the verdicts go on.

The retrain scenario of ``bench/detection.py`` in small: one-minute windows, 300 records each, a short
history, one retrain at hour 30 with a few epochs, a drift four hours after it. The monitor keeps judging
across the change (history re-scored from the windows' samples); the same candidate promoted at the same
hour without samples leaves the hours after it learning.
"""

from __future__ import annotations

import pytest

from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings
from monitor.devtools.retraining import Retraining, RetrainRun, run_with_retraining
from monitor.devtools.simulate import Simulation
from monitor.settings import CompareConfig

MINUTE_MS = 60_000
MIN_HISTORY = 8
RETRAIN_HOUR = 30
DRIFT_HOUR = 34
SIM = Simulation(hours=60, records_per_hour=300, drift_from_hour=DRIFT_HOUR, hour_ms=MINUTE_MS, seed=3)
SETTINGS = CompareConfig(min_history=MIN_HISTORY)


@pytest.fixture(scope="module")
def scorer(serial_bundle: Bundle) -> Scorer:
    return Scorer(serial_bundle)


@pytest.fixture(scope="module")
def monitor(scorer: Scorer) -> RetrainRun:
    return run_with_retraining(SIM, scorer, SETTINGS, every_hours=RETRAIN_HOUR, min_records=1_000,
                               train_settings=TrainSettings(model=ModelSettings(epochs=10, seed=7)))


@pytest.fixture(scope="module")
def same_version(scorer: Scorer, monitor: RetrainRun) -> RetrainRun:
    return run_with_retraining(SIM, scorer, SETTINGS, every_hours=RETRAIN_HOUR, sample_size=0,
                               candidates=monitor.candidates())


def hours(run: RetrainRun) -> list[int]:
    return [run.sim.hour_of(r.start_ms) for r in run.reports]


def test_the_candidate_is_trained_on_normal_samples_shadowed_and_takes_over_at_the_boundary(
        scorer: Scorer, monitor: RetrainRun) -> None:
    [retrain] = monitor.retrainings
    assert retrain.hour == RETRAIN_HOUR and retrain.outcome == "promoted" and retrain.from_hour == RETRAIN_HOUR
    assert retrain.candidate is not None and retrain.candidate.version != scorer.version
    # windows MIN_HISTORY..28 were judged normal (29 is still open at the retrain), each sampled whole
    judged_normal = [r for r in monitor.reports[MIN_HISTORY:RETRAIN_HOUR - 1] if r.verdict == "normal"]
    assert retrain.corpus == sum(r.totals.count for r in judged_normal) > 1_000
    assert hours(monitor) == list(range(SIM.hours))
    assert [r.model_version for r in monitor.reports] == \
        [scorer.version] * RETRAIN_HOUR + [retrain.candidate.version] * (SIM.hours - RETRAIN_HOUR)
    assert (monitor.promoted, monitor.refused) == (1, 0)


def test_with_samples_no_hour_is_learning_after_the_first_history_and_the_drift_is_caught(
        monitor: RetrainRun) -> None:
    assert [r.verdict for r in monitor.reports[:MIN_HISTORY]] == ["learning"] * MIN_HISTORY
    assert not [h for h, r in zip(hours(monitor), monitor.reports) if h >= MIN_HISTORY and r.verdict == "learning"]
    assert monitor.learning_hours == 0
    first_after = monitor.reports[RETRAIN_HOUR]
    assert first_after.comparison.baseline_size >= RETRAIN_HOUR - 1  # the whole history, re-scored
    assert first_after.comparison.baseline_estimated == first_after.comparison.baseline_size
    detection = monitor.detection
    assert detection.first_alarm_hour == DRIFT_HOUR and detection.false_critical == 0
    assert detection.drift_hours_critical == detection.drift_hours


def test_without_samples_the_same_candidate_leaves_the_hours_after_the_change_learning(
        monitor: RetrainRun, same_version: RetrainRun) -> None:
    [retrain] = same_version.retrainings
    assert retrain.candidate is monitor.retrainings[0].candidate
    assert retrain.outcome == "promoted_unshadowed" and retrain.from_hour == RETRAIN_HOUR  # nothing to shadow on
    assert [r.model_version for r in same_version.reports] == [r.model_version for r in monitor.reports]
    # Until the change, samples make no difference to any verdict.
    assert [r.verdict for r in same_version.reports[:RETRAIN_HOUR]] == \
        [r.verdict for r in monitor.reports[:RETRAIN_HOUR]]
    after = same_version.reports[RETRAIN_HOUR:]
    blind = DRIFT_HOUR - RETRAIN_HOUR
    assert [r.verdict for r in after[:blind]] == ["learning"] * blind
    assert all(r.comparison.baseline_size < MIN_HISTORY for r in after[:MIN_HISTORY])
    assert "learning" not in [r.verdict for r in after[MIN_HISTORY:]]
    # The drift starts while the new model has no baseline for its errors; the formats it brings are new to
    # the model's training data, so they raise a warning that names them from the drift's first hour.
    drifting = after[blind:MIN_HISTORY]
    assert [r.verdict for r in drifting] == ["warning"] * len(drifting)
    assert all(r.formats.new_to_training and r.formats.against == "baseline" for r in drifting)
    first = same_version.detection.first_alarm_hour  # critical needs the errors' baseline
    assert first is None or first >= RETRAIN_HOUR + MIN_HISTORY


def test_an_hour_without_a_candidate_is_skipped_and_the_model_stays(scorer: Scorer) -> None:
    sim = Simulation(hours=13, records_per_hour=100, drift_from_hour=None, hour_ms=MINUTE_MS, seed=5)
    settings = CompareConfig(min_history=4)
    run = run_with_retraining(sim, scorer, settings, every_hours=6, min_records=10**9)
    assert run.retrainings == [Retraining(6, run.retrainings[0].corpus, None, "skipped"),
                               Retraining(12, run.retrainings[1].corpus, None, "skipped")]
    # hours 0-3 learning; by hour 6 hours up to 4 are judged, by hour 12 up to 10: too few samples to train
    def normal_records(before_hour: int) -> int:
        return sum(r.totals.count for r in run.reports[:before_hour] if r.verdict == "normal")

    assert 0 < run.retrainings[0].corpus == normal_records(5) < run.retrainings[1].corpus == normal_records(11)
    assert {r.model_version for r in run.reports} == {scorer.version} and run.promoted == 0
    assert run_with_retraining(sim, scorer, settings, every_hours=6, candidates={}).retrainings == \
        [Retraining(6, 0, None, "skipped"), Retraining(12, 0, None, "skipped")]
