"""Event-time windows: alignment, histograms, exact mergeable accumulators, lateness, closing, checkpoints."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import ConfigError, StateError
from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.restoring import restoring
from monitor.hourly.timeline import HOUR_MS, window_start
from monitor.hourly.window import LATE_WINDOWS_KEPT, ClosedWindow, Progress, Windows
from monitor.records import Position

P0: Position = ("sequences", 0)
P1: Position = ("sequences", 1)

Row = tuple[float, float, int, int, bool]  # error, weight, event time, partition number, flag


def batch(errors: list[float], times: list[int], weights: list[float] | None = None,
          flags: list[bool] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(errors, dtype=float), np.array(weights or [1.0] * len(errors), dtype=float),
            np.array(times, dtype=np.int64), np.array(flags or [False] * len(errors), dtype=bool))


def add_rows(windows: Windows, rows: list[Row]) -> None:
    """Adds rows as one batch per partition, keeping their order (as a consumer hands them out)."""
    by_partition: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_partition[row[3]].append(row)
    for number, part in sorted(by_partition.items()):
        errors, weights, times, _, flags = zip(*part)
        windows.add(("t", number), *batch(list(errors), list(times), list(weights), list(flags)))


def assert_same_totals(a: WindowAccumulator, b: WindowAccumulator) -> None:
    assert (a.count, a.weight_sum, a.above_threshold_count, a.above_threshold_weight) == \
        (b.count, b.weight_sum, b.above_threshold_count, b.above_threshold_weight)
    assert a.histogram == b.histogram
    assert (a.min_event_time_ms, a.max_event_time_ms) == (b.min_event_time_ms, b.max_event_time_ms)
    assert np.isclose(a.weighted_error_sum, b.weighted_error_sum, rtol=1e-9, atol=1e-12)


def closed_by_start(closed: list[ClosedWindow]) -> dict[int, ClosedWindow]:
    return {c.start_ms: c for c in closed}


rows_strategy = st.lists(st.tuples(
    st.floats(0.0, 20.0, allow_nan=False),
    st.integers(0, 40).map(lambda q: q / 4),  # quarters: float sums of them are exact in any order
    st.integers(0, 5 * HOUR_MS),
    st.integers(0, 2),
    st.booleans()), max_size=60)


def test_window_start_floors_to_epoch_aligned_boundaries() -> None:
    assert window_start(0, HOUR_MS) == 0
    assert window_start(HOUR_MS - 1, HOUR_MS) == 0
    assert window_start(HOUR_MS, HOUR_MS) == HOUR_MS
    assert window_start(-1, HOUR_MS) == -HOUR_MS
    assert window_start(1_700_000_123_456, 60_000) == 1_700_000_100_000


def test_accumulator_counts_zero_weight_records_but_adds_no_weight() -> None:
    accumulator = WindowAccumulator()
    accumulator.add(*batch([0.5, 0.1], [10, 20], weights=[0.0, 2.0], flags=[True, False]))
    assert accumulator.count == 2 and accumulator.histogram.total == 2
    assert accumulator.weight_sum == 2.0 and accumulator.weighted_mean == pytest.approx(0.1)
    assert accumulator.above_threshold_count == 1 and accumulator.above_threshold_share == 0.0
    assert (accumulator.min_event_time_ms, accumulator.max_event_time_ms) == (10, 20)


def test_accumulator_without_weight_has_nan_mean_and_share() -> None:
    accumulator = WindowAccumulator()
    accumulator.add(*batch([0.5], [10], weights=[0.0]))
    assert np.isnan(accumulator.weighted_mean) and np.isnan(accumulator.above_threshold_share)


def test_weight_sums_that_would_overflow_raise_and_leave_the_window_as_it_was() -> None:
    accumulator = WindowAccumulator()
    accumulator.add(*batch([0.5], [10], weights=[1e308], flags=[True]))
    before = WindowAccumulator.from_dict(accumulator.to_dict())
    with pytest.raises(ValueError, match="would overflow"):
        accumulator.add(*batch([0.5], [20], weights=[1e308]))
    with pytest.raises(ValueError, match="would overflow"):
        accumulator.merge(before)
    assert accumulator == before and np.isfinite(accumulator.weight_sum)


def test_accumulator_round_trips_exactly_through_json() -> None:
    accumulator = WindowAccumulator()
    accumulator.add(*batch([0.1, 1 / 3, 2e-9], [5, 7, 9], weights=[0.7, 1.3, 2.9], flags=[False, True, False]))
    restored = WindowAccumulator.from_dict(json.loads(json.dumps(accumulator.to_dict())))
    assert restored == accumulator
    assert WindowAccumulator.from_dict(WindowAccumulator().to_dict()) == WindowAccumulator()


@settings(deadline=None)
@given(rows_strategy, st.lists(st.integers(0, 60), max_size=5))
def test_adding_a_batch_in_any_split_gives_the_same_totals_as_one_pass(rows: list[Row], cuts: list[int]) -> None:
    whole, split = Windows(HOUR_MS, 0), Windows(HOUR_MS, 0)
    add_rows(whole, rows)
    bounds = [0, *sorted(cuts), len(rows)]
    for low, high in zip(bounds, bounds[1:]):
        add_rows(split, rows[low:high])
    expected, actual = whole.open_summary(), split.open_summary()
    assert [s for s, _ in expected] == [s for s, _ in actual]
    for (_, a), (_, b) in zip(expected, actual):
        assert_same_totals(a, b)


@settings(deadline=None)
@given(rows_strategy, st.lists(st.booleans(), min_size=60, max_size=60))
def test_merging_accumulators_of_two_instances_equals_one_instance(rows: list[Row], side: list[bool]) -> None:
    whole, left, right = Windows(HOUR_MS, 0), Windows(HOUR_MS, 0), Windows(HOUR_MS, 0)
    add_rows(whole, rows)
    add_rows(left, [r for r, s in zip(rows, side) if s])
    add_rows(right, [r for r, s in zip(rows, side) if not s])
    merged: dict[int, WindowAccumulator] = defaultdict(WindowAccumulator)
    for start, accumulator in left.open_summary() + right.open_summary():
        merged[start].merge(accumulator)
    assert sorted(merged) == [s for s, _ in whole.open_summary()]
    for start, accumulator in whole.open_summary():
        assert_same_totals(merged[start], accumulator)


def stream(seed: int, batches: int = 40) -> list[tuple[Position, tuple[np.ndarray, ...], int]]:
    """Batches from two partitions, one lagging the other, with out-of-order and late event times."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(batches):
        partition = P0 if i % 3 else P1
        base = i * HOUR_MS // 4 - (HOUR_MS // 2 if partition == P1 else 0)
        times = base + rng.integers(-HOUR_MS // 2, HOUR_MS // 8, size=25)
        errors = rng.lognormal(np.log(1e-3), 1.0, size=25)
        items.append((partition, (errors, rng.uniform(0, 3, 25), times, errors > 3e-3), base + HOUR_MS // 8))
    return items


def run(windows: Windows, items: list[tuple[Position, tuple[np.ndarray, ...], int]]) -> tuple[list, list]:
    closed, late = [], []
    for partition, arrays, now_ms in items:
        late.append(windows.add(partition, *arrays))
        closed.extend(windows.close_due(now_ms))
    return closed, late


@pytest.mark.parametrize("stop_at", [0, 1, 7, 20, 39])
def test_snapshot_and_restore_mid_stream_continue_exactly_like_an_uninterrupted_run(stop_at: int) -> None:
    items = stream(seed=5)
    expected = run(Windows(HOUR_MS, 10 * 60_000), items)
    first = Windows(HOUR_MS, 10 * 60_000)
    closed, late = run(first, items[:stop_at])
    restored = Windows.restore(json.loads(json.dumps(first.snapshot())))
    more_closed, more_late = run(restored, items[stop_at:])
    assert (closed + more_closed, late + more_late) == expected
    assert sum(sum(batch_late.values()) for batch_late in expected[1]) == restored.late_total > 0


def test_restore_refuses_an_unknown_snapshot_format() -> None:
    with pytest.raises(ValueError, match="format"):
        Windows.restore({**Windows().snapshot(), "format": 99})


@pytest.mark.parametrize(("change", "fault"), [
    pytest.param({"open": {"start_ms": 0}}, "TypeError", id="open-an-object"),
    pytest.param({"late": [[0]]}, "ValueError", id="late-pair-short"),
    pytest.param({"late_total": "many"}, "ValueError", id="late-total-a-text"),
    pytest.param({"open": [{"start_ms": 0, "topic": "a", "partition": 0, "accumulator": {}}]}, "missing 'count'",
                 id="accumulator-empty"),
])
def test_restoring_a_snapshot_of_the_wrong_shape_is_refused_naming_what_and_why(change: dict[str, object],
                                                                               fault: str) -> None:
    with pytest.raises(StateError) as refused:
        with restoring("the saved windows of 'a'"):
            Windows.restore({**Windows().snapshot(), **change})
    message = str(refused.value)
    assert message.startswith("the saved windows of 'a' cannot be restored (") and fault in message, message
    assert refused.value.exit_code == 4


def test_late_records_are_counted_per_window_and_not_added() -> None:
    windows = Windows(HOUR_MS, allowed_lateness_ms=0)
    windows.add(P0, *batch([0.1], [10]))
    windows.add(P0, *batch([0.1], [HOUR_MS + 5]))
    assert [c.start_ms for c in windows.close_due()] == [0]
    late = windows.add(P1, *batch([0.2, 0.3, 0.4], [20, 30, HOUR_MS + 6]))
    assert late == {0: 2}
    assert windows.late == {0: 2} and windows.late_total == 2
    assert [(s, a.count) for s, a in windows.open_summary()] == [(HOUR_MS, 2)]


def test_window_stays_open_for_the_allowed_lateness_after_its_end() -> None:
    windows = Windows(HOUR_MS, allowed_lateness_ms=5 * 60_000)
    windows.add(P0, *batch([0.1], [10]))
    windows.add(P0, *batch([0.1], [HOUR_MS + 5 * 60_000 - 1]))
    assert windows.close_due() == []
    assert windows.add(P1, *batch([0.2], [HOUR_MS - 1])) == {}
    windows.add(P0, *batch([0.1], [HOUR_MS + 5 * 60_000]))
    assert windows.close_due() == []  # P1 has reached HOUR_MS - 1 only: it still holds the window
    windows.add(P1, *batch([0.1], [HOUR_MS + 5 * 60_000]))
    [closed] = windows.close_due()
    assert (closed.start_ms, closed.end_ms, closed.total.count) == (0, HOUR_MS, 2)
    assert set(closed.by_partition) == {P0, P1}


def test_quiet_stream_is_closed_by_the_wall_clock() -> None:
    windows = Windows(HOUR_MS, allowed_lateness_ms=60_000)
    windows.add(P0, *batch([0.1, 0.2], [100, 200]))
    assert windows.close_due(now_ms=HOUR_MS + 59_999) == []
    [closed] = windows.close_due(now_ms=HOUR_MS + 60_000)
    assert closed.total.count == 2 and windows.open_summary() == []
    assert windows.add(P0, *batch([0.3], [300])) == {0: 1}


def test_windows_close_in_start_order_with_totals_merged_over_partitions() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P1, *batch([0.1, 0.2], [2 * HOUR_MS + 1, 5]))
    windows.add(P0, *batch([0.3, 0.4], [HOUR_MS + 1, 6], weights=[1.0, 3.0]))
    closed = windows.close_due(now_ms=10 * HOUR_MS)
    assert [c.start_ms for c in closed] == [0, HOUR_MS, 2 * HOUR_MS]
    assert closed[0].total.count == 2 and closed[0].total.weighted_mean == pytest.approx((0.2 + 1.2) / 4)
    assert closed[0].by_partition[P0].count == closed[0].by_partition[P1].count == 1


def test_the_slowest_partition_holds_the_windows_its_records_may_still_reach() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P1, *batch([0.1], [10]))  # partition 1 is read more slowly (a backlog)
    windows.add(P0, *batch([0.1], [3 * HOUR_MS + 1]))
    assert windows.watermarks == {P1: 10, P0: 3 * HOUR_MS + 1}
    assert windows.close_due() == []
    assert windows.add(P1, *batch([0.2], [HOUR_MS + 5])) == {}  # not late: its window waited
    assert [c.start_ms for c in windows.close_due()] == [0]


def test_an_idle_partition_does_not_stall_the_others() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P1, *batch([0.1], [10]))  # partition 1 then goes quiet, caught up with its end
    windows.add(P0, *batch([0.1], [HOUR_MS + 1]))
    assert windows.close_due(progress=Progress(frozenset({P0, P1}), idle=frozenset({P1}))) != []


