"""A Kafka cluster in memory, for running one member of a group or several in one process without a broker
(as Kafka Streams' ``TopologyTestDriver`` and bytewax's in-process workers do).

It offers the clients the service builds (``monitor.stream.clients.Clients``): a group consumer, a
transactional producer, the changelog reader and the models-topic follower, with the behaviour the group
relies on and nothing more:

- records sent in a transaction become visible, with the consumed offsets, when it commits; an aborted
  transaction leaves nothing (read-committed readers only);
- a rebalance calls every member's ``on_revoked`` first (each commits), then hands the partitions out again
  (range assignment per topic, members in join order); a member ``kill``-ed is dropped without a word, and
  whatever it had not committed never becomes visible;
- a producer started under a transactional id fences the one before it; a commit carrying offsets of
  partitions its member no longer owns, or an old generation, is refused (KIP-447);
- ``outage`` makes every request fail as an unreachable cluster does, until ``recover``.
- ``hang_offsets`` leaves a group's committed offsets held by a transaction that never ends (a hanging
  transaction): a member's wait for them times out, each wait passing ``sleep``, until ``end_hanging``.

What it leaves out: replication, compaction, batching, timeouts, and the broker's wait for an open
transaction of a dead member (here what it did not commit is simply never seen).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kafka.errors import CommitFailedError, KafkaError, ProducerFencedError

from monitor.errors import BrokerUnavailable, CommittedOffsetsPending
from monitor.hourly.window import Progress
from monitor.records import OutgoingMessage, Polled, Position, RawMessage
from monitor.stream.kafka_state import InternalTopic, latest_values, partition_of

Clock = Callable[[], float]


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    generation: int = 0
    committed: dict[Position, int] = field(default_factory=dict)
    hanging: set[Position] = field(default_factory=set)  # offsets a transaction holds that never ends


class MemoryKafka:
    """Topics, consumer groups and transactional ids, in memory. ``clock``: the wall clock a consumer measures
    quiet partitions with (tests move it on by hand)."""

    def __init__(self, clock: Clock = time.monotonic, sleep: Callable[[float], None] = lambda seconds: None) -> None:
        self.clock = clock
        self.sleep = sleep
        self.logs: dict[str, list[list[RawMessage]]] = {}
        self.groups: dict[str, _Group] = {}
        self.epochs: dict[str, int] = {}  # transactional id -> the epoch of its newest producer
        self.down = False
        self._round_robin = itertools.count()

    # -- the cluster -----------------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.logs.setdefault(name, [[] for _ in range(partitions)])

    def partitions(self, topic: str) -> int:
        return len(self.logs.get(topic, ()))

    def end(self, partition: Position) -> int:
        return len(self.logs[partition[0]][partition[1]])

    def records(self, topic: str) -> list[RawMessage]:
        """Every visible record of ``topic``, partition by partition."""
        return [m for log in self.logs.get(topic, ()) for m in log]

    def produce(self, topic: str, values: Iterable[tuple[int, bytes]], partitions: int | None = None) -> None:
        """``(timestamp_ms, value)`` pairs, round-robin over the partitions (created with ``partitions``)."""
        self.create_topic(topic, partitions or 1)
        count = self.partitions(topic)
        for i, (timestamp, value) in enumerate(values):
            self._append(topic, i % count, None, value, timestamp)

    def outage(self) -> None:
        self.down = True

    def recover(self) -> None:
        self.down = False

    def hang_offsets(self, group_id: str, partitions: Iterable[Position]) -> None:
        self._group(group_id).hanging.update(partitions)

    def end_hanging(self, group_id: str) -> None:
        self._group(group_id).hanging.clear()

    def check_up(self) -> None:
        if self.down:
            raise BrokerUnavailable("the in-memory cluster is down")

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                timestamp: int | None = None, headers: Sequence[tuple[str, bytes | None]] = ()) -> None:
        log = self.logs[topic][partition]
        log.append(RawMessage(topic, partition, len(log), timestamp, key, value, tuple(headers)))

    def _partition_for(self, topic: str, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            return partition
        if key is not None:  # Kafka's default partitioner, as the windows topic's judges are found
            return partition_of(key.decode("utf-8"), self.partitions(topic))
        return next(self._round_robin) % self.partitions(topic)

    # -- consumer groups -------------------------------------------------------------------------------------
    def _group(self, group_id: str) -> _Group:
        return self.groups.setdefault(group_id, _Group())

    def _join(self, member: MemoryConsumer) -> None:
        group = self._group(member.group_id)
        if member not in group.members:
            group.members.append(member)
        self._rebalance(group)

    def _leave(self, member: MemoryConsumer, say: bool) -> None:
        group = self._group(member.group_id)
        if member in group.members:
            if say:
                member._revoke()
            group.members.remove(member)
            self._rebalance(group)

    def kill(self, member: MemoryConsumer) -> None:
        """The member's process died: the group hands its partitions out without hearing from it again."""
        member.dead = True
        self._leave(member, say=False)

    def _rebalance(self, group: _Group) -> None:
        """Eager protocol: every member gives its partitions up (committing), then each gets its share."""
        for member in group.members:  # they commit under the generation they were assigned in
            member._revoke()
        group.generation += 1
        topics = sorted({t for m in group.members for t in m.topics if t in self.logs})
        shares: dict[int, set[Position]] = {i: set() for i in range(len(group.members))}
        for topic in topics:
            count, members = self.partitions(topic), len(group.members)
            for number in range(count):
                shares[number * members // count].add((topic, number))
        for i, member in enumerate(group.members):
            member._assign(shares[i], group.generation)


class MemoryConsumer:
    """A member of a consumer group on ``MemoryKafka``: what ``monitor.stream.kafka.KafkaSource`` offers the
    service, reading committed records only. The rebalance callbacks run inside ``next_batch``, as in Kafka."""

    def __init__(self, kafka: MemoryKafka, topics: Sequence[str], group_id: str, auto_offset_reset: str = "earliest",
                 resume_at: Mapping[Position, int] | None = None, *,
                 on_revoked: Callable[[set[Position]], None] | None = None,
                 on_assigned: Callable[[set[Position]], None] | None = None,
                 on_lost: Callable[[set[Position]], None] | None = None) -> None:
        self.kafka, self.topics, self.group_id = kafka, tuple(topics), group_id
        self.auto_offset_reset = auto_offset_reset
        self.on_revoked, self.on_assigned, self.on_lost = on_revoked, on_assigned, on_lost
        self.resume_at = dict(resume_at or {})
        self.assigned: set[Position] = set()
        self.positions: dict[Position, int] = {}
        self.paused: set[Position] = set()
        self.heard_at: dict[Position, float] = {}
        self.generation = 0
        self.dead = False
        self._joined = False
        self._handed: set[Position] | None = None  # assigned, not told yet (told at the next poll)
        self._turn = 0

    @property
    def consumer(self) -> MemoryConsumer:
        """What the producer commits offsets through (the client itself, as kafka-python's consumer is)."""
        return self

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        if not self._joined:
            self._joined = True
            self.kafka._join(self)
        if self.kafka.down:
            return Polled([], {})
        if self._handed is not None:
            handed, self._handed = self._handed, None
            now = self.kafka.clock()
            self.heard_at = {p: now for p in handed}
            for p in handed:
                self.positions[p] = self.resume_at.get(p, self._reset_position(p))
            if self.on_assigned is not None:
                self.on_assigned(set(handed))
        messages: list[RawMessage] = []
        next_offsets: dict[Position, int] = {}
        readable = sorted(self.assigned - self.paused)
        self._turn += 1  # each poll starts at the next partition, as Kafka's fetches take turns
        for p in readable[self._turn % len(readable):] + readable[:self._turn % len(readable)] if readable else ():
            log = self.kafka.logs[p[0]][p[1]]
            taken = log[self.positions[p]:self.positions[p] + max_records - len(messages)]
            if taken:
                messages += taken
                self.positions[p] += len(taken)
                next_offsets[p] = self.positions[p]
                self.heard_at[p] = self.kafka.clock()
        return Polled(messages, next_offsets)

    def _revoke(self) -> None:
        if self.assigned and self.on_revoked is not None and not self.dead:
            self.on_revoked(set(self.assigned))
        self.assigned, self._handed = set(), None

    def _assign(self, partitions: set[Position], generation: int) -> None:
        self.assigned, self._handed, self.generation = set(partitions), set(partitions), generation
        self.paused &= self.assigned

    def _reset_position(self, p: Position) -> int:
        committed = self.kafka._group(self.group_id).committed.get(p)
        if committed is not None:
            return committed
        return 0 if self.auto_offset_reset == "earliest" else self.kafka.end(p)

    def processed(self, next_offsets: Mapping[Position, int]) -> None:
        self.resume_at.update(next_offsets)

    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = 0) -> None:
        """Commit through the group (at least once): the partitions still assigned only."""
        self.kafka.check_up()
        committed = self.kafka._group(self.group_id).committed
        committed.update({p: o for p, o in next_offsets.items() if p in self.assigned})

    def lag(self) -> dict[Position, int]:
        return {p: max(0, self.kafka.end(p) - self.positions[p]) for p in self.assigned if p in self.positions}

    def seek(self, partition: Position, offset: int) -> None:
        self.positions[partition] = offset

    def rewind(self, partitions: Iterable[Position], timeout_s: float) -> dict[Position, int | None]:
        self.kafka.check_up()
        group = self.kafka._group(self.group_id)
        held = set(partitions) & group.hanging
        if held:
            self.kafka.sleep(timeout_s)
            raise CommittedOffsetsPending(f"{len(held)} partition(s) held by an open transaction")
        committed = group.committed
        found = {p: committed.get(p) for p in partitions}
        for p in found:
            self.positions[p] = self._reset_position(p)
        return found

    def partitions_of(self, topic: str) -> set[int]:
        return set(range(self.kafka.partitions(topic)))

    def pause(self, partitions: set[Position]) -> None:
        self.paused = set(partitions) & self.assigned

    def assignment(self) -> set[Position]:
        return set(self.assigned)

    def progress(self, idle_after_s: float) -> Progress:
        now = self.kafka.clock()
        behind, idle, unreachable = set(), set(), set()
        idle_at: dict[Position, int] = {}
        for p in self.assigned:
            position = self.positions.get(p)
            if position is None or position < self.kafka.end(p):
                behind.add(p)
            elif now - self.heard_at.setdefault(p, now) >= idle_after_s:
                if self.kafka.down:
                    unreachable.add(p)
                else:
                    idle.add(p)
                    idle_at[p] = position
        known = frozenset((t, n) for t in self.topics for n in range(self.kafka.partitions(t)))
        return Progress(frozenset(self.assigned), frozenset(behind), frozenset(idle), frozenset(unreachable),
                        known, idle_at)

    def still_at(self, offsets: Mapping[Position, int]) -> set[Position] | None:
        if self.kafka.down:
            return None
        return {p for p, offset in offsets.items() if self.kafka.end(p) <= offset}

    def close(self) -> None:
        """Leave the group: ``on_revoked`` first (it may commit), as kafka-python's ``close`` does."""
        if not self.dead:
            self.kafka._leave(self, say=True)
            self.dead = True


