"""The in-memory cluster the group's tests run on (``monitor.devtools.memory_kafka``) keeps the promises the
group relies on: transactions visible when committed and never when aborted, fencing by transactional id,
eager rebalances that commit on revoke, a killed member's partitions handed to the others, commits of a
member that lost its partitions refused, outages until recovery."""

from __future__ import annotations

import pytest
from kafka.errors import CommitFailedError, KafkaError, ProducerFencedError

from monitor.devtools.memory_kafka import MemoryChangelog, MemoryClients, MemoryConsumer, MemoryFollower, \
    MemoryKafka, MemoryProducer
from monitor.errors import BrokerUnavailable, CommittedOffsetsPending
from monitor.records import Position
from monitor.stream.kafka_state import InternalTopic, partition_of


def values(consumer: MemoryConsumer, max_records: int = 100) -> list[bytes | None]:
    return [m.value for m in consumer.next_batch(max_records, 0).messages]


def read_all(consumer: MemoryConsumer) -> list[bytes | None]:
    """Everything the consumer reads until a poll brings nothing."""
    out: list[bytes | None] = []
    while batch := values(consumer):
        out += batch
    return out


class Member:
    """A consumer that commits what it read when its partitions are revoked, as the group's members do, and
    remembers every hand-over."""

    def __init__(self, kafka: MemoryKafka, topics: tuple[str, ...] = ("events",), group: str = "g") -> None:
        self.revoked: list[set[Position]] = []
        self.assigned: list[set[Position]] = []
        self.consumer = MemoryConsumer(kafka, topics, group, on_revoked=self._on_revoked,
                                       on_assigned=self.assigned.append)

    def _on_revoked(self, partitions: set[Position]) -> None:
        self.revoked.append(partitions)
        self.consumer.commit({p: self.consumer.positions[p] for p in partitions if p in self.consumer.positions})


@pytest.fixture
def kafka() -> MemoryKafka:
    cluster = MemoryKafka()
    cluster.create_topic("events", 4)
    return cluster


def test_produced_values_go_round_robin_over_the_partitions_with_offsets_counting_from_zero(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(1000 + i, f"v{i}".encode()) for i in range(6)])
    assert [[(m.offset, m.value, m.timestamp) for m in log] for log in kafka.logs["events"]] == [
        [(0, b"v0", 1000), (1, b"v4", 1004)], [(0, b"v1", 1001), (1, b"v5", 1005)], [(0, b"v2", 1002)],
        [(0, b"v3", 1003)]]
    assert kafka.end(("events", 0)) == 2 and kafka.end(("events", 3)) == 1


def test_a_transactions_records_are_invisible_until_it_commits_then_visible_with_its_offsets(
        kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"in")])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    reader = MemoryConsumer(kafka, ["out"], "readers")
    producer = MemoryProducer(kafka, "member-a")
    assert values(consumer) == [b"in"]
    producer.send("out", "k", b"scored")
    assert producer.in_transaction
    assert kafka.records("out") == [] and read_all(reader) == []
    assert kafka.groups["g"].committed == {}
    producer.commit({("events", 0): 1}, consumer)
    assert [r.value for r in kafka.records("out")] == [b"scored"] and read_all(reader) == [b"scored"]
    assert kafka.groups["g"].committed == {("events", 0): 1}
    assert not producer.in_transaction


def test_an_aborted_transaction_leaves_nothing_not_even_after_a_later_commit(kafka: MemoryKafka) -> None:
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(10, 0)
    producer = MemoryProducer(kafka, "member-a")
    producer.send("out", "k", b"aborted")
    producer.abort()
    producer.send("out", "k", b"kept")
    producer.commit({}, consumer)
    assert [r.value for r in kafka.records("out")] == [b"kept"]