def test_a_partition_behind_its_end_that_has_not_been_heard_from_holds_every_window() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P0, *batch([0.1, 0.1], [10, 5 * HOUR_MS]))
    assert windows.close_due(progress=Progress(frozenset({P0, P1}), behind=frozenset({P1}))) == []
    # Once P1 is known to be at its end with nothing read (an empty partition), P0 alone holds.
    assert [c.start_ms for c in windows.close_due(progress=Progress(frozenset({P0, P1})))] == [0]


def test_a_partition_not_assigned_now_keeps_holding_its_windows_until_it_is_read_again() -> None:
    """A lone instance restarted while the group still lists its dead self gets half the partitions: the
    others' windows wait for them (their last watermark is in the state), nothing is cut or made late."""
    windows = Windows(HOUR_MS, 0)
    windows.add(P1, *batch([0.1], [10]))
    windows.add(P0, *batch([0.1], [2 * HOUR_MS + 1]))
    assert windows.close_due(progress=Progress(frozenset({P0})), wall_ms=10 ** 13) == []
    assert windows.add(P1, *batch([0.2], [HOUR_MS - 1])) == {}  # handed back: its records still count
    [first] = windows.close_due(progress=Progress(frozenset({P0, P1}), idle=frozenset({P1})))
    assert (first.start_ms, first.total.count) == (0, 2)


