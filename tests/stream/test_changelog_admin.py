"""``python -m monitor state``'s work on the group's changelog (on the in-memory cluster): every key with where
its latest value is and whether it reads, one key's values newest first, and a key removed with a tombstone."""

from __future__ import annotations

import json

import pytest

from monitor.devtools.memory_kafka import MemoryChangelog, MemoryClients, MemoryKafka, MemoryProducer
from monitor.errors import InputError
from monitor.stream.changelog_admin import drop_key, show, unreadable
from monitor.stream.group_state import encode, judge_key, partition_key

TOPIC = "g.changelog"
P0, P1, JUDGE = partition_key(("t", 0)), partition_key(("t", 1)), judge_key("t")
GARBAGE = b"\x00\x01 not the monitor's"


class Readers:
    """The changelog readers the commands open on the in-memory cluster, to see that each is closed."""

    def __init__(self) -> None:
        self.opened: list[MemoryChangelog] = []
        self.closed = 0

    def __call__(self, kafka: MemoryKafka) -> MemoryClients:
        """The clients the commands are given: in-memory ones whose changelog readers are counted."""
        readers = self

        class Reader(MemoryChangelog):
            def close(self) -> None:
                readers.closed += 1

        class Clients(MemoryClients):
            def changelog(self, topic: str) -> MemoryChangelog:
                reader = Reader(self.kafka, topic)
                readers.opened.append(reader)
                return reader

        return Clients(kafka)


@pytest.fixture
def readers() -> Readers:
    return Readers()


def write(kafka: MemoryKafka, key: str, value: bytes | None) -> tuple[int, int]:
    """One record; returns where it went (partition, offset)."""
    MemoryProducer(kafka, None).send(TOPIC, key, value)
    [(partition, offset)] = [(r.partition, r.offset) for r in kafka.records(TOPIC) if r.key == key.encode()][-1:]
    return partition, offset


def changelog() -> tuple[MemoryKafka, dict[str, tuple[int, int]]]:
    """A changelog of two partitions: p0 written twice, p1 unreadable, the judge removed then written again, an
    hour removed; returns it and where each key's latest value is."""
    kafka = MemoryKafka()
    kafka.create_topic(TOPIC, 2)
    write(kafka, P0, encode({"offset": 1}))
    where = {P0: write(kafka, P0, encode({"offset": 7, "windows": {}})), P1: write(kafka, P1, GARBAGE)}
    write(kafka, JUDGE, encode({"history": []}))
    write(kafka, JUDGE, None)
    where[JUDGE] = write(kafka, JUDGE, b"[1, 2]")
    write(kafka, "hour/t/0", encode({"size": 1}))
    write(kafka, "hour/t/0", None)
    return kafka, where


def test_every_key_is_listed_with_where_its_latest_value_is_its_size_and_whether_it_reads(readers: Readers) -> None:
    kafka, where = changelog()
    lines: list[str] = []
    assert show(readers(kafka), TOPIC, out=lines.append) == 2
    assert lines[0] == f"{TOPIC}: 3 keys from 8 records"
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in lines[1:]}
    assert list(rows) == sorted([JUDGE, P0, P1]), "removed keys are not listed"
    for key, (partition, offset) in where.items():
        assert rows[key][0] == f"{TOPIC}[{partition}] offset {offset}"
    assert rows[P0][1:] == [f"{len(encode({'offset': 7, 'windows': {}}))} bytes", "ok"]
    assert rows[P1][2].startswith("unreadable: ")
    assert rows[JUDGE][2] == "unreadable: a JSON list, not an object"
    assert readers.closed == len(readers.opened) == 1


def test_a_keys_values_are_listed_newest_first_and_the_newest_readable_one_is_printed(readers: Readers) -> None:
    kafka, _ = changelog()
    write(kafka, P0, GARBAGE)
    lines: list[str] = []
    assert show(readers(kafka), TOPIC, P0, out=lines.append) == 1
    statuses = [line.split("\t")[2] for line in lines[:3]]
    assert statuses[0].startswith("unreadable: ") and statuses[1:] == ["ok", "ok"]
    offsets = [int(line.split("\t")[0].rsplit(" ", 1)[1]) for line in lines[:3]]
    assert offsets == sorted(offsets, reverse=True)
    assert json.loads("\n".join(lines[3:])) == {"offset": 7, "windows": {}}
    assert readers.closed == 1


def test_values_from_before_the_key_was_removed_are_not_shown(readers: Readers) -> None:
    kafka, _ = changelog()
    lines: list[str] = []
    assert show(readers(kafka), TOPIC, JUDGE, out=lines.append) == 1
    assert [line.split("\t")[2] for line in lines] == ["unreadable: a JSON list, not an object",
                                                        "tombstone (removed)"]
    lines.clear()
    assert show(readers(kafka), TOPIC, "hour/t/0", out=lines.append) == 0
    assert [line.split("\t")[2] for line in lines] == ["tombstone (removed)"]


def test_a_key_the_changelog_never_held_is_refused_naming_it(readers: Readers) -> None:
    kafka, _ = changelog()
    with pytest.raises(InputError, match="no key 'partition/t/9' in g.changelog"):
        show(readers(kafka), TOPIC, partition_key(("t", 9)), out=lambda line: None)
    assert readers.closed == 1


def test_dropping_a_key_writes_a_tombstone_and_the_key_reads_no_more(readers: Readers) -> None:
    kafka, _ = changelog()
    said: list[str] = []
    drop_key(readers(kafka), TOPIC, P1, out=said.append)
    [last] = [r for r in kafka.records(TOPIC) if r.key == P1.encode()][-1:]
    assert last.value is None
    state, _ = MemoryChangelog(kafka, TOPIC).read()
    assert sorted(state) == [JUDGE, P0]
    assert said[0].startswith(f"{P1} removed from {TOPIC}")
    assert readers.closed == 1


@pytest.mark.parametrize("key", ["hour/t/0", partition_key(("t", 9))], ids=["removed-already", "never-written"])
def test_a_key_without_a_value_is_not_dropped(readers: Readers, key: str) -> None:
    kafka, _ = changelog()
    before = len(kafka.records(TOPIC))
    with pytest.raises(InputError, match=f"no key '{key}' with a value in {TOPIC}"):
        drop_key(readers(kafka), TOPIC, key, out=lambda line: None)
    assert len(kafka.records(TOPIC)) == before and readers.closed == 1


@pytest.mark.parametrize("value, problem", [
    (b'{"offset": 1}', None),
    (b"{}", None),
    (b"[1, 2]", "unreadable: a JSON list, not an object"),
    (b"7", "unreadable: a JSON int, not an object"),
    (b'"text"', "unreadable: a JSON str, not an object"),
    (b'{"offset": 1', "unreadable: "),
    (GARBAGE, "unreadable: "),
])
def test_a_value_reads_when_it_is_a_json_object(value: bytes, problem: str | None) -> None:
    found = unreadable(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)