def test_a_producer_restarted_under_the_same_transactional_id_fences_the_old_one(kafka: MemoryKafka) -> None:
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(10, 0)
    zombie = MemoryProducer(kafka, "member-a")
    zombie.send("out", "k", b"from the zombie")
    restarted = MemoryProducer(kafka, "member-a")
    with pytest.raises(ProducerFencedError):
        zombie.commit({}, consumer)
    restarted.send("out", "k", b"from the restarted one")
    restarted.commit({}, consumer)
    assert [r.value for r in kafka.records("out")] == [b"from the restarted one"]
    MemoryProducer(kafka, "member-b").commit({}, consumer)  # another id is not fenced by either


def test_a_producer_without_transactional_id_sends_at_once_and_commits_through_the_consumer(
        kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"in")])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(10, 0)
    producer = MemoryProducer(kafka, None)
    producer.send_all("out", [(None, b"dead letter", [("reason", b"empty_value")])])
    assert [(r.value, r.headers) for r in kafka.records("out")] == [(b"dead letter", (("reason", b"empty_value"),))]
    assert not producer.in_transaction
    producer.commit({("events", 0): 1}, consumer)
    assert kafka.groups["g"].committed == {("events", 0): 1}


def test_a_keyed_record_goes_to_the_partition_kafkas_default_partitioner_picks(kafka: MemoryKafka) -> None:
    kafka.create_topic("windows", 5)
    producer = MemoryProducer(kafka, None)
    for key in ("events", "orders", "users"):
        producer.send("windows", key, b"x")
    assert sorted((r.partition, r.key) for r in kafka.records("windows")) == sorted(
        (partition_of(key, 5), key.encode()) for key in ("events", "orders", "users"))
    producer.send("windows", "events", b"y", partition=4)  # a given partition wins
    assert kafka.logs["windows"][4][-1].value == b"y"


def test_a_lone_member_gets_every_partition_and_reads_from_the_earliest_or_the_end(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(8)])
    earliest = MemoryConsumer(kafka, ["events"], "early")
    assert sorted(read_all(earliest)) == [b"%d" % i for i in range(8)]
    assert earliest.assignment() == {("events", n) for n in range(4)}
    latest = MemoryConsumer(kafka, ["events"], "late", auto_offset_reset="latest")
    assert read_all(latest) == []
    kafka.produce("events", [(0, b"new")])
    assert read_all(latest) == [b"new"]


def test_a_poll_returns_no_more_than_asked_and_the_rest_comes_next(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(8)])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    sizes = [len(values(consumer, 3)) for _ in range(4)]
    assert sizes == [3, 3, 2, 0]
    assert consumer.lag() == {("events", n): 0 for n in range(4)}


def test_a_joining_member_makes_the_first_commit_on_revoke_and_takes_its_range_from_there(
        kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(8)])
    first = Member(kafka)
    assert len(read_all(first.consumer)) == 8
    second = Member(kafka)
    second.consumer.next_batch(10, 0)  # joins: the group rebalances
    assert first.revoked == [{("events", n) for n in range(4)}]
    assert kafka.groups["g"].committed == {("events", n): 2 for n in range(4)}
    assert first.consumer.assignment() == {("events", 0), ("events", 1)}  # range assignment, join order
    assert second.consumer.assignment() == {("events", 2), ("events", 3)}
    assert second.assigned == [{("events", 2), ("events", 3)}]
    assert read_all(second.consumer) == []  # resumes where the first one committed: nothing read twice
    assert kafka.groups["g"].generation == 2


def test_a_killed_members_partitions_go_to_the_others_without_its_revoke_or_its_transaction(
        kafka: MemoryKafka) -> None:
    first, second = Member(kafka), Member(kafka)
    first.consumer.next_batch(10, 0)
    second.consumer.next_batch(10, 0)
    kafka.produce("events", [(0, b"%d" % i) for i in range(4)])
    read_all(second.consumer)
    producer = MemoryProducer(kafka, "second")
    producer.send("out", "k", b"never seen")
    revoked_before = len(second.revoked)
    kafka.kill(second.consumer)
    assert len(second.revoked) == revoked_before  # a dead member says nothing
    assert first.consumer.assignment() == {("events", n) for n in range(4)}
    assert sorted(read_all(first.consumer)) == [b"0", b"1", b"2", b"3"]  # what the dead one never committed
    with pytest.raises(CommitFailedError):
        producer.commit({("events", 2): 1}, second.consumer)
    assert kafka.records("out") == []


