"""The hourly judge: windows per partition, hours per topic judged against history, reports in start order,
streaks, exact resumption."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor.errors import StateError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.window import Windows
from monitor.settings import CompareConfig, config_from_dict

MINUTE_MS = 60_000
A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)
SETTINGS = CompareConfig(min_history=5, previous_windows=20)
NORMAL_ERRORS = np.array([0.010, 0.011, 0.009, 0.012, 0.008, 0.010, 0.0105, 0.0095])

Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def batch(errors: list[float] | np.ndarray, times: list[int] | np.ndarray, weights: list[float] | None = None,
          flags: list[bool] | None = None) -> Batch:
    errors = np.asarray(errors, dtype=float)
    return (errors, np.asarray(weights if weights is not None else np.ones(len(errors)), dtype=float),
            np.asarray(times, dtype=np.int64),
            np.asarray(flags if flags is not None else np.zeros(len(errors), bool), dtype=bool))


def window_batch(index: int, scale: float = 1.0) -> Batch:
    """A window's worth of records spread over minute ``index``; slightly different from window to window."""
    errors = NORMAL_ERRORS * scale * (1 + 0.01 * (index % 3))
    times = index * MINUTE_MS + np.linspace(1_000, 59_000, len(errors)).astype(np.int64)
    return batch(errors, times)


def pipeline(lateness_ms: int = 0, settings: CompareConfig = SETTINGS) -> HourlyJudge:
    return HourlyJudge(MINUTE_MS, lateness_ms, settings)


def as_dicts(reports: list[WindowReport]) -> list[dict[str, object]]:
    return [r.to_dict() for r in reports]


def test_a_window_closes_only_once_the_watermark_passes_its_end_plus_the_lateness() -> None:
    hourly = pipeline(lateness_ms=30_000)
    hourly.add(A0, *batch([0.1, 0.2], [1_000, 59_999]))
    hourly.add(A0, *batch([0.3], [MINUTE_MS + 29_999]))
    assert hourly.close_due("v1") == []
    hourly.add(A0, *batch([0.4], [MINUTE_MS + 30_000]))
    [report] = hourly.close_due("v1")
    assert (report.topic, report.start_ms, report.end_ms, report.totals.count) == ("a", 0, MINUTE_MS, 2)
    assert report.totals.weighted_mean == pytest.approx(0.15)
    assert report.model_version == "v1"
    assert hourly.close_due("v1") == []


def test_reports_come_out_in_start_order_with_figures_merged_over_partitions() -> None:
    hourly = pipeline()
    hourly.add(A1, *batch([0.3, 0.1], [2 * MINUTE_MS + 5, 5], weights=[1.0, 3.0]))
    hourly.add(A0, *batch([0.2, 0.5], [MINUTE_MS + 5, 6], flags=[False, True]))
    hourly.add(A0, *batch([0.0], [5 * MINUTE_MS]))
    reports = hourly.close_due("v1")
    assert [r.start_ms for r in reports] == [0, MINUTE_MS]  # A1 has reached 2 minutes only: it holds that one
    hourly.add(A1, *batch([0.0], [5 * MINUTE_MS]))
    reports += hourly.close_due("v1")
    assert [r.start_ms for r in reports] == [0, MINUTE_MS, 2 * MINUTE_MS]
    first = reports[0]
    assert (first.totals.count, first.totals.weight_sum) == (2, 4.0)
    assert first.totals.weighted_mean == pytest.approx((0.1 * 3 + 0.5) / 4)
    assert first.totals.above_threshold_share == pytest.approx(0.25)
    assert first.totals.error_p50 <= first.totals.error_p99
    assert [r.verdict for r in reports] == ["learning"] * 3


def test_a_quiet_stream_is_closed_by_the_wall_clock() -> None:
    hourly = pipeline(lateness_ms=10_000)
    hourly.add(A0, *batch([0.1], [1_000]), now_ms=2_000)
    assert hourly.close_due("v1", now_ms=MINUTE_MS + 9_999) == []
    assert [r.start_ms for r in hourly.close_due("v1", now_ms=MINUTE_MS + 10_000)] == [0]


