"""A real Kafka broker from monitor.devtools.kafka_broker carries messages intact."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from monitor.devtools.kafka_broker import ExternalKafka, KafkaBroker

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT_S = 30.0


def _new_topic(bootstrap_servers: str) -> str:
    # uuid-named, so reruns against a long-lived cluster never see old data.
    topic = f"test-local-kafka-{uuid.uuid4().hex}"
    with KafkaAdminClient(bootstrap_servers=bootstrap_servers) as admin:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
        )
    return topic


def _produce(bootstrap_servers: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    try:
        futures = [producer.send(topic, value) for value in values]
        producer.flush()
        for future in futures:
            future.get(timeout=10)  # raises if the broker rejected a record
    finally:
        producer.close()


def _consume(bootstrap_servers: str, topic: str, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` records from the start of partition 0 as (offset, value)."""
    # Manual assignment: no consumer group, so no rebalance to wait for.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        return _poll_records(consumer, count)
    finally:
        consumer.close()


def _poll_records(consumer: KafkaConsumer, count: int) -> list[tuple[int, bytes]]:
    records: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend((record.offset, record.value) for record in batch)
    return records


def _values(prefix: str, count: int) -> list[bytes]:
    # Non-ASCII too, to prove bytes come back untouched.
    return [f"{prefix}-{index}-ß→✓".encode() for index in range(count)]


def test_roundtrip_of_100_messages(kafka_broker: KafkaBroker | ExternalKafka) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = _new_topic(servers)
    values = _values("roundtrip", 100)

    _produce(servers, topic, values)

    assert _consume(servers, topic, len(values)) == list(enumerate(values))


@pytest.mark.parametrize("outage", ["restart", "crash"])
def test_a_restart_or_a_crash_keeps_acknowledged_data_and_the_same_ports(restartable_kafka_broker: KafkaBroker,
                                                                         outage: str) -> None:
    broker = restartable_kafka_broker
    servers = broker.bootstrap_servers
    topic = _new_topic(servers)
    before, after = _values("before", 10), _values("after", 10)
    _produce(servers, topic, before)

    if outage == "crash":
        broker.crash()  # SIGKILL: no controlled shutdown, the log recovered at the next start
        assert not broker.is_running()
    broker.restart()
    _produce(servers, topic, after)

    assert broker.bootstrap_servers == servers
    assert _consume(servers, topic, 20) == list(enumerate(before + after))
