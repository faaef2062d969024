"""Taking input partitions and judged topics over from the changelog (on the in-memory cluster): each from its
latest readable value, an older one when the latest is unreadable (and written anew), a stop when none reads;
and a wait until the changelog shows the state of the committed offsets."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from monitor.devtools.memory_kafka import MemoryChangelog, MemoryKafka, MemoryProducer
from monitor.hourly.judge import HourlyJudge
from monitor.records import Position
from monitor.settings import CompareConfig, MonitorConfig, config_from_dict
from monitor.stream import group_restore
from monitor.stream.closed_windows import kept_of
from monitor.stream.group_restore import ChangelogRestore, TakenOver
from monitor.stream.group_state import encode, hour_key, judge_key, partition_key
from monitor.stream.kafka_state import partition_of

DAY = 86_400_000
SETTINGS = CompareConfig(previous_windows=2, same_hour_days=1, evidence_hours=1, min_history=1)
T0, T1 = ("t", 0), ("t", 1)
GARBAGE = b"\x00\x01 not the monitor's"


def config() -> MonitorConfig:
    return config_from_dict({"input": {"topics": ["t"], "group_id": "g"},
                             "state": {"store": "kafka", "windows_partitions": 2, "instance_id": "a"}}, environ={})


CONFIG = config()
WINDOWS: Position = (CONFIG.windows_topic, partition_of("t", 2))  # where topic t's closed windows are read


def new_judge() -> HourlyJudge:
    return HourlyJudge(DAY, 0, SETTINGS, sample_size=20)


def day(judge: HourlyJudge, partition: Position, number: int) -> list[Any]:
    judge.add(partition, np.full(4, 0.01), np.ones(4), number * DAY + np.arange(4), np.zeros(4, bool),
              sequences=[f"AB{number}{i}" for i in range(4)])
    return judge.close_due("v1")


class Clock:
    """The restore's clock and sleep: each sleep moves the clock on (and may do something meanwhile)."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1_000.0, 0
        self.meanwhile: Any = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += 5.0
        if self.meanwhile is not None:
            self.meanwhile()


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Waiting for the changelog sleeps on this clock: no test waits for real."""
    fake = Clock()
    monkeypatch.setattr(group_restore, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


class Member:
    """A changelog on the in-memory cluster and a member's judge taking state over from it."""

    def __init__(self) -> None:
        self.kafka = MemoryKafka()
        self.kafka.create_topic(CONFIG.changelog_topic, 1)
        self.judge = new_judge()
        self.unreadable: list[tuple[str, int]] = []
        self.restore = ChangelogRestore(CONFIG, MemoryChangelog(self.kafka, CONFIG.changelog_topic), self.judge, 2,
                                        lambda outcome, times: self.unreadable.append((outcome, times)))

    def write(self, key: str, value: bytes | None) -> int:
        """One committed changelog record; returns its offset."""
        MemoryProducer(self.kafka, None).send(CONFIG.changelog_topic, key, value)
        return self.kafka.end((CONFIG.changelog_topic, 0)) - 1

    def take_over(self, committed: dict[Position, int | None], inputs: set[Position] = frozenset(),  # type: ignore[assignment]
                  judged: set[str] = frozenset()) -> TakenOver:  # type: ignore[assignment]
        return self.restore.take_over(committed, set(inputs), set(judged))


def windows_of(partition: Position, days: int) -> dict[str, Any]:
    """A partition's windows after ``days`` days of records (the last one open), as the changelog holds them."""
    judge = new_judge()
    judge.own_partition(partition, None)
    for number in range(days):
        day(judge, partition, number)
    return json.loads(json.dumps(judge.partition_snapshot(partition)))


def partition_value(windows: dict[str, Any], offset: int) -> bytes:
    return encode({"windows": windows, "offset": offset})


def judged_topic(days: int) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Topic t's judging after ``days`` judged days, and its kept hours, as the changelog holds them."""
    judge = new_judge()
    judge.judge_topic("t", None)
    judge.own_partition(T0, None)
    reports = [r for number in range(days + 1) for r in day(judge, T0, number)]
    hours = {r.start_ms: json.loads(encode(kept_of(r))) for r in reports}
    return json.loads(encode(judge.topic_snapshot("t"))), hours


def write_topic(member: Member, snapshot: dict[str, Any], hours: dict[int, dict[str, Any]], windows_offset: int,
                accepted_through: int = -1) -> None:
    for start, kept in hours.items():
        member.write(hour_key("t", start), encode(kept))
    member.write(judge_key("t"), encode({**snapshot, "windows_offset": windows_offset,
                                         "accepted_through": accepted_through}))


