"""Helpers for tests against a real broker: topics, producing, reading a topic back, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from monitor.settings import MonitorConfig, config_from_dict
from tests.tolerances import SUM_REL


# The client library the configurations below name: set per test by the ``kafka_library`` fixture.
LIBRARY = "kafka-python"


def new_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    # uuid-named, so reruns against a long-lived cluster never see old data.
    topic = f"{prefix}-{uuid.uuid4().hex[:12]}"
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                            wait_for_metadata=True)
    return topic


def produce(bootstrap: str, topic: str, values: Sequence[bytes | None],
            timestamps_ms: Sequence[int] | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, value=v, key=f"k{i}".encode(), headers=[("origin", b"test")],
                                 timestamp_ms=timestamps_ms[i] if timestamps_ms else None)
                   for i, v in enumerate(values)]
        producer.flush()
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, at_least: int, timeout_s: float = 30.0) -> list[Any]:
    """Every record of partition 0 of ``topic`` once at least ``at_least`` are there (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            end = consumer.end_offsets([partition])[partition]
            if len(records) >= at_least and consumer.position(partition) >= end:
                break
        return records
    finally:
        consumer.close()


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def service_config(bootstrap: str, topic: str, bundle_dir: Path, **sections: dict[str, Any]) -> MonitorConfig:
    """A configuration for ``topic`` with its own group, dead-letter and output topics."""
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": [bootstrap], "library": LIBRARY},
        "input": {"topics": [topic], "group_id": f"g-{uuid.uuid4().hex[:8]}"},
        "batch": {"max_records": 100, "max_wait_ms": 100},
        "model": {"path": str(bundle_dir)},
        "dead_letter": {"topic": new_topic(bootstrap, "dlq")},
        "output": {"topic": new_topic(bootstrap, "scored")},
        "shutdown": {"timeout_seconds": 20},
        "state": {"path": str(Path(tempfile.mkdtemp(prefix="monitor-state-")) / "state.sqlite"),
                  "checkpoint_interval_seconds": 1},
        "metrics": {"enabled": False},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    data["kafka"]["bootstrap_servers"] = [bootstrap]
    return config_from_dict(data, environ={})


def source_offsets(records: Sequence[Any], from_headers: bool) -> list[int]:
    """The input offsets that output or dead-letter records name."""
    import json

    if from_headers:
        return [int(dict(r.headers)["monitor.source.offset"]) for r in records]
    return [json.loads(r.value)["source"]["offset"] for r in records]


class Running:
    """A service built as ``monitor run`` builds it (``monitor.app.build``: checkpoint restored, scheduled
    jobs), on a thread."""

    def __init__(self, config: MonitorConfig, bundle: Any, hooks: Sequence[Any] = ()) -> None:
        from monitor.app import build
        from monitor.core.score import Scorer

        app = build(config, scorer=Scorer(bundle), hooks=hooks)
        assert app is not None
        self.app = app
        self.service = app.service
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.scheduler: Any = None

    def __enter__(self) -> Any:
        self.scheduler = self.app.start_jobs()
        self.thread.start()
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.service.request_stop()
        self.thread.join(60)
        self.scheduler.shutdown(wait=False)
        assert not self.thread.is_alive(), "the service did not stop"


def closed_windows(config: MonitorConfig) -> list[dict[str, Any]]:
    from monitor.stream.state import StateStore

    store = StateStore(config.state.path)
    try:
        return store.closed_windows()
    finally:
        store.close()


def assert_same_figures(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [w["start_ms"] for w in got] == [w["start_ms"] for w in expected]
    for a, b in zip(got, expected):
        assert (a["count"], a["weight_sum"], a["verdict"]) == (b["count"], b["weight_sum"], b["verdict"])
        for key in ("weighted_mean", "weighted_error_sum", "above_threshold_share", "baseline_median"):
            if b[key] is None:  # no baseline yet: both learning
                assert a[key] is None, key
            else:
                assert a[key] == pytest.approx(b[key], rel=SUM_REL, abs=1e-15), key


def checkpointing_service_config(bootstrap: str, topic: str, bundle_dir: Path, folder: Path,
                                 **sections: dict[str, Any]) -> tuple[MonitorConfig, Path]:
    """A configuration checkpointing every half second into ``folder``, and the YAML file that holds it (for
    ``monitor run`` in a process of its own)."""
    config = service_config(bootstrap, topic, bundle_dir, **{**sections, "state": {
        "path": str(folder / "state.sqlite"), "checkpoint_interval_seconds": 0.5}})
    config_file = folder / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    return config, config_file


# Each started service's log, by process id (``print_stacks``).
_SERVICE_LOGS: dict[int, Path] = {}


def start_service(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m monitor run`` in a process of its own; its log goes to a file (an undrained pipe would
    block the service once it filled)."""
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                                   stderr=handle, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _SERVICE_LOGS[process.pid] = log
    return process


def print_stacks(processes: Sequence[subprocess.Popen[bytes]], lines: int = 120) -> None:
    """Have every service still running write its threads' stacks into its log (SIGUSR1), then print each
    log's last ``lines``: a failed wait then shows where each instance was, even one blocked in C code."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGUSR1)
    time.sleep(2)
    for process in processes:
        log = _SERVICE_LOGS.get(process.pid)
        if log is not None and log.exists():
            state = "running" if process in running else f"exited {process.returncode}"
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {log.name} ({state}), its last {len(tail)} lines ---", *tail, sep="\n")
