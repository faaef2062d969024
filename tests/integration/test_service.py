"""The consumer service against a real broker: accounting, dead letters, restarts, SIGTERM, outages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from monitor.core.bundle import Bundle
from monitor.stream.hooks import NoHooks

from .kafka_tools import (
    Running,
    committed_offset,
    new_topic,
    produce,
    read_topic,
    service_config,
    source_offsets,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

GOOD = [json.dumps({"payload": {"serial": s}, "w": 1 + i % 3}).encode()
        for i, s in enumerate(["AB121E", "DN176", "KQ4411", "RT5521X", "MV12"] * 40)]
BAD = {
    "invalid_utf8": b"AB\xff121E",
    "invalid_json": b'{"payload": ',
    "missing_field": b'{"payload": {}}',
    "empty_value": b"",
    "oversized_value": json.dumps({"payload": {"serial": "A" * 3000}}).encode(),
    "invalid_weight": b'{"payload": {"serial": "AB121E"}, "w": -2}',
    "invalid_timestamp": b'{"payload": {"serial": "AB121E"}, "t": "not a time"}',
    "invalid_sequence": b'{"payload": {"serial": 42}}',
}
JSON_INPUT = {"value_format": "json", "sequence_field": "payload.serial", "weight_field": "w",
              "event_time_field": "t", "event_time_format": "iso8601", "max_value_bytes": 2000}


def interleaved() -> list[bytes]:
    values = list(GOOD)
    for i, bad in enumerate(BAD.values()):
        values.insert(i * 23 + 5, bad)
    return values


def test_a_deeply_nested_json_value_is_dead_lettered_and_the_service_goes_on(kafka_broker, bundle_dir: Path,
                                                                            serial_bundle: Bundle) -> None:
    # Unbounded, Python's JSON parser raises RecursionError on this value: the service used to exit, and
    # meet the same message again after every restart.
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    poison = b"[" * 60_000
    values = list(GOOD[:50]) + [poison] + list(GOOD[50:100])
    produce(bootstrap, topic, values)
    config = service_config(bootstrap, topic, bundle_dir, input={**JSON_INPUT, "max_value_bytes": 100_000})
    running = Running(config, serial_bundle)
    with running as service:
        wait_for(lambda: service.counts.consumed >= len(values), 60, "all messages consumed")
        assert running.thread.is_alive()
    assert service.counts.rejected == Counter({"invalid_json": 1}) and service.counts.scored == len(values) - 1
    [letter] = read_topic(bootstrap, config.dead_letter.topic, 1)
    assert letter.value == poison and b"nested deeper" in dict(letter.headers)["monitor.detail"]


def test_every_message_is_scored_or_dead_lettered_with_its_reason(kafka_broker, bundle_dir: Path,
                                                                  serial_bundle: Bundle) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    values = interleaved()
    produce(bootstrap, topic, values)
    config = service_config(bootstrap, topic, bundle_dir, input=JSON_INPUT)
    with Running(config, serial_bundle) as service:
        wait_for(lambda: service.counts.consumed >= len(values), 60, "all messages consumed")
    assert service.counts.scored + service.counts.dead_lettered == len(values)
    assert service.counts.rejected == Counter(BAD.keys())

    letters = read_topic(bootstrap, config.dead_letter.topic, len(BAD))
    assert len(letters) == len(BAD)
    for letter in letters:
        headers = dict(letter.headers)
        reason = headers["monitor.reason"].decode()
        assert letter.value == BAD[reason]  # the original bytes
        assert headers["origin"] == b"test" and headers["monitor.detail"]
        assert headers["monitor.source.topic"].decode() == topic
        assert values[int(headers["monitor.source.offset"])] == BAD[reason]

    scored = read_topic(bootstrap, config.output.topic, len(GOOD))
    events = [json.loads(r.value) for r in scored]
    assert len(events) == len(GOOD)
    assert sorted(source_offsets(scored, False) + source_offsets(letters, True)) == list(range(len(values)))
    assert {e["weight"] for e in events} == {1.0, 2.0, 3.0}
    assert all(r.key is not None and dict(r.headers)["origin"] == b"test" for r in scored)
    assert committed_offset(bootstrap, config.input.group_id, topic) == len(values)


def test_a_restarted_service_neither_repeats_nor_skips(kafka_broker, bundle_dir: Path,
                                                       serial_bundle: Bundle) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    values = [s.encode() for s in ["AB121E", "DN176", "KQ4411"] * 10_000]  # more than one stop's worth
    produce(bootstrap, topic, values)
    config = service_config(bootstrap, topic, bundle_dir, batch={"max_records": 50})
    with Running(config, serial_bundle) as first:
        wait_for(lambda: first.counts.consumed >= 200, 60, "a first part consumed")
    partway = committed_offset(bootstrap, config.input.group_id, topic)
    assert partway == first.counts.consumed < len(values)  # a clean stop checkpoints and commits last
    with Running(config, serial_bundle) as second:
        wait_for(lambda: first.counts.consumed + second.counts.consumed >= len(values), 120, "the rest consumed")
    assert first.counts.consumed + second.counts.consumed == len(values)
    offsets = source_offsets(read_topic(bootstrap, config.output.topic, len(values), timeout_s=60), False)
    assert sorted(offsets) == list(range(len(values)))  # each exactly once


def test_sigterm_mid_stream_exits_0_with_consistent_offsets(kafka_broker, bundle_dir: Path,
                                                            tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    # Enough records, in small batches, that the first commit (after 1 s) comes long before the end: at 200 a
    # batch the whole stream was sometimes read before the signal arrived.
    values = [s.encode() for s in ["AB121E", "DN176", "KQ4411", "MV12"] * 15000]
    produce(bootstrap, topic, values)
    config = service_config(bootstrap, topic, bundle_dir, batch={"max_records": 20})
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: (committed_offset(bootstrap, config.input.group_id, topic) or 0) > 0, 90,
                 "a first commit")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "received SIGTERM" in stderr
    committed = committed_offset(bootstrap, config.input.group_id, topic)
    assert committed is not None and 0 < committed < len(values), "stopped mid-stream"
    offsets = source_offsets(read_topic(bootstrap, config.output.topic, committed), False)
    assert sorted(offsets) == list(range(committed))  # all processed were committed, nothing beyond


# The outage outlasts a 6 s session but not the default 45 s one: the member is either kept or dropped. The
# third outage outlasts every client timeout, lowered so that CI can afford it: requests, sessions, metadata
# waits, reconnect backoffs, and the monitor's own reconnect_after_seconds (the clients are created anew).
LONG_OUTAGE_CLIENT = {"request_timeout_ms": 4000, "reconnect_backoff_max_ms": 1000, "metadata_max_age_ms": 5000}


@pytest.mark.parametrize(("outage_s", "kafka"), [
    (15, {}),
    (15, {"consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}}),
    (25, {"client": LONG_OUTAGE_CLIENT, "producer": {"max_block_ms": 3000},
          "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}, "reconnect_after_seconds": 8}),
], ids=["session-kept", "session-expired", "longer-than-every-timeout"])
def test_the_service_survives_a_broker_outage_and_catches_up(restartable_kafka_broker, bundle_dir: Path,
                                                             serial_bundle: Bundle, outage_s: int,
                                                             kafka: dict[str, Any], kafka_library: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    if kafka_library == "confluent-kafka" and "producer" in kafka:
        # librdkafka's produce never blocks: what bounds a send is how long a message may wait for delivery.
        kafka = {**kafka, "producer": {"delivery_timeout_ms": kafka["producer"]["max_block_ms"]}}
    broker = restartable_kafka_broker
    bootstrap = broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    first_part = [s.encode() for s in ["AB121E", "DN176"] * 25_000]  # far more than is scored before the stop
    produce(bootstrap, topic, first_part)
    config = service_config(bootstrap, topic, bundle_dir, batch={"max_records": 20}, kafka=kafka)
    running = Running(config, serial_bundle)
    with running as service:
        wait_for(lambda: service.counts.consumed >= 40, 60, "consumption under way")
        broker.stop()
        threading.Event().wait(outage_s)  # longer than a send or commit may take: the service must notice
        assert running.thread.is_alive()
        broker.start()
        produce(bootstrap, topic, [b"KQ4411"] * 100)
        total = len(first_part) + 100
        # Bounded recovery, whatever the outage's length (the README states the bound).
        wait_for(lambda: service.counts.consumed >= total, 180, "catching up after the outage")
    offsets = source_offsets(read_topic(bootstrap, config.output.topic, total), False)
    assert set(offsets) == set(range(total))  # duplicates are allowed (at least once), gaps are not
    assert committed_offset(bootstrap, config.input.group_id, topic) == total
    down = [r for r in caplog.records if r.message.startswith("broker unavailable")]
    back = [r for r in caplog.records if r.message.startswith("broker reachable again")]
    assert 1 <= len(down) == len(back) <= 3  # once per change of state, not once per retry
    if "reconnect_after_seconds" in kafka:  # a client failing that long was closed and created anew
        assert any("connecting anew" in r.message for r in caplog.records)


class _StallOnce(NoHooks):
    """A hook that holds the loop once, longer than the consumer may go between polls."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.stalled = seconds, False

    def on_batch(self, result: object, seconds: float) -> None:
        if not self.stalled:
            self.stalled = True
            time.sleep(self.seconds)