def test_a_partition_never_heard_from_and_not_assigned_now_holds_every_window() -> None:
    """Right after a restart nothing is assigned yet, and a partition the state has no watermark for may hold
    records of any window: nothing closes until it is read or known to be empty (idle)."""
    windows = Windows(HOUR_MS, 0)
    windows.add(P0, *batch([0.1, 0.1], [10, 3 * HOUR_MS]))
    topic = frozenset({P0, P1})
    assert windows.close_due(progress=Progress(frozenset(), partitions=topic)) == []
    assert windows.close_due(progress=Progress(frozenset({P0}), partitions=topic)) == []
    assert [c.start_ms for c in windows.close_due(progress=Progress(topic, idle=frozenset({P1}), partitions=topic))] \
        == [0]


def test_an_idle_stream_moves_on_by_the_wall_time_since_its_latest_record_not_to_the_wall_clock() -> None:
    """Records of days ago (a backfill), then quiet: the last hour closes once as much wall time has passed
    as its end is ahead of the latest record, and records of the next hours are not late."""
    windows = Windows(HOUR_MS, 0)
    wall = 1_000 * HOUR_MS  # today; the records' event times are hours 10 and 11
    windows.add(P0, *batch([0.1, 0.1], [10 * HOUR_MS + 5, 11 * HOUR_MS + 30 * 60_000]), now_ms=wall)
    idle = Progress(frozenset({P0, P1}), idle=frozenset({P0, P1}))  # P1 never had a record
    assert [c.start_ms for c in windows.close_due(progress=idle, wall_ms=wall)] == [10 * HOUR_MS]
    assert watched(windows, idle, wall, wall + 30 * 60_000 - 1) == []
    assert [c.start_ms for c in windows.close_due(progress=idle, wall_ms=wall + 30 * 60_000)] == [11 * HOUR_MS]
    assert windows.add(P1, *batch([0.1], [12 * HOUR_MS + 1]), now_ms=wall + 31 * 60_000) == {}  # not late


