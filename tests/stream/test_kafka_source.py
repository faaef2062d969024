"""The kafka-python source, the part a real broker cannot stage on demand: committed offsets that a transaction
holds past the wait (a hanging transaction). What a broker shows runs in ``tests/integration``."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition

from monitor.errors import CommittedOffsetsPending
from monitor.stream.kafka import KafkaSource


class _HeldConsumer:
    """Offsets of partition 1 held by an open transaction: kafka-python retries their fetch until the timeout."""

    def __init__(self) -> None:
        self.timeouts: list[int] = []
        self.sought: dict[TopicPartition, int] = {}

    def committed(self, tp: TopicPartition, timeout_ms: int) -> int:
        self.timeouts.append(timeout_ms)
        if tp.partition == 1:
            raise KafkaTimeoutError("Timeout waiting for future")
        return 7

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset


def source_with(consumer: Any) -> KafkaSource:
    source = object.__new__(KafkaSource)  # no client: nothing here talks to a broker
    source.consumer = consumer
    return source


def test_offsets_still_held_when_the_wait_ends_are_pending_and_the_wait_is_bounded_for_all_partitions() -> None:
    consumer = _HeldConsumer()
    with pytest.raises(CommittedOffsetsPending, match=r"t\[1\]"):
        source_with(consumer).rewind([("t", 0), ("t", 1)], 2.0)
    assert len(consumer.timeouts) == 2 and all(0 < t <= 2000 for t in consumer.timeouts)


def test_stable_offsets_are_sought_and_returned() -> None:
    consumer = _HeldConsumer()
    assert source_with(consumer).rewind([("t", 0), ("t", 2)], 2.0) == {("t", 0): 7, ("t", 2): 7}
    assert consumer.sought == {TopicPartition("t", 0): 7, TopicPartition("t", 2): 7}
