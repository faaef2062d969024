"""kafka-python for state kept in Kafka: the internal topics (created with their settings, checked at start),
the changelog reader that restores state, and the producer a group member commits each batch with.

With ``delivery: exactly_once`` the producer is transactional: a batch's changelog records, closed windows,
reports, scored events, dead letters and the input offsets commit together (``send_offsets_to_transaction``
with the consumer's group metadata, so a member the group has replaced is fenced: KIP-447). Readers of the
internal topics read committed records only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata, TopicPartition

from monitor.errors import BrokerUnavailable, ConfigError, StateError
from monitor.records import OutgoingMessage, Position
from monitor.stream.kafka import client_options, is_outage, wait_for_sends

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 16 * 1024 * 1024  # one partition's open windows with their samples; far above the usual
RESTORE_TIMEOUT_S = 300.0
TRANSACTION_STEP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class InternalTopic:
    """A topic the monitor writes for itself: its partitions (when created) and settings."""

    name: str
    partitions: int
    configs: Mapping[str, str]
    compacted: bool = False


def internal_topics(changelog: str, windows: str, windows_partitions: int, reports: str,
                    models: str) -> list[InternalTopic]:
    """The changelog (compacted: the latest state per key, old values cleaned within minutes), the models
    topic (compacted: the group's model schedule), the windows topic (closed partition windows on their way
    to the judge: a week is plenty), the reports topic."""
    big = {"max.message.bytes": str(MAX_STATE_BYTES)}
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000",
                 "delete.retention.ms": "86400000"}
    return [InternalTopic(changelog, 1, {**compacted, **big}, True), InternalTopic(models, 1, compacted, True),
            InternalTopic(windows, windows_partitions, {"cleanup.policy": "delete", "retention.ms": "604800000", **big}),
            InternalTopic(reports, 1, {})]


def _admin_options(kafka: Any) -> dict[str, Any]:
    known = set(KafkaAdminClient.DEFAULT_CONFIG)
    return {"bootstrap_servers": list(kafka.bootstrap_servers),
            **{k: v for k, v in kafka.client.items() if k in known}}


def ensure_topics(kafka: Any, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
    """Create the missing ``topics``; check that an existing changelog is compacted. Returns each topic's
    partition count. Raises ``StateError`` naming what is wrong."""
    admin = KafkaAdminClient(**_admin_options(kafka))
    try:
        wanted = list(topics)
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster().get("brokers", [])) or 1
        factor = replication_factor or min(3, brokers)
        missing = {t.name: {"num_partitions": t.partitions, "replication_factor": factor, "configs": dict(t.configs)}
                   for t in wanted if t.name not in existing}
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=30_000, wait_for_metadata=True)
                log.info("created internal topics %s (replication factor %d)", ", ".join(sorted(missing)), factor)
            except TopicAlreadyExistsError:
                pass  # another instance created them first
        for topic in (t for t in wanted if t.compacted and t.name in existing):
            policy = _topic_config(admin, topic.name, "cleanup.policy")
            if policy is not None and "compact" not in policy:
                raise StateError(f"the changelog topic {topic.name!r} has cleanup.policy={policy}: state would be "
                                 "deleted by retention. Set it to compact, or name another state.changelog_topic")
        described = admin.describe_topics([t.name for t in wanted])
        return {d["name"]: len(d["partitions"]) for d in described}
    finally:
        admin.close()


def _topic_config(admin: KafkaAdminClient, topic: str, key: str) -> str | None:
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})],
                                   config_filter="all")
    for resources in _values(result):
        for configs in _values(resources):
            entry = configs.get(key) if isinstance(configs, Mapping) else None
            if isinstance(entry, Mapping):
                return str(entry.get("value"))
            if entry is not None:
                return str(entry)
    return None


def _values(data: Any) -> list[Any]:
    if isinstance(data, Mapping):
        return list(data.values())
    return list(data) if isinstance(data, list) else []


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: how an input topic finds its judge."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def latest_values(records: Iterable[Any]) -> tuple[dict[str, bytes], dict[str, Position], int, set[str]]:
    """The latest value of every key of a compacted topic's records in order (a tombstone removes the key),
    where each was read (partition, offset), how many records were read, and the keys whose latest record is
    a tombstone (removed on purpose, as ``state drop-key`` does)."""
    latest: dict[str, bytes] = {}
    locations: dict[str, Position] = {}
    removed: set[str] = set()
    read = 0
    for record in records:
        read += 1
        key = record.key.decode("utf-8", "replace") if record.key else ""
        if record.value is None:
            latest.pop(key, None)
            locations.pop(key, None)
            removed.add(key)
        else:
            latest[key] = record.value
            locations[key] = (record.partition, record.offset)
            removed.discard(key)
    return latest, locations, read, removed


class ChangelogReader:
    """Reads a compacted topic from its start to its end, committed records only: the latest value per key
    (a tombstone removes the key), where each was read (``locations``), and on demand a key's older values
    that compaction has not removed yet (``versions``)."""

    def __init__(self, kafka: Any, topic: str) -> None:
        options = {**client_options(kafka, "consumer"), "isolation_level": "read_committed"}
        self.topic = topic
        self.consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest")
        self.locations: dict[str, Position] = {}  # key -> (partition, offset) of its latest value
        self.removed: set[str] = set()  # keys whose latest record is a tombstone

    def read(self) -> tuple[dict[str, bytes], int]:
        """(the latest value of every key, records read)."""
        latest, self.locations, read, self.removed = latest_values(self._records())
        return latest, read

    def versions(self, key: str) -> list[tuple[Position, bytes | None]]:
        """Every value of ``key`` still in the topic, newest first, with its (partition, offset); ``None`` for
        a tombstone."""
        wanted = key.encode("utf-8")
        found = [((r.partition, r.offset), r.value) for r in self._records() if r.key == wanted]
        return found[::-1]

    def _records(self) -> Iterable[Any]:
        """Every committed record from the start to the end the topic has now."""
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        if not tps:
            return
        self.consumer.seek_to_beginning(*tps)
        ends = self.consumer.end_offsets(tps)
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while any(self.consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"restoring from {self.topic} took more than {RESTORE_TIMEOUT_S:.0f} s")
            for records in self.consumer.poll(timeout_ms=500, max_records=10_000).values():
                yield from records

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class TopicFollower:
    """Follows a one-partition topic from its start, committed records only: ``read_to_end`` and ``poll``
    (which does not wait) return the records that arrived since the last call, as (offset, key, value)."""

    def __init__(self, kafka: Any, topic: str) -> None:
        options = {**client_options(kafka, "consumer"), "isolation_level": "read_committed"}
        self.consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest")
        self.topic = topic
        self.partition = TopicPartition(topic, 0)
        self.consumer.assign([self.partition])
        self.consumer.seek_to_beginning(self.partition)

    def read_to_end(self) -> list[tuple[int, str, bytes]]:
        """Everything up to the topic's current end."""
        end = self.consumer.end_offsets([self.partition])[self.partition]
        records: list[tuple[int, str, bytes]] = []
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while self.consumer.position(self.partition) < end:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"reading {self.partition.topic} took more than {RESTORE_TIMEOUT_S:.0f} s")
            records += _records(self.consumer.poll(timeout_ms=500))
        return records

    def poll(self) -> list[tuple[int, str, bytes]]:
        return _records(self.consumer.poll(timeout_ms=0))

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def _records(polled: Mapping[Any, Any]) -> list[tuple[int, str, bytes]]:
    return [(r.offset, r.key.decode("utf-8") if r.key else "", r.value)
            for records in polled.values() for r in records if r.value is not None]


