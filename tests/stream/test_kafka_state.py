"""State kept in Kafka, the parts a real broker cannot stage on demand: a cluster without transactions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, UnsupportedVersionError

from monitor.errors import ConfigError
from monitor.settings import config_from_dict
from monitor.stream import kafka, kafka_state
from monitor.stream.kafka_state import StateProducer, partition_of


class _OldBrokerProducer:
    """A producer connected to a broker from before transactions (Kafka < 0.11): the one fake here."""

    closed = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    def init_transactions(self) -> None:
        raise UnsupportedVersionError("InitProducerIdRequest is not supported by this broker")

    def close(self, timeout: float | None = None) -> None:
        _OldBrokerProducer.closed = True


def test_a_cluster_without_transactions_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_state, "KafkaProducer", _OldBrokerProducer)
    config = config_from_dict({"state": {"store": "kafka"}}, environ={})
    with pytest.raises(ConfigError, match="does not support transactions.*state.delivery: at_least_once"):
        StateProducer(config.kafka, "group-instance", 60_000)
    assert _OldBrokerProducer.closed


def test_at_least_once_never_asks_for_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_state, "KafkaProducer", _OldBrokerProducer)
    producer = StateProducer(config_from_dict({}, environ={}).kafka, None, 60_000)
    assert "transactional_id" not in producer.producer.options and not producer.transactional


# murmur2 of these keys in the Java client (Kafka's own UtilsTest.testMurmur2).
JAVA_MURMUR2 = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
                "a-little-bit-longer-string": -1486304829, "abc": 479470107}


def test_an_input_topic_finds_its_judge_where_the_java_clients_default_partitioner_puts_its_key() -> None:
    for key, java in JAVA_MURMUR2.items():
        for partitions in (1, 3, 12, 50):
            assert partition_of(key, partitions) == (java & 0x7FFFFFFF) % partitions


class _StuckProducer:
    """A producer whose batches never come back (a request in flight when the broker left, which kafka-python
    may never complete): every flush waits its whole timeout and gives up. A real broker cannot be made to
    lose one request on demand."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def flush(self, timeout: float | None = None) -> None:
        self.waits.append(float(timeout or 0.0))
        time.sleep(timeout or 0.0)
        raise KafkaTimeoutError("Timeout waiting for future")


class _SlowFuture:
    """A send acknowledged after ``delay_s``: waited for with a shorter timeout, it times out."""

    def __init__(self, waits: list[float], delay_s: float) -> None:
        self.waits, self.delay_s = waits, delay_s

    def get(self, timeout: float | None = None) -> None:
        self.waits.append(float(timeout or 0.0))
        time.sleep(min(self.delay_s, timeout or 0.0))
        if (timeout or 0.0) < self.delay_s:
            raise KafkaTimeoutError("Timeout waiting for future")


def test_waiting_for_sends_takes_the_timeout_once_not_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "FLUSH_SLICE_S", 0.05)
    producer = _StuckProducer()
    with pytest.raises(KafkaTimeoutError):
        kafka.wait_for_sends(producer, [], 0.2)  # type: ignore[arg-type]
    assert sum(producer.waits) <= 0.2 + 1e-9 and len(producer.waits) >= 2

    class _Flushed(_StuckProducer):
        def flush(self, timeout: float | None = None) -> None:
            self.waits.append(float(timeout or 0.0))

    # Five sends of 0.08 s each: with 0.2 s for each they would all pass (0.4 s); 0.2 s in all is exceeded.
    waits: list[float] = []
    with pytest.raises(KafkaTimeoutError):
        kafka.wait_for_sends(_Flushed(), [_SlowFuture(waits, 0.08) for _ in range(5)], 0.2)  # type: ignore[arg-type]
    assert len(waits) < 5 and waits == sorted(waits, reverse=True) and waits[0] <= 0.2
