"""confluent-kafka for state kept in Kafka: the internal topics, the changelog reader, the models topic's
follower and the producer a group member commits each batch with (``monitor.stream.kafka_state``'s twins,
with the same topics, settings and guarantees).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from monitor.errors import BrokerUnavailable, StateError
from monitor.records import OutgoingMessage, Position
from monitor.stream.confluent import ConfluentSink, is_outage, make_client, outage_or_raise, producer_defaults
from monitor.stream.confluent_options import librdkafka_options
from monitor.stream.kafka_state import (
    MAX_STATE_BYTES,
    RESTORE_TIMEOUT_S,
    TRANSACTION_STEP_TIMEOUT_S,
    InternalTopic,
    latest_values,
    transactions_unsupported,
)

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0
STEP_GRACE_S = 5.0  # past a transaction step's own timeout, before it counts as never coming back
# A reader assigns partitions itself and never commits; librdkafka still wants a group id.
_READER_GROUP = "sequence-monitor-reader"


def ensure_topics(kafka: Any, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
    """Create the missing ``topics``; check that an existing compacted topic is compacted. Returns each
    topic's partition count (``monitor.stream.kafka_state.ensure_topics``)."""
    admin = make_client(AdminClient, librdkafka_options(kafka, "admin"), kafka)
    wanted = list(topics)
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        existing = {name for name, t in metadata.topics.items() if t.error is None}
        factor = replication_factor or min(3, len(metadata.brokers) or 1)
        missing = [NewTopic(t.name, t.partitions, factor, config=dict(t.configs)) for t in wanted
                   if t.name not in existing]
        for name, future in admin.create_topics(missing, request_timeout=ADMIN_TIMEOUT_S).items() if missing else ():
            try:
                future.result()
                log.info("created internal topic %s (replication factor %d)", name, factor)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # else another instance created it first
                    raise
        for topic in (t for t in wanted if t.compacted and t.name in existing):
            policy = _topic_config(admin, topic.name, "cleanup.policy")
            if policy is not None and "compact" not in policy:
                raise StateError(f"the changelog topic {topic.name!r} has cleanup.policy={policy}: state would be "
                                 "deleted by retention. Set it to compact, or name another state.changelog_topic")
        return _partition_counts(admin, [t.name for t in wanted])
    except KafkaException as exc:
        raise outage_or_raise(exc, "creating the internal topics") from exc


def _partition_counts(admin: AdminClient, names: list[str]) -> dict[str, int]:
    """Each topic's partitions, once the metadata knows them all (a topic just created may take a moment)."""
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        counts = {n: len(topics[n].partitions) for n in names if n in topics and topics[n].error is None}
        if len(counts) == len(names) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _topic_config(admin: AdminClient, topic: str, key: str) -> str | None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    for future in admin.describe_configs([resource], request_timeout=ADMIN_TIMEOUT_S).values():
        entry = future.result().get(key)
        return None if entry is None else str(entry.value)
    return None


def _reader(kafka: Any) -> Consumer:
    """A consumer of committed records that is given its partitions (no group membership, no commits)."""
    conf = {**librdkafka_options(kafka, "consumer"), "group.id": _READER_GROUP, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest"}
    return make_client(Consumer, conf, kafka)


def _read_to_end(consumer: Consumer, partitions: list[TopicPartition], what: str) -> Iterator[Message]:
    """Every committed record of ``partitions`` (already assigned) up to the end they have now."""
    try:
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=ADMIN_TIMEOUT_S)[1] for tp in partitions}
    except KafkaException as exc:
        raise outage_or_raise(exc, f"reading {what}'s end") from exc
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while True:
        positions = {tp.partition: tp.offset for tp in consumer.position(partitions)}
        if all(ends[n] <= 0 or positions.get(n, -1) >= ends[n] for n in ends):
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"reading {what} took more than {RESTORE_TIMEOUT_S:.0f} s")
        for message in consumer.consume(10_000, 0.5):
            if message.error() is None:
                yield message


