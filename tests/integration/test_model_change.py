"""Model changes against a real broker.

A model published while the service reads a backlog on four partitions, with kill -9 after the promotion: the
hourly figures equal ``replay`` with the same change (``--model-change`` at the boundary the service chose).
A bundle copied into ``model.path`` file by file, over the bundle in use, is taken once complete: while
it is not, the current model goes on scoring and the new version is not refused."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from monitor.commands.replay import ReplayColumns, replay
from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.ops.lifecycle import BundleWatcher
from monitor.settings import config_from_dict
from monitor.stream.state import StateStore

from .kafka_tools import (
    Running,
    assert_same_figures,
    checkpointing_service_config,
    closed_windows,
    new_topic,
    produce,
    service_config,
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
COPY_SETTINGS = {**CHANGE_SETTINGS, "reload": {"check_interval_seconds": 0.2}}
LIFECYCLE_LOGGER = "monitor.ops.lifecycle"


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


@pytest.mark.both_clients
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


class CountedChecks:
    """The watcher's scheduled check, counted: a test can wait for a check that began after a change to
    ``model.path`` to have finished (the scheduler runs one check at a time)."""

    def __init__(self, watcher: BundleWatcher) -> None:
        self.watcher = watcher
        self.started = self.finished = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self.started += 1
        try:
            return self.watcher.check()
        finally:
            with self._lock:
                self.finished += 1

    def wait_for_one_after_now(self, what: str) -> None:
        with self._lock:
            begun = self.started
        wait_for(lambda: self.finished > begun, 30, f"a check of model.path after {what}")


def test_a_bundle_copied_file_by_file_over_the_one_in_use_is_promoted_once_complete(
        kafka_broker: Any, bundle_dir: Path, retrained_bundle_dir: Path, serial_bundle: Bundle,
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    # What `cp new/* model.path/` does: the files in name order, bundle.json first, each overwriting the file
    # of the bundle in use. The watcher checks model.path between every two files (and sees the largest file
    # half written) while records flow. Only once every file matches the new bundle.json is the new version a
    # candidate, and then it is promoted as a bundle published whole is.
    caplog.set_level(logging.INFO, logger=LIFECYCLE_LOGGER)
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "copied-bundle")
    published = Path(shutil.copytree(bundle_dir, tmp_path / "published"))
    config = service_config(bootstrap, topic, published, **COPY_SETTINGS)
    state_path = Path(config.state.path)
    old, new = serial_bundle.version, bundle_lib.load(retrained_bundle_dir).version
    manifest, *rest = sorted(p.name for p in retrained_bundle_dir.iterdir())
    assert manifest == bundle_lib.MANIFEST and old != new
    assert sorted(p.name for p in published.iterdir()) == [manifest, *rest]  # every file is overwritten
    sequences = iter(generate.sample("serial", 1000, seed=11))
    sent = 0

    def send(window: int) -> None:
        """Forty records of the ``window``-th window from ``START_MS``."""
        nonlocal sent
        start, step = START_MS + window * WINDOW_S * 1000, WINDOW_S * 1000 // 40
        produce(bootstrap, topic, [next(sequences).encode() for _ in range(40)],
                [start + i * step for i in range(40)])
        sent += 40

    def not_complete_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == LIFECYCLE_LOGGER and "not complete yet" in r.getMessage() and new in r.getMessage()]

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("monitor.") and "refused" in r.getMessage()]

    def still_the_old_model() -> None:
        """Not complete yet: looked at again at every check, neither taken nor refused."""
        assert service.scorer.version == old and new not in watcher.seen and new in watcher.incomplete_since
        assert decisions(state_path) == [] and refusals() == []

    running = Running(config, serial_bundle)
    watcher = running.app.watcher
    checks = CountedChecks(watcher)
    running.app.check_for_new_bundle = checks  # the watcher's own check, on the service's schedule
    with running as service:
        send(0)
        wait_for(lambda: service.counts.consumed == sent, 60, "the first window's records scored")

        shutil.copyfile(retrained_bundle_dir / manifest, published / manifest)
        wait_for(lambda: bool(not_complete_lines()), 30, "the service to see the new bundle as not complete yet")
        still_the_old_model()
        for name in rest[:-1]:
            if name == bundle_lib.MODEL_FILE:  # the largest file, seen while it is being copied
                data = (retrained_bundle_dir / name).read_bytes()
                (published / name).write_bytes(data[:len(data) // 2])
                checks.wait_for_one_after_now(f"half of {name} was copied")
                still_the_old_model()
            shutil.copyfile(retrained_bundle_dir / name, published / name)
            checks.wait_for_one_after_now(f"{name} was copied")
            still_the_old_model()
            send(1)  # records go on being scored by the model in use
        # Every record sent so far scored: the promotion finds the latest event in the second window.
        wait_for(lambda: service.counts.consumed == sent, 60, "the records sent while copying scored")
        shutil.copyfile(retrained_bundle_dir / rest[-1], published / rest[-1])  # the bundle is complete
        wait_for(lambda: service.scorer.version == new, 60, "the copied bundle promoted")
        send(2)
        send(3)  # its records close the window before
        wait_for(lambda: len(closed_windows(config)) == 3, 60, "three windows closed")

    assert checks.finished > len(rest) + 1  # a check between every two files, and one on the half-copied file
    assert len(not_complete_lines()) == 1  # one line, however many checks saw the bundle incomplete
    assert refusals() == [] and new in watcher.seen and new not in watcher.incomplete_since
    [decision] = decisions(state_path)
    assert decision["candidate"] == new and decision["outcome"] == "promoted_unshadowed"
    assert decision["from_ms"] == START_MS + 2 * WINDOW_S * 1000  # the window open at promotion keeps its model
    assert [w["model_version"] for w in closed_windows(config)] == [old, old, new]
