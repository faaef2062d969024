"""confluent-kafka (librdkafka) beside kafka-python: the consumer source and the producer of dead letters and
scored events (with ``monitor.stream.confluent_state`` for state kept in Kafka, the only modules that import
confluent-kafka, and only when ``kafka.library: confluent-kafka`` chooses it; what librdkafka's statistics
say of the cluster is read by ``monitor.stream.confluent_stats``).

The same contract as ``monitor.stream.kafka``: offsets are committed only when the service says so, an
outage surfaces as ``BrokerUnavailable``, rebalance callbacks run inside ``next_batch``. What differs is
speed: librdkafka fetches in its own threads, and a batch's values and timestamps are read into columns
(``ConfluentBatch``) without building a message tuple per record.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from monitor.errors import BrokerUnavailable, CommittedOffsetsPending, ConfigError
from monitor.hourly.window import Progress
from monitor.records import OutgoingMessage, Polled, Position, RawMessage
from monitor.stream.confluent_options import librdkafka_error_path, librdkafka_options
from monitor.stream.confluent_stats import STATS_INTERVAL_MS, ClusterStatistics
from monitor.stream.sources import progress_of

log = logging.getLogger(__name__)

STILL_AT_TIMEOUT_S = 5.0  # how long a judge waits to learn whether idle partitions are still at their end
SEND_TIMEOUT_S = 30.0
_SECOND = operator.itemgetter(1)

# Errors that mean the cluster is (for now) out of reach rather than that a request was wrong.
_OUTAGE_CODES = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT,
    KafkaError._RESOLVE, KafkaError._WAIT_COORD, KafkaError.NETWORK_EXCEPTION, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NOT_ENOUGH_REPLICAS,
})
# The group dropped this member or is rebalancing: a commit now is skipped, the next checkpoint commits again.
# GROUP_ID_NOT_FOUND: a group whose last member was dropped is gone, and brokers answer OffsetCommit v9+ (which
# librdkafka speaks; kafka-python stops at v8 and is told ILLEGAL_GENERATION) with that.
_REBALANCING = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                          KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST, KafkaError.GROUP_ID_NOT_FOUND})


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a confluent-kafka exception carries, if it carries one."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    return error if isinstance(error, KafkaError) else None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the cluster is (temporarily) unreachable rather than that a request was wrong."""
    if isinstance(exc, BrokerUnavailable):
        return True
    error = kafka_error(exc)
    return error is not None and not error.fatal() and (error.retriable() or error.code() in _OUTAGE_CODES)