class _Record:
    """A changelog record with the attributes ``latest_values`` reads."""

    __slots__ = ("key", "offset", "partition", "value")

    def __init__(self, m: Message) -> None:
        self.key, self.value, self.partition, self.offset = m.key(), m.value(), m.partition(), m.offset()


class ChangelogReader:
    """Reads a compacted topic from its start to its end, committed records only (``kafka_state``'s twin)."""

    def __init__(self, kafka: Any, topic: str) -> None:
        self.topic = topic
        self.consumer = _reader(kafka)
        self.locations: dict[str, Position] = {}
        self.removed: set[str] = set()

    def read(self) -> tuple[dict[str, bytes], int]:
        latest, self.locations, read, self.removed = latest_values(self._records())
        return latest, read

    def versions(self, key: str) -> list[tuple[Position, bytes | None]]:
        wanted = key.encode("utf-8")
        found = [((r.partition, r.offset), r.value) for r in self._records() if r.key == wanted]
        return found[::-1]

    def _records(self) -> Iterator[_Record]:
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=ADMIN_TIMEOUT_S).topics.get(self.topic)
        except KafkaException as exc:
            raise outage_or_raise(exc, f"reading {self.topic}'s metadata") from exc
        numbers = sorted(metadata.partitions) if metadata is not None and metadata.error is None else []
        tps = [TopicPartition(self.topic, n, OFFSET_BEGINNING) for n in numbers]
        self.consumer.assign(tps)
        if tps:
            yield from map(_Record, _read_to_end(self.consumer, tps, self.topic))

    def close(self) -> None:
        self.consumer.close()


class TopicFollower:
    """Follows a one-partition topic from its start, committed records only (``kafka_state``'s twin)."""

    def __init__(self, kafka: Any, topic: str) -> None:
        self.consumer = _reader(kafka)
        self.topic = topic
        self.partition = TopicPartition(topic, 0, OFFSET_BEGINNING)
        self.consumer.assign([self.partition])

    def read_to_end(self) -> list[tuple[int, str, bytes]]:
        return _triples(_read_to_end(self.consumer, [TopicPartition(self.topic, 0)], self.topic))

    def poll(self) -> list[tuple[int, str, bytes]]:
        return _triples(m for m in self.consumer.consume(10_000, 0) if m.error() is None)

    def close(self) -> None:
        self.consumer.close()


def _triples(messages: Iterable[Message]) -> list[tuple[int, str, bytes]]:
    return [(m.offset(), m.key().decode("utf-8") if m.key() else "", m.value())
            for m in messages if m.value() is not None]


def publish(kafka: Any, topic: str, key: str, value: bytes | None) -> None:
    """One record (``None``: a tombstone), acknowledged by every in-sync replica."""
    sink = ConfluentSink(kafka)
    sink.send_all(topic, [(key.encode("utf-8"), value, [])])  # type: ignore[list-item]