def test_a_member_dropped_from_the_group_carries_on_without_repeating_or_skipping(
        kafka_broker, bundle_dir: Path, serial_bundle: Bundle, caplog: pytest.LogCaptureFixture,
        kafka_library: str) -> None:
    # The loop stalls past max_poll_interval_ms: the group drops the member, its next commit is refused
    # (CommitFailedError), and the service has to rejoin and go on from its own state.
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "in")
    values = [s.encode() for s in ["AB121E", "DN176", "KQ4411"] * 2000]
    produce(bootstrap, topic, values)
    # librdkafka wants max.poll.interval.ms >= session.timeout.ms, the broker's least session is 6 s.
    max_poll_ms = 1500 if kafka_library == "kafka-python" else 6000
    config = service_config(bootstrap, topic, bundle_dir, batch={"max_records": 100},
                            kafka={"consumer": {"max_poll_interval_ms": max_poll_ms, "session_timeout_ms": 6000,
                                                "heartbeat_interval_ms": 500}})
    stall = _StallOnce(max_poll_ms / 1000 + 3.5)
    with Running(config, serial_bundle, hooks=[stall]) as service:
        wait_for(lambda: service.counts.consumed >= len(values), 90, "every message consumed")
        wait_for(lambda: committed_offset(bootstrap, config.input.group_id, topic) == len(values), 30,
                 "the offsets committed after the rejoin")
        assert service.counts.consumed == len(values) and stall.stalled
    offsets = source_offsets(read_topic(bootstrap, config.output.topic, len(values), timeout_s=60), False)
    assert sorted(offsets) == list(range(len(values)))  # each exactly once
    assert any("commit" in r.message and "rebalanc" in r.message for r in caplog.records)


