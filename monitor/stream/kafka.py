"""kafka-python's consumer source and the producer of dead letters and scored events (with
``monitor.stream.kafka_state``, for state kept in Kafka, the only modules that use kafka-python's clients;
``monitor.stream.confluent_options`` reads its option names).

Offsets are never committed automatically: the service commits positions it has finished with (after their
records were scored, dead-lettered and confirmed), so delivery is at least once. A broker outage surfaces
as ``BrokerUnavailable`` from ``commit`` and the senders; the service retries those with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from monitor.errors import BrokerUnavailable, CommittedOffsetsPending, ConfigError
from monitor.hourly.window import Progress
from monitor.records import OutgoingMessage, Polled, Position
from monitor.stream.sources import progress_of

log = logging.getLogger(__name__)

STILL_AT_TIMEOUT_MS = 5_000  # how long a judge waits to learn whether idle partitions are still at their end

_OURS = {"bootstrap_servers", "group_id", "enable_auto_commit", "auto_offset_reset", "key_deserializer",
         "value_deserializer", "key_serializer", "value_serializer"}


def client_options(kafka: Any, role: str) -> dict[str, Any]:
    """kafka-python options for ``role`` (``consumer`` or ``producer``) from the ``kafka`` config section:
    the shared ``client`` options, then the role's own, checked against what kafka-python accepts."""
    known = set((KafkaConsumer if role == "consumer" else KafkaProducer).DEFAULT_CONFIG)
    problems = []
    merged: dict[str, Any] = {}
    for section, options in (("client", kafka.client), (role, getattr(kafka, role))):
        for key, value in options.items():
            if key in _OURS:
                problems.append(f"kafka.{section}.{key}: set by the monitor itself; remove it")
            elif key not in known and not (section == "client" and _known_to_other_role(key, role)):
                problems.append(f"kafka.{section}.{key}: not a kafka-python {role} option")
            elif key in known:
                merged[key] = value
    if problems:
        raise ConfigError("\n".join(problems))
    return {"bootstrap_servers": list(kafka.bootstrap_servers), **merged}


