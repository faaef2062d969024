"""The clients the service is built from, behind one protocol: a cluster is where they come from.

``KafkaClients`` makes kafka-python clients for ``config.kafka``, ``ConfluentClients`` confluent-kafka
(librdkafka) ones: ``clients_for`` picks by ``kafka.library``. ``monitor.devtools.memory_kafka`` makes
in-memory ones, so one instance or a whole group runs in a test without a broker. The builder
(``monitor.app``) and the offline commands ask for clients here and nowhere else, for either store.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from monitor.errors import ConfigError
from monitor.records import Position
from monitor.stream import kafka as kafka_python
from monitor.stream.kafka import KafkaSink, KafkaSource, client_options
from monitor.stream.kafka_state import (
    ChangelogReader,
    InternalTopic,
    StateProducer,
    TopicFollower,
    ensure_topics,
    publish,
)

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

    def publish(self, topic: str, key: str, value: bytes | None) -> None:
        """One record acknowledged by every in-sync replica (``None``: a tombstone)."""


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

    def publish(self, topic: str, key: str, value: bytes | None) -> None:
        publish(self.kafka, topic, key, value)


class ConfluentClients:
    """confluent-kafka (librdkafka) clients for the ``kafka`` section: the optional extra ``confluent``."""

    def __init__(self, kafka: Any) -> None:
        self.kafka = kafka
        self._client = _confluent("monitor.stream.confluent")
        self._state = _confluent("monitor.stream.confluent_state")

    def ensure_topics(self, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
        return self._state.ensure_topics(self.kafka, topics, replication_factor)

    def source(self, topics: Sequence[str], group_id: str, auto_offset_reset: str,
               resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
               on_revoked: Revoked | None = None, on_assigned: Revoked | None = None,
               on_lost: Revoked | None = None) -> Any:
        return self._client.ConfluentSource(self.kafka, topics, group_id, auto_offset_reset, resume_at,
                                            read_committed=read_committed, on_revoked=on_revoked,
                                            on_assigned=on_assigned, on_lost=on_lost)

    def sink(self) -> Any:
        return self._client.ConfluentSink(self.kafka)

    def state_producer(self, transactional_id: str | None, transaction_timeout_ms: int) -> Any:
        return self._state.StateProducer(self.kafka, transactional_id, transaction_timeout_ms)

    def changelog(self, topic: str) -> Any:
        return self._state.ChangelogReader(self.kafka, topic)

    def follower(self, topic: str) -> Any:
        return self._state.TopicFollower(self.kafka, topic)

    def publish(self, topic: str, key: str, value: bytes | None) -> None:
        self._state.publish(self.kafka, topic, key, value)


LIBRARIES = {"kafka-python": KafkaClients, "confluent-kafka": ConfluentClients}


def clients_for(kafka: Any) -> KafkaClients | ConfluentClients:
    """The clients ``kafka.library`` names, for the ``kafka`` section."""
    return LIBRARIES[getattr(kafka, "library", "kafka-python")](kafka)


def check_options(kafka: Any) -> None:
    """Raise ``ConfigError`` for every option of the ``kafka`` section the chosen library would refuse,
    before anything connects."""
    if getattr(kafka, "library", "kafka-python") == "confluent-kafka":
        options = _confluent("monitor.stream.confluent_options")
        for role in ("consumer", "producer", "admin"):
            options.librdkafka_options(kafka, role)
    else:
        client_options(kafka, "consumer")
        client_options(kafka, "producer")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc``, from either library, means the cluster is (for now) out of reach."""
    if kafka_python.is_outage(exc):
        return True
    confluent = sys.modules.get("monitor.stream.confluent")  # loaded only when chosen
    return confluent is not None and confluent.is_outage(exc)


def _confluent(module: str) -> Any:
    """A module of the confluent-kafka client, imported when the library is chosen: it is an optional extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != "confluent_kafka":
            raise
        raise ConfigError("kafka.library: confluent-kafka needs the confluent-kafka package: "
                          "pip install 'sequence-monitor[confluent]'") from exc
