"""What a member owns between two hand-overs, and what its next commit writes to the changelog: the windows of
its changed partitions with their offsets, the hours judged since, each changed topic's judging, and tombstones
for the hours the history let go; accepted formats taken in once per topic."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.records import Position
from monitor.settings import CompareConfig
from monitor.stream import group_ownership
from monitor.stream.closed_windows import kept_of
from monitor.stream.group_ownership import Ownership
from monitor.stream.group_state import hour_key, judge_key, partition_key, topic_state
from monitor.stream.state import Accepted

DAY = 86_400_000
# Day-long windows and a short memory: the history keeps the newest three windows.
SETTINGS = CompareConfig(previous_windows=2, same_hour_days=1, evidence_hours=1, min_history=1)
T0, T1 = ("t", 0), ("t", 1)
WINDOWS: Position = ("g.windows", 1)  # where topic t's closed windows are read


def new_judge() -> HourlyJudge:
    judge = HourlyJudge(DAY, 0, SETTINGS, sample_size=20)
    judge.judge_topic("t", None)
    for partition in (T0, T1):
        judge.own_partition(partition, None)
    return judge


def day(judge: HourlyJudge, number: int) -> list[WindowReport]:
    """Records of day ``number`` on both partitions; returns the days judged (every one before it)."""
    for partition in (T0, T1):
        judge.add(partition, np.full(4, 0.01), np.ones(4), number * DAY + np.arange(4), np.zeros(4, bool),
                  sequences=[f"AB{number}{i}" for i in range(4)])
    return judge.close_due("v1")


def judged_days(count: int) -> tuple[HourlyJudge, list[WindowReport]]:
    judge = new_judge()
    reports = [r for n in range(count + 1) for r in day(judge, n)]
    assert [r.start_ms for r in reports] == [n * DAY for n in range(count)]
    return judge, reports


def changes(work: Ownership, judge: HourlyJudge) -> dict[str, Any]:
    """The records of the next commit, by key (values parsed; ``None``: a tombstone), each key once."""
    records = list(work.changed_state(judge, lambda topic: WINDOWS))
    assert len({k for k, _ in records}) == len(records)
    return {k: None if v is None else json.loads(v) for k, v in records}


def test_a_changed_owned_partition_is_written_with_its_windows_and_the_offset_they_are_exact_at() -> None:
    judge, _ = judged_days(1)
    work = Ownership(owned={T0, T1}, positions={T0: 11, T1: 7}, dirty_partitions={T0})
    written = changes(work, judge)
    assert list(written) == [partition_key(T0)]
    assert written[partition_key(T0)]["offset"] == 11
    taken_over = new_judge()
    taken_over.own_partition(T0, written[partition_key(T0)]["windows"])
    assert taken_over.partition_snapshot(T0) == json.loads(json.dumps(judge.partition_snapshot(T0)))


def test_a_partition_no_longer_owned_or_without_a_position_is_not_written() -> None:
    judge, _ = judged_days(1)
    work = Ownership(owned={T0}, positions={T1: 3}, dirty_partitions={T0, T1})
    assert changes(work, judge) == {}


def test_each_hour_judged_since_the_last_commit_is_written_with_its_sample_and_the_topics_judging() -> None:
    judge, reports = judged_days(2)
    work = Ownership(judged={"t"}, positions={WINDOWS: 42}, dirty_topics={"t"}, judged_since_commit=reports,
                     accepted_through={"t": 3})
    written = changes(work, judge)
    assert set(written) == {hour_key("t", 0), hour_key("t", DAY), judge_key("t")}
    for report in reports:
        assert written[hour_key("t", report.start_ms)] == json.loads(json.dumps(kept_of(report)))
        assert written[hour_key("t", report.start_ms)]["sequences"]
    assert (written[judge_key("t")]["windows_offset"], written[judge_key("t")]["accepted_through"]) == (42, 3)
    assert work.stored_hours == {"t": {0, DAY}}
    # What another member takes the topic over from: the same history, with each window's sample.
    snapshot, hours = topic_state({k: json.dumps(v).encode() for k, v in written.items()}, "t")
    taken_over = HourlyJudge(DAY, 0, SETTINGS, sample_size=20)
    taken_over.judge_topic("t", snapshot, hours)
    assert taken_over.kept_windows("t") == [0, DAY]
    assert sorted(taken_over.histories["t"].samples) == [0, DAY]


def test_the_hours_and_judging_of_a_topic_judged_elsewhere_are_not_written() -> None:
    judge, reports = judged_days(2)
    work = Ownership(owned={T0}, positions={T0: 5}, dirty_partitions={T0}, dirty_topics={"t"},
                     judged_since_commit=reports)
    assert list(changes(work, judge)) == [partition_key(T0)]


def test_the_hours_the_history_let_go_are_removed_with_tombstones_and_forgotten() -> None:
    judge = new_judge()
    work = Ownership(judged={"t"}, dirty_topics={"t"}, judged_since_commit=[r for n in range(4) for r in day(judge, n)])
    assert {k for k, v in changes(work, judge).items() if k.startswith("hour/") and v is not None} == \
        {hour_key("t", n * DAY) for n in range(3)}
    work.committed()
    work.judged_since_commit = [r for n in (4, 5) for r in day(judge, n)]
    work.dirty_topics.add("t")
    assert judge.kept_windows("t") == [2 * DAY, 3 * DAY, 4 * DAY]
    written = changes(work, judge)
    assert {k for k, v in written.items() if v is None} == {hour_key("t", 0), hour_key("t", DAY)}
    assert {k for k, v in written.items() if k.startswith("hour/") and v is not None} == \
        {hour_key("t", 3 * DAY), hour_key("t", 4 * DAY)}
    assert work.stored_hours == {"t": {2 * DAY, 3 * DAY, 4 * DAY}}
    work.committed()
    work.dirty_topics.add("t")  # the topic changes again: what was removed is not removed twice
    assert [k for k, v in changes(work, judge).items() if v is None] == []


def test_nothing_is_written_once_the_changes_are_committed() -> None:
    judge, reports = judged_days(2)
    work = Ownership(owned={T0, T1}, judged={"t"}, positions={T0: 5, T1: 6}, dirty_partitions={T0, T1},
                     dirty_topics={"t"}, judged_since_commit=reports)
    assert len(changes(work, judge)) == 5
    work.committed()
    assert changes(work, judge) == {}
    assert work.positions == {T0: 5, T1: 6} and work.stored_hours == {"t": {0, DAY}}  # still owned, still stored


def test_a_hand_over_leaves_nothing_owned_changed_or_stored() -> None:
    judge, reports = judged_days(2)
    work = Ownership(owned={T0}, judged={"t"}, positions={T0: 5}, dirty_partitions={T0}, dirty_topics={"t"},
                     judged_since_commit=reports, stored_hours={"t": {0}}, accepted_through={"t": 2})
    work.release()
    assert work == Ownership()
    work.dirty_partitions.add(T0)
    work.dirty_topics.add("t")
    assert changes(work, judge) == {}


def accept_window(id_: int, start_ms: int, topic: str | None = None) -> Accepted:
    return Accepted(id_, 0, "window", str(start_ms), topic, [])


def accepted_starts(judge: HourlyJudge, topic: str = "t") -> list[int]:
    return [e.start_ms for e in judge.histories[topic].entries if e.accepted]


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, tuple[str, ...]]]:
    """Each application of an accepted format to a judge: (its id, the topics), through the real one."""
    calls: list[tuple[int, tuple[str, ...]]] = []
    real = group_ownership.accept_covered

    def counted(judge: HourlyJudge, accepted: Accepted, topics: Any = None) -> Any:
        calls.append((accepted.id, tuple(topics)))
        return real(judge, accepted, topics)

    monkeypatch.setattr(group_ownership, "accept_covered", counted)
    return calls


def test_an_accepted_format_is_applied_once_to_each_judged_topic_even_when_asked_again(
        applied: list[tuple[int, tuple[str, ...]]]) -> None:
    judge, _ = judged_days(2)
    judge.judge_topic("u", None)
    work = Ownership(judged={"t", "u"})
    work.apply_accepted([accept_window(5, DAY)], judge, {"t", "u"})
    assert accepted_starts(judge) == [DAY]
    assert applied == [(5, ("t",)), (5, ("u",))]
    assert work.accepted_through == {"t": 5, "u": 5} and work.dirty_topics == {"t", "u"}
    work.committed()
    work.apply_accepted([accept_window(5, DAY)], judge, {"t", "u"})
    assert applied == [(5, ("t",)), (5, ("u",))] and work.dirty_topics == set()
    assert changes(work, judge) == {}
    work.apply_accepted([accept_window(5, DAY), accept_window(8, 0)], judge, {"t", "u"})
    assert applied[2:] == [(8, ("t",)), (8, ("u",))] and accepted_starts(judge) == [0, DAY]


def test_how_far_a_topic_took_accepted_formats_in_is_written_with_its_judging() -> None:
    judge, _ = judged_days(2)
    work = Ownership(judged={"t"})
    work.apply_accepted([accept_window(5, DAY)], judge, {"t"})
    assert changes(work, judge)[judge_key("t")]["accepted_through"] == 5


def test_a_judge_taken_over_from_state_that_took_a_format_in_does_not_apply_it_again(
        applied: list[tuple[int, tuple[str, ...]]]) -> None:
    judge, _ = judged_days(2)
    work = Ownership(judged={"t"}, accepted_through={"t": 5})
    work.apply_accepted([accept_window(4, 0), accept_window(5, DAY)], judge, {"t"})
    assert applied == [] and accepted_starts(judge) == [] and work.dirty_topics == set()


def test_a_format_accepted_on_another_topic_is_passed_over_and_counted_as_taken_in(
        applied: list[tuple[int, tuple[str, ...]]]) -> None:
    judge, _ = judged_days(2)
    work = Ownership(judged={"t"})
    work.apply_accepted([accept_window(5, DAY, topic="u")], judge, {"t"})
    assert applied == [] and accepted_starts(judge) == []
    assert work.accepted_through == {"t": 5} and work.dirty_topics == set()
    work.apply_accepted([accept_window(5, DAY, topic="u"), accept_window(6, DAY, topic="t")], judge, {"t"})
    assert applied == [(6, ("t",))] and accepted_starts(judge) == [DAY] and work.accepted_through == {"t": 6}
