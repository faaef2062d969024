"""The group (``state.store: kafka``) without a broker: one, two or three members built by the application
builder on one in-memory cluster (``monitor.devtools.memory_kafka``), driven turn by turn in this process.

What a broker alone can show (transactions on the wire, fencing by the coordinator, outages, session
timeouts) stays in ``tests/integration/test_scale_out.py``; here the group's own logic is checked in a
second: hand-overs, a member killed and restarted, a fenced zombie, the model schedule (a promotion by the
lead, a bundle published at the shared ``model.path``), accepted formats and a quiet partition's heartbeat,
each against replay's figures and each output exactly once."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monitor.app import Application, build
from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.devtools.memory_kafka import MemoryClients, MemoryKafka
from monitor.errors import ConfigError
from monitor.hourly.judge import HourlyJudge
from monitor.ops.lifecycle import ModelStore
from monitor.records import RawMessage
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream.group_state import encode
from monitor.stream.pipeline import RecordPipeline, drain
from monitor.stream.sources import MemorySink, MemorySource
from tests.tolerances import SUM_REL

WINDOW_MS = 60_000
START_MS = 1_700_000_040_000 - 1_700_000_040_000 % WINDOW_MS
PARTITIONS = 3
WINDOWS = 6
PER_WINDOW = 120
BAD_EVERY = 97


def settings(tmp_path: Path, bundle_dir: Path, name: str, delivery: str = "exactly_once",
             **sections: dict[str, Any]) -> MonitorConfig:
    """The members' configuration; ``sections`` add to it (``state``'s settings to the ones here)."""
    state = sections.pop("state", {})
    return config_from_dict({
        "input": {"topics": ["events"], "group_id": "g"}, "model": {"path": str(bundle_dir)},
        "output": {"topic": "scored"}, "dead_letter": {"topic": "dead"}, "batch": {"max_records": 50},
        "window": {"length_seconds": WINDOW_MS // 1000, "allowed_lateness_seconds": 0, "quiet_seconds": 30},
        "compare": {"min_history": 2, "previous_windows": 10}, "metrics": {"enabled": False},
        "state": {"store": "kafka", "path": str(tmp_path / name / "state"), "instance_id": name,
                  "delivery": delivery, "windows_partitions": 2, **state}, **sections}, environ={})


def rows() -> list[tuple[int, bytes]]:
    """(event time, value) in event-time order; every ``BAD_EVERY``-th undecodable; a third of window 4 in a
    foreign format; then one record per partition three windows on, so every window before closes."""
    sequences = generate.sample("serial", WINDOWS * PER_WINDOW, seed=21)
    drift = generate.anomalies("serial", "other_format", PER_WINDOW // 3, set(), seed=21)
    sequences[4 * PER_WINDOW: 4 * PER_WINDOW + len(drift)] = drift
    step = WINDOW_MS // PER_WINDOW
    out = [(START_MS + i * step, b"\xff\xfe broken" if i % BAD_EVERY == BAD_EVERY - 1 else s.encode())
           for i, s in enumerate(sequences)]
    return out + [(START_MS + (WINDOWS + 3) * WINDOW_MS, b"AB121E")] * PARTITIONS


def replayed(config: MonitorConfig, bundle: Bundle, values: list[tuple[int, bytes]],
             change: tuple[int, Scorer] | None = None) -> list[dict[str, Any]]:
    """The windows replay gives for the same records (``change``: another model from a window boundary on),
    but the trailing one (no member closes it)."""
    judge = HourlyJudge.from_config(config)
    messages = [RawMessage("events", 0, i, t, None, v) for i, (t, v) in enumerate(values)]
    pipeline = RecordPipeline(Scorer(bundle), judge, config.input, MemorySink())
    if change is not None:
        pipeline.promote(change[1], change[0])
    reports = drain(MemorySource.of_messages(messages, 100), pipeline, 100)
    return [r.to_dict() for r in reports if r.start_ms < START_MS + WINDOWS * WINDOW_MS]


class Members:
    """Members of one group on one in-memory cluster, each built as ``python -m monitor run`` builds it, and
    driven in turn: every turn each member runs one step of its loop, then is asked to close by the clock
    and to commit (what its scheduled jobs ask)."""

    def __init__(self, kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, bundle: Bundle,
                 delivery: str = "exactly_once", clock: Callable[[], float] = time.time,
                 **sections: dict[str, Any]) -> None:
        self.kafka, self.tmp_path, self.bundle_dir, self.bundle = kafka, tmp_path, bundle_dir, bundle
        self.delivery, self.clock, self.sections = delivery, clock, sections
        self.apps: dict[str, Application] = {}
        self.clients: dict[str, MemoryClients] = {}

    def start(self, name: str) -> Application:
        clients = MemoryClients(self.kafka)
        app = build(settings(self.tmp_path, self.bundle_dir, name, self.delivery, **self.sections),
                    scorer=Scorer(self.bundle),
                    clients=clients, clock=self.clock)
        assert app is not None
        self.apps[name], self.clients[name] = app, clients
        return app

    def kill(self, name: str) -> None:
        """kill -9: its consumer leaves the group unheard; what it did not commit never shows."""
        self.kafka.kill(self.clients[name].consumers[-1])
        del self.apps[name]

    def stop(self, name: str) -> None:
        """A clean stop: it commits, then leaves the group (the others take its partitions over)."""
        app = self.apps.pop(name)
        app.service.request_stop()
        app.service.run()

    def turn(self) -> None:
        for app in list(self.apps.values()):
            service = app.service
            service.step()
            service.request_close_check()
            service.request_checkpoint()

    def turns(self, count: int) -> None:
        for _ in range(count):
            self.turn()

    def until_judged(self, windows: int, limit: int = 400, caught_up: bool = True) -> None:
        for _ in range(limit):
            if len(self.reports()) >= windows and not (caught_up and any(self.lag())):
                return
            self.turn()
        raise AssertionError(f"{len(self.reports())} of {windows} windows judged after {limit} turns")

    def lag(self) -> list[int]:
        return [n for app in self.apps.values() for n in app.service.source.lag().values()]  # type: ignore[union-attr]

    def reports(self) -> list[dict[str, Any]]:
        return sorted((json.loads(r.value) for r in self.kafka.records("g.reports")), key=lambda r: r["start_ms"])


def assert_as_replayed(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [w["start_ms"] for w in got] == [w["start_ms"] for w in expected]
    for a, b in zip(got, expected):
        assert (a["count"], a["weight_sum"], a["verdict"], a["formats"]) == \
            (b["count"], b["weight_sum"], b["verdict"], b["formats"])
        assert [x["signal"] for x in a["reasons"]] == [x["signal"] for x in b["reasons"]]
        for key in ("weighted_mean", "above_threshold_share", "baseline_median", "error_p99"):
            assert a[key] == (None if b[key] is None else pytest.approx(b[key], rel=SUM_REL, abs=1e-15)), key


def assert_each_output_once(kafka: MemoryKafka, values: list[tuple[int, bytes]]) -> None:
    """Every valid record scored once and every broken one dead-lettered once (by the offset it came from)."""
    sources = (json.loads(r.value)["source"] for r in kafka.records("scored"))
    scored = Counter((s["partition"], s["offset"]) for s in sources)
    broken = sum(v.startswith(b"\xff") for _, v in values)
    assert len(scored) == len(values) - broken and set(scored.values()) == {1}
    assert len(kafka.records("dead")) == broken


@pytest.fixture
def kafka() -> MemoryKafka:
    kafka = MemoryKafka()
    kafka.produce("events", rows(), partitions=PARTITIONS)
    return kafka


@pytest.mark.parametrize("members", [1, 2, 3])
def test_members_judge_every_hour_as_replay_does_and_write_each_output_once(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, members: int) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle)
    for i in range(members):
        group.start(f"m{i}")
    group.until_judged(WINDOWS)
    expected = replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows())
    assert_as_replayed(group.reports(), expected)
    assert {r["verdict"] for r in expected[4:5]} == {"critical"}  # the drifting window is caught, by both
    assert_each_output_once(kafka, rows())
    if members <= PARTITIONS:  # every member read a share: the hours were assembled from several members
        assert all(app.service.store.work.owned for app in group.apps.values())


def test_at_least_once_members_judge_every_hour_as_replay_does(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle, delivery="at_least_once")
    group.start("m0")
    group.start("m1")
    group.until_judged(WINDOWS)
    assert_as_replayed(group.reports(), replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows()))
    assert_each_output_once(kafka, rows())  # uninterrupted, at least once repeats nothing either


@pytest.mark.parametrize("members", [1, 2])
def test_a_member_killed_mid_stream_and_restarted_changes_no_figure_and_no_output(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, members: int) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle)
    for i in range(members):
        group.start(f"m{i}")
    group.until_judged(2, caught_up=False)
    assert len(group.reports()) < WINDOWS  # killed with hours judged and hours open
    killed = group.apps["m0"].service
    killed.step()  # commits what the last turn asked it to
    killed.step()  # work after its last commit: sent in a transaction that never commits
    assert killed.store.producer is not None and killed.store.producer.in_transaction
    group.kill("m0")
    group.turns(3)
    group.start("m0")  # the same instance id: its producer fences the dead one's
    group.until_judged(WINDOWS)
    assert_as_replayed(group.reports(), replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows()))
    assert_each_output_once(kafka, rows())


def test_members_joining_and_leaving_hand_their_partitions_over_without_a_cut(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle)
    group.start("m0")
    group.turns(8)
    group.start("m1")
    group.turns(6)
    group.start("m2")
    group.turns(6)
    group.stop("m0")  # commits, then leaves: m1 and m2 take its partitions and judging over
    group.until_judged(WINDOWS)
    assert_as_replayed(group.reports(), replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows()))
    assert_each_output_once(kafka, rows())
    assert sum(app.service.store.rebalances for app in group.apps.values()) >= 3


def test_offsets_a_hanging_transaction_holds_are_waited_for_and_said_past_the_transaction_timeout(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, caplog: pytest.LogCaptureFixture) -> None:
    """A transaction that never ends holds a partition's committed offsets (a broker can leave one): the member
    reads nothing of what it was assigned, keeps its loop turning, says so as an error once the wait passes the
    transaction timeout, and once the transaction is ended takes everything over as if nothing happened."""
    now_s = [time.time()]
    kafka = MemoryKafka(clock=lambda: now_s[0], sleep=lambda seconds: now_s.__setitem__(0, now_s[0] + seconds))
    kafka.produce("events", rows(), partitions=PARTITIONS)
    kafka.hang_offsets("g", [("events", 1)])
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle, clock=lambda: now_s[0])
    group.start("m0")
    with caplog.at_level(logging.INFO, logger="monitor.stream.group"):
        group.turns(8)  # a wait of 10 s each: 80 s, within the transaction timeout (30 s) and its margin (60 s)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        group.turns(4)
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and "hanging transaction" in said[0].getMessage()
    assert "events 0,1,2" in said[0].getMessage() and "kafka-transactions.sh" in said[0].getMessage()
    assert kafka.records("scored") == [] and group.reports() == []
    kafka.end_hanging("g")
    group.until_judged(WINDOWS)
    assert_as_replayed(group.reports(), replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows()))
    assert_each_output_once(kafka, rows())


def test_a_zombie_fenced_by_its_restarted_self_changes_nothing(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle,
        caplog: pytest.LogCaptureFixture) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle)
    zombie = group.start("m0").service
    group.start("m1")
    group.turns(10)
    zombie.step()  # commits what the last turn asked it to
    zombie.step()  # a stalled process: its transaction is open when the group gives up on it
    assert zombie.store.producer is not None and zombie.store.producer.in_transaction
    group.kill("m0")
    group.start("m0")
    before = len(kafka.records("scored"))
    zombie.request_checkpoint()
    zombie.step()  # wakes up and tries to commit what it did
    assert zombie.store.aborts == 1 and "ProducerFencedError" in caplog.text
    assert len(kafka.records("scored")) == before
    group.until_judged(WINDOWS)
    assert_as_replayed(group.reports(), replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows()))
    assert_each_output_once(kafka, rows())


def test_an_accepted_window_serves_in_baselines_once_across_a_hand_over(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle,
        caplog: pytest.LogCaptureFixture) -> None:
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle)
    group.start("m0")
    drifting = START_MS + 4 * WINDOW_MS
    group.until_judged(5, caught_up=False)
    kafka.create_topic("g.models")
    kafka._append("g.models", 0, b"accepted/1", encode({"at_ms": 0, "kind": "window", "value": str(drifting),
                                                         "topic": "events", "sequences": []}))
    group.turns(2)
    group.start("m1")
    group.turns(4)
    group.stop("m0")
    group.until_judged(WINDOWS)

    def accepted_in_changelog() -> list[bool]:
        judged = [json.loads(r.value) for r in kafka.records("g.changelog") if r.key == b"judge/events"]
        return [e["accepted"] for e in judged[-1]["history"] if e["start_ms"] == drifting]

    assert accepted_in_changelog() == [True]
    assert caplog.text.count("format accepted (window") == 1  # the new judge knew it was applied


def test_a_given_source_or_sink_is_refused_for_a_group(tmp_path: Path, bundle_dir: Path,
                                                      serial_bundle: Bundle) -> None:
    with pytest.raises(ConfigError, match="clients"):
        build(settings(tmp_path, bundle_dir, "m0"), scorer=Scorer(serial_bundle), sink=MemorySink())


def test_a_model_the_lead_promotes_takes_over_at_one_boundary_on_every_member(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle,
        retrained_bundle_dir: Path) -> None:
    now_s = [(START_MS + 3 * WINDOW_MS) / 1000]  # the wall clock: a promotion now takes over from window 4
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle, clock=lambda: now_s[0])
    candidate = Scorer(bundle_lib.load(retrained_bundle_dir))
    for name in ("m0", "m1"):  # published on every member, as the runbook asks
        ModelStore(tmp_path / name / "models", None).keep(candidate.bundle)
        group.start(name)
    group.turns(2)
    [lead] = [app for app in group.apps.values() if app.service.store.is_lead]
    decision = SimpleNamespace(outcome="promoted", candidate=candidate.version, reasons=[], summary=lambda: {})
    lead.service.offer_decision(decision, candidate)
    group.turn()
    now_s[0] += 3600  # later on: no event time is ahead of the clock (those would hold their watermark back)
    group.until_judged(WINDOWS)
    schedules = [json.loads(r.value) for r in kafka.records("g.models") if r.key == b"schedule"]
    boundary = START_MS + 4 * WINDOW_MS
    assert schedules[-1]["takeovers"][-1] == [boundary, candidate.version]
    for app in group.apps.values():
        assert [(t.from_ms, t.scorer.version) for t in app.service.pipeline.models.takeovers][-1] == \
            (boundary, candidate.version)
    expected = replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows(), (boundary, candidate))
    assert_as_replayed(group.reports(), expected)
    assert_each_output_once(kafka, rows())


def test_a_quiet_partition_holds_no_hour_open_beyond_its_heartbeat(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    now_s = [time.time()]
    kafka = MemoryKafka(clock=lambda: now_s[0])
    sequences = generate.sample("serial", 600, seed=4)
    # Both partitions in the first window; partition 1 then falls quiet, and partition 0 alone goes on into the
    # third window: the second window is complete once partition 1's heartbeat passes it, the third stays open.
    kafka.produce("events", [(START_MS + i * 100, s.encode()) for i, s in enumerate(sequences[:200])], partitions=2)
    group = Members(kafka, tmp_path, bundle_dir, serial_bundle, clock=lambda: now_s[0])
    group.start("m0")
    group.turns(6)
    assert not any(group.lag()) and group.reports() == []
    now_s[0] += 31  # past window.quiet_seconds
    for i, s in enumerate(sequences[200:]):
        kafka._append("events", 0, None, s.encode(), START_MS + WINDOW_MS + i * 200)
    group.until_judged(2)
    group.turns(4)
    got = group.reports()
    assert [r["start_ms"] for r in got] == [START_MS, START_MS + WINDOW_MS]
    assert [r["count"] for r in got] == [200, WINDOW_MS // 200]


def test_a_model_published_at_the_shared_path_takes_over_at_one_boundary_on_every_member(
        kafka: MemoryKafka, tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle,
        retrained_bundle_dir: Path) -> None:
    """A new bundle saved at the members' shared ``model.path``: the lead alone looks for it, schedules its
    takeover at the window boundary after the wall clock, and every member follows the schedule; the old
    model leaves the schedule once every window before the boundary is judged."""
    published = Path(shutil.copytree(bundle_dir, tmp_path / "published"))
    now_s = [(START_MS + 3 * WINDOW_MS) / 1000]
    # One windows partition: the lead judges the topic, so it is the one to drop the old model from the schedule.
    group = Members(kafka, tmp_path, published, serial_bundle, clock=lambda: now_s[0],
                    promotion={"shadow": False}, state={"windows_partitions": 1})
    for name in ("m0", "m1"):
        group.start(name)
    group.turns(2)
    retrained = Scorer(bundle_lib.load(retrained_bundle_dir))
    bundle_lib.save(retrained.bundle, published)
    for app in group.apps.values():  # the scheduled check of model.path, on every member
        assert app.check_for_new_bundle is not None
        app.check_for_new_bundle()
    assert [retrained.version in app.watcher.seen for app in group.apps.values()].count(True) == 1  # the lead's
    group.turn()
    now_s[0] += 3600
    group.until_judged(WINDOWS)
    schedules = [json.loads(r.value)["takeovers"] for r in kafka.records("g.models") if r.key == b"schedule"]
    boundary = START_MS + 4 * WINDOW_MS
    assert [s for s in schedules if len(s) == 2][0] == [[None, serial_bundle.version], [boundary, retrained.version]]
    assert schedules[-1] == [[None, retrained.version]]
    for app in group.apps.values():
        assert app.service.scorer.version == retrained.version
    got = group.reports()
    assert {r["model_version"] for r in got if r["start_ms"] < boundary} == {serial_bundle.version}
    assert {r["model_version"] for r in got if r["start_ms"] >= boundary} == {retrained.version}
    expected = replayed(settings(tmp_path, bundle_dir, "r"), serial_bundle, rows(), (boundary, retrained))
    assert_as_replayed(got, expected)
    assert_each_output_once(kafka, rows())
