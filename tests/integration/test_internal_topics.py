"""Bad records on the group's own topics, against a real broker: a truncated changelog value and garbage on
the windows topic are named and passed over (an older changelog value is used), a key with no readable value
stops its partition alone until ``python -m monitor state drop-key`` removes it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from monitor.settings import MonitorConfig
from monitor.stream.group_state import partition_key
from monitor.stream.kafka_state import ChangelogReader, ensure_topics, internal_topics

from .kafka_tools import new_topic, service_config, start_service, wait_for
from .test_scale_out import (
    PARTITIONS,
    WINDOWS,
    assert_equal_figures,
    assert_exactly_once,
    consumed_total,
    group_files,
    kafka_settings,
    outputs,
    produce_all,
    records,
    replayed,  # noqa: F401 - a fixture
    reports,
    stop_all,
    stream,  # noqa: F401 - a fixture of replayed
    valid,
)

pytestmark = pytest.mark.integration


def write(config: MonitorConfig, topic: str, key: str, value: bytes) -> tuple[int, int]:
    """One record on ``topic``; its (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers[0], acks="all")
    try:
        meta = producer.send(topic, key=key.encode(), value=value).get(timeout=10)
        return meta.partition, meta.offset
    finally:
        producer.close()


def committed(config: MonitorConfig, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers[0], group_id=config.input.group_id,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


def monitor_state(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "state", *args, "--config", str(config_file)],
                          capture_output=True, text=True, timeout=120)


def test_a_truncated_changelog_value_and_garbage_on_the_windows_topic_are_named_and_passed_over(
        kafka_broker: Any, bundle_dir: Path, tmp_path: Path, replayed: list[dict[str, Any]]) -> None:  # noqa: F811
    """Two members read half the stream and stop; then the latest value of one partition's state is written
    back cut in half, and a record that is not JSON goes to the windows topic under the input topic's key.
    Restarted, the members name both (topic, partition, offset, key), take that partition over from its
    previous value (reading again what came after it) and skip the garbage: every hour is replay's."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "poison", partitions=PARTITIONS)
    rows = records()
    half = len(rows) // 2
    produce_all(bootstrap, topic, rows[:half])
    config = service_config(bootstrap, topic, bundle_dir, **kafka_settings())
    files = group_files(config, tmp_path, 2)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = [start_service(files[i], tmp_path / f"i{i}.log") for i in range(2)]
        wait_for(lambda: consumed_total(config, topic) >= half, 180, "the first half committed")
        stop_all(processes)
        reader = ChangelogReader(config.kafka, config.changelog_topic)
        try:
            state, _ = reader.read()
        finally:
            reader.close()
        key = partition_key((topic, 0))
        bad_partition, bad_offset = write(config, config.changelog_topic, key, state[key][: len(state[key]) // 2])
        windows_partition, windows_offset = write(config, config.windows_topic, topic, b'{"topic": "' + b"x" * 40)
        processes = [start_service(files[i], tmp_path / f"again{i}.log") for i in range(2)]
        produce_all(bootstrap, topic, rows[half:])
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 240, "the whole stream committed")
        wait_for(lambda: len(reports(config)) >= WINDOWS, 120, "every hour judged")
    finally:
        stop_all(processes)
    log = "".join((tmp_path / f"again{i}.log").read_text(errors="replace") for i in range(2))
    assert (f"unreadable record in the changelog {config.changelog_topic}[{bad_partition}] at offset {bad_offset} "
            f"(key '{key}')") in log
    assert "restored from the older value at offset" in log
    assert (f"unreadable record on the windows topic {config.windows_topic}[{windows_partition}] at offset "
            f"{windows_offset} (key '{topic}'), skipped") in log
    got = reports(config)
    assert_equal_figures(got, replayed)
    assert len({r["start_ms"] for r in got}) == len(got), "each hour judged once"
    scored, dead = outputs(config)
    assert len(scored) == valid(rows) and len(dead) == len(rows) - valid(rows), "every record has its output"


def test_a_partition_whose_state_never_reads_stops_alone_until_its_key_is_dropped(
        kafka_broker: Any, bundle_dir: Path, tmp_path: Path, replayed: list[dict[str, Any]]) -> None:  # noqa: F811
    """The changelog holds nothing readable for partition 0 (a tool wrote to the wrong topic). A member reads
    every other partition to its end and stops partition 0 alone, naming the key; its hours wait. ``state
    show`` names the unreadable value (exit 5), ``state drop-key`` removes it; the member takes partition 0
    up at its next try: every hour is replay's and every output written once."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "stopped", partitions=PARTITIONS)
    rows = records()
    produce_all(bootstrap, topic, rows)
    config = service_config(bootstrap, topic, bundle_dir, **kafka_settings())
    [config_file] = group_files(config, tmp_path, 1)
    ensure_topics(config.kafka, internal_topics(config.changelog_topic, config.windows_topic,
                                                config.state.windows_partitions, config.reports_topic,
                                                config.models_topic), config.state.replication_factor)
    key = partition_key((topic, 0))
    _, bad_offset = write(config, config.changelog_topic, key, b"\x00\x01 not the monitor's")
    ends = {p: sum(1 for r in rows if r[0] == p) for p in range(PARTITIONS)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = [start_service(config_file, tmp_path / "member.log")]
        wait_for(lambda: all(committed(config, topic)[p] == ends[p] for p in range(1, PARTITIONS)), 180,
                 "every other partition read to its end")
        assert committed(config, topic)[0] == 0 and reports(config) == [], "partition 0 stopped, its hours wait"
        log = (tmp_path / "member.log").read_text(errors="replace")
        assert f"at offset {bad_offset} (key '{key}')" in log and f"{topic}[0] stopped" in log
        shown = monitor_state(config_file, "show")
        assert shown.returncode == 5, shown.stderr
        assert re.search(rf"^{re.escape(key)}\t.*offset {bad_offset}\t.*unreadable", shown.stdout, re.MULTILINE)
        dropped = monitor_state(config_file, "drop-key", key)
        assert dropped.returncode == 0, dropped.stderr
        wait_for(lambda: consumed_total(config, topic) >= len(rows), 180, "partition 0 taken up after the drop")
        wait_for(lambda: len(reports(config)) >= WINDOWS, 120, "every hour judged")
    finally:
        stop_all(processes)
    got = reports(config)
    assert_equal_figures(got, replayed)
    assert len({r["start_ms"] for r in got}) == len(got), "each hour judged once"
    assert_exactly_once(config, topic, rows)
    after = monitor_state(config_file, "show")
    assert after.returncode == 0, after.stdout  # the member wrote the key anew