def test_a_partition_is_taken_over_from_its_stored_windows_and_resumes_at_the_offset_they_are_exact_at(
        clock: Clock) -> None:
    member = Member()
    windows = windows_of(T0, 3)
    member.write(partition_key(T0), partition_value(windows_of(T0, 1), 4))
    member.write(partition_key(T0), partition_value(windows, 9))
    member.write(partition_key(T1), partition_value(windows_of(T1, 2), 6))
    taken = member.take_over({T0: 9}, {T0})
    assert taken.resume == {T0: 9} and taken.read == 3 and clock.sleeps == 0
    assert json.loads(encode(member.judge.partition_snapshot(T0))) == windows
    assert T1 not in member.judge.partitions, "a partition not handed over is not taken"
    assert (taken.stopped, taken.rewrite_partitions, member.unreadable) == ({}, set(), [])


def test_a_partition_without_state_starts_afresh_where_the_group_committed_or_where_the_consumer_starts() -> None:
    member = Member()
    member.write(partition_key(T0), partition_value(windows_of(T0, 2), 6))
    member.write(partition_key(T0), None)  # removed (``state drop-key``)
    taken = member.take_over({T1: None}, {T0, T1})
    assert taken.resume == {} and taken.stopped == {}
    assert member.judge.partition_snapshot(T0) == new_judge().partition_snapshot(T0)
    assert set(member.judge.partitions) == {T0, T1}


def test_an_unreadable_latest_value_falls_back_to_the_newest_readable_older_one_which_is_written_anew() -> None:
    member = Member()
    older = windows_of(T0, 2)
    member.write(partition_key(T0), partition_value(windows_of(T0, 1), 3))
    member.write(partition_key(T0), partition_value(older, 5))
    member.write(partition_key(T0), GARBAGE)
    taken = member.take_over({T0: 9}, {T0})  # committed past the older value: read again from it
    assert taken.resume == {T0: 5} and taken.rewrite_partitions == {T0} and taken.stopped == {}
    assert json.loads(encode(member.judge.partition_snapshot(T0))) == older
    assert member.unreadable == [("older value used", 1)]


@pytest.mark.parametrize("bad", [partition_value(windows_of(T0, 2), -1), encode({"windows": {"open": 1}, "offset": 8}),
                                 encode({"offset": 8}), b"[1, 2]"],
                         ids=["negative-offset", "wrong-windows", "no-windows", "not-an-object"])
def test_a_value_of_the_wrong_shape_is_unreadable_and_changes_nothing(bad: bytes) -> None:
    member = Member()
    older = windows_of(T0, 1)
    member.write(partition_key(T0), partition_value(older, 2))
    member.write(partition_key(T0), bad)
    taken = member.take_over({T0: None}, {T0})
    assert taken.resume == {T0: 2} and taken.rewrite_partitions == {T0}
    assert json.loads(encode(member.judge.partition_snapshot(T0))) == older


def test_a_partition_whose_key_has_no_readable_value_is_stopped_by_its_key() -> None:
    member = Member()
    member.write(partition_key(T0), partition_value(windows_of(T0, 1), 2))
    member.write(partition_key(T0), None)
    member.write(partition_key(T0), GARBAGE)  # nothing readable since the key was removed
    member.write(partition_key(T1), partition_value(windows_of(T1, 1), 3))
    taken = member.take_over({T0: 2, T1: 3}, {T0, T1})
    assert taken.stopped == {T0: partition_key(T0)} and taken.resume == {T1: 3}
    assert T0 not in taken.rewrite_partitions and T0 not in member.judge.partitions
    assert member.unreadable == [("stopped", 1)]


def test_a_judged_topic_is_taken_over_with_its_history_hours_and_the_accepted_formats_it_took_in() -> None:
    member = Member()
    snapshot, hours = judged_topic(2)
    write_topic(member, snapshot, hours, windows_offset=17, accepted_through=4)
    taken = member.take_over({WINDOWS: 17}, judged={"t"})
    assert member.judge.kept_windows("t") == [0, DAY]
    assert sorted(member.judge.histories["t"].samples) == [0, DAY]
    assert json.loads(encode(member.judge.topic_snapshot("t"))) == snapshot
    assert taken.accepted_through == {"t": 4} and taken.stored_hours == {"t": {0, DAY}}
    assert taken.resume == {} and taken.rewrite_topics == set(), "read on from the group's committed offset"


