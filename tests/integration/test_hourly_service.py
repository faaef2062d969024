"""Hourly figures survive kill -9 exactly, and replaying the same records offline gives the same figures."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.commands.replay import ReplayColumns, replay
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.timeline import iso_utc
from monitor.settings import MonitorConfig

from .kafka_tools import (
    Running,
    assert_same_figures,
    checkpointing_service_config,
    closed_windows,
    committed_offset,
    new_topic,
    produce,
    service_config,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration

WINDOW_S = 60
WINDOWS = 6
PER_WINDOW = 6_000
START_MS = 1_700_000_040_000 // (WINDOW_S * 1000) * (WINDOW_S * 1000)  # a past, aligned window start
SETTINGS = {"window": {"length_seconds": WINDOW_S, "allowed_lateness_seconds": 0, "quiet_seconds": 3600},
            "compare": {"min_history": 2}, "batch": {"max_records": 500},
            # The killed member's partitions are reassigned after its session times out.
            "kafka": {"consumer": {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}}}


def stream() -> tuple[list[str], list[int]]:
    """Six windows of serials, the fifth with a format drift; event times in order."""
    sequences = generate.sample("serial", WINDOWS * PER_WINDOW, seed=5)
    drift = generate.anomalies("serial", "other_format", PER_WINDOW // 2, set(), seed=5)
    sequences[4 * PER_WINDOW: 4 * PER_WINDOW + len(drift)] = drift
    step = WINDOW_S * 1000 / PER_WINDOW
    return sequences, [START_MS + int(i * step) for i in range(len(sequences))]


@pytest.fixture(scope="module")
def produced(kafka_broker: Any) -> tuple[str, list[str], list[int]]:
    topic = new_topic(kafka_broker.bootstrap_servers, "hourly")
    sequences, times = stream()
    produce(kafka_broker.bootstrap_servers, topic, [s.encode() for s in sequences], times)
    return topic, sequences, times


@pytest.fixture(scope="module")
def uninterrupted(kafka_broker: Any, produced: tuple[str, list[str], list[int]], bundle_dir: Path,
                  serial_bundle: Bundle) -> list[dict[str, Any]]:
    topic, sequences, _ = produced
    config = service_config(kafka_broker.bootstrap_servers, topic, bundle_dir, **SETTINGS)
    with Running(config, serial_bundle) as service:
        wait_for(lambda: service.counts.consumed >= len(sequences), 120, "the whole stream consumed")
    assert service.counts.late == 0
    return closed_windows(config)


def test_the_uninterrupted_run_flags_the_drifting_window(uninterrupted: list[dict[str, Any]]) -> None:
    assert [w["count"] for w in uninterrupted] == [PER_WINDOW] * (WINDOWS - 1)  # the last is still open
    verdicts = [w["verdict"] for w in uninterrupted]
    assert verdicts[:2] == ["learning", "learning"] and verdicts[4] == "critical"
    assert "critical" not in verdicts[:4]


@pytest.mark.both_clients
def test_kill_9_mid_window_then_restart_gives_the_same_hourly_figures(
        kafka_broker: Any, produced: tuple[str, list[str], list[int]], bundle_dir: Path, tmp_path: Path,
        uninterrupted: list[dict[str, Any]]) -> None:
    topic, sequences, _ = produced
    bootstrap = kafka_broker.bootstrap_servers
    config, config_file = checkpointing_service_config(bootstrap, topic, bundle_dir, tmp_path, **SETTINGS)
    group = config.input.group_id

    first = start_service(config_file, tmp_path / "first.log")
    try:
        wait_for(lambda: (committed_offset(bootstrap, group, topic) or 0) > len(sequences) // 3, 120,
                 "a third of the stream checkpointed")
        first.send_signal(signal.SIGKILL)  # mid-window, under load: no shutdown code runs
        first.wait(30)
    finally:
        first.kill()
    killed_at = committed_offset(bootstrap, group, topic)
    assert killed_at is not None and killed_at < len(sequences)

    second = start_service(config_file, tmp_path / "second.log")
    try:
        wait_for(lambda: committed_offset(bootstrap, group, topic) == len(sequences), 180, "the rest consumed")
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    finally:
        second.kill()
    log = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, log
    assert "resuming" in log and "checkpointed offset" in log
    assert_same_figures(closed_windows(config), uninterrupted)


def test_a_lone_instance_idle_on_an_empty_topic_then_fed_records_of_years_ago_loses_none_to_lateness(
        kafka_broker: Any, serial_bundle: Bundle, bundle_dir: Path, tmp_path: Path,
        uninterrupted: list[dict[str, Any]]) -> None:
    """The SQLite store, started before its producer and idle for several ``window.quiet_seconds``, then the
    same records (event times years behind the wall clock), killed -9 mid-stream and restarted: the hours
    are the uninterrupted run's, none cut by the wall clock."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "idle-first")
    settings = {**SETTINGS, "window": {**SETTINGS["window"], "quiet_seconds": 2}}
    config, config_file = checkpointing_service_config(bootstrap, topic, bundle_dir, tmp_path, **settings)
    group = config.input.group_id
    sequences, times = stream()
    first = start_service(config_file, tmp_path / "first.log")
    try:
        wait_for(lambda: "consuming" in (tmp_path / "first.log").read_text(errors="replace"), 120, "the service up")
        # Joining its group takes a few seconds; then caught up with nothing and quiet: idle.
        time.sleep(8 + 4 * config.window.quiet_seconds)
        produce(bootstrap, topic, [s.encode() for s in sequences], times)
        wait_for(lambda: (committed_offset(bootstrap, group, topic) or 0) > len(sequences) // 3, 120,
                 "a third of the stream checkpointed")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    second = start_service(config_file, tmp_path / "second.log")
    try:
        wait_for(lambda: committed_offset(bootstrap, group, topic) == len(sequences), 180, "the rest consumed")
        # Then quiet: the last hours close by the wall time since the latest record, not at once.
        last = f"{iso_utc(START_MS + (WINDOWS - 1) * WINDOW_S * 1000)} closed"
        wait_for(lambda: last in (tmp_path / "second.log").read_text(errors="replace"), 120,
                 "every window closed, the last by idleness")
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    finally:
        second.kill()
    log = (tmp_path / "first.log").read_text(errors="replace") + (tmp_path / "second.log").read_text(errors="replace")
    late = [int(n) for n in re.findall(r"(\d+) late\)", log)]
    assert late and not any(late), "no record counted late"
    got = closed_windows(config)
    assert_same_figures(got[:WINDOWS - 1], uninterrupted)
    assert got[-1]["count"] == PER_WINDOW  # the last hour, closed by idleness, whole