def watched(windows: Windows, progress: Progress, since_ms: int, until_ms: int) -> list[int]:
    """Looks at the stream every second from ``since_ms`` to ``until_ms``, as a reader's loop does; returns the
    starts closed meanwhile."""
    return [c.start_ms for wall in range(since_ms + 1_000, until_ms + 1, 1_000)
            for c in windows.close_due(progress=progress, wall_ms=wall)]


def test_time_a_partition_was_unreachable_does_not_count_as_quiet() -> None:
    """Records up to 00:50 read live, then the broker stops answering for two hours, then quiet: the hour
    closes 10 watched quiet minutes after the broker answers again, not at once, so what producers held
    back during the outage is not late."""
    windows = Windows(HOUR_MS, 0)
    wall = 1_000 * HOUR_MS
    windows.add(P0, *batch([0.1], [50 * 60_000]), now_ms=wall)
    outage = Progress(frozenset({P0}), unreachable=frozenset({P0}))
    idle = Progress(frozenset({P0}), idle=frozenset({P0}))
    assert windows.close_due(progress=idle, wall_ms=wall) == []
    assert watched(windows, outage, wall, wall + 2 * HOUR_MS) == []
    assert watched(windows, idle, wall + 2 * HOUR_MS, wall + 2 * HOUR_MS + 10 * 60_000 - 1000) == []
    assert windows.add(P0, *batch([0.1], [55 * 60_000]), now_ms=wall + 2 * HOUR_MS + 9 * 60_000) == {}
    assert watched(windows, idle, wall + 2 * HOUR_MS + 9 * 60_000, wall + 2 * HOUR_MS + 15 * 60_000) == [0]