def _known_to_other_role(key: str, role: str) -> bool:
    other = KafkaProducer if role == "consumer" else KafkaConsumer
    return key in other.DEFAULT_CONFIG


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the cluster is (temporarily) unreachable rather than that a request was wrong."""
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, BrokerUnavailable)):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def drop_parked(consumer: KafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
    """Forget what kafka-python fetched for ``partitions`` while they were paused, so they are fetched again
    from their position. kafka-python 3.0.12 parks the records a paused partition had fetched and gives them
    back only while no other partition's records are in line, which after the first batch is never: a
    resumed partition then stays out of every fetch (seen: a stopped partition taken up again was never
    read). Only its private fields hold them; a version without them is left as it is."""
    fetcher = getattr(consumer, "_fetcher", None)
    for name in ("_paused_partition_records", "_paused_completed_fetches"):
        parked = getattr(fetcher, name, None)
        if not isinstance(parked, dict):
            continue
        for tp in partitions:
            records = parked.pop(tp, None)
            if records is not None and hasattr(records, "drain"):
                records.drain()


class KafkaSource:
    """A consumer-group member handing out batches of ``RawMessage``; commits only what it is told."""

    def __init__(self, kafka: Any, topics: Sequence[str], group_id: str, auto_offset_reset: str,
                 resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
                 on_revoked: Callable[[set[Position]], None] | None = None,
                 on_assigned: Callable[[set[Position]], None] | None = None,
                 on_lost: Callable[[set[Position]], None] | None = None) -> None:
        """``on_revoked``, ``on_assigned`` and ``on_lost`` are called from inside ``next_batch`` when the group
        takes partitions away (before another member gets them), hands partitions over (before they are
        read), or has dropped this member (its session expired: another member may own its partitions
        already; without ``on_lost``, ``on_revoked`` is called); ``read_committed``: read only committed
        transactions' records."""
        options = client_options(kafka, "consumer")
        if read_committed:
            options["isolation_level"] = "read_committed"
        self.on_revoked, self.on_assigned, self.on_lost = on_revoked, on_assigned, on_lost
        self.consumer = KafkaConsumer(**options, group_id=group_id, enable_auto_commit=False,
                                      auto_offset_reset=auto_offset_reset)
        # The checkpoint, not the group, knows where the window sums are exact: seek there on assignment.
        self.resume_at = dict(resume_at or {})
        # Wall-clock time of each partition's last record (or of its assignment): how long it has been quiet.
        self.heard_at: dict[Position, float] = {}
        keep_rebalances_requested(self.consumer)
        self.topics = tuple(topics)
        self.consumer.subscribe(list(topics), listener=_SeekOnAssign(self))

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        """Up to ``max_records`` messages, waiting at most ``timeout_ms`` for the first."""
        messages: list[Any] = []
        next_offsets: dict[Position, int] = {}
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records).items():
            if records:
                messages += records  # ConsumerRecords are messages as they are: no copy per record
                next_offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        if next_offsets:
            now = time.monotonic()
            self.heard_at.update((p, now) for p in next_offsets)
        return Polled(messages, next_offsets)

    def processed(self, next_offsets: Mapping[Position, int]) -> None:
        """Note how far the caller's state has read, so a re-assigned partition resumes there."""
        self.resume_at.update(next_offsets)

    def lag(self) -> dict[Position, int]:
        """Records between each assigned partition's position and its end, where both are known."""
        return {p: max(0, end - position) for p, (position, end) in self._offsets().items()
                if position is not None and end is not None}

    def seek(self, partition: Position, offset: int) -> None:
        self.consumer.seek(TopicPartition(*partition), offset)

    def rewind(self, partitions: Iterable[Position], timeout_s: float) -> dict[Position, int | None]:
        """Seek each partition to the group's committed offset (or by ``auto_offset_reset`` when there is
        none) and return those offsets. With ``read_committed`` this waits while a transaction that commits
        offsets of these partitions is still open (KIP-447), at most ``timeout_s``: then
        ``CommittedOffsetsPending``. Not from a rebalance callback: it blocks."""
        deadline = time.monotonic() + timeout_s
        committed: dict[Position, int | None] = {}
        for p in partitions:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                committed[p] = self.consumer.committed(TopicPartition(*p), timeout_ms=left_ms)
            except KafkaTimeoutError as exc:
                raise CommittedOffsetsPending(f"{p[0]}[{p[1]}]: {exc}") from exc
        for p, offset in committed.items():
            if offset is not None:
                self.consumer.seek(TopicPartition(*p), offset)
        # Without a committed offset, the start is looked up now and sought as a number: a partition left
        # awaiting kafka-python's own (asynchronous) reset, then paused and resumed, was seen never to be
        # fetched again.
        missing = [TopicPartition(*p) for p, offset in committed.items() if offset is None]
        if missing:
            earliest = self.consumer.config["auto_offset_reset"] == "earliest"
            starts = self.consumer.beginning_offsets(missing) if earliest else self.consumer.end_offsets(missing)
            for tp, start in starts.items():
                self.consumer.seek(tp, start)
        return committed

    def partitions_of(self, topic: str) -> set[int]:
        """The topic's partitions, from the client's metadata."""
        return set(self.consumer.partitions_for_topic(topic) or ())

    def pause(self, partitions: set[Position]) -> None:
        """Fetch nothing from ``partitions`` (assigned ones), and again from every other assigned partition."""
        assigned = self.consumer.assignment()
        paused = [tp for tp in assigned if (tp.topic, tp.partition) in partitions]
        resumed = [tp for tp in assigned if tp not in paused]
        self.consumer.resume(*resumed)
        drop_parked(self.consumer, resumed)
        if paused:
            self.consumer.pause(*paused)

    def assignment(self) -> set[Position]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def progress(self, idle_after_s: float) -> Progress:
        """Which assigned partitions are behind their end (or not known to be caught up), and which are
        caught up and have given no record for ``idle_after_s``: idle if their leader is connected (its
        fetches answer), unreachable if not (an outage: the end the client knows may be stale)."""
        return progress_of(self._offsets(), self.heard_at, idle_after_s, self._answering, self._known_partitions())

    def still_at(self, offsets: Mapping[Position, int]) -> set[Position] | None:
        """Which of these partitions (of any owner) still end where they were read to: nothing was written to
        them since (one request to their leaders; with ``read_committed`` the end is the last stable offset).
        ``None`` when the cluster does not answer within ``STILL_AT_TIMEOUT_MS``: an outage is not quiet."""
        if not offsets:
            return set()
        try:
            ends = self.consumer.end_offsets([TopicPartition(*p) for p in offsets], timeout_ms=STILL_AT_TIMEOUT_MS)
        except KafkaError as exc:
            log.debug("end offsets of %d idle partitions not known now: %s", len(offsets), exc)
            return None
        return {p for p, offset in offsets.items() if ends.get(TopicPartition(*p), offset + 1) <= offset}

    def _known_partitions(self) -> frozenset[Position] | None:
        """Every partition of the input topics, from the client's metadata cache (no request); ``None`` while a
        topic's is not known."""
        cluster = self.consumer._client.cluster  # noqa: SLF001 - the public call may block on a metadata request
        known: set[Position] = set()
        for topic in self.topics:
            numbers = cluster.partitions_for_topic(topic)
            if numbers is None:
                return None
            known.update((topic, n) for n in numbers)
        return frozenset(known)

    def _answering(self, partition: Position) -> bool:
        """Whether the client holds a live connection to the partition's leader (no request is made)."""
        client = self.consumer._client  # noqa: SLF001 - kafka-python is pinned; its public API has no such query
        leader = client.cluster.leader_for_partition(TopicPartition(*partition))
        return leader is not None and leader != -1 and bool(client.connected(leader))

    def _offsets(self) -> dict[Position, tuple[int | None, int | None]]:
        """(position, end offset) of each assigned partition as the client last learned them: no request.

        Reads the client's subscription state (kafka-python is pinned): ``consumer.position`` may block on
        the network to refresh committed offsets, and this runs once a batch."""
        states = self.consumer._subscription.assignment  # noqa: SLF001
        return {(tp.topic, tp.partition): (None if s.position is None else s.position.offset, s.highwater)
                for tp, s in list(states.items())}

    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = 10_000) -> None:
        """Commit, for each partition still assigned, the offset of the next message to read."""
        assigned = self.assignment()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                   for (t, p), o in next_offsets.items() if (t, p) in assigned}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, timeout_ms=timeout_ms)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # The group dropped this member (its loop stalled past max_poll_interval_ms, or its session expired
            # during an outage) or is rebalancing. The state file already holds these positions; the next poll
            # rejoins, seeks to them, and the next checkpoint commits again. Retrying here would never rejoin.
            log.warning("offset commit skipped, the group is rebalancing or dropped this member (%s); the "
                        "next checkpoint commits again", type(exc).__name__)
        except KafkaError as exc:
            if is_outage(exc):
                raise BrokerUnavailable(f"offset commit failed: {exc}") from exc
            raise

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def keep_rebalances_requested(consumer: KafkaConsumer) -> None:
    """Make a rebalance that a metadata change started run to its end, even across short polls.

    kafka-python 3.0.12 notices a new topic or partition by comparing metadata snapshots, without setting
    the coordinator's ``rejoin_needed`` flag. The leader's assignment makes the snapshots equal again, so a
    poll whose timeout ran out during SyncGroup never comes back for the join in flight: the member stays
    in the group with no partitions (seen at startup, when the first join runs before the topic's metadata
    arrives, as soon as polls are short or the machine is busy). Recording the request in the flag keeps
    ``need_rejoin()`` true until the join completes.
    """
    coordinator = consumer._coordinator  # noqa: SLF001 - no public hook; kafka-python is pinned
    detects_rejoin = coordinator.need_rejoin

    def need_rejoin() -> bool:
        if detects_rejoin():
            coordinator.request_rejoin()
            return True
        return False

    coordinator.need_rejoin = need_rejoin


