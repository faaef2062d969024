"""A closed window against its history: verdicts, baselines, robust statistics, bounded history."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import ConfigError
from monitor.hourly.baseline import PreviousWindows, SameHourOfDay, select_baseline
from monitor.hourly.compare import compare, js_distance
from monitor.hourly.history import History
from monitor.hourly.hour_figures import VERDICT_LEVEL, HourFigures
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.hourly.window import Windows
from monitor.settings import CompareConfig

NORMAL_MEANS = (0.010, 0.011, 0.012, 0.0105, 0.0115)
# These tests give windows figures alone (no real error histogram): they test the mean_z rule, which reads
# only the figures. The calibrated judgement is tested in test_evidence.py and test_verdicts.py.
MEAN_Z = CompareConfig(method="mean_z")


def hour(index: int, mean: float | None = None, share: float = 0.01, count: int = 100,
         histogram: tuple[int, ...] = (0, 90, 10, 0), verdict: str = "", model: str = "") -> HourFigures:
    mean = NORMAL_MEANS[index % len(NORMAL_MEANS)] if mean is None else mean
    return HourFigures(index * HOUR_MS, count, float(count), mean, share, histogram, verdict, model)


def normal_history(hours: int = 48) -> list[HourFigures]:
    return [hour(i, verdict="normal") for i in range(hours)]


def test_verdict_is_learning_until_min_history_windows_exist() -> None:
    history = History(CompareConfig(min_history=24))
    verdicts = [history.judge(hour(i)).verdict for i in range(26)]
    assert verdicts[:24] == ["learning"] * 24 and verdicts[24:] == ["normal", "normal"]


def test_ordinary_window_is_normal() -> None:
    result = compare(hour(48, 0.0112), normal_history())
    assert result.verdict == "normal" and abs(result.robust_z) < 1
    assert result.baseline_size == 48 and result.baseline_median == pytest.approx(0.011)


def test_shifted_window_is_critical() -> None:
    result = compare(hour(48, 0.05), normal_history(), MEAN_Z)
    assert result.verdict == "critical" and result.robust_z > 6 and result.percentile == 100.0


def test_moderate_shift_is_a_warning() -> None:
    history = normal_history()
    spread = compare(hour(48), history, MEAN_Z).baseline_mad
    assert compare(hour(48, 0.011 + 4 * spread), history, MEAN_Z).verdict == "warning"


def test_lower_errors_than_usual_are_normal() -> None:
    assert compare(hour(48, 0.0001), normal_history(), MEAN_Z).verdict == "normal"


@pytest.mark.parametrize(("share", "verdict"), [(0.02, "normal"), (0.04, "warning"), (0.2, "critical")])
def test_share_above_threshold_alone_can_raise_the_verdict(share: float, verdict: str) -> None:
    result = compare(hour(48, 0.011, share=share), normal_history(), MEAN_Z)
    assert result.share_ratio == pytest.approx(share / 0.01) and result.verdict == verdict


def test_share_ratio_uses_a_floor_when_the_baseline_has_no_flagged_records() -> None:
    history = [hour(i, share=0.0) for i in range(48)]
    result = compare(hour(48, share=0.01), history, MEAN_Z)
    assert result.share_ratio == pytest.approx(1.0) and result.verdict == "normal"


def test_window_with_too_few_records_is_insufficient_data_never_critical() -> None:
    settings = CompareConfig(min_count=50)
    assert compare(hour(48, 10.0, share=1.0, count=3), normal_history(), settings).verdict == "insufficient_data"


def test_window_without_weight_is_insufficient_data() -> None:
    assert compare(hour(48, float("nan"), share=float("nan")), normal_history()).verdict == "insufficient_data"


def test_constant_history_with_zero_mad_does_not_divide_by_zero() -> None:
    history = [hour(i, 0.02) for i in range(48)]
    same = compare(hour(48, 0.02), history, MEAN_Z)
    assert same.baseline_mad == 0.0 and same.robust_z == 0.0 and same.verdict == "normal"
    assert compare(hour(48, 0.0205), history, MEAN_Z).verdict == "normal"  # +2.5 %: within the 5 % spread floor
    assert compare(hour(48, 0.03), history, MEAN_Z).verdict == "critical"  # +50 %: z = 10


def test_all_zero_history_gives_finite_z() -> None:
    result = compare(hour(48, 0.0), [hour(i, 0.0) for i in range(48)])
    assert result.robust_z == 0.0 and result.verdict == "normal"
    assert math.isfinite(compare(hour(48, 1e-3), [hour(i, 0.0) for i in range(48)]).robust_z)


def test_percentile_counts_ties_half() -> None:
    history = [hour(i, mean) for i, mean in enumerate([1.0, 2.0, 2.0, 3.0])]
    result = compare(hour(4, 2.0), history, CompareConfig(min_history=1))
    assert result.percentile == pytest.approx(50.0)


def test_long_incident_stays_critical_when_abnormal_windows_are_excluded() -> None:
    history = History(MEAN_Z)
    for i in range(48):
        history.judge(hour(i))
    verdicts = [history.judge(hour(i, 0.05)).verdict for i in range(48, 48 + 400)]
    assert set(verdicts) == {"critical"}
    assert history.judge(hour(448)).verdict == "normal"


def test_long_incident_becomes_the_baseline_when_abnormal_windows_are_included() -> None:
    history = History(CompareConfig(exclude_abnormal=False, method="mean_z"))
    for i in range(48):
        history.judge(hour(i))
    verdicts = [history.judge(hour(i, 0.05)).verdict for i in range(48, 48 + 200)]
    assert verdicts[0] == "critical" and verdicts[-1] == "normal"


def test_previous_windows_picks_the_last_n_before_the_current_one() -> None:
    history = [hour(i) for i in range(10)]
    chosen = PreviousWindows(3).select(history, 8 * HOUR_MS, HOUR_MS)
    assert [h.start_ms // HOUR_MS for h in chosen] == [5, 6, 7]


def test_same_hour_of_day_picks_only_whole_days_within_range() -> None:
    history = [hour(i) for i in range(24 * 10)]
    current = 24 * 9 * HOUR_MS + 5 * HOUR_MS  # day 9, 05:00
    chosen = SameHourOfDay(days=7).select(history, current, HOUR_MS)
    assert [(h.start_ms - current) // DAY_MS for h in chosen] == [-7, -6, -5, -4, -3, -2, -1]
    assert all(h.start_ms % DAY_MS == 5 * HOUR_MS for h in chosen)


def test_same_hour_baseline_compares_with_the_same_time_of_day() -> None:
    settings = CompareConfig(baseline="same_hour", min_history=5, method="mean_z")
    # Busy afternoons have higher errors than nights; 15:00 is judged against earlier 15:00s only.
    history = [hour(i, 0.05 if (i % 24) == 15 else 0.01) for i in range(24 * 8)]
    assert compare(hour(24 * 8 + 15, 0.05), history, settings).verdict == "normal"
    assert compare(hour(24 * 8 + 15, 0.05), history, MEAN_Z).verdict == "critical"


def test_baseline_leaves_out_unusable_windows_and_other_models() -> None:
    history = [hour(0, verdict="critical"), hour(1, count=0, mean=float("nan")), hour(2, model="v1"), hour(3)]
    chosen = select_baseline(hour(4), history, CompareConfig(min_history=1))
    assert [h.start_ms // HOUR_MS for h in chosen] == [3]
    everything = CompareConfig(min_history=1, exclude_abnormal=False, same_model_only=False)
    assert [h.start_ms // HOUR_MS for h in select_baseline(hour(4), history, everything)] == [0, 2, 3]


def test_distribution_distance_is_zero_for_the_same_shape_and_grows_with_a_shift() -> None:
    history = normal_history()
    assert compare(hour(48), history).distribution_distance == pytest.approx(0.0, abs=1e-7)
    shifted = compare(hour(48, histogram=(0, 10, 60, 30)), history).distribution_distance
    assert 0.3 < shifted <= 1.0


@given(st.lists(st.integers(0, 50), min_size=3, max_size=3), st.lists(st.integers(0, 50), min_size=3, max_size=3))
def test_js_distance_is_symmetric_and_within_zero_and_one(a: list[int], b: list[int]) -> None:
    d = js_distance(np.array(a), np.array(b))
    if sum(a) == 0 or sum(b) == 0:
        assert math.isnan(d)
    else:
        assert 0.0 <= d <= 1.0 and d == pytest.approx(js_distance(np.array(b), np.array(a)))


def test_empty_history_gives_nan_figures_and_learning() -> None:
    result = compare(hour(0), [])
    assert result.verdict == "learning" and result.baseline_size == 0
    assert all(math.isnan(v) for v in (result.robust_z, result.percentile, result.share_ratio,
                                        result.distribution_distance, result.baseline_median))


def test_verdict_levels_are_numbers_for_metrics() -> None:
    assert VERDICT_LEVEL == {"learning": -1, "insufficient_data": -1, "normal": 0, "warning": 1, "critical": 2}
    assert compare(hour(48, 0.05), normal_history(), MEAN_Z).level == 2


def test_history_round_trips_through_json() -> None:
    history = History()
    for i in range(30):
        history.judge(hour(i, mean=float("nan") if i == 3 else None))
    restored = History.from_list(json.loads(json.dumps(history.to_list())))
    assert [h.to_dict() for h in restored.entries] == [h.to_dict() for h in history.entries]
    assert restored.judge(hour(30, 0.05)) == history.judge(hour(30, 0.05))


def test_history_stays_bounded_and_keeps_the_last_normal_windows_through_an_incident() -> None:
    history = History(CompareConfig(previous_windows=30, same_hour_days=1, min_history=10, method="mean_z"))
    assert history.capacity == 31
    for i in range(100):
        history.judge(hour(i))
    assert len(history.entries) == 31
    for i in range(100, 200):
        history.judge(hour(i, 0.05))
    assert len(history.entries) == 62
    assert sum(h.verdict == "normal" for h in history.entries) == 31


def test_judging_a_window_again_replaces_its_earlier_figures() -> None:
    history = History(CompareConfig(min_history=1))
    history.judge(hour(0))
    history.judge(hour(1))
    history.judge(hour(1, 0.5))
    assert [h.start_ms for h in history.entries] == [0, HOUR_MS]
    assert history.entries[1].weighted_mean == 0.5


def test_closed_windows_feed_the_history_end_to_end() -> None:
    rng = np.random.default_rng(3)
    windows, history = Windows(HOUR_MS, 0), History(CompareConfig(min_history=24))
    verdicts = []
    for h in range(30):
        errors = rng.lognormal(np.log(1e-3 if h < 29 else 5e-3), 0.5, size=500)
        times = h * HOUR_MS + rng.integers(0, HOUR_MS, size=500)
        windows.add(("t", 0), errors, np.ones(500), times, errors > 3e-3)
        for closed in windows.close_due(now_ms=(h + 1) * HOUR_MS):
            verdicts.append(history.judge(HourFigures.of(closed.start_ms, closed.total, "v1")).verdict)
    assert verdicts[:24] == ["learning"] * 24 and set(verdicts[24:29]) == {"normal"} and verdicts[29] == "critical"


@pytest.mark.parametrize(("changes", "field"), [
    ({"baseline": "weekly"}, "baseline"),
    ({"previous_windows": 0}, "previous_windows"),
    ({"min_history": 2.5}, "min_history"),
    ({"min_count": True}, "min_count"),
    ({"warning_z": -1.0}, "warning_z"),
    ({"critical_z": float("inf")}, "critical_z"),
    ({"warning_z": 7.0}, "critical_z"),
    ({"warning_share_ratio": 20.0}, "critical_share_ratio"),
    ({"share_floor": 0}, "share_floor"),
    ({"exclude_abnormal": "yes"}, "exclude_abnormal"),
    ({"min_history": 200}, "previous_windows"),
    ({"baseline": "same_hour"}, "same_hour_days"),
])
def test_settings_reject_bad_values_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CompareConfig(**changes)  # type: ignore[arg-type]


def test_hour_figures_refuse_an_unknown_verdict() -> None:
    with pytest.raises(ValueError, match="verdict"):
        hour(0, verdict="fine")


def test_one_broken_record_in_a_sparse_window_is_sampling_noise_not_a_critical_hour() -> None:
    from monitor.hourly.histogram import ErrorHistogram

    rng = np.random.default_rng(3)

    def window(hour: int, errors: np.ndarray) -> HourFigures:
        histogram = ErrorHistogram()
        histogram.add(errors)
        return HourFigures(hour * HOUR_MS, len(errors), float(len(errors)), float(errors.mean()), 0.0,
                           tuple(histogram.to_list()), verdict="normal")

    def clean(n: int) -> np.ndarray:
        return rng.lognormal(np.log(1e-6), 1.0, n)

    # 30 records an hour, about 1% of them broken (error ~0.04) across the baseline's history
    history = [window(h, np.r_[clean(29), [0.04]] if h % 3 == 0 else clean(30)) for h in range(48)]
    sparse = compare(window(48, np.r_[clean(29), [0.04]]), history)
    assert sparse.verdict != "critical"
    drifted = compare(window(48, np.r_[clean(15), np.full(15, 0.04)]), history)
    assert drifted.verdict == "critical"
