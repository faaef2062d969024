"""A model published while the service reads a backlog on four partitions, with kill -9 after the promotion:
the hourly figures equal ``replay`` with the same change (``--model-change`` at the boundary the service chose)."""

from __future__ import annotations

import json
import shutil
import signal
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.replay import ReplayColumns, replay
from monitor.settings import config_from_dict
from monitor.stream.state import StateStore

from .kafka_tools import (
    assert_same_figures,
    checkpointing_service_config,
    closed_windows,
    new_topic,
    start_service,
    wait_for,
)
from .test_backlog import (
    PER_WINDOW,
    SETTINGS,
    START_MS,
    WINDOW_S,
    WINDOWS,
    committed_total,
    finish_after_restart,
)

pytestmark = pytest.mark.integration

# Promotion mechanics only: whether the candidate passes its shadow comparison is tested on its own.
CHANGE_SETTINGS = {**SETTINGS, "reload": {"check_interval_seconds": 0.5}, "promotion": {"shadow": False}}


def records() -> list[tuple[int, int, str]]:
    """(partition, event time, sequence): four partitions at one pace, so the latest event time seen while
    the backlog is read (which a promotion waits for) stays near the middle of the stream."""
    sequences = generate.sample("serial", WINDOWS * PER_WINDOW, seed=10)
    step = WINDOW_S * 1000 / PER_WINDOW
    return [(i % 4, START_MS + int(i * step), sequence) for i, sequence in enumerate(sequences)]


def decisions(state_path: Path) -> list[dict[str, Any]]:
    if not state_path.exists():
        return []
    with closing(StateStore(state_path)) as state:
        return state.decisions()


def send(bootstrap: str, topic: str, rows: list[tuple[int, int, str]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        for partition, time_ms, sequence in rows:
            producer.send(topic, value=sequence.encode(), partition=partition, timestamp_ms=time_ms)
        producer.flush()
    finally:
        producer.close()


def test_kill_9_after_a_promotion_then_restart_equals_replay_with_the_same_change(
        kafka_broker: Any, bundle_dir: Path, retrained_bundle_dir: Path, serial_bundle: Bundle,
        tmp_path: Path) -> None:
    # Four windows are read, a new model is published and promoted (from the fifth window), two more windows
    # arrive and the service is killed with -9 while it reads them; restarted, it reads the last two.
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "model-change", partitions=4)
    rows = records()
    first, during, last = (rows[:4 * PER_WINDOW], rows[4 * PER_WINDOW:6 * PER_WINDOW], rows[6 * PER_WINDOW:])
    published = Path(shutil.copytree(bundle_dir, tmp_path / "published"))
    config, config_file = checkpointing_service_config(bootstrap, topic, published, tmp_path, **CHANGE_SETTINGS)
    group, state_path = config.input.group_id, Path(config.state.path)
    retrained = Scorer(bundle_lib.load(retrained_bundle_dir))

    send(bootstrap, topic, first)
    process = start_service(config_file, tmp_path / "killed.log")
    try:
        wait_for(lambda: committed_total(bootstrap, group, topic) == len(first), 180, "four windows checkpointed")
        bundle_lib.save(retrained.bundle, published)  # a new model is published
        wait_for(lambda: any(d["outcome"] == "promoted_unshadowed" for d in decisions(state_path)), 60,
                 "the promotion recorded")
        send(bootstrap, topic, during)
        wait_for(lambda: committed_total(bootstrap, group, topic) > len(first) + len(during) // 2, 60,
                 "half of the next two windows checkpointed")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    send(bootstrap, topic, last)
    finish_after_restart(config, config_file, tmp_path / "last.log", topic, len(rows))

    promoted = [d for d in decisions(state_path) if d["candidate"] == retrained.version]
    boundary = promoted[-1]["from_ms"]
    assert boundary == START_MS + 4 * WINDOW_S * 1000  # the first window after the one open at promotion
    got = closed_windows(config)
    assert [w["model_version"] for w in got] == [serial_bundle.version] * 4 + [retrained.version] * (WINDOWS - 5)
    assert all(w["verdict"] != "learning" for w in got[2:])  # min_history is 2: the change costs nothing

    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"sequence": s, "timestamp": t}) + "\n" for _, t, s in rows))
    replay_config = config_from_dict(SETTINGS, environ={})
    judge = HourlyJudge(replay_config.window.length_ms, replay_config.window.allowed_lateness_ms,
                        replay_config.compare)
    result = replay(path, Scorer(serial_bundle), judge, ReplayColumns(), replay_config.input,
                    changes=[(boundary, retrained)])
    expected = [r.to_dict() for r in result.reports[:-1]]  # the service keeps the last window open
    assert_same_figures(got, expected)
    assert [w["model_version"] for w in got] == [w["model_version"] for w in expected]
    assert [w["baseline_estimated"] for w in got] == [w["baseline_estimated"] for w in expected]