class MemoryProducer:
    """What ``monitor.stream.kafka_state.StateProducer`` offers: sends kept until ``commit`` makes them visible
    with the offsets (exactly once), or visible at once (at least once, ``transactional_id`` ``None``)."""

    def __init__(self, kafka: MemoryKafka, transactional_id: str | None, transaction_timeout_ms: int = 60_000) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id
        self.transactional = transactional_id is not None
        self.in_transaction = False
        self._pending: list[tuple[str, int, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]] = []
        self.epoch = 0
        self._failed: BaseException | None = None  # a refused commit: nothing goes on until ``abort``
        if transactional_id is not None:
            kafka.check_up()
            self.epoch = kafka.epochs[transactional_id] = kafka.epochs.get(transactional_id, 0) + 1

    def send_all(self, topic: str, messages: Iterable[OutgoingMessage], timeout_s: float = 0.0) -> int:
        sent = 0
        for key, value, headers in messages:
            self._send(topic, key, value, None, headers)
            sent += 1
        return sent

    def send(self, topic: str, key: str, value: bytes | None, partition: int | None = None) -> None:
        self._send(topic, key.encode("utf-8"), value, partition, ())

    def _send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
              headers: Sequence[tuple[str, bytes | None]]) -> None:
        self.kafka.create_topic(topic)
        record = (topic, self.kafka._partition_for(topic, key, partition), key, value, tuple(headers))
        self._check_not_failed()
        if self.transactional:
            self.in_transaction = True
            self._pending.append(record)
        else:
            self.kafka.check_up()
            self.kafka._append(record[0], record[1], record[2], record[3], None, record[4])

    def commit(self, offsets: Mapping[Position, int], consumer: MemoryConsumer, through_consumer: bool = True) -> None:
        kafka = self.kafka
        kafka.check_up()
        if not self.transactional:
            if offsets and through_consumer:
                consumer.commit(offsets)
            return
        self._check_not_failed()
        if kafka.epochs.get(self.transactional_id or "") != self.epoch:
            raise ProducerFencedError(f"a newer producer has the transactional id {self.transactional_id!r}")
        group = kafka._group(consumer.group_id)
        if offsets and (consumer.dead or consumer.generation != group.generation
                        or not set(offsets) <= consumer.assigned):
            # As a broker's refused TxnOffsetCommit does: the transaction can only be aborted now.
            self._failed = CommitFailedError("the group has moved on: these offsets are not this member's any more")
            raise self._failed
        for topic, partition, key, value, headers in self._pending:
            kafka._append(topic, partition, key, value, None, headers)
        group.committed.update(offsets)
        self._pending, self.in_transaction = [], False

    def abort(self) -> None:
        self._pending, self.in_transaction, self._failed = [], False, None

    def _check_not_failed(self) -> None:
        if self._failed is not None:
            raise KafkaError(f"the transaction must be aborted first: {self._failed}")

    def close(self, timeout_s: float = 0.0) -> None:
        self._pending = []

    def discard(self) -> None:
        self._pending = []