class StateProducer:
    """Sends a batch's outputs and state, and commits them with the consumed offsets (``kafka_state``'s twin):
    one transaction per commit with ``transactional_id``; at least once without."""

    def __init__(self, kafka: Any, transactional_id: str | None, transaction_timeout_ms: int) -> None:
        self._kafka = kafka
        self._conf = {"message.max.bytes": MAX_STATE_BYTES, **producer_defaults(kafka)}
        if transactional_id is not None:
            self._conf.update({"transactional.id": transactional_id,
                               "transaction.timeout.ms": transaction_timeout_ms, "enable.idempotence": True})
        self.transactional = transactional_id is not None
        self.in_transaction = False
        self.stuck = False  # a step of the transaction never came back (``_bounded``)
        self.sink = self._start()

    @property
    def producer(self) -> Producer:
        return self.sink.producer

    def _start(self) -> ConfluentSink:
        sink = ConfluentSink(self._kafka, self._conf)
        if self.transactional:
            try:
                sink.producer.init_transactions(TRANSACTION_STEP_TIMEOUT_S)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() in (KafkaError.UNSUPPORTED_VERSION, KafkaError._UNSUPPORTED_FEATURE):
                    raise transactions_unsupported(exc) from exc
                raise outage_or_raise(exc, "starting the transactional producer") from exc
        return sink

    def _begin(self) -> None:
        if self.transactional and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def send_all(self, topic: str, messages: Iterable[OutgoingMessage], timeout_s: float = 30.0) -> int:
        """Queue ``(key, value, headers)`` triples in the open transaction (``Sink``)."""
        self._begin()
        sent = 0
        for key, value, headers in messages:
            self.sink.produce(topic, value, key, headers=headers or None)
            sent += 1
        return sent

    def send(self, topic: str, key: str, value: bytes | None, partition: int | None = None) -> None:
        """Queue one keyed record (``None``: a tombstone)."""
        self._begin()
        extra = {} if partition is None else {"partition": partition}
        self.sink.produce(topic, value, key.encode("utf-8"), **extra)

    def commit(self, offsets: Mapping[Position, int], consumer: Consumer, through_consumer: bool = True) -> None:
        """Make everything sent since the last commit visible with ``offsets`` (``kafka_state``'s twin)."""
        committed = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if self.transactional and not self.in_transaction and not committed:
            return
        # Every send must have landed before anything commits.
        self.sink.wait("sending the batch", TRANSACTION_STEP_TIMEOUT_S)
        try:
            if self.transactional:
                self._begin()
                if committed:
                    self._bounded("sending the offsets to the transaction", self.producer.send_offsets_to_transaction,
                                  committed, consumer.consumer_group_metadata(), TRANSACTION_STEP_TIMEOUT_S)
                self._bounded("committing the transaction", self.producer.commit_transaction,
                              TRANSACTION_STEP_TIMEOUT_S)
                self.in_transaction = False
            elif committed and through_consumer:
                consumer.commit(offsets=committed, asynchronous=False)
        except KafkaException as exc:
            raise outage_or_raise(exc, "commit") from exc

    def _bounded(self, step: str, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)``, waited for at most a little longer than the timeout it is given. librdkafka was
        seen to wait in ``send_offsets_to_transaction`` far past its timeout after a broker outage, while the
        group rebalanced (minutes, until stopped): the step runs on a thread of its own, and a step that does
        not come back is an outage. The producer is then given up (``abort`` raises): its successor, with
        the same transactional id, fences it, and the broker aborts its transaction."""
        outcome: list[BaseException | None] = []
        done = threading.Event()

        def run() -> None:
            try:
                call(*args)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="transaction step", daemon=True).start()
        if not done.wait(TRANSACTION_STEP_TIMEOUT_S + STEP_GRACE_S):
            self.stuck = True
            raise BrokerUnavailable(f"{step} took more than {TRANSACTION_STEP_TIMEOUT_S + STEP_GRACE_S:.0f} s")
        if outcome[0] is not None:
            raise outcome[0]

    def abort(self) -> None:
        """Drop what was sent since the last commit (exactly once), and carry on with the same producer
        (librdkafka drops a failed transaction's offsets with it) unless its error is fatal or it is stuck
        in a step of the transaction (then this raises, and a new producer takes over)."""
        if self.stuck:
            raise BrokerUnavailable("the producer is stuck in a step of its transaction")
        if self.transactional and self.in_transaction:
            self.in_transaction = False
            try:
                self.producer.abort_transaction(TRANSACTION_STEP_TIMEOUT_S)
            except KafkaException as exc:
                if is_outage(exc):
                    raise BrokerUnavailable(f"aborting the transaction failed: {exc}") from exc
                raise
            self.sink.forget_failures()  # the aborted sends' failures are moot

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)

    def discard(self) -> None:
        """Drop a producer given up on without waiting: the broker aborts its transaction."""
        try:
            self.producer.purge()
            self.producer.poll(0)
        except Exception:  # noqa: BLE001 - best effort: nothing of it is used again
            log.debug("discarding the producer failed", exc_info=True)
