"""Several instances in one consumer group with state kept in Kafka (``state.store: kafka``), and a lone
instance with its SQLite store, against a real broker: what only a broker shows. Transactions a killed
member leaves open (aborted by the broker's timeout, or fenced by its restart), producers fenced by the group
coordinator, members dropped by their session, read_committed readers, broker outages, and the commands that
read the group's changelog. The group's own logic (hand-overs, restarts, fenced zombies, the model schedule,
accepted windows, quiet partitions) is checked without a broker in ``tests/stream/test_group.py``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from monitor.commands.replay import ReplayColumns, replay
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.errors import BrokerUnavailable
from monitor.hourly.judge import HourlyJudge
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream.kafka_state import StateProducer

from tests.tolerances import RECORD_REL, SUM_REL, Z_ABS

from .kafka_tools import (
    Running,
    assert_same_figures,
    checkpointing_service_config,
    closed_windows,
    committed_offset,
    new_topic,
    print_stacks,
    service_config,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration

PARTITIONS = 6
WINDOW_S = 60
WINDOWS = 6
PER_WINDOW = 2_400
BAD_EVERY = 997  # one undecodable value in so many: dead letters must be exactly once too
DRIFT_WINDOW = 4  # judged critical: its reasons and top records travel on the reports topic
START_MS = 1_700_000_040_000 // (WINDOW_S * 1000) * (WINDOW_S * 1000)
SETTINGS: dict[str, Any] = {
    "window": {"length_seconds": WINDOW_S, "allowed_lateness_seconds": 0, "quiet_seconds": 3,
               "close_check_seconds": 0.5},
    "compare": {"min_history": 2},
    "batch": {"max_records": 200, "max_wait_ms": 100},
    "kafka": {"consumer": {"session_timeout_ms": 4000, "heartbeat_interval_ms": 1000,
                           "max_partition_fetch_bytes": 8192}},
}


def kafka_settings(**state: Any) -> dict[str, Any]:
    return {**SETTINGS, "state": {"store": "kafka", "checkpoint_interval_seconds": 0.5,
                                  "transaction_timeout_seconds": 10, **state}}


def records() -> list[tuple[int, int, bytes]]:
    """(partition, event time, value) in event-time order, spread over the partitions; a few undecodable; a
    third of ``DRIFT_WINDOW``'s records in foreign formats."""
    sequences = generate.sample("serial", WINDOWS * PER_WINDOW, seed=15)
    drift = generate.anomalies("serial", "other_format", PER_WINDOW // 3, set(), seed=15)
    sequences[DRIFT_WINDOW * PER_WINDOW: DRIFT_WINDOW * PER_WINDOW + len(drift)] = drift
    step = WINDOW_S * 1000 / PER_WINDOW
    out = []
    for i, sequence in enumerate(sequences):
        value = b"\xff\xfe broken" if i % BAD_EVERY == BAD_EVERY - 1 else sequence.encode()
        out.append(((i * 7919) % PARTITIONS, START_MS + int(i * step), value))
    return out


def produce_all(bootstrap: str, topic: str, rows: list[tuple[int, int, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        futures = [producer.send(topic, value=v, partition=p, timestamp_ms=t) for p, t, v in rows]
        producer.flush()
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()


def read_committed(bootstrap: str, topic: str) -> list[Any]:
    """Every committed record of every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def reports(config: MonitorConfig) -> list[dict[str, Any]]:
    """The judged windows on the reports topic, by start."""
    rows = [json.loads(r.value) for r in read_committed(config.kafka.bootstrap_servers[0], config.reports_topic)]
    return sorted(rows, key=lambda r: r["start_ms"])


def assert_same_top_records(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same highest-error records, where errors agree to ``RECORD_REL``: two records whose errors are that close
    may trade places, and one at the list's end may be traded for another as close to the cut."""
    assert got and len(got) == len(expected)
    errors = [x["error"] for x in expected]
    assert [x["error"] for x in got] == pytest.approx(errors, rel=RECORD_REL)
    got_by_sequence = {x["sequence"]: x["error"] for x in got}
    expected_by_sequence = {x["sequence"]: x["error"] for x in expected}
    for sequence in got_by_sequence.keys() & expected_by_sequence.keys():
        assert got_by_sequence[sequence] == pytest.approx(expected_by_sequence[sequence], rel=RECORD_REL), sequence
    cut = errors[-1]
    for sequence, error in {**got_by_sequence, **expected_by_sequence}.items():
        if (sequence in got_by_sequence) != (sequence in expected_by_sequence):
            assert error == pytest.approx(cut, rel=RECORD_REL), f"{sequence} is in one list only, far from the cut"


def assert_equal_figures(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [w["start_ms"] for w in got] == [w["start_ms"] for w in expected]
    for a, b in zip(got, expected):
        assert (a["count"], a["weight_sum"], a["verdict"]) == (b["count"], b["weight_sum"], b["verdict"])
        assert a["formats"] == b["formats"]
        # The reports topic carries the verdict's reasons and the window's top records, as replay's JSON does.
        assert [x["signal"] for x in a["reasons"]] == [x["signal"] for x in b["reasons"]]
        assert_same_top_records(a["top_records"], b["top_records"])
        for key in ("weighted_mean", "weighted_error_sum", "above_threshold_share", "baseline_median",
                    "robust_z", "error_p50", "error_p99"):
            if b[key] is None:
                assert a[key] is None, key
            elif key == "robust_z":
                assert a[key] == pytest.approx(b[key], abs=Z_ABS), key
            else:
                assert a[key] == pytest.approx(b[key], rel=SUM_REL, abs=1e-15), key


@pytest.fixture(scope="module")
def stream(kafka_broker: Any) -> tuple[str, list[tuple[int, int, bytes]]]:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "scale", partitions=PARTITIONS)
    rows = records()
    produce_all(bootstrap, topic, rows)
    return topic, rows


@pytest.fixture(scope="module")
def replayed(stream: tuple[str, list[tuple[int, int, bytes]]], serial_bundle: Bundle,
             tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    _, rows = stream
    path = tmp_path_factory.mktemp("replay") / "stream.jsonl"
    path.write_text("".join(json.dumps({"sequence": v.decode(), "timestamp": t}) + "\n"
                            for _, t, v in rows if not v.startswith(b"\xff")))
    config = config_from_dict(SETTINGS, environ={})
    judge = HourlyJudge(config.window.length_ms, config.window.allowed_lateness_ms, config.compare,
                        config.window.sample_size, config.formats)
    result = replay(path, Scorer(serial_bundle), judge, ReplayColumns(), config.input)
    assert result.late == 0 and len(result.reports) == WINDOWS
    return [r.to_dict() for r in result.reports]


def valid(rows: list[tuple[int, int, bytes]]) -> int:
    return sum(not v.startswith(b"\xff") for _, _, v in rows)


def outputs(config: MonitorConfig) -> tuple[Counter[tuple[int, int]], Counter[tuple[int, int]]]:
    """(partition, offset) of the input records the committed scored events and dead letters name."""
    bootstrap = config.kafka.bootstrap_servers[0]
    scored = Counter((e["source"]["partition"], e["source"]["offset"])
                     for e in (json.loads(r.value) for r in read_committed(bootstrap, config.output.topic)))
    dead = Counter((int(dict(r.headers)["monitor.source.partition"]), int(dict(r.headers)["monitor.source.offset"]))
                   for r in read_committed(bootstrap, config.dead_letter.topic))
    return scored, dead


def assert_exactly_once(config: MonitorConfig, topic: str, rows: list[tuple[int, int, bytes]]) -> None:
    # A member killed inside a transaction holds read_committed readers back until the broker aborts it
    # (state.transaction_timeout_seconds, checked every 10 s): wait for that, then count.
    wait_for(lambda: all(len(c) >= n for c, n in zip(outputs(config), (valid(rows), len(rows) - valid(rows)))),
             90, "every output visible to read_committed readers")
    scored, dead = outputs(config)
    assert len(scored) == valid(rows), "every valid input record has a scored event"
    assert max(scored.values()) == 1, "no scored event is repeated"
    assert len(dead) == len(rows) - valid(rows) and max(dead.values()) == 1


def assert_replays_hours_and_each_output_once(config: MonitorConfig, topic: str, rows: list[tuple[int, int, bytes]],
                                              replayed: list[dict[str, Any]]) -> None:
    got = reports(config)
    assert_equal_figures(got, replayed)
    assert len({r["start_ms"] for r in got}) == len(got), "each hour judged once"
    assert_exactly_once(config, topic, rows)


def group_files(config: MonitorConfig, folder: Path, count: int) -> list[Path]:
    """One configuration file per instance: the same group, each its own local folder and instance id."""
    files = []
    for i in range(count):
        data = config.to_dict()
        data["state"] = {**data["state"], "path": str(folder / f"i{i}" / "state.sqlite"), "instance_id": f"i{i}"}
        path = folder / f"i{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        files.append(path)
    return files


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every instance still running, then wait for each (kill one that overruns). Called from a
    ``finally`` while a failure propagates, it first prints each instance's stacks and last log lines."""
    if sys.exc_info()[1] is not None:
        print_stacks(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def owned_now(log: Path) -> bool:
    """Whether the instance's last assignment gave it at least one input partition."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "restored in" in line]
    return bool(lines) and " 0 input partitions" not in lines[-1]


def consumed_total(config: MonitorConfig, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers[0], group_id=config.input.group_id,
                             enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    finally:
        consumer.close()


@pytest.mark.both_clients
def test_a_group_idle_on_an_empty_topic_fed_records_of_years_ago_through_kills_a_join_and_a_leave_gives_replays_figures(
        kafka_broker: Any, bundle_dir: Path, tmp_path: Path, replayed: list[dict[str, Any]]) -> None:
    """Three members started before their producers, idle (caught up with nothing, quiet) for several
    ``window.quiet_seconds``; then records whose event times are years behind the wall clock. Mid-stream one
    member is killed -9 inside a transaction and never comes back (the broker aborts what it left open once
    ``state.transaction_timeout_seconds`` pass), a fourth joins, another is killed -9 and restarted at once
    under its instance id (its new producer fences the dead one's), and a third leaves cleanly. An idle
    partition gets no mark from the wall clock, so nothing is late: the hours are replay's, the drifting one
    critical with its reasons and top records, each output written once."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "empty", partitions=PARTITIONS)
    rows = records()
    config = service_config(bootstrap, topic, bundle_dir, **kafka_settings())
    files = group_files(config, tmp_path, 4)
    logs = [tmp_path / f"i{i}.log" for i in range(4)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = [start_service(files[i], logs[i]) for i in range(3)]
        wait_for(lambda: all(owned_now(logs[i]) for i in range(3)), 120, "three instances sharing the partitions")
        time.sleep(4 * config.window.quiet_seconds)  # every partition idle, none ever had a record
        produce_all(bootstrap, topic, rows)
        wait_for(lambda: consumed_total(config, topic) > 0.25 * len(rows), 180, "a quarter committed")
        processes[1].send_signal(signal.SIGKILL)  # mid-hour, with an open transaction, as a crash does
        processes[1].wait(10)
        wait_for(lambda: consumed_total(config, topic) > 0.45 * len(rows), 180, "the group going on without it")
        processes.append(start_service(files[3], logs[3]))
        wait_for(lambda: owned_now(logs[3]), 120, "the added instance owning partitions")
        processes[2].send_signal(signal.SIGKILL)
        processes[2].wait(10)
        processes.append(start_service(files[2], tmp_path / "i2-again.log"))  # the same instance id
        processes[0].send_signal(signal.SIGTERM)  # leaves: commits, hands its partitions over
        assert processes[0].wait(60) == 0
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 240, "the whole stream committed")
        wait_for(lambda: len(reports(config)) >= WINDOWS, 90, "every hour judged")
    finally:
        stop_all(processes)
    assert_replays_hours_and_each_output_once(config, topic, rows, replayed)
    critical = [r for r in reports(config) if r["verdict"] == "critical"]
    assert [r["start_ms"] for r in critical] == [START_MS + DRIFT_WINDOW * WINDOW_S * 1000]
    assert critical[0]["reasons"][0]["signal"] == "far_records" and critical[0]["reasons"][0]["records"]
    texts = [log.read_text(errors="replace") for log in [*logs, tmp_path / "i2-again.log"]]
    assert any("transaction aborted" in text or "restored in" in text for text in texts)


def test_a_lone_instance_on_a_partial_assignment_cuts_no_hour(
        kafka_broker: Any, stream: tuple[str, list[tuple[int, int, bytes]]], bundle_dir: Path, tmp_path: Path,
        replayed: list[dict[str, Any]]) -> None:
    """The SQLite store on six partitions, killed -9 mid-stream and restarted, then made to share its group
    for a while with another member (as when the group still lists a dead process) that holds half the
    partitions and reads nothing for it. The lone instance reads its half to the end meanwhile; the other
    half keep their last watermark from the state and hold their hours. No hour closes with part of its
    records, none is late, the hours are replay's."""
    topic, rows = stream
    bootstrap = kafka_broker.bootstrap_servers
    config, config_file = checkpointing_service_config(bootstrap, topic, bundle_dir, tmp_path, **SETTINGS)
    held = threading.Event()

    def another_member() -> None:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=config.input.group_id,
                                 enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
        consumer.subscribe([topic])
        try:
            while not held.is_set():
                consumer.poll(timeout_ms=200)
        finally:
            consumer.close(autocommit=False)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start_service(config_file, tmp_path / "first.log"))
        wait_for(lambda: consumed_total(config, topic) > 0.2 * len(rows), 180, "a fifth committed")
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(10)
        processes.append(start_service(config_file, tmp_path / "second.log"))
        wait_for(lambda: consumed_total(config, topic) > 0.3 * len(rows), 180, "the restart reading")
        member = threading.Thread(target=another_member, daemon=True)
        member.start()
        time.sleep(15)  # the instance reads its part to the end meanwhile
        held.set()
        member.join(30)
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 240, "the whole stream committed")
        wait_for(lambda: len(closed_windows(config)) >= WINDOWS, 120, "every hour closed, the last by idleness")
    finally:
        held.set()
        stop_all(processes)
    log = (tmp_path / "first.log").read_text(errors="replace") + (tmp_path / "second.log").read_text(errors="replace")
    assignments: dict[str, set[str]] = {}  # the partitions each assignment handed over, by the second it came
    for second, partition in re.findall(r"^(\S+ \d\d:\d\d:\d\d),\d+ .*resuming \S+\[(\d+)\]", log, re.MULTILINE):
        assignments.setdefault(second, set()).add(partition)
    assert any(len(parts) < PARTITIONS for parts in assignments.values()), "the instance read part of the topic"
    assert not any(int(n) for n in re.findall(r"(\d+) late\)", log)), "no record counted late"
    assert_same_figures(closed_windows(config), replayed)


@pytest.mark.both_clients
def test_a_member_paused_past_its_session_alone_then_while_another_takes_over_writes_every_record_once(
        kafka_broker: Any, bundle_dir: Path, tmp_path: Path) -> None:
    """Paused past its session (a stalled host, a long GC), first alone, three times mid-stream with a batch in
    an open transaction: its next commit is refused as coming from an unknown member, and when it rejoins the
    group has no other member to have taken over. Then paused while a second instance takes every partition
    over: resumed, it is fenced and its writes stay invisible."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "fence", partitions=2)
    config = service_config(bootstrap, topic, bundle_dir, **kafka_settings())
    first, second = group_files(config, tmp_path, 2)
    rows = [(i % 2, START_MS + i * 5, s.encode()) for i, s in enumerate(generate.sample("serial", 22_000, seed=8))]
    alone = 18_000
    log = tmp_path / "zombie.log"
    zombie = start_service(first, log)
    other: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: owned_now(log), 120, "the first instance owning the partitions")
        for part in range(3):
            produce_all(bootstrap, topic, rows[part * 6000:(part + 1) * 6000])
            time.sleep(1.0 + 0.4 * part)  # mid-stream, with a batch in an open transaction
            zombie.send_signal(signal.SIGSTOP)
            time.sleep(6)  # past its 4 s session
            zombie.send_signal(signal.SIGCONT)
        wait_for(lambda: consumed_total(config, topic) >= alone, 240, "the paused instance's stream committed")
        assert "the group dropped this member" in log.read_text(errors="replace"), "the pauses outlasted the session"
        produce_all(bootstrap, topic, rows[alone:alone + 2000])
        wait_for(lambda: consumed_total(config, topic) >= alone + 2000, 120, "the next records committed")
        produce_all(bootstrap, topic, rows[alone + 2000:])
        time.sleep(0.3)  # let it take a batch into an open transaction
        zombie.send_signal(signal.SIGSTOP)
        other = start_service(second, tmp_path / "other.log")
        wait_for(lambda: owned_now(tmp_path / "other.log"), 120, "the second instance taking every partition")
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 120, "the rest committed by the other")
        zombie.send_signal(signal.SIGCONT)
        time.sleep(8)  # the resumed instance tries to finish its batch and commit
    finally:
        zombie.send_signal(signal.SIGCONT)
        stop_all([p for p in (zombie, other) if p is not None])
    scored = Counter((e["source"]["partition"], e["source"]["offset"])
                     for e in (json.loads(r.value) for r in read_committed(bootstrap, config.output.topic)))
    assert len(scored) == len(rows) and max(scored.values()) == 1, "the resumed instance's writes stay invisible"


def test_offsets_of_an_aborted_transaction_never_reach_a_later_commit(kafka_broker: Any) -> None:
    # A commit refused because the group moved on (a snapshot of a member's generation taken before another
    # member joined: what a dropped member holds), then aborted: the next transaction commits its own
    # offsets only. kafka-python (pinned) would carry the refused ones over.
    bootstrap = kafka_broker.bootstrap_servers
    topic, out = new_topic(bootstrap, "aborted", partitions=2), new_topic(bootstrap, "aborted-out")
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = config_from_dict({"kafka": {"bootstrap_servers": [bootstrap]}}, environ={})
    members = [KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000) for _ in range(2)]
    producer = StateProducer(config.kafka, f"{group}-tx", 10_000)
    try:
        joined = members[0]
        wait_for(lambda: bool(joined.poll(timeout_ms=200) is not None and joined.assignment()), 60, "one member")
        stale = joined.group_metadata()
        wait_for(lambda: all(m.poll(timeout_ms=200) is not None and m.assignment() for m in members)
                 and joined.group_metadata().generation_id != stale.generation_id, 60, "a second member joined")
        producer.send(out, "k", b"aborted")
        with pytest.raises(KafkaError):
            producer.commit({(topic, 0): 5, (topic, 1): 7}, SimpleNamespace(group_metadata=lambda: stale))
        producer.abort()
        producer.send(out, "k", b"committed")
        producer.commit({(topic, 0): 1}, joined)
        assert committed_offset(bootstrap, group, topic, 0) == 1
        assert committed_offset(bootstrap, group, topic, 1) is None
    finally:
        producer.close()
        for member in members:
            member.close()


def test_a_transaction_step_the_cluster_never_answers_fails_instead_of_waiting_for_ever(
        restartable_kafka_broker: Any) -> None:
    # The sends landed, then the broker went away: the offsets' step of the commit gets no answer. kafka-python
    # (pinned) would wait for it without end (a member hung for good after a broker restart).
    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic, out = new_topic(bootstrap, "unanswered", partitions=1), new_topic(bootstrap, "unanswered-out")
    group = f"g-{uuid.uuid4().hex[:8]}"
    member = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    producer = StateProducer(config_from_dict({"kafka": {"bootstrap_servers": [bootstrap]}}, environ={}).kafka,
                             f"{group}-tx", 10_000)
    outcome: list[BaseException | None] = []
    try:
        wait_for(lambda: member.poll(timeout_ms=200) is not None and bool(member.assignment()), 60, "a member")
        metadata = member.group_metadata()
        producer.send(out, "k", b"sent")
        producer.producer.flush(timeout=30)
        broker.stop()

        def commit() -> None:
            try:
                producer.commit({(topic, 0): 1}, SimpleNamespace(group_metadata=lambda: metadata))
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the outcome is what is checked
                outcome.append(exc)

        worker = threading.Thread(target=commit, daemon=True)
        worker.start()
        worker.join(180)
        assert not worker.is_alive(), "the commit is still waiting for the cluster"
        assert isinstance(outcome[0], BrokerUnavailable)
    finally:
        producer.discard()
        member.close()


@pytest.mark.both_clients
def test_two_members_through_a_broker_outage_give_replays_figures_and_every_record_once(
        restartable_kafka_broker: Any, bundle_dir: Path, tmp_path: Path, replayed: list[dict[str, Any]]) -> None:
    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic = new_topic(bootstrap, "outage2", partitions=PARTITIONS)
    rows = records()
    produce_all(bootstrap, topic, rows[:len(rows) // 2])
    # The default transaction timeout (30 s), which a transaction step's own timeout (30 s) equals. A commit every
    # 10 s, not every 0.5 s: a single broker that goes away while it writes a committing transaction's markers
    # can leave that transaction hanging (below); with rare commits the outage seldom meets one.
    settings = kafka_settings(transaction_timeout_seconds=30, checkpoint_interval_seconds=10)
    settings["kafka"] = {**settings["kafka"], "reconnect_after_seconds": 10}
    # The outage (45 s, then the reconnects) outlasts window.quiet_seconds (3 s): a partition whose broker is
    # not answering is not idle, so no hour closes before the second half arrives. It outlasts the members'
    # sessions, the transaction timeout and a step's timeout too: steps fail on the client, the coordinator
    # aborts, the group forms anew.
    config = service_config(bootstrap, topic, bundle_dir, **settings)
    files = group_files(config, tmp_path, 2)
    logs = [tmp_path / f"i{i}.log" for i in range(2)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = [start_service(files[i], logs[i]) for i in range(2)]
        wait_for(lambda: all(owned_now(log) for log in logs), 120, "two instances sharing the partitions")
        wait_for(lambda: consumed_total(config, topic) > 0.2 * len(rows), 180, "a fifth committed")
        # A crash, not a clean stop: a single broker that stops cleanly while it writes a transaction's markers
        # finds its partitions without a leader, skips them as deleted, and leaves the transaction hanging
        # (seen in about one run in three; a crash in the middle of a commit was seen to do it once too, at
        # the restart). No member can end that; test_group covers what a member then says.
        broker.crash()
        time.sleep(45)
        assert all(p.poll() is None for p in processes), "an instance stopped during the outage"
        broker.start()
        produce_all(bootstrap, topic, rows[len(rows) // 2:])
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 240, "the whole stream committed")
        wait_for(lambda: len(reports(config)) >= WINDOWS, 150, "every hour judged")
    finally:
        stop_all(processes)
    assert_replays_hours_and_each_output_once(config, topic, rows, replayed)


def test_a_lone_instance_through_a_broker_outage_loses_nothing_to_lateness(
        restartable_kafka_broker: Any, bundle_dir: Path, tmp_path: Path, replayed: list[dict[str, Any]]) -> None:
    """The SQLite store through an outage longer than a window, half the stream before it and half after,
    its producers back a little after the broker (longer than ``window.quiet_seconds``): the outage is not
    quiet time, so the open hour does not close by it and nothing of the second half is late; the hours are
    replay's."""
    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic = new_topic(bootstrap, "outage1", partitions=PARTITIONS)
    rows = records()
    produce_all(bootstrap, topic, rows[:len(rows) // 2])
    # Quiet after 10 s: the broker stops well before the caught-up partitions could be idle, and stays away
    # longer than a window; were the outage counted as quiet, the open hour would close and the rest be late.
    config, config_file = checkpointing_service_config(bootstrap, topic, bundle_dir, tmp_path, **{
        **SETTINGS, "window": {**SETTINGS["window"], "quiet_seconds": 10},
        "kafka": {**SETTINGS["kafka"], "reconnect_after_seconds": 10}})
    log = tmp_path / "lone.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start_service(config_file, log))
        wait_for(lambda: consumed_total(config, topic) >= len(rows) // 2, 180, "the first half committed")
        broker.stop()
        time.sleep(WINDOW_S + 10)
        assert processes[0].poll() is None, "the instance stopped during the outage"
        broker.start()
        # The loop waits in a commit through the outage; once it runs again the producers take a while (longer
        # than window.quiet_seconds, far less than a window) to come back.
        wait_for(lambda: "reachable again" in log.read_text(errors="replace"), 120, "the instance reconnected")
        time.sleep(30)
        produce_all(bootstrap, topic, rows[len(rows) // 2:])
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 240, "the whole stream committed")
        wait_for(lambda: len(closed_windows(config)) >= WINDOWS, 120, "every hour closed")
    finally:
        stop_all(processes)
    text = log.read_text(errors="replace")
    assert "broker unavailable" in text, "the outage was seen as such"
    assert not any(int(n) for n in re.findall(r"(\d+) late\)", text)), "no record counted late"
    assert_same_figures(closed_windows(config), replayed)


@pytest.mark.both_clients
def test_one_instance_with_state_in_kafka_judges_as_replay_and_candidate_and_accept_work_on_its_changelog(
        kafka_broker: Any, stream: tuple[str, list[tuple[int, int, bytes]]], bundle_dir: Path,
        retrained_bundle_dir: Path, serial_bundle: Bundle, replayed: list[dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One instance on the whole stream: its hours are replay's (the drifting one critical, with its reasons
    and top records on the reports topic), each output committed once; then ``candidate`` and ``accept`` read
    and write the group's changelog and models topic, and the running judge applies the acceptance."""
    from monitor.commands.promotion import run_accept, run_candidate
    from monitor.stream.kafka_state import ChangelogReader

    topic, rows = stream
    config = service_config(kafka_broker.bootstrap_servers, topic, bundle_dir, **kafka_settings())
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))

    def history() -> list[dict[str, Any]]:
        reader = ChangelogReader(config.kafka, config.changelog_topic)
        try:
            state, _ = reader.read()
        finally:
            reader.close()
        stored = state.get(f"judge/{topic}")
        return json.loads(stored)["history"] if stored else []

    with Running(config, serial_bundle) as service:
        wait_for(lambda: service.pipeline.counts.consumed >= len(rows), 240, "the whole stream consumed")
        wait_for(lambda: len(reports(config)) >= WINDOWS, 60, "every hour judged")
        judged = reports(config)
        wait_for(lambda: len(history()) >= WINDOWS, 240, "every window judged and committed")
        code = run_candidate(model_dir=bundle_dir, candidate_dir=retrained_bundle_dir, state_path=None,
                             config_path=config_file, as_json=True)
        compared = json.loads(capsys.readouterr().out)
        assert code in (0, 5) and len(compared["per_window"]) == WINDOWS  # every judged window, from the changelog
        start = history()[2]["start_ms"]
        assert run_accept(state_path=None, config_path=config_file, window=str(start)) == 0
        wait_for(lambda: any(h["start_ms"] == start and h["accepted"] for h in history()), 60,
                 "the judge applying the acceptance and committing it")
    assert service.pipeline.counts.late == 0
    assert_equal_figures(judged, replayed)
    critical = [r for r in judged if r["verdict"] == "critical"]
    assert [r["start_ms"] for r in critical] == [START_MS + DRIFT_WINDOW * WINDOW_S * 1000]
    assert critical[0]["reasons"][0]["signal"] == "far_records" and critical[0]["reasons"][0]["records"]
    assert_exactly_once(config, topic, rows)
    assert [h["start_ms"] for h in history() if h["accepted"]] == [start]