def test_topics_have_their_own_windows_watermarks_and_histories() -> None:
    hourly = pipeline()
    for index in range(3):
        hourly.add(A0, *window_batch(index))
    hourly.add(B0, *batch([0.5, 0.7], [10, 20]))
    reports = hourly.close_due("v1")
    # b's watermark is still in its first window, so a's records do not close b's window.
    assert [(r.topic, r.start_ms) for r in reports] == [("a", 0), ("a", MINUTE_MS)]
    hourly.add(B0, *batch([0.9], [5 * MINUTE_MS]))
    [b_report] = hourly.close_due("v1")
    assert (b_report.topic, b_report.totals.count, b_report.totals.weighted_mean) == ("b", 2, pytest.approx(0.6))
    assert b_report.comparison.baseline_size == 0 and reports[1].comparison.baseline_size == 1
    assert [h.start_ms for h in hourly.histories["a"].entries] == [0, MINUTE_MS]
    assert [h.start_ms for h in hourly.histories["b"].entries] == [0]


def test_reports_of_one_start_are_ordered_by_topic() -> None:
    hourly = pipeline()
    hourly.add(B0, *batch([0.2], [10]))
    hourly.add(A0, *batch([0.1], [20]))
    assert [(r.topic, r.start_ms) for r in hourly.flush("v1")] == [("a", 0), ("b", 0)]


def test_flush_closes_every_open_window_of_every_topic() -> None:
    hourly = pipeline(lateness_ms=10 * MINUTE_MS)
    hourly.add(A0, *batch([0.1, 0.2, 0.3], [5, MINUTE_MS + 5, 7 * MINUTE_MS]))
    hourly.add(B0, *batch([0.4], [3 * MINUTE_MS]))
    assert hourly.close_due("v1") == []
    reports = hourly.flush("v2")
    assert [(r.topic, r.start_ms) for r in reports] == [("a", 0), ("a", MINUTE_MS), ("b", 3 * MINUTE_MS),
                                                       ("a", 7 * MINUTE_MS)]
    assert {r.model_version for r in reports} == {"v2"}
    assert hourly.open_summary() == {"a": [], "b": []}
    assert hourly.flush("v2") == []


def test_flush_also_closes_a_window_ahead_of_the_wall_clock() -> None:
    hourly = pipeline()
    # An event time from a wrong clock counts in its window but holds the watermark at now_ms.
    hourly.add(A0, *batch([0.1, 0.2], [5_000, 90 * MINUTE_MS]), now_ms=10_000)
    assert [r.start_ms for r in hourly.flush("v1")] == [0, 90 * MINUTE_MS]
    assert hourly.open_summary() == {"a": []}


def test_open_summary_shows_the_running_figures_per_topic() -> None:
    hourly = pipeline()
    hourly.add(A0, *batch([0.1, 0.3], [5, 6]))
    hourly.add(A1, *batch([0.2], [MINUTE_MS + 1]))
    summary = hourly.open_summary()
    assert [(start, acc.count) for start, acc in summary["a"]] == [(0, 2), (MINUTE_MS, 1)]
    assert summary["a"][0][1].weighted_mean == pytest.approx(0.2)


def test_late_records_are_counted_and_left_out_of_their_closed_window() -> None:
    hourly = pipeline()
    assert hourly.add(A0, *batch([0.1], [5])) == 0
    hourly.add(A0, *batch([0.1], [MINUTE_MS + 5]))
    [closed] = hourly.close_due("v1")
    assert closed.totals.count == 1
    assert hourly.add(A0, *batch([0.4], [7])) == 1  # its own partition closed minute 0: late on arrival
    assert hourly.add(B0, *batch([0.5], [10])) == 0  # another topic: its first window is open
    assert hourly.late_total() == 1
    reports = hourly.flush("v1")
    assert [(r.topic, r.start_ms, r.totals.count) for r in reports] == [("b", 0, 1), ("a", MINUTE_MS, 1)]


def test_a_partition_first_heard_after_its_topics_hour_was_judged_has_its_records_of_it_counted_late() -> None:
    """Each partition closes on its own event time; the topic's judge counts what reaches it for an hour
    already judged as late (on a lone instance as in a group), never merges it."""
    hourly = pipeline()
    hourly.add(A0, *batch([0.1, 0.1], [5, MINUTE_MS + 5]))
    [closed] = hourly.close_due("v1")
    assert hourly.add(A1, *batch([0.5, 0.6, 0.7], [10, 20, MINUTE_MS + 10])) == 0  # A1's own minute 0 is open
    assert hourly.close_due("v1") == []
    assert hourly.take_late_assembled() == {"a": 2} and hourly.late_total() == 2
    reports = hourly.flush("v1")
    assert [(r.topic, r.start_ms, r.totals.count) for r in reports] == [("a", MINUTE_MS, 2)]
    assert closed.totals.count == 1


