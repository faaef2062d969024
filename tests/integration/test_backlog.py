"""A backlog on several partitions whose event times run at different paces: read in one go, and with kill -9
during the catch-up, the hourly figures equal ``replay`` over the same records, and no record is late."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from monitor.commands.replay import ReplayColumns, replay
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.settings import MonitorConfig

from .kafka_tools import (
    Running,
    assert_same_figures,
    checkpointing_service_config,
    closed_windows,
    new_topic,
    service_config,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
SHARES = (0.55, 0.25, 0.15, 0.05)  # records per partition: event time runs 11x faster per record on the last
WINDOW_S = 60
WINDOWS = 8
PER_WINDOW = 4_000
START_MS = 1_700_000_040_000 // (WINDOW_S * 1000) * (WINDOW_S * 1000)
SETTINGS = {"window": {"length_seconds": WINDOW_S, "allowed_lateness_seconds": 0, "quiet_seconds": 3600},
            "compare": {"min_history": 2}, "batch": {"max_records": 500},
            "kafka": {"consumer": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000,
                                   "max_partition_fetch_bytes": 16384}}}


def records() -> list[tuple[int, int, str]]:
    """(partition, event time, sequence) in event-time order; a partition's share of every window is fixed."""
    sequences = generate.sample("serial", WINDOWS * PER_WINDOW, seed=9)
    step = WINDOW_S * 1000 / PER_WINDOW
    bounds = [sum(SHARES[:p + 1]) for p in range(PARTITIONS)]
    out = []
    for i, sequence in enumerate(sequences):
        slot = (i * 7919 % 1000) / 1000  # spread evenly, deterministically
        partition = next(p for p, bound in enumerate(bounds) if slot < bound)
        out.append((partition, START_MS + int(i * step), sequence))
    return out


@pytest.fixture(scope="module")
def backlog(kafka_broker: Any) -> tuple[str, list[tuple[int, int, str]]]:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "backlog", partitions=PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        futures = [producer.send(topic, value=s.encode(), partition=p, timestamp_ms=t) for p, t, s in records()]
        producer.flush()
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()
    return topic, records()


@pytest.fixture(scope="module")
def replayed(backlog: tuple[str, list[tuple[int, int, str]]], serial_bundle: Bundle,
             tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The same records replayed offline from a file in event-time order."""
    _, rows = backlog
    path = tmp_path_factory.mktemp("replay") / "backlog.jsonl"
    path.write_text("".join(json.dumps({"sequence": s, "timestamp": t}) + "\n" for _, t, s in rows))
    config = config_for_replay()
    judge = HourlyJudge(config.window.length_ms, config.window.allowed_lateness_ms, config.compare)
    result = replay(path, Scorer(serial_bundle), judge, ReplayColumns(), config.input)
    assert result.late == 0 and len(result.reports) == WINDOWS
    return [r.to_dict() for r in result.reports[:-1]]  # the service keeps the last window open


def config_for_replay() -> MonitorConfig:
    from monitor.settings import config_from_dict

    return config_from_dict(SETTINGS, environ={})


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    finally:
        consumer.close()


def finish_after_restart(config: MonitorConfig, config_file: Path, log: Path, topic: str, total: int) -> None:
    """Start the service again, let it commit all ``total`` records and close the windows, stop it with SIGTERM."""
    bootstrap, group = config.kafka.bootstrap_servers[0], config.input.group_id
    last = start_service(config_file, log)
    try:
        wait_for(lambda: committed_total(bootstrap, group, topic) == total, 240, "the rest of the backlog")
        wait_for(lambda: len(closed_windows(config)) >= WINDOWS - 1, 30, "the windows checkpointed")
        last.send_signal(signal.SIGTERM)
        assert last.wait(60) == 0
    finally:
        last.kill()


def test_a_backlog_on_four_partitions_read_in_one_go_equals_replay(
        kafka_broker: Any, backlog: tuple[str, list[tuple[int, int, str]]], bundle_dir: Path,
        serial_bundle: Bundle, replayed: list[dict[str, Any]]) -> None:
    topic, rows = backlog
    config = service_config(kafka_broker.bootstrap_servers, topic, bundle_dir, **SETTINGS)
    with Running(config, serial_bundle) as service:
        wait_for(lambda: service.counts.consumed >= len(rows), 180, "the whole backlog consumed")
        wait_for(lambda: len(closed_windows(config)) >= WINDOWS - 1, 30, "the windows checkpointed")
    assert service.counts.late == 0
    got = closed_windows(config)
    assert [w["count"] for w in got] == [PER_WINDOW] * (WINDOWS - 1)
    assert_same_figures(got, replayed)


@pytest.mark.both_clients
def test_kill_9_during_the_catch_up_then_restart_equals_replay(
        kafka_broker: Any, backlog: tuple[str, list[tuple[int, int, str]]], bundle_dir: Path, tmp_path: Path,
        replayed: list[dict[str, Any]]) -> None:
    topic, rows = backlog
    bootstrap = kafka_broker.bootstrap_servers
    config, config_file = checkpointing_service_config(bootstrap, topic, bundle_dir, tmp_path, **SETTINGS)
    group = config.input.group_id
    for attempt, share in enumerate((0.25, 0.6)):  # two kills, at a quarter and at 60 % of the backlog
        process = start_service(config_file, tmp_path / f"killed-{attempt}.log")
        try:
            wait_for(lambda: committed_total(bootstrap, group, topic) > share * len(rows), 180,
                     f"{share:.0%} of the backlog checkpointed")
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            process.kill()
    finish_after_restart(config, config_file, tmp_path / "last.log", topic, len(rows))
    log = (tmp_path / "last.log").read_text()
    assert " 0 late" in log and "checkpointed offset" in log, log[-2000:]
    assert_same_figures(closed_windows(config), replayed)