def test_replaying_the_same_records_offline_gives_the_same_figures(
        produced: tuple[str, list[str], list[int]], serial_bundle: Bundle, tmp_path: Path,
        uninterrupted: list[dict[str, Any]]) -> None:
    _, sequences, times = produced
    source = tmp_path / "stream.jsonl"
    source.write_text("".join(json.dumps({"sequence": s, "timestamp": t}) + "\n" for s, t in zip(sequences, times)))
    config = service_config_for_replay()
    pipeline = HourlyJudge(config.window.length_ms, config.window.allowed_lateness_ms,
                              config.compare)
    result = replay(source, Scorer(serial_bundle), pipeline, ReplayColumns(), config.input)
    reports = [r.to_dict() for r in result.reports]
    assert len(reports) == WINDOWS  # replay closes the last window at the end of the file
    assert_same_figures(reports[: WINDOWS - 1], uninterrupted)


def service_config_for_replay() -> MonitorConfig:
    from monitor.settings import config_from_dict

    return config_from_dict(SETTINGS, environ={})


def test_a_stopped_real_time_stream_still_closes_its_last_hour(kafka_broker: Any, bundle_dir: Path,
                                                               serial_bundle: Bundle) -> None:
    """Records stamped with the wall clock, then none: once the partition is idle, its event time moves on
    by the wall time since the last record, and the last window closes about when it ends."""
    from monitor.stream.hooks import NoHooks

    class Closed(NoHooks):
        def __init__(self) -> None:
            self.reports: list[Any] = []

        def on_window_closed(self, report: Any, streak: int) -> None:
            self.reports.append(report)

    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "realtime")
    config = service_config(bootstrap, topic, bundle_dir, window={
        "length_seconds": 5, "allowed_lateness_seconds": 0, "quiet_seconds": 1, "close_check_seconds": 0.2})
    closed = Closed()
    sequences = generate.sample("serial", 300, seed=8)
    with Running(config, serial_bundle, hooks=[closed]) as service:
        for chunk in range(3):  # three bursts a second apart, stamped now
            now = int(time.time() * 1000)
            produce(bootstrap, topic, [s.encode() for s in sequences[chunk * 100:(chunk + 1) * 100]], [now] * 100)
            time.sleep(1)
        wait_for(lambda: service.counts.consumed >= len(sequences), 60, "every record read")
        wait_for(lambda: sum(r.totals.count for r in closed.reports) == len(sequences), 30,
                 "the last window closed with no record after it")
    assert service.counts.late == 0