def test_a_drifted_window_after_enough_normal_history_is_critical() -> None:
    hourly = pipeline()
    verdicts = []
    for index in range(8):
        hourly.add(A0, *window_batch(index))
        verdicts += [r.verdict for r in hourly.close_due("v1")]
    hourly.add(A0, *window_batch(8, scale=10.0))
    hourly.add(A0, *window_batch(9))
    last_normal, drifted = hourly.close_due("v1")
    assert verdicts == ["learning"] * 5 + ["normal"] * 2 and last_normal.verdict == "normal"
    assert drifted.verdict == "critical" and drifted.abnormal
    assert drifted.comparison.robust_z > SETTINGS.critical_z and drifted.comparison.percentile == 100.0
    assert drifted.comparison.baseline_size == 8 and drifted.comparison.baseline_median == pytest.approx(NORMAL_ERRORS.mean(), rel=0.03)


def test_the_streak_counts_consecutive_abnormal_windows_and_resets_on_a_normal_one() -> None:
    hourly = pipeline()
    scales = [1.0] * 6 + [10.0, 10.0, 10.0, 1.0, 10.0, 1.0]
    verdicts, streaks = [], []
    for index, scale in enumerate(scales + [1.0]):
        hourly.add(A0, *window_batch(index, scale))
        for report in hourly.close_due("v1"):
            verdicts.append(report.verdict)
            streaks.append(hourly.streaks["a"])
    assert verdicts == ["learning"] * 5 + ["normal", "critical", "critical", "critical", "normal", "critical",
                                           "normal"]
    assert streaks == [0] * 6 + [1, 2, 3, 0, 1, 0]


def test_learning_and_insufficient_windows_do_not_count_as_abnormal() -> None:
    hourly = pipeline()
    hourly.add(A0, *batch([5.0], [5], weights=[0.0]))  # no weight: no weighted mean
    hourly.add(A0, *batch([9.0], [MINUTE_MS + 5]))
    reports = hourly.flush("v1")
    assert [r.verdict for r in reports] == ["insufficient_data", "learning"]
    assert not any(r.abnormal for r in reports) and hourly.streaks["a"] == 0
    assert math.isnan(reports[0].totals.weighted_mean) and reports[0].to_dict()["weighted_mean"] is None


def drifting_stream(seed: int) -> list[tuple[tuple[str, int], Batch]]:
    """Batches of two topics over 14 one-minute windows, out of order within a lateness, a drift, late records."""
    rng = np.random.default_rng(seed)
    items: list[tuple[tuple[str, int], Batch]] = []
    for step in range(28):
        for partition in (A0, A1, B0):
            center = step * MINUTE_MS // 2
            times = center + rng.integers(-70_000, 5_000, size=6)  # some behind the lateness: late
            scale = 8.0 if partition[0] == "a" and 20 <= step < 24 else 1.0
            errors = rng.lognormal(np.log(0.01 * scale), 0.2, size=6)
            items.append((partition, batch(errors, np.maximum(times, 0), rng.uniform(0.5, 2.0, 6).tolist(),
                                           (errors > 0.02).tolist())))
    return items


def run(hourly: HourlyJudge, items: list[tuple[tuple[str, int], Batch]]) -> tuple[list[dict[str, object]], int]:
    reports: list[dict[str, object]] = []
    late = 0
    for partition, arrays in items:
        late += hourly.add(partition, *arrays)
        reports += as_dicts(hourly.close_due("v1"))
    return reports, late


@pytest.mark.parametrize("stop_at", [0, 1, 30, 47, 60, 83])
def test_snapshot_and_restore_mid_stream_give_exactly_the_reports_of_an_uninterrupted_run(stop_at: int) -> None:
    items = drifting_stream(seed=4)
    uninterrupted = pipeline(lateness_ms=20_000)
    expected_reports, expected_late = run(uninterrupted, items)
    expected_reports += as_dicts(uninterrupted.flush("v1"))

    first = pipeline(lateness_ms=20_000)
    reports, late = run(first, items[:stop_at])
    windows, histories = json.loads(json.dumps(first.snapshot()))
    resumed = pipeline(lateness_ms=20_000)
    resumed.restore(windows, histories)
    more_reports, more_late = run(resumed, items[stop_at:])
    more_reports += as_dicts(resumed.flush("v1"))

    assert reports + more_reports == expected_reports
    assert late + more_late == expected_late > 0
    assert resumed.streaks == uninterrupted.streaks
    assert resumed.late_total() == uninterrupted.late_total() == expected_late
    assert {r["verdict"] for r in expected_reports} >= {"learning", "normal", "critical"}