class _SeekOnAssign(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.source.on_assigned is not None:
            self.source.on_assigned({(tp.topic, tp.partition) for tp in assigned})
        for tp in assigned:
            offset = self.source.resume_at.get((tp.topic, tp.partition))
            if offset is not None:
                log.info("resuming %s[%d] at checkpointed offset %d", tp.topic, tp.partition, offset)
                self.source.consumer.seek(tp, offset)

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Batches are processed to the end inside poll's caller: nothing is in hand here, only uncommitted.
        if self.source.on_revoked is not None:
            self.source.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_lost(self, lost: Any) -> None:
        if self.source.on_lost is None:
            self.on_partitions_revoked(lost)
        else:
            self.source.on_lost({(tp.topic, tp.partition) for tp in lost})


FLUSH_SLICE_S = 1.0


def wait_for_sends(producer: KafkaProducer, futures: Iterable[Any], timeout_s: float) -> None:
    """Wait until every send in ``futures`` is acknowledged, at most ``timeout_s`` in all (``KafkaTimeoutError``
    past it; a send's own error raised). kafka-python's ``flush(timeout)`` and ``get(timeout)`` each take the
    whole timeout for every batch and future they wait for: after an outage, one wait after another would
    add up to minutes."""
    deadline = time.monotonic() + timeout_s
    while True:  # in slices: each flush waits at most a slice for the batch it stops at
        remaining = deadline - time.monotonic()
        try:
            producer.flush(timeout=max(0.0, min(remaining, FLUSH_SLICE_S)))
            break
        except KafkaTimeoutError:
            if remaining <= FLUSH_SLICE_S:
                raise
    for future in futures:
        future.get(timeout=max(0.0, deadline - time.monotonic()))


class KafkaSink:
    """A producer that sends a batch and waits until every message is acknowledged."""

    def __init__(self, kafka: Any) -> None:
        # acks=all: a dead letter or scored event counts as delivered only once replicated; max_block_ms bounds
        # how long send() waits for metadata while the cluster is away.
        options = {"acks": "all", "max_block_ms": 10_000, **client_options(kafka, "producer")}
        self.producer = KafkaProducer(**options)

    def send_all(self, topic: str, messages: Iterable[OutgoingMessage], timeout_s: float = 30.0) -> int:
        """Send ``(key, value, headers)`` triples; returns how many were confirmed, or raises."""
        try:
            futures = [self.producer.send(topic, value=value, key=key, headers=headers)
                       for key, value, headers in messages]
            wait_for_sends(self.producer, futures, timeout_s)
        except KafkaError as exc:
            if is_outage(exc):
                raise BrokerUnavailable(f"delivery to {topic} failed: {exc}") from exc
            raise
        return len(futures)

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None = None) -> Any:
        """Queue one message without waiting (for load generation); ``flush`` waits for all of them. The
        arguments in the order of ``StateProducer.send`` and ``send_all``'s messages: topic, key, value."""
        return self.producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.close(timeout=timeout_s)