class MemoryChangelog:
    """What ``monitor.stream.kafka_state.ChangelogReader`` offers: a compacted topic's latest values."""

    def __init__(self, kafka: MemoryKafka, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.locations: dict[str, Position] = {}
        self.removed: set[str] = set()

    def read(self) -> tuple[dict[str, bytes], int]:
        self.kafka.check_up()
        latest, self.locations, read, self.removed = latest_values(self.kafka.records(self.topic))
        return latest, read

    def versions(self, key: str) -> list[tuple[Position, bytes | None]]:
        wanted = key.encode("utf-8")
        return [((r.partition, r.offset), r.value) for r in self.kafka.records(self.topic) if r.key == wanted][::-1]

    def close(self) -> None:
        pass


class MemoryFollower:
    """What ``monitor.stream.kafka_state.TopicFollower`` offers: a one-partition topic, followed."""

    def __init__(self, kafka: MemoryKafka, topic: str) -> None:
        self.kafka, self.topic, self.position = kafka, topic, 0
        kafka.create_topic(topic)

    def read_to_end(self) -> list[tuple[int, str, bytes]]:
        self.kafka.check_up()
        return self.poll()

    def poll(self) -> list[tuple[int, str, bytes]]:
        if self.kafka.down:
            return []
        log = self.kafka.logs[self.topic][0]
        taken, self.position = log[self.position:], len(log)
        return [(r.offset, r.key.decode("utf-8") if r.key else "", r.value) for r in taken if r.value is not None]

    def close(self) -> None:
        pass


class MemoryClients:
    """``monitor.stream.clients.Clients`` on a ``MemoryKafka``: what the builder connects to instead of a
    cluster. ``consumers`` keeps every consumer made, newest last (tests kill or close them)."""

    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka
        self.consumers: list[MemoryConsumer] = []

    def ensure_topics(self, topics: Iterable[InternalTopic], replication_factor: int | None) -> dict[str, int]:
        self.kafka.check_up()
        for topic in topics:
            self.kafka.create_topic(topic.name, topic.partitions)
        return {name: len(log) for name, log in self.kafka.logs.items()}

    def source(self, topics: Sequence[str], group_id: str, auto_offset_reset: str,
               resume_at: Mapping[Position, int] | None = None, *, read_committed: bool = False,
               on_revoked: Callable[[set[Position]], None] | None = None,
               on_assigned: Callable[[set[Position]], None] | None = None,
               on_lost: Callable[[set[Position]], None] | None = None) -> MemoryConsumer:
        self.kafka.check_up()
        consumer = MemoryConsumer(self.kafka, topics, group_id, auto_offset_reset, resume_at,
                                  on_revoked=on_revoked, on_assigned=on_assigned, on_lost=on_lost)
        self.consumers.append(consumer)
        return consumer

    def sink(self) -> MemoryProducer:
        return MemoryProducer(self.kafka, None)

    def state_producer(self, transactional_id: str | None, transaction_timeout_ms: int) -> MemoryProducer:
        return MemoryProducer(self.kafka, transactional_id, transaction_timeout_ms)

    def changelog(self, topic: str) -> MemoryChangelog:
        return MemoryChangelog(self.kafka, topic)

    def follower(self, topic: str) -> MemoryFollower:
        return MemoryFollower(self.kafka, topic)

    def publish(self, topic: str, key: str, value: bytes | None) -> None:
        MemoryProducer(self.kafka, None).send(topic, key, value)