def test_the_streak_survives_a_snapshot() -> None:
    hourly = pipeline()
    for index, scale in enumerate([1.0] * 6 + [10.0, 10.0, 10.0]):
        hourly.add(A0, *window_batch(index, scale))
        hourly.close_due("v1")
    assert hourly.streaks["a"] == 2  # the third drifted window is still open
    resumed = pipeline()
    resumed.restore(*json.loads(json.dumps(hourly.snapshot())))
    assert resumed.streaks == {"a": 2}
    resumed.add(A0, *window_batch(9))
    [report] = resumed.close_due("v1")
    assert report.verdict == "critical" and resumed.streaks["a"] == 3


def test_a_new_pipeline_snapshots_to_empty_state() -> None:
    assert pipeline().snapshot() == ({}, {})


def test_the_compare_section_is_the_compare_settings() -> None:
    config = config_from_dict({"compare": {"min_history": 3, "baseline": "same_hour"}}, environ={})
    assert config.compare == CompareConfig(min_history=3, baseline="same_hour")
    assert isinstance(config.compare, CompareConfig)
    assert config_from_dict({}, environ={}).compare == CompareConfig()


@pytest.mark.parametrize(("part", "change", "fault"), [
    pytest.param(0, {"a": {"format": 5, "length_ms": MINUTE_MS}}, "the saved windows of 'a'", id="windows-cut"),
    pytest.param(0, {"a": []}, "the saved windows of 'a'", id="windows-an-array"),
    pytest.param(1, {"a": {"entries": [{"start_ms": 0}]}}, "the saved history of 'a'", id="history-entry-cut"),
    pytest.param(1, {"a": {"entries": {}, "streak": "two"}}, "the saved history of 'a'", id="streak-a-text"),
])
def test_saved_state_of_the_wrong_shape_is_refused_naming_the_topic_and_the_judge_is_left_as_it_was(
        part: int, change: dict[str, object], fault: str) -> None:
    saved = pipeline()
    saved.add(A0, *window_batch(0))
    saved.add(A0, *window_batch(1))
    saved.close_due("v1")
    snapshot = list(json.loads(json.dumps(saved.snapshot())))
    snapshot[part] = {**snapshot[part], **change}
    resumed = pipeline()
    resumed.add(B0, *window_batch(0))
    before = resumed.snapshot()
    with pytest.raises(StateError, match=f"^{fault} cannot be restored"):
        resumed.restore(*snapshot)
    assert resumed.snapshot() == before


def test_saved_windows_of_another_length_are_refused() -> None:
    hourly = pipeline()
    hourly.add(A0, *batch([0.1], [5]))
    windows, histories = hourly.snapshot()
    with pytest.raises(StateError, match="60 s long; window.length_seconds is 600"):
        HourlyJudge(10 * MINUTE_MS, 0, SETTINGS).restore(windows, histories)


def test_a_state_saved_with_one_windows_per_topic_continues_exactly_with_windows_per_partition() -> None:
    """State files written before windows were kept per partition hold one ``Windows`` per topic (with a
    watermark and open parts per partition): restored, each partition continues from the topic's mark and
    every figure equals an uninterrupted run's."""
    rows = [(A0 if i % 3 else A1, 0.01 + 0.001 * (i % 7), i * 7_000) for i in range(60)]

    def feed(judge: HourlyJudge, part: list[tuple[tuple[str, int], float, int]]) -> list[WindowReport]:
        for partition in (A0, A1):
            mine = [r for r in part if r[0] == partition]
            judge.add(partition, *batch([r[1] for r in mine], [r[2] for r in mine]), sequences=["AB1"] * len(mine))
        return judge.close_due("v1")

    whole = pipeline()
    expected = feed(whole, rows[:30]) + feed(whole, rows[30:]) + whole.flush("v1")

    # The earlier layout, written by hand: one Windows for topic "a" fed with both partitions' records.
    earlier = Windows(MINUTE_MS, 0)
    first = pipeline()
    for partition in (A0, A1):
        mine = [r for r in rows[:30] if r[0] == partition]
        earlier.add(partition, *batch([r[1] for r in mine], [r[2] for r in mine]), sequences=["AB1"] * len(mine))
    judged = [first.judge_window("a", closed, "v1") for closed in earlier.close_due()]
    _, histories = first.snapshot()
    resumed = pipeline()
    resumed.restore({"a": json.loads(json.dumps(earlier.snapshot()))}, json.loads(json.dumps(histories)))
    got = judged + feed(resumed, rows[30:]) + resumed.flush("v1")
    assert as_dicts(got) == as_dicts(expected) and len(expected) >= 4