def test_a_value_too_large_for_the_dead_letter_topic_is_cut_not_fatal(kafka_broker, bundle_dir: Path,
                                                                       serial_bundle: Bundle) -> None:
    # An input topic may accept larger messages than the dead-letter producer can send (1 MiB by default):
    # such a dead letter must not stop the service (a restart would meet it again, forever).
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"big-{uuid.uuid4().hex[:12]}"
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "4000000"})])
    huge = b"A" * 2_000_000
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000, acks="all")
    for value in (b"AB121E", huge, b"DN176"):
        producer.send(topic, value=value)
    producer.flush()
    producer.close()
    config = service_config(bootstrap, topic, bundle_dir, dead_letter={"max_value_bytes": 500_000})
    with Running(config, serial_bundle) as service:
        wait_for(lambda: service.counts.consumed >= 3, 60, "all three consumed")
    assert service.counts.scored == 2 and service.counts.rejected == Counter({"oversized_value": 1})
    [letter] = read_topic(bootstrap, config.dead_letter.topic, 1)
    headers = dict(letter.headers)
    assert letter.value == huge[:500_000] and headers["monitor.value_cut_from_bytes"] == b"2000000"
    assert committed_offset(bootstrap, config.input.group_id, topic) == 3


def _probe(port: int, path: str) -> int | None:
    """The status ``path`` answers with, ``None`` while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return None


@pytest.mark.parametrize("store", ["sqlite", "kafka"])
def test_liveness_answers_while_no_broker_is_reachable_and_readiness_does_not(bundle_dir: Path, tmp_path: Path,
                                                                              store: str) -> None:
    with socket.socket() as probe:  # a free port for the metrics endpoint
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on port 1; a short bootstrap timeout lets the stop come soon after the signal.
    config = {"kafka": {"bootstrap_servers": ["127.0.0.1:1"], "client": {"bootstrap_timeout_ms": 2000}},
              "input": {"topics": ["in"], "group_id": "g-unreachable"}, "model": {"path": str(bundle_dir)},
              "state": {"path": str(tmp_path / "state" / "state.sqlite"), "store": store},
              "metrics": {"host": "127.0.0.1", "port": port}, "shutdown": {"timeout_seconds": 10}}
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: _probe(port, "/healthz") == 200, 15, "/healthz")  # the imports take a few seconds
        assert _probe(port, "/readyz") == 503
        wait_for(lambda: process.stderr is not None and "cannot reach the Kafka cluster" in process.stderr.readline(),
                 30, "the retries to reach the cluster")
        assert _probe(port, "/healthz") == 200 and _probe(port, "/readyz") == 503
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