@pytest.mark.parametrize("restored", [False, True])
def test_time_nobody_watched_the_stream_does_not_count_as_quiet(restored: bool) -> None:
    """A loop blocked for an hour (a commit retried through an outage), or a restart an hour later: the
    stream was not seen quiet meanwhile, so its hour is not closed by that time."""
    windows = Windows(HOUR_MS, 0)
    wall = 1_000 * HOUR_MS
    windows.add(P0, *batch([0.1], [50 * 60_000]), now_ms=wall)
    idle = Progress(frozenset({P0}), idle=frozenset({P0}))
    assert watched(windows, idle, wall, wall + 60_000) == []
    if restored:
        windows = Windows.restore(windows.snapshot())
    assert windows.close_due(progress=idle, wall_ms=wall + HOUR_MS) == []
    assert watched(windows, idle, wall + HOUR_MS, wall + HOUR_MS + 8 * 60_000) == []
    assert watched(windows, idle, wall + HOUR_MS + 8 * 60_000, wall + HOUR_MS + 10 * 60_000) == [0]


def test_an_idle_stream_without_a_wall_clock_closes_up_to_its_latest_event_time() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P0, *batch([0.1, 0.1], [5, HOUR_MS + 5]))
    idle = Progress(frozenset({P0}), idle=frozenset({P0}))
    assert [c.start_ms for c in windows.close_due(progress=idle)] == [0]


def test_an_event_time_from_the_future_moves_the_watermark_no_further_than_now() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.add(P0, *batch([0.1, 0.1], [10, 1000 * HOUR_MS]), now_ms=20)
    assert windows.watermarks == {P0: 20} and windows.close_due() == []
    assert [s for s, _ in windows.open_summary()] == [0, 1000 * HOUR_MS]


def test_late_counters_of_very_old_windows_are_pruned_but_still_totalled() -> None:
    windows = Windows(HOUR_MS, 0)
    windows.close_due(now_ms=HOUR_MS)
    windows.add(P0, *batch([0.1], [5]))
    windows.close_due(now_ms=(LATE_WINDOWS_KEPT + 5) * HOUR_MS)
    assert windows.late == {} and windows.late_total == 1


def test_closed_windows_leave_the_open_set_on_a_long_stream() -> None:
    windows = Windows(60_000, 0)
    for minute in range(5000):
        windows.add(P0, *batch([0.1], [minute * 60_000 + 1]))
        windows.close_due()
    assert len(windows.open_summary()) == 1
    assert len(json.dumps(windows.snapshot())) < 2000


def test_empty_batch_changes_nothing() -> None:
    windows = Windows()
    assert windows.add(P0, *batch([], [])) == {}
    assert windows.latest_event_ms is None and windows.close_due() == []


@pytest.mark.parametrize(("length_ms", "lateness_ms", "name"),
                         [(0, 0, "length_ms"), (HOUR_MS, -1, "allowed_lateness_ms"), (1.5, 0, "length_ms")])
def test_invalid_window_settings_raise_config_error_naming_the_setting(length_ms: int, lateness_ms: int,
                                                                      name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Windows(length_ms, lateness_ms)


@pytest.mark.parametrize(("arrays", "message"), [
    (batch([0.1, 0.2], [1]), "one length"),
    (batch([float("nan")], [1]), "finite"),
    (batch([0.1], [1], weights=[-1.0]), "non-negative"),
])
def test_unusable_batches_raise(arrays: tuple[np.ndarray, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Windows().add(P0, *arrays)
