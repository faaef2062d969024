"""The confluent-kafka client's parts that need no broker: a batch read as columns, the same decoding as a
list of messages, which errors are outages, and librdkafka's refusals turned into settings errors. What a
broker shows (groups, transactions, outages) runs on both clients in ``tests/integration``."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from monitor.errors import BrokerUnavailable, CommittedOffsetsPending, ConfigError
from monitor.records import RawMessage
from monitor.settings import config_from_dict
from monitor.stream import confluent_stats
from monitor.stream.confluent import ConfluentBatch, ConfluentSink, ConfluentSource, is_outage, kafka_error
from monitor.stream.confluent_stats import ClusterStatistics
from monitor.stream.decode import decode_batch
from monitor.stream.pipeline import _by_partition

NOW_MS = 1_800_000_000_000


def message(value: bytes | None, partition: int = 0, offset: int = 0, timestamp: int = NOW_MS - 1000,
            kind: int = 1) -> Message:
    return Message(topic="t", partition=partition, offset=offset, key=b"k", value=value,
                   timestamp=(kind, timestamp), headers=[("origin", b"test")])


def config(**kafka: object) -> object:
    return config_from_dict({"kafka": {"bootstrap_servers": ["127.0.0.1:1"], "library": "confluent-kafka", **kafka},
                             "model": {"path": "unused"}}, environ={})


def test_a_batch_reads_values_and_timestamps_as_columns_and_builds_a_message_only_when_asked() -> None:
    batch = ConfluentBatch([message(b"AB121E", offset=7), message(b"DN176", partition=2, offset=9, kind=0)])
    assert batch.columns() == ([b"AB121E", b"DN176"], [NOW_MS - 1000, NOW_MS - 1000])
    assert batch.positions() == [("t", 0), ("t", 2)]
    assert len(batch) == 2
    assert batch[0] == RawMessage("t", 0, 7, NOW_MS - 1000, b"k", b"AB121E", (("origin", b"test"),))
    assert batch[1].timestamp is None, "a message without a timestamp (type 0) has none"
    assert [m.offset for m in batch] == [7, 9] and [m.offset for m in batch[1:]] == [9]


@pytest.mark.parametrize("values", [
    [b"AB121E", b"DN176", b"KQ4411"],  # the columns' fast path
    [b"AB121E", b"", b"\xff\xfe", b"   ", b"KQ4411"],  # rejections: the per-message path
], ids=["clean", "with-rejections"])
def test_a_batch_decodes_as_the_same_messages_in_a_list_do(values: list[bytes]) -> None:
    options = config().input
    messages = [message(v, partition=i % 2, offset=i) for i, v in enumerate(values)]
    batch, listed = decode_batch(ConfluentBatch(messages), options, NOW_MS), \
        decode_batch(list(ConfluentBatch(messages)), options, NOW_MS)
    assert batch.sequences == listed.sequences
    assert np.array_equal(batch.event_times_ms, listed.event_times_ms)
    assert [list(batch.messages)[i] for i in range(len(batch))] == list(listed.messages)
    assert [(r.reason, r.message) for r in batch.rejected] == [(r.reason, r.message) for r in listed.rejected]
    grouped = _by_partition(batch, {("t", 0): 9, ("t", 1): 9})
    assert {p: list(rows) for p, rows in grouped.items()} == \
        {p: list(rows) for p, rows in _by_partition(listed, {("t", 0): 9, ("t", 1): 9}).items()}


@pytest.mark.parametrize(("code", "outage"), [
    (KafkaError._TRANSPORT, True), (KafkaError._ALL_BROKERS_DOWN, True), (KafkaError._TIMED_OUT, True),
    (KafkaError.NOT_COORDINATOR, True), (KafkaError._MSG_TIMED_OUT, True),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, False), (KafkaError.INVALID_CONFIG, False),
    (KafkaError._FENCED, False),
])
def test_an_error_is_an_outage_when_the_cluster_is_out_of_reach_not_when_a_request_is_wrong(
        code: int, outage: bool) -> None:
    exc = KafkaException(KafkaError(code))
    assert kafka_error(exc) is not None and kafka_error(exc).code() == code
    assert is_outage(exc) is outage
    assert is_outage(BrokerUnavailable("down"))
    assert not is_outage(ValueError("not Kafka's"))


def test_a_fatal_error_is_never_an_outage() -> None:
    assert not is_outage(KafkaException(KafkaError(KafkaError._TRANSPORT, fatal=True)))


def test_an_option_librdkafka_refuses_is_a_settings_error_naming_where_it_was_set() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.consumer\.max_poll_interval_ms|max\.poll\.interval\.ms"):
        ConfluentSource(config(consumer={"max_poll_interval_ms": 1000, "session_timeout_ms": 6000}).kafka,
                        ["t"], "g", "earliest")
    with pytest.raises(ConfigError, match=r"kafka\.producer\.queue\.buffering\.max\.kbytes"):
        ConfluentSink(config(producer={"queue.buffering.max.kbytes": -5}).kafka)


def test_a_send_nobody_acknowledges_is_an_outage_and_leaves_nothing_queued() -> None:
    sink = ConfluentSink(config().kafka)  # nothing listens on port 1
    with pytest.raises(BrokerUnavailable, match="not acknowledged"):
        sink.send_all("t", [(None, b"AB121E", [])], timeout_s=0.5)
    assert len(sink.producer) == 0, "what was still queued is dropped: the caller sends it again"


class _RefusingConsumer:
    """Stands in for a consumer whose commit the group refuses: a broker cannot be made to refuse on demand
    with each of these codes (which one it picks depends on how far the group got in dropping the member)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0)]

    def commit(self, **_: object) -> None:
        raise KafkaException(KafkaError(self.code))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
                                  KafkaError.REBALANCE_IN_PROGRESS, KafkaError.GROUP_ID_NOT_FOUND])
