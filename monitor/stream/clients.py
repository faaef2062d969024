"""The clients the service is built from, behind one protocol: a cluster is where they come from.

``KafkaClients`` makes kafka-python clients for ``config.kafka``; ``monitor.devtools.memory_kafka`` makes
in-memory ones, so one instance or a whole group runs in a test without a broker. The builder
(``monitor.app``) asks for clients here and nowhere else, for either store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from monitor.records import Position
from monitor.stream.kafka import KafkaSink, KafkaSource
from monitor.stream.kafka_state import ChangelogReader, InternalTopic, StateProducer, TopicFollower, ensure_topics

Revoked = Callable[[set[Position]], None]


class Clients(Protocol):
    """Where the service's consumer, producers and state readers come from."""

    def ensure_topics(self, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
        """Create the internal topics that are missing; every topic's partition count."""

    def source(self, topics: Sequence[str], group_id: str, auto_offset_reset: str,
               resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
               on_revoked: Revoked | None = None, on_assigned: Revoked | None = None,
               on_lost: Revoked | None = None) -> Any:
        """A member of the consumer group ``group_id`` (``monitor.stream.kafka.KafkaSource``)."""

    def sink(self) -> Any:
        """A producer of outputs, at least once (``monitor.stream.kafka.KafkaSink``)."""

    def state_producer(self, transactional_id: str | None, transaction_timeout_ms: int) -> Any:
        """The group's producer of outputs and state (``monitor.stream.kafka_state.StateProducer``)."""

    def changelog(self, topic: str) -> Any:
        """A reader of the compacted changelog (``ChangelogReader``)."""

    def follower(self, topic: str) -> Any:
        """A follower of the models topic (``TopicFollower``)."""


class KafkaClients:
    """kafka-python clients for the ``kafka`` section of the configuration."""

    def __init__(self, kafka: Any) -> None:
        self.kafka = kafka

    def ensure_topics(self, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
        return ensure_topics(self.kafka, topics, replication_factor)

    def source(self, topics: Sequence[str], group_id: str, auto_offset_reset: str,
               resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
               on_revoked: Revoked | None = None, on_assigned: Revoked | None = None,
               on_lost: Revoked | None = None) -> KafkaSource:
        return KafkaSource(self.kafka, topics, group_id, auto_offset_reset, resume_at, read_committed=read_committed,
                           on_revoked=on_revoked, on_assigned=on_assigned, on_lost=on_lost)

    def sink(self) -> KafkaSink:
        return KafkaSink(self.kafka)

    def state_producer(self, transactional_id: str | None, transaction_timeout_ms: int) -> StateProducer:
        return StateProducer(self.kafka, transactional_id, transaction_timeout_ms)

    def changelog(self, topic: str) -> ChangelogReader:
        return ChangelogReader(self.kafka, topic)

    def follower(self, topic: str) -> TopicFollower:
        return TopicFollower(self.kafka, topic)
