"""A topic's judge and the hourly judgement divided as a consumer group divides a stream: per-partition
windows on the instances that read them, hours assembled and judged once by the topic's judge; the figures
equal one judge's over the same records, however the partitions are divided and moved."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from monitor.errors import StateError
from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.assembly import HourAssembler
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.partition_close import PartitionClose
from monitor.hourly.window import Progress
from monitor.settings import CompareConfig

MINUTE_MS = 60_000
SETTINGS = CompareConfig(min_history=2, previous_windows=20)
PARTITIONS = [("t", n) for n in range(4)]


class WindowsTopic:
    """A group's windows topic as the readers' route: what their partitions close waits here for the judge
    (``take``); the readers judge no topic, so they ask nothing of it."""

    def __init__(self) -> None:
        self.sent: list[PartitionClose] = []

    def forward(self, close: PartitionClose) -> None:
        self.sent.append(close)

    def partitions_of(self, topic: str) -> list[int]:
        return []

    def still_at(self, offsets: object) -> None:
        return None

    def take(self) -> list[PartitionClose]:
        sent, self.sent = self.sent, []
        return sent


WIRE = WindowsTopic()


@pytest.fixture(autouse=True)
def _empty_wire() -> None:
    WIRE.take()


def stream(windows: int = 8, per_window: int = 400, seed: int = 1) -> list[tuple[tuple[str, int], float, int, str]]:
    """(partition, error, event time, sequence), in event-time order on every partition."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(windows * per_window):
        error = float(rng.gamma(2.0, 0.005)) * (3.0 if i > (windows - 2) * per_window else 1.0)
        rows.append((PARTITIONS[int(rng.integers(len(PARTITIONS)))], error, i * MINUTE_MS // per_window,
                     f"AB{i % 977:03d}E"))
    return rows


def hourly() -> HourlyJudge:
    return HourlyJudge(MINUTE_MS, 0, SETTINGS, sample_size=50)


def add(judge: HourlyJudge, rows: list[tuple[tuple[str, int], float, int, str]]) -> None:
    for partition in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == partition]
        judge.add(partition, np.array([r[1] for r in mine]), np.ones(len(mine)), np.array([r[2] for r in mine]),
                  np.array([r[1] > 0.03 for r in mine]), sequences=[r[3] for r in mine])


def one_judge(rows: list[tuple[tuple[str, int], float, int, str]]) -> list[dict[str, object]]:
    judge = hourly()
    reports = []
    for start in range(0, len(rows), 100):
        add(judge, rows[start:start + 100])
        reports += judge.close_due("v1")
    return [r.to_dict() for r in reports + judge.flush("v1")]


def relay(closes: list[PartitionClose]) -> list[PartitionClose]:
    """As the windows topic carries them: JSON and back."""
    return [PartitionClose.from_dict(json.loads(json.dumps(c.to_dict()))) for c in closes]