def test_a_transactional_commit_of_partitions_the_member_no_longer_owns_is_refused_until_aborted(
        kafka: MemoryKafka) -> None:
    first = Member(kafka)
    first.consumer.next_batch(10, 0)
    producer = MemoryProducer(kafka, "first")
    producer.send("out", "k", b"late")
    Member(kafka).consumer.next_batch(10, 0)  # a rebalance: partitions 2 and 3 go to the new member
    with pytest.raises(CommitFailedError):
        producer.commit({("events", 0): 0, ("events", 3): 0}, first.consumer)
    assert kafka.records("out") == []
    # As a broker's refused TxnOffsetCommit leaves it: the transaction can only be aborted.
    with pytest.raises(KafkaError):
        producer.commit({("events", 0): 0}, first.consumer)
    with pytest.raises(KafkaError):
        producer.send("out", "k", b"more")
    producer.abort()
    producer.send("out", "k", b"next")
    producer.commit({("events", 0): 0}, first.consumer)
    assert [r.value for r in kafka.records("out")] == [b"next"]


def test_a_group_commit_keeps_only_the_offsets_of_partitions_still_assigned(kafka: MemoryKafka) -> None:
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(10, 0)
    consumer.commit({("events", 0): 3, ("other", 0): 9})
    assert kafka.groups["g"].committed == {("events", 0): 3}


def test_a_member_closed_cleanly_commits_on_revoke_and_its_partitions_go_to_the_others(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(8)])
    first, second = Member(kafka), Member(kafka)
    first.consumer.next_batch(0, 0)  # joins, reads nothing
    second.consumer.next_batch(0, 0)
    assert sorted(read_all(second.consumer)) == [b"2", b"3", b"6", b"7"]
    second.consumer.close()
    assert second.revoked[-1] == {("events", 2), ("events", 3)}
    assert first.consumer.assignment() == {("events", n) for n in range(4)}
    assert sorted(read_all(first.consumer)) == [b"0", b"1", b"4", b"5"]  # only its own, never read: none twice


def test_a_paused_partition_is_not_fetched_until_resumed(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(4)])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(0, 0)
    consumer.pause({("events", 1)})
    assert sorted(read_all(consumer)) == [b"0", b"2", b"3"]
    consumer.pause(set())
    assert read_all(consumer) == [b"1"]


def test_rewind_seeks_to_the_committed_offsets_and_names_them(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"%d" % i) for i in range(8)])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    read_all(consumer)
    consumer.commit({("events", 0): 1})
    assert consumer.rewind([("events", 0), ("events", 1)], 10) == {("events", 0): 1, ("events", 1): None}
    assert sorted(read_all(consumer)) == [b"1", b"4", b"5"]  # partition 1 back to the earliest


def test_offsets_a_hanging_transaction_holds_fail_each_wait_for_them_until_it_is_ended() -> None:
    waited: list[float] = []
    kafka = MemoryKafka(sleep=waited.append)
    kafka.produce("events", [(0, b"%d" % i) for i in range(4)])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    read_all(consumer)
    consumer.commit({("events", 0): 1})
    kafka.hang_offsets("g", [("events", 1)])
    for _ in range(2):
        with pytest.raises(CommittedOffsetsPending):
            consumer.rewind([("events", 0), ("events", 1)], 10)
    assert waited == [10, 10]
    assert consumer.rewind([("events", 0)], 10) == {("events", 0): 1}  # a partition it does not hold is free
    kafka.end_hanging("g")
    assert consumer.rewind([("events", 0), ("events", 1)], 10) == {("events", 0): 1, ("events", 1): None}