def make_client(kind: type, conf: dict[str, Any], kafka: Any) -> Any:
    """``kind(conf)``, with librdkafka's refusal of a property turned into a ``ConfigError`` naming the
    setting it came from."""
    try:
        return kind(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        error = kafka_error(exc)
        text = error.str() if error is not None else str(exc)
        if error is not None and error.code() not in (KafkaError._INVALID_ARG, KafkaError.INVALID_CONFIG):
            raise
        path = librdkafka_error_path(kafka, text)
        raise ConfigError(f"{path or 'kafka'}: librdkafka refused the options: {text}") from exc


def outage_or_raise(exc: BaseException, what: str) -> BrokerUnavailable:
    """A ``BrokerUnavailable`` for the caller to raise when ``exc`` is an outage; ``exc`` itself otherwise."""
    if is_outage(exc):
        return BrokerUnavailable(f"{what} failed: {exc}")
    raise exc


def producer_defaults(kafka: Any) -> dict[str, Any]:
    """A producer's configuration: acknowledged by every in-sync replica, keys partitioned as kafka-python
    and the Java client do (librdkafka's own default hashes them otherwise), then the section's options."""
    return {"acks": "all", "partitioner": "murmur2_random", **librdkafka_options(kafka, "producer")}


class ConfluentBatch(Sequence[RawMessage]):
    """One consume's messages. The decoder reads ``columns()``; a ``RawMessage`` is built only for a message
    someone looks at (a rejection, a scored event), so a clean batch costs no Python tuple per record."""

    __slots__ = ("_messages", "_positions")

    def __init__(self, messages: list[Message]) -> None:
        self._messages = messages
        self._positions: list[Position] | None = None

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [_raw(m) for m in self._messages[index]]
        return _raw(self._messages[index])

    def __iter__(self) -> Iterator[RawMessage]:
        return map(_raw, self._messages)

    def columns(self) -> tuple[list[bytes | None], list[int]]:
        """Every message's value, and its timestamp in epoch milliseconds (-1 where it has none)."""
        messages = self._messages
        return list(map(Message.value, messages)), list(map(_SECOND, map(Message.timestamp, messages)))

    def positions(self) -> list[Position]:
        """Every message's (topic, partition), read once (the source needs them for a batch of several
        partitions, and so does the pipeline)."""
        if self._positions is None:
            self._positions = [(m.topic(), m.partition()) for m in self._messages]
        return self._positions


def _raw(m: Message) -> RawMessage:
    kind, stamp = m.timestamp()
    return RawMessage(m.topic(), m.partition(), m.offset(), stamp if kind else None, m.key(), m.value(),
                      tuple(m.headers() or ()))


class ConfluentSource:
    """A consumer-group member handing out batches; commits only what it is told (``KafkaSource``'s twin)."""

    def __init__(self, kafka: Any, topics: Sequence[str], group_id: str, auto_offset_reset: str,
                 resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
                 on_revoked: Callable[[set[Position]], None] | None = None,
                 on_assigned: Callable[[set[Position]], None] | None = None,
                 on_lost: Callable[[set[Position]], None] | None = None) -> None:
        """As ``monitor.stream.kafka.KafkaSource``."""
        self.on_revoked, self.on_assigned, self.on_lost = on_revoked, on_assigned, on_lost
        self.auto_offset_reset = auto_offset_reset
        # Brokers up, partitions with their leader, where fetching stands (no request to the cluster); it asks
        # for the assignment only once statistics arrive, inside a consume.
        self.statistics = ClusterStatistics(self.assignment)
        # librdkafka (>= 2.4) waits fetch.queue.backoff.ms (1 s) before fetching again once its queue holds
        # queued.min.messages (100,000): a reader faster than that would wait most of the time.
        conf = {"fetch.queue.backoff.ms": 10, **librdkafka_options(kafka, "consumer"), "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": auto_offset_reset,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                "statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.statistics.read}
        self.consumer = make_client(Consumer, conf, kafka)
        self.resume_at = dict(resume_at or {})
        self.heard_at: dict[Position, float] = {}
        self.topics = tuple(topics)
        self.consumer.subscribe(list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        """Up to ``max_records`` messages, waiting at most ``timeout_ms`` for the first."""
        try:
            messages = self.consumer.consume(max_records, timeout_ms / 1000)
        except KafkaException as exc:
            raise outage_or_raise(exc, "fetching") from exc
        if any(map(Message.error, messages)):  # map over the C methods: no Python frame per message
            messages = self._without_errors(messages)
        batch = ConfluentBatch(messages)
        next_offsets: dict[Position, int] = {}
        if messages:
            if _one_partition(messages):  # the usual batch: only its last offset matters
                last = messages[-1]
                next_offsets[(last.topic(), last.partition())] = last.offset() + 1
            else:
                for position, offset in zip(batch.positions(), map(Message.offset, messages)):
                    next_offsets[position] = offset + 1
            now = time.monotonic()
            self.heard_at.update((p, now) for p in next_offsets)
        return Polled(batch, next_offsets)  # type: ignore[arg-type]

    @staticmethod
    def _without_errors(messages: list[Message]) -> list[Message]:
        """The messages without librdkafka's error events: logged (an unreachable broker, a missing topic,
        a poll interval exceeded: librdkafka recovers from them itself), or raised when fatal."""
        kept = []
        for m in messages:
            error = m.error()
            if error is None:
                kept.append(m)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                where = "" if m.topic() is None else f" ({m.topic()}[{m.partition()}])"
                log.warning("the consumer reported %s%s", error.str(), where)
        return kept

    def processed(self, next_offsets: Mapping[Position, int]) -> None:
        self.resume_at.update(next_offsets)

    def lag(self) -> dict[Position, int]:
        return {p: max(0, end - position) for p, (position, end) in self._offsets().items()
                if position is not None and end is not None}

    def seek(self, partition: Position, offset: int) -> None:
        self.consumer.seek(TopicPartition(*partition, offset))

    def rewind(self, partitions: Iterable[Position], timeout_s: float) -> dict[Position, int | None]:
        """Seek each partition to the group's committed offset (or by ``auto_offset_reset``) and return those
        offsets (``KafkaSource.rewind``)."""
        wanted = [TopicPartition(*p) for p in partitions]
        if not wanted:
            return {}
        try:
            # librdkafka retries an offset fetch while a transaction holds the offsets, until the timeout.
            found = self.consumer.committed(wanted, timeout=timeout_s)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.code() == KafkaError._TIMED_OUT:
                raise CommittedOffsetsPending(str(exc)) from exc
            raise outage_or_raise(exc, "reading committed offsets") from exc
        committed = {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}
        for (topic, number), offset in committed.items():
            if offset is None:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=30)
                offset = low if self.auto_offset_reset == "earliest" else high
            self.consumer.seek(TopicPartition(topic, number, offset))
        return committed

    def partitions_of(self, topic: str) -> set[int]:
        """The topic's partitions: from librdkafka's last statistics (no request; a judge asks once a batch),
        else from a metadata request."""
        known = self.statistics.partitions_of(topic)
        if known:
            return known
        try:
            metadata = self.consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise outage_or_raise(exc, f"reading {topic}'s metadata") from exc
        found = metadata.topics.get(topic)
        return set(found.partitions) if found is not None and found.error is None else set()

    def pause(self, partitions: set[Position]) -> None:
        assigned = self.consumer.assignment()
        paused = [tp for tp in assigned if (tp.topic, tp.partition) in partitions]
        resumed = [tp for tp in assigned if (tp.topic, tp.partition) not in partitions]
        if resumed:
            self.consumer.resume(resumed)
        if paused:
            self.consumer.pause(paused)

    def assignment(self) -> set[Position]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def progress(self, idle_after_s: float) -> Progress:
        """As ``KafkaSource.progress``; a partition's leader answers when librdkafka's last statistics
        (each second) said its broker was up."""
        return progress_of(self._offsets(), self.heard_at, idle_after_s, self.statistics.answering,
                           self.statistics.known_partitions(self.topics))

    def still_at(self, offsets: Mapping[Position, int]) -> set[Position] | None:
        """As ``KafkaSource.still_at`` (with ``read_committed`` librdkafka gives the last stable offset)."""
        if not offsets:
            return set()
        deadline = time.monotonic() + STILL_AT_TIMEOUT_S
        still = set()
        try:
            for p, offset in offsets.items():
                _, end = self.consumer.get_watermark_offsets(TopicPartition(*p),
                                                              timeout=max(0.1, deadline - time.monotonic()))
                if end <= offset:
                    still.add(p)
        except KafkaException as exc:
            log.debug("end offsets of %d idle partitions not known now: %s", len(offsets), exc)
            return None
        return still

    def _offsets(self) -> dict[Position, tuple[int | None, int | None]]:
        """(position, end offset) of each assigned partition as the client last learned them: no request."""
        assigned = self.consumer.assignment()
        if not assigned:
            return {}
        offsets = {}
        for tp in self.consumer.position(assigned):
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            p = (tp.topic, tp.partition)
            # Nothing handed out since the assignment: the position is where fetching stands (an empty
            # partition, or one resumed at its end, is caught up without a record).
            position = tp.offset if tp.offset >= 0 else self.statistics.fetched_to.get(p)
            offsets[p] = (position, high if high >= 0 else None)
        return offsets

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_assigned is not None:
            self.on_assigned({(tp.topic, tp.partition) for tp in partitions})
        for tp in partitions:
            offset = self.resume_at.get((tp.topic, tp.partition))
            if offset is not None:
                log.info("resuming %s[%d] at checkpointed offset %d", tp.topic, tp.partition, offset)
                tp.offset = offset
        # Assigned with their offsets: a seek before the partition's fetcher has started is refused.
        consumer.assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_revoked is not None:
            self.on_revoked({(tp.topic, tp.partition) for tp in partitions})

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_lost is None:
            self._revoked(consumer, partitions)
        else:
            self.on_lost({(tp.topic, tp.partition) for tp in partitions})

    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = 10_000) -> None:
        """Commit, for each partition still assigned, the offset of the next message to read."""
        assigned = self.assignment()
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items() if (t, p) in assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.code() in _REBALANCING:
                log.warning("offset commit skipped, the group is rebalancing or dropped this member (%s); the "
                            "next checkpoint commits again", error.name())
                return
            raise outage_or_raise(exc, "offset commit") from exc

    def close(self) -> None:
        self.consumer.close()


def _one_partition(messages: list[Message]) -> bool:
    return len(set(map(Message.partition, messages))) == 1 and len(set(map(Message.topic, messages))) == 1


class ConfluentSink:
    """A producer that sends a batch and waits until every message is acknowledged (``KafkaSink``'s twin)."""

    def __init__(self, kafka: Any, conf: Mapping[str, Any] | None = None) -> None:
        """``conf``: librdkafka's configuration in full (default: acks by every in-sync replica, then the
        ``kafka`` section's producer options)."""
        conf = conf or producer_defaults(kafka)
        self.producer = make_client(Producer, dict(conf), kafka)
        self._failed: list[KafkaError] = []

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(error)

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **extra: Any) -> None:
        """Queue one message (``extra``: librdkafka's ``produce`` arguments); ``wait`` says how it went."""
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=self._delivered, **extra)
                return
            except BufferError:  # librdkafka's queue is full: serve deliveries, then try again
                self.producer.poll(0.1)

    def send_all(self, topic: str, messages: Iterable[OutgoingMessage], timeout_s: float = SEND_TIMEOUT_S) -> int:
        """Send ``(key, value, headers)`` triples; returns how many were confirmed, or raises."""
        self._failed = []
        sent = 0
        try:
            for key, value, headers in messages:
                self.produce(topic, value, key, headers=headers or None)
                sent += 1
        except KafkaException as exc:
            raise outage_or_raise(exc, f"delivery to {topic}") from exc
        self.wait(f"delivery to {topic}", timeout_s)
        return sent

    def wait(self, what: str, timeout_s: float) -> None:
        """Wait until everything produced is acknowledged; raise if a message failed or the time ran out
        (what was still queued is dropped then: the caller sends it again)."""
        left = self.producer.flush(timeout_s)
        failed, self._failed = self._failed, []
        if left:
            self.producer.purge(in_queue=True, in_flight=False)
            self.producer.poll(0)
            raise BrokerUnavailable(f"{what} failed: {left} messages not acknowledged within {timeout_s:g} s")
        if failed:
            exc = KafkaException(failed[0])
            raise outage_or_raise(exc, f"{what} ({len(failed)} messages)") from None

    def forget_failures(self) -> None:
        """Forget the failures of messages sent so far (their transaction was aborted)."""
        self._failed = []

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None = None) -> None:
        """Queue one message without waiting (load generation); ``flush`` waits for all of them."""
        self.produce(topic, value, key, **({} if timestamp_ms is None else {"timestamp": timestamp_ms}))

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(-1 if timeout_s is None else timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