def assert_same(got: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    assert [(g["start_ms"], g["count"], g["verdict"]) for g in got] == \
        [(e["start_ms"], e["count"], e["verdict"]) for e in expected]
    for g, e in zip(got, expected):
        assert g["formats"] == e["formats"]
        for key in ("weighted_mean", "weighted_error_sum", "above_threshold_share", "robust_z", "error_p99"):
            if e[key] is None:
                assert g[key] is None
            else:
                assert g[key] == pytest.approx(e[key], rel=1e-9), key


def test_two_instances_and_a_judge_give_one_judges_figures_with_a_partition_moved_midway() -> None:
    rows = stream()
    expected = one_judge(rows)
    readers = {0: hourly(), 1: hourly()}
    judge = hourly()
    judge.judge_topic("t", None)
    owner = {p: n % 2 for n, p in enumerate(PARTITIONS)}
    reports = []
    for start in range(0, len(rows), 100):
        if start == len(rows) // 2:  # partition 0 moves from reader 0 to reader 1, through its snapshot
            snapshot = json.loads(json.dumps(readers[0].partition_snapshot(PARTITIONS[0])))
            readers[0].release([PARTITIONS[0]])
            readers[1].own_partition(PARTITIONS[0], snapshot)
            owner[PARTITIONS[0]] = 1
        chunk = rows[start:start + 100]
        for n, reader in readers.items():
            add(reader, [r for r in chunk if owner[r[0]] == n])
            reader.close_due("v1", route=WIRE)
            for close in relay(WIRE.take()):
                judge.receive(close)
        reports += judge.topics.assemble("v1", lambda topic: range(len(PARTITIONS)))
    # The end of the stream: every partition idle, its heartbeat closes what is open.
    idle = Progress(frozenset(PARTITIONS), frozenset(), frozenset(PARTITIONS))
    for reader in readers.values():
        reader.close_due("v1", now_ms=10 ** 12, progress=idle, route=WIRE)
        for close in relay(WIRE.take()):
            judge.receive(close)
    reports += judge.topics.assemble("v1", lambda topic: range(len(PARTITIONS)))
    assert_same([r.to_dict() for r in reports], expected)
    assert reports[-1].verdict in ("warning", "critical")


def test_the_judge_role_moves_through_its_snapshot_and_goes_on_with_the_same_history() -> None:
    rows = stream(windows=10)
    expected = one_judge(rows)
    reader = hourly()
    judge = hourly()
    judge.judge_topic("t", None)
    reports = []
    for start in range(0, len(rows), 100):
        if start == len(rows) // 2:
            kept = {s: {**judge.histories["t"].samples[s].to_dict(),
                        "formats": judge.histories["t"].formats[s].to_dict()}
                    for s in judge.kept_windows("t")}
            snapshot = json.loads(json.dumps(judge.topic_snapshot("t")))
            judge = hourly()
            judge.judge_topic("t", snapshot, {int(k): v for k, v in json.loads(json.dumps(kept)).items()})
            moved = judge.histories["t"]
            assert sorted(moved.samples) == sorted(moved.formats) == sorted(kept) != []  # ready to re-score
        add(reader, rows[start:start + 100])
        reader.close_due("v1", route=WIRE)
        for close in relay(WIRE.take()):
            judge.receive(close)
        reports += judge.topics.assemble("v1", lambda topic: range(len(PARTITIONS)))
    idle = Progress(frozenset(PARTITIONS), frozenset(), frozenset(PARTITIONS))
    reader.close_due("v1", now_ms=10 ** 12, progress=idle, route=WIRE)
    for close in relay(WIRE.take()):
        judge.receive(close)
    reports += judge.topics.assemble("v1", lambda topic: range(len(PARTITIONS)))
    assert_same([r.to_dict() for r in reports], expected)


def test_a_partition_or_topic_snapshot_of_the_wrong_shape_is_refused_naming_it() -> None:
    judge = hourly()
    judge.own_partition(PARTITIONS[2], None)
    cut = {k: v for k, v in judge.partition_snapshot(PARTITIONS[2]).items() if k != "open"}
    with pytest.raises(StateError, match=r"^the saved windows of t\[2\] cannot be restored \(missing 'open'\)"):
        judge.own_partition(PARTITIONS[2], cut)
    judge.judge_topic("t", None)
    snapshot = json.loads(json.dumps(judge.topic_snapshot("t")))
    with pytest.raises(StateError, match="^the saved judging of 't' cannot be restored"):
        judge.judge_topic("t", {**snapshot, "history": [{"start_ms": "noon"}]})
    with pytest.raises(StateError, match="^the saved judging of 't' cannot be restored"):
        judge.judge_topic("t", snapshot, {0: {"sequences": "AB1", "size": 2}})


def test_an_hour_waits_for_every_partition_and_a_quiet_ones_heartbeat_releases_it() -> None:
    reader = hourly()
    for p in PARTITIONS[:2]:
        reader.own_partition(p, None)
    add(reader, [(PARTITIONS[0], 0.01, 1_000, "A"), (PARTITIONS[0], 0.01, MINUTE_MS + 1, "B")])
    reader.close_due("v1", progress=Progress(frozenset(PARTITIONS[:2])), route=WIRE)
    judge = hourly()
    judge.judge_topic("t", None)
    for close in WIRE.take():
        judge.receive(close)
    assert judge.topics.assemble("v1", lambda topic: [0, 1]) == []  # partition 1 has said nothing yet
    quiet = Progress(frozenset(PARTITIONS[:2]), frozenset(), frozenset({PARTITIONS[1]}))
    reader.close_due("v1", now_ms=MINUTE_MS + 5_000, progress=quiet, route=WIRE)
    for close in WIRE.take():
        judge.receive(close)
    [report] = judge.topics.assemble("v1", lambda topic: [0, 1])
    assert (report.start_ms, report.totals.count) == (0, 1)


class Cluster:
    """What the judge learns when it asks where partitions end: the offsets written so far, or no answer."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {}
        self.answering = True
        self.asked: list[dict[tuple[str, int], int]] = []

    def still_at(self, offsets: dict[tuple[str, int], int]) -> set[tuple[str, int]] | None:
        self.asked.append(dict(offsets))
        if not self.answering:
            return None
        return {p for p, o in offsets.items() if self.ends.get(p, 0) <= o}


def test_an_idle_partition_that_never_had_a_record_holds_nothing_while_the_cluster_says_it_is_still_empty() -> None:
    reader = hourly()
    for p in PARTITIONS[:2]:
        reader.own_partition(p, None)
    judge = hourly()
    judge.judge_topic("t", None)
    cluster = Cluster()
    p1_idle = Progress(frozenset(PARTITIONS[:2]), idle=frozenset({PARTITIONS[1]}), idle_at={PARTITIONS[1]: 0})
    add(reader, [(PARTITIONS[0], 0.01, 1_000, "A"), (PARTITIONS[0], 0.01, MINUTE_MS + 1, "B")])
    reader.close_due("v1", progress=p1_idle, wall_ms=10 ** 12, route=WIRE)
    for close in relay(WIRE.take()):
        judge.receive(close)
    cluster.answering = False  # an outage is not quiet: the hour waits
    assert judge.topics.assemble("v1", lambda topic: [0, 1], cluster.still_at) == []
    cluster.answering = True
    [report] = judge.topics.assemble("v1", lambda topic: [0, 1], cluster.still_at)
    assert (report.start_ms, report.totals.count) == (0, 1)
    assert cluster.asked == [{PARTITIONS[1]: 0}, {PARTITIONS[1]: 0}]
    assert judge.topics.assemble("v1", lambda topic: [0, 1], cluster.still_at) == []
    assert len(cluster.asked) == 2, "asked only when an hour would be judged without the idle partition"


def test_an_idle_word_that_reaches_the_judge_after_the_partitions_records_cuts_no_hour() -> None:
    """Partition 1 is idle and empty; then its records of minute 0 are written and partition 0 reads on into
    minute 2 before partition 1's owner has read them: its word that it is empty reaches the judge after
    partition 0's mark. The judge finds partition 1's end moved, waits for it, and the minute is judged with
    every record, none late, as one judge of the whole stream judges it."""
    reader = hourly()
    for p in PARTITIONS[:2]:
        reader.own_partition(p, None)
    judge = hourly()
    judge.judge_topic("t", None)
    cluster = Cluster()
    wall = 10 ** 12
    p1_idle = Progress(frozenset(PARTITIONS[:2]), idle=frozenset({PARTITIONS[1]}), idle_at={PARTITIONS[1]: 0})
    # The word "idle at offset 0", not yet delivered:
    reader.close_due("v1", progress=p1_idle, wall_ms=wall, route=WIRE)
    rows = [(PARTITIONS[0], 0.01, 1_000, "A"), (PARTITIONS[0], 0.02, 2 * MINUTE_MS + 1, "C")]
    late = [(PARTITIONS[1], 0.03, 5_000, "B"), (PARTITIONS[1], 0.01, 2 * MINUTE_MS + 2, "D")]
    cluster.ends[PARTITIONS[1]] = 2  # written, not read yet
    add(reader, rows)
    reader.close_due("v1", progress=p1_idle, wall_ms=wall, route=WIRE)

    def deliver() -> list[tuple[int, int]]:
        for close in relay(WIRE.take()):
            judge.receive(close)
        judged = judge.topics.assemble("v1", lambda topic: [0, 1], cluster.still_at)
        return [(r.start_ms, r.totals.count) for r in judged]

    assert deliver() == []
    assert 1 not in judge.assemblers["t"].idle, "awake again: it holds its hours until its owner speaks"
    add(reader, late)  # its owner reads them: it is no longer idle
    reader.close_due("v1", progress=Progress(frozenset(PARTITIONS[:2])), wall_ms=wall, route=WIRE)
    assert deliver() == [(0, 2)]  # A and B: its own clock passed minute 0
    cluster.ends[PARTITIONS[0]] = 2
    both_idle = Progress(frozenset(PARTITIONS[:2]), idle=frozenset(PARTITIONS[:2]),
                         idle_at={PARTITIONS[0]: 2, PARTITIONS[1]: 2})
    reader.close_due("v1", now_ms=10 ** 9, progress=both_idle, route=WIRE)
    assert deliver() == [(2 * MINUTE_MS, 2)]
    assert judge.assemblers["t"].late_records == 0 and reader.late_total() == 0
    whole = one_judge([(p, e, t, s) for p, e, t, s in sorted(rows + late, key=lambda r: r[2])])
    assert [(r["start_ms"], r["count"]) for r in whole] == [(0, 2), (2 * MINUTE_MS, 2)]


@pytest.mark.parametrize("wakes", [False, True])
def test_an_idle_partition_holds_no_hour_its_open_window_joins_the_hour_and_only_what_follows_is_late(
        wakes: bool) -> None:
    """Partition 1 has a record early in minute 0, then goes idle; partition 0 reads on into minute 2.
    Minute 0 is judged without waiting for partition 1's clock, with partition 1's record in it. When
    partition 1 later closes that minute itself, nothing counts twice; if it woke up first and got another
    record for that minute, that one record is late."""
    reader = hourly()
    for p in PARTITIONS[:2]:
        reader.own_partition(p, None)
    judge = hourly()
    judge.judge_topic("t", None)
    wall = 10 ** 12
    reading = Progress(frozenset(PARTITIONS[:2]))
    p1_idle = Progress(frozenset(PARTITIONS[:2]), idle=frozenset({PARTITIONS[1]}))

    def step(progress: Progress, at: int = wall) -> list[tuple[int, int]]:
        reader.close_due("v1", progress=progress, wall_ms=at, route=WIRE)
        for close in relay(WIRE.take()):
            judge.receive(close)
        return [(r.start_ms, r.totals.count) for r in judge.topics.assemble("v1", lambda topic: [0, 1])]

    reader.add(PARTITIONS[1], np.array([0.01]), np.ones(1), np.array([1_000]), np.zeros(1, bool), now_ms=wall,
               sequences=["A"])
    add(reader, [(PARTITIONS[0], 0.01, 2_000, "B"), (PARTITIONS[0], 0.01, 2 * MINUTE_MS + 1, "C")])
    assert step(p1_idle) == [(0, 2)]  # A (partition 1's open minute, as it stood) and B
    assembler = judge.assemblers["t"]
    if wakes:
        reader.add(PARTITIONS[1], np.array([0.01]), np.ones(1), np.array([10_000]), np.zeros(1, bool),
                   now_ms=wall, sequences=["E"])
        assert step(reading) == []
    for at in range(wall + 1_000, wall + MINUTE_MS + 1, 1_000):  # watched quiet, its own clock passes
        step(p1_idle, at)                                          # minute 0: it closes it with what it holds
    assert assembler.late_records == (1 if wakes else 0)
    assert not assembler.provisional and not assembler.provisional_used


def test_merging_in_any_arrival_order_gives_the_same_bits() -> None:
    parts = {p: WindowAccumulator(count=1 + p, weight_sum=0.1 * (p + 1), weighted_error_sum=0.7 / (p + 3))
             for p in range(6)}
    results = set()
    for seed in range(5):
        order = list(parts)
        random.Random(seed).shuffle(order)
        assembler = HourAssembler("t", MINUTE_MS)
        for p in order:
            assembler.offer(p, MINUTE_MS, {0: parts[p]})
        [closed] = assembler.due(range(6))
        results.add((closed.total.count, closed.total.weight_sum, closed.total.weighted_error_sum))
    assert len(results) == 1


def test_a_redelivered_part_counts_once_and_a_part_never_received_before_its_hour_was_judged_is_late() -> None:
    part = WindowAccumulator(count=3, weight_sum=3.0, weighted_error_sum=0.3)
    assembler = HourAssembler("t", MINUTE_MS)
    assembler.offer(0, MINUTE_MS, {0: part})
    assert assembler.offer(0, MINUTE_MS, {0: part}) == 0  # at least once: the same part again
    assembler.offer(1, MINUTE_MS, {})
    [closed] = assembler.due([0, 1])
    assert closed.total.count == 3
    assert assembler.offer(0, MINUTE_MS, {0: part}) == 0  # redelivered after judging: already in
    assert assembler.offer(2, 2 * MINUTE_MS, {0: part}) == 3  # a partition added later: late, counted
    assert assembler.late_records == 3
    restored = HourAssembler.restore(json.loads(json.dumps(assembler.snapshot())))
    assert restored.snapshot() == assembler.snapshot()


def test_older_models_are_let_go_only_once_every_owned_partition_closed_and_every_judged_topic_judged() -> None:
    reader = hourly()
    reader.own_partition(PARTITIONS[0], None)
    assert reader.closed_before_ms() is None  # a partition that closed nothing yet
    add(reader, [(PARTITIONS[0], 0.01, 1_000, "A"), (PARTITIONS[0], 0.01, 2 * MINUTE_MS + 1, "B")])
    reader.close_due("v1", route=WIRE)
    assert reader.closed_before_ms() == 2 * MINUTE_MS
    reader.judge_topic("t", None)  # judging the topic too: its hours are not judged yet
    assert reader.closed_before_ms() is None
    for close in WIRE.take():
        reader.receive(close)
    reader.topics.assemble("v1", lambda topic: [0])
    assert reader.closed_before_ms() == 2 * MINUTE_MS