def test_an_outage_fails_every_request_and_reads_nothing_until_the_cluster_recovers(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"a")])
    clients = MemoryClients(kafka)
    consumer = clients.source(["events"], "g", "earliest")
    kafka.outage()
    assert values(consumer) == []
    assert consumer.still_at({("events", 0): 1}) is None
    for request in (lambda: consumer.commit({}), lambda: MemoryProducer(kafka, "x"),
                    lambda: clients.source(["events"], "h", "earliest"), lambda: clients.changelog("c").read(),
                    lambda: clients.ensure_topics([], None), lambda: MemoryProducer(kafka, None).send("t", "k", b"v")):
        with pytest.raises(BrokerUnavailable):
            request()
    kafka.recover()
    assert values(consumer) == [b"a"]


def test_progress_names_partitions_behind_idle_after_the_quiet_time_and_unreachable_in_an_outage() -> None:
    now = [100.0]
    kafka = MemoryKafka(clock=lambda: now[0])
    kafka.create_topic("events", 2)
    kafka.produce("events", [(0, b"a"), (0, b"b"), (0, b"c")])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    consumer.next_batch(0, 0)  # joined, nothing read yet
    assert consumer.progress(30).behind == {("events", 0), ("events", 1)}
    read_all(consumer)
    assert consumer.progress(30).behind == frozenset() and consumer.progress(30).idle == frozenset()
    now[0] += 30
    idle = consumer.progress(30)
    assert idle.idle == {("events", 0), ("events", 1)} and idle.idle_at == {("events", 0): 2, ("events", 1): 1}
    assert idle.partitions == {("events", 0), ("events", 1)}
    kafka.outage()
    down = consumer.progress(30)
    assert down.unreachable == {("events", 0), ("events", 1)} and down.idle == frozenset()


def test_still_at_names_the_partitions_nothing_was_written_to_since(kafka: MemoryKafka) -> None:
    kafka.produce("events", [(0, b"a"), (0, b"b")])
    consumer = MemoryConsumer(kafka, ["events"], "g")
    assert consumer.still_at({("events", 0): 1, ("events", 1): 0}) == {("events", 0)}


def test_the_changelog_reads_each_keys_latest_value_and_lists_its_versions_newest_first(
        kafka: MemoryKafka) -> None:
    kafka.create_topic("g.changelog", 2)
    producer = MemoryProducer(kafka, None)
    producer.send("g.changelog", "a", b"1", partition=0)
    producer.send("g.changelog", "b", b"2", partition=1)
    producer.send("g.changelog", "a", b"3", partition=0)
    producer.send("g.changelog", "b", None, partition=1)  # a tombstone removes the key
    changelog = MemoryChangelog(kafka, "g.changelog")
    latest, read = changelog.read()
    assert latest == {"a": b"3"} and read == 4
    assert changelog.locations["a"] == (0, 1)
    assert changelog.versions("a") == [((0, 1), b"3"), ((0, 0), b"1")]
    assert changelog.versions("b") == [((1, 1), None), ((1, 0), b"2")]


def test_the_follower_hands_each_new_record_once_and_skips_tombstones(kafka: MemoryKafka) -> None:
    follower = MemoryFollower(kafka, "g.models")
    producer = MemoryProducer(kafka, None)
    producer.send("g.models", "lead", b"v1")
    assert follower.read_to_end() == [(0, "lead", b"v1")]
    producer.send("g.models", "lead", None)
    producer.send("g.models", "lead", b"v2")
    assert follower.poll() == [(2, "lead", b"v2")]
    assert follower.poll() == []


def test_the_clients_make_missing_topics_with_their_partitions_and_keep_every_consumer(kafka: MemoryKafka) -> None:
    clients = MemoryClients(kafka)
    counts = clients.ensure_topics([InternalTopic("g.changelog", 3, {}, compacted=True),
                                    InternalTopic("events", 9, {})], None)
    assert counts["g.changelog"] == 3 and counts["events"] == 4  # an existing topic keeps its partitions
    made = [clients.source(["events"], "g", "earliest"), clients.source(["events"], "g", "earliest")]
    assert clients.consumers == made
    assert clients.state_producer("a", 1000).transactional and not clients.sink().transactional