def publish(kafka: Any, topic: str, key: str, value: bytes | None) -> None:
    """One record (``None``: a tombstone), acknowledged by every in-sync replica (``python -m monitor accept``
    and ``state drop-key`` with state in Kafka)."""
    producer = KafkaProducer(acks="all", **client_options(kafka, "producer"))
    try:
        producer.send(topic, key=key.encode("utf-8"), value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)


def transactions_unsupported(exc: BaseException) -> ConfigError:
    """The error for a cluster that refuses transactions (either client's ``StateProducer``)."""
    return ConfigError(f"the Kafka cluster does not support transactions ({exc}); exactly-once needs Kafka 2.5 or "
                       "later. Set state.delivery: at_least_once to run without them (outputs may then repeat after "
                       "a crash)")


class StateProducer:
    """Sends a batch's outputs and state, and commits them with the consumed offsets.

    ``transactional_id`` set: exactly once (one transaction per commit, begun at the first send). ``None``:
    at least once: ``commit`` waits for every send, then commits the offsets through the consumer."""

    def __init__(self, kafka: Any, transactional_id: str | None, transaction_timeout_ms: int) -> None:
        self._options = {"acks": "all", "max_block_ms": 10_000, "max_request_size": MAX_STATE_BYTES,
                         **client_options(kafka, "producer")}
        if transactional_id is not None:
            self._options.update(transactional_id=transactional_id, transaction_timeout_ms=transaction_timeout_ms,
                                 enable_idempotence=True)
        self.transactional = transactional_id is not None
        self._futures: list[Any] = []
        self.in_transaction = False
        self.producer = self._start()

    def _start(self) -> KafkaProducer:
        producer = KafkaProducer(**self._options)
        if self.transactional:
            try:
                producer.init_transactions()
            except UnsupportedVersionError as exc:
                producer.close(timeout=5)
                raise transactions_unsupported(exc) from exc
            except BaseException:
                producer.close(timeout=0)
                raise
        return producer

    def _begin(self) -> None:
        if self.transactional and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def send_all(self, topic: str, messages: Iterable[OutgoingMessage], timeout_s: float = 30.0) -> int:
        """Queue ``(key, value, headers)`` triples in the open transaction (``Sink``)."""
        self._begin()
        sent = 0
        for key, value, headers in messages:
            self._futures.append(self.producer.send(topic, value=value, key=key, headers=headers))
            sent += 1
        return sent

    def send(self, topic: str, key: str, value: bytes | None, partition: int | None = None) -> None:
        """Queue one keyed record (``None``: a tombstone)."""
        self._begin()
        self._futures.append(self.producer.send(topic, value=value, key=key.encode("utf-8"), partition=partition))

    def commit(self, offsets: Mapping[Position, int], consumer: KafkaConsumer, through_consumer: bool = True) -> None:
        """Make everything sent since the last commit visible together with ``offsets`` (the next offset to
        read per partition). Raises ``BrokerUnavailable`` on an outage, ``KafkaError`` otherwise. At least
        once, ``through_consumer=False`` only waits for the sends (the consumer cannot block in a rebalance
        callback)."""
        committed = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        try:
            if self.transactional and not self.in_transaction and not committed:
                return
            # Every send must have landed before anything commits: after an outage kafka-python may expire
            # a batch and still let its transaction commit, which would lose those records.
            wait_for_sends(self.producer, self._futures, TRANSACTION_STEP_TIMEOUT_S)
            if self.transactional:
                self._begin()
                if committed:
                    self._wait(self._transactions().send_offsets_to_transaction(committed, consumer.group_metadata()),
                               "sending the offsets to the transaction")
                self._wait(self._transactions().begin_commit(), "committing the transaction")
                self.in_transaction = False
            elif committed and through_consumer:
                consumer.commit(offsets=committed)
        except KafkaError as exc:
            if is_outage(exc):
                raise BrokerUnavailable(f"commit failed: {exc}") from exc
            raise
        finally:
            self._futures = []

    def abort(self) -> None:
        """Drop what was sent since the last commit (exactly once; at least once cannot take it back), then
        carry on with a fresh producer under the same transactional id.

        The fresh producer is the fix, not a precaution: kafka-python (pinned) keeps the offsets of a
        ``send_offsets_to_transaction`` that failed (a member the group dropped: ``UnknownMemberIdError``)
        through the abort, and sends them with the next transaction's offsets. The group would then commit
        offsets whose outputs were just aborted: those records are never written."""
        self._futures = []
        if self.transactional and self.in_transaction:
            self.in_transaction = False
            self._wait(self._transactions().begin_abort(), "aborting the transaction")
            self.producer.close(timeout=5)
            self.producer = self._start()

    def _transactions(self) -> Any:
        return self.producer._transaction_manager  # noqa: SLF001 - see _wait

    def _wait(self, result: Any, step: str) -> None:
        """Wait for a step of the transaction at most ``TRANSACTION_STEP_TIMEOUT_S``, as the Java client waits
        ``max.block.ms``. kafka-python (pinned) offers these steps only with a wait without end, and a request
        in flight when the cluster went away may never complete: the member would hang for good (seen after a
        broker restart). A timeout is an outage like any other: the transaction is aborted or, if that
        times out too, the producer is replaced (its successor fences it)."""
        self.producer._sender.wakeup()  # noqa: SLF001 - what the public methods do before they wait
        if not result.wait(timeout_ms=int(TRANSACTION_STEP_TIMEOUT_S * 1000)):
            raise KafkaTimeoutError(f"{step} took more than {TRANSACTION_STEP_TIMEOUT_S:.0f} s")

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.close(timeout=timeout_s)

    def discard(self) -> None:
        """Close a producer given up on (fenced, its transaction timed out, the cluster away) without waiting:
        what it still holds is dropped; the broker aborts its transaction (at once when the next producer
        with the same transactional id starts)."""
        try:
            # kafka-python (pinned) waits in close() for every pending batch, and again when the object is
            # collected: fail them first.
            self.producer._accumulator.abort_incomplete_batches()  # noqa: SLF001
            self.producer.close(timeout=0)
        except Exception:  # noqa: BLE001 - best effort: nothing of it is used again
            log.debug("discarding the producer failed", exc_info=True)