def test_a_commit_the_group_refuses_after_dropping_the_member_is_skipped_for_the_next_checkpoint(
        code: int, caplog: pytest.LogCaptureFixture) -> None:
    # GROUP_ID_NOT_FOUND is what a broker answers librdkafka's OffsetCommit (v9+) once the group's last member
    # was dropped; it once stopped a lone instance whose loop had stalled.
    source = ConfluentSource(config().kafka, ["t"], "g", "earliest")
    source.consumer.close()
    source.consumer = _RefusingConsumer(code)
    source.commit({("t", 0): 5})
    assert any("commit skipped" in r.message for r in caplog.records)


def test_a_commit_refused_for_another_reason_is_raised() -> None:
    source = ConfluentSource(config().kafka, ["t"], "g", "earliest")
    source.consumer.close()
    source.consumer = _RefusingConsumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        source.commit({("t", 0): 5})


class _WaitingConsumer(_RefusingConsumer):
    """Stands in for a consumer whose offset fetch ends with ``code``: librdkafka retries a fetch that an open
    transaction holds until the call's timeout, which a broker cannot be made to hold on demand."""

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        raise KafkaException(KafkaError(self.code))


def test_committed_offsets_still_held_when_the_wait_ends_are_pending_and_an_outage_stays_an_outage() -> None:
    source = ConfluentSource(config().kafka, ["t"], "g", "earliest")
    source.consumer.close()
    source.consumer = _WaitingConsumer(KafkaError._TIMED_OUT)
    with pytest.raises(CommittedOffsetsPending):
        source.rewind([("t", 0)], 0.1)
    source.consumer = _WaitingConsumer(KafkaError._TRANSPORT)
    with pytest.raises(BrokerUnavailable):
        source.rewind([("t", 0)], 0.1)


def _statistics(*brokers: tuple[int, str]) -> str:
    """librdkafka's statistics as its ``stats_cb`` hands them over: the broker entries are written one by one
    under their names, so a node listed twice has its name twice in one JSON object."""
    entries = ", ".join(f'"127.0.0.1:9092/{node}": {{"name": "127.0.0.1:9092/{node}", "nodeid": {node}, '
                        f'"state": "{state}"}}' for node, state in brokers)
    return ('{"brokers": {' + entries + '}, "topics": {"t": {"partitions": {'
            '"0": {"leader": 1, "fetch_state": "active", "next_offset": 7, "fetchq_cnt": 0}, '
            '"-1": {"leader": -1}}}}}')


def test_a_partition_answers_when_any_entry_of_its_leaders_node_is_up() -> None:
    # librdkafka was seen to list one name twice (a consumer created during an outage: two bootstrap entries);
    # the dict json.loads makes keeps the last, and a partition whose leader's node had an UP entry beside a
    # retiring one looked unreachable, its hours waiting for ever. A real broker does not produce this on
    # demand, hence the statistics written out here.
    statistics = ClusterStatistics(lambda: [("t", 0)])
    statistics.read(_statistics((1, "UP"), (1, "INIT")))
    assert statistics.answering(("t", 0))
    statistics.read(_statistics((1, "INIT")))
    assert not statistics.answering(("t", 0))
    statistics.read(_statistics((-1, "UP"), (1, "TRY_CONNECT")))
    assert not statistics.answering(("t", 0)), "the bootstrap entry (-1) is not the leader"
    assert statistics.fetched_to == {("t", 0): 7}
    assert statistics.partitions_of("t") == {0} and statistics.known_partitions(["t"]) == {("t", 0)}
    assert statistics.known_partitions(["t", "unknown"]) is None


def test_unreadable_statistics_keep_the_last_ones_and_say_so_once(caplog: pytest.LogCaptureFixture) -> None:
    statistics = ClusterStatistics(lambda: [("t", 0)])
    statistics.read(_statistics((1, "UP")))
    statistics.read('{"brokers": {}, "topics": {"t": {"partitions": {"zero": {}}}}}')
    statistics.read("{cut sho")
    assert statistics.answering(("t", 0))
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "statistics" in r.message]
    assert len(warnings) == 1, warnings


def test_a_leader_away_is_logged_once_it_has_lasted_and_again_when_it_is_back(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    monkeypatch.setattr(confluent_stats.time, "monotonic", lambda: now[0])
    statistics = ClusterStatistics(lambda: [("t", 0)])
    with caplog.at_level(logging.INFO, logger=confluent_stats.__name__):
        statistics.read(_statistics((1, "INIT")))  # the moments after an assignment: not worth a line
        now[0] += confluent_stats.LEADERS_AWAY_LOG_AFTER_S - 1
        statistics.read(_statistics((1, "INIT")))
        assert not caplog.records
        now[0] += 2
        statistics.read(_statistics((1, "INIT")))
        statistics.read(_statistics((1, "INIT")))
        [away] = caplog.records
        assert "t[0] leader 1 (active)" in away.getMessage() and "127.0.0.1:9092/1 (node 1): INIT" in away.getMessage()
        statistics.read(_statistics((1, "UP")))
        assert "up again" in caplog.records[-1].getMessage() and len(caplog.records) == 2