def test_a_topic_never_judged_starts_with_an_empty_history() -> None:
    member = Member()
    taken = member.take_over({}, judged={"t"})
    assert "t" in member.judge.assemblers and member.judge.kept_windows("t") == []
    assert taken.accepted_through == {"t": -1} and taken.stored_hours == {"t": set()}


def test_an_unreadable_judging_falls_back_to_an_older_one_whose_windows_are_read_again() -> None:
    member = Member()
    snapshot, hours = judged_topic(2)
    write_topic(member, snapshot, hours, windows_offset=12)
    member.write(judge_key("t"), GARBAGE)
    taken = member.take_over({WINDOWS: 20}, judged={"t"})
    assert taken.resume == {WINDOWS: 12} and taken.rewrite_topics == {"t"}
    assert member.judge.kept_windows("t") == [0, DAY]
    assert member.unreadable == [("older value used", 1)]


def test_an_unreadable_kept_hour_is_left_out_and_its_window_keeps_its_figures() -> None:
    member = Member()
    snapshot, hours = judged_topic(2)
    write_topic(member, snapshot, hours, windows_offset=12)
    member.write(hour_key("t", DAY), b'{"sequences": "AB1", "size"')
    taken = member.take_over({WINDOWS: 12}, judged={"t"})
    assert member.judge.kept_windows("t") == [0, DAY] and sorted(member.judge.histories["t"].samples) == [0]
    assert taken.stored_hours == {"t": {0}} and taken.stopped == {}
    assert member.unreadable == [("left out", 1)]


def test_a_judged_topic_without_a_readable_judging_stops_its_windows_partition() -> None:
    member = Member()
    member.write(judge_key("t"), GARBAGE)
    taken = member.take_over({WINDOWS: 12}, judged={"t"})
    assert taken.stopped == {WINDOWS: judge_key("t")} and WINDOWS not in taken.resume
    assert "t" not in member.judge.assemblers
    assert member.unreadable == [("stopped", 1)]


def test_it_waits_until_the_changelog_shows_the_state_of_the_committed_offsets(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    member = Member()
    member.write(partition_key(T0), partition_value(windows_of(T0, 1), 4))
    newer = windows_of(T0, 2)
    clock.meanwhile = lambda: clock.sleeps == 2 and member.write(partition_key(T0), partition_value(newer, 9))
    with caplog.at_level(logging.INFO):
        taken = member.take_over({T0: 9}, {T0})
    assert clock.sleeps == 2 and taken.resume == {T0: 9}
    assert json.loads(encode(member.judge.partition_snapshot(T0))) == newer
    assert "waiting for the changelog to show the committed state" in caplog.text


def test_after_the_transaction_timeout_it_resumes_from_the_older_state_it_has(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    member = Member()
    snapshot, hours = judged_topic(1)
    write_topic(member, snapshot, hours, windows_offset=3)
    member.write(partition_key(T0), partition_value(windows_of(T0, 1), 4))
    taken = member.take_over({T0: 9, WINDOWS: 3}, {T0}, {"t"})
    assert taken.resume == {T0: 4}
    assert clock.now > 1_000.0 + CONFIG.state.transaction_timeout_seconds
    assert "still holds older state than the committed offsets of [('t', 0)]" in caplog.text


def test_an_unreadable_value_is_not_waited_for(clock: Clock) -> None:
    member = Member()
    member.write(partition_key(T0), GARBAGE)
    member.write(judge_key("t"), GARBAGE)
    taken = member.take_over({T0: 9, WINDOWS: 3}, {T0}, {"t"})
    assert set(taken.stopped) == {T0, WINDOWS} and clock.sleeps == 0


def test_a_key_removed_on_purpose_is_not_waited_for_and_starts_afresh_from_the_committed_offset(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """``state drop-key`` on a partition that has committed offsets: its owner starts it afresh at once (it
    used to wait the transaction timeout first, taking the missing value for a former member's open
    transaction), while a key that is only missing is still waited for."""
    member = Member()
    member.write(partition_key(T0), partition_value(windows_of(T0, 2), 9))
    member.write(partition_key(T0), None)
    with caplog.at_level(logging.INFO):
        taken = member.take_over({T0: 9}, {T0})
    assert clock.sleeps == 0 and taken.resume == {T0: 9} and taken.stopped == {}
    assert member.judge.partition_snapshot(T0) == new_judge().partition_snapshot(T0)
    assert "waiting for the changelog" not in caplog.text
    later = partition_value(windows_of(T1, 1), 5)
    clock.meanwhile = lambda: clock.sleeps == 1 and member.write(partition_key(T1), later)
    assert member.take_over({T1: 5}, {T1}).resume == {T1: 5} and clock.sleeps == 1
