"""Where batches come from and where messages go without a cluster: the in-memory source and sink, and a
CSV, JSONL or text file read as partition 0 of a topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import InputError
from monitor.records import OutgoingMessage, RawMessage
from monitor.stream.sources import MemorySink, MemorySource, file_columns, file_source, next_offsets


def message(topic: str, partition: int, offset: int, value: bytes = b"AB1") -> RawMessage:
    return RawMessage(topic, partition, offset, None, None, value)


def test_batches_are_handed_out_in_order_then_empty_ones_with_where_each_partition_resumes() -> None:
    first = [message("t", 0, 0), message("t", 1, 5), message("t", 0, 1)]
    second = [message("u", 0, 9)]
    source = MemorySource([first, second])
    polled = source.next_batch(100, 0)
    assert polled.messages == first and polled.next_offsets == {("t", 0): 2, ("t", 1): 6}
    assert not source.exhausted
    assert source.next_batch(100, 0).messages == second
    empty = source.next_batch(100, 0)
    assert (empty.messages, empty.next_offsets, source.exhausted) == ([], {}, True)
    assert source.next_batch(100, 0).messages == []


def test_messages_are_cut_into_batches_of_the_size_asked_for() -> None:
    source = MemorySource.of_messages((message("t", 0, o) for o in range(7)), 3)
    batches = [source.next_batch(100, 0).messages for _ in range(4)]
    assert [[m.offset for m in b] for b in batches] == [[0, 1, 2], [3, 4, 5], [6], []]


def test_the_source_reads_the_partitions_processed_and_remembers_the_commits_it_is_given() -> None:
    source = MemorySource([[message("t", 0, 0)]])
    assert source.assignment() == set()
    source.processed({("t", 0): 1, ("t", 2): 4})
    assert source.assignment() == {("t", 0), ("t", 2)}
    source.commit({("t", 0): 1})
    source.commit({("t", 2): 4, ("t", 0): 3})
    assert source.committed == {("t", 0): 3, ("t", 2): 4}
    assert source.lag() == {}


def test_every_partition_is_behind_until_the_batches_run_out_then_caught_up_and_idle() -> None:
    source = MemorySource([[message("t", 0, 0)]])
    source.next_batch(10, 0)
    source.processed({("t", 0): 1})
    reading = source.progress(30.0)
    assert (reading.behind, reading.idle) == ({("t", 0)}, frozenset())
    source.next_batch(10, 0)
    done = source.progress(30.0)
    assert (done.behind, done.idle) == (frozenset(), {("t", 0)})


def test_the_sink_keeps_what_it_is_sent_per_topic_in_order() -> None:
    sink = MemorySink()
    one: OutgoingMessage = (b"k1", b"v1", [])
    two: OutgoingMessage = (None, b"v2", [("h", b"x")])
    assert sink.send_all("scored", [one, two]) == 2
    assert sink.send_all("dead", [one]) == 1
    assert sink.send_all("scored", []) == 0
    assert dict(sink.sent) == {"scored": [one, two], "dead": [one]}


def test_each_partition_resumes_after_its_last_message() -> None:
    messages = [message("t", 0, 4), message("t", 1, 2), message("t", 0, 5), message("u", 0, 0)]
    assert next_offsets(messages) == {("t", 0): 6, ("t", 1): 3, ("u", 0): 1}
    assert next_offsets([]) == {}


def read_all(path: Path, sequence_column: str = "sequence", batch_rows: int = 100) -> list[RawMessage]:
    source = file_source(path, "events", sequence_column, batch_rows)
    messages: list[RawMessage] = []
    while batch := source.next_batch(batch_rows, 0).messages:
        assert len(batch) <= batch_rows
        messages += batch
    return messages


def values(messages: list[RawMessage]) -> list[Any]:
    return [json.loads(m.value) for m in messages]  # type: ignore[arg-type]


def test_every_line_of_a_jsonl_or_text_file_is_a_message_of_partition_0_numbered_from_0(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"sequence": "AB1"}\r\n\n{"sequence": "AB2"}\nnot json')
    messages = read_all(path, batch_rows=2)
    assert [(m.topic, m.partition, m.offset, m.value) for m in messages] == [
        ("events", 0, 0, b'{"sequence": "AB1"}'), ("events", 0, 1, b""), ("events", 0, 2, b'{"sequence": "AB2"}'),
        ("events", 0, 3, b"not json")]


def test_a_csv_line_becomes_a_json_object_with_numbers_where_cells_read_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("sequence,time,weight,note\n00123,1700000000000,2,a b\nAB1,17e2,,x\n")
    assert values(read_all(path)) == [
        {"sequence": "00123", "time": 1_700_000_000_000.0, "weight": 2.0, "note": "a b"},
        {"sequence": "AB1", "time": 1700.0, "weight": None, "note": "x"}]


def test_blank_csv_lines_are_skipped_and_offsets_count_the_data_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("sequence,time\n\nAB1,1\n\n\nAB2,2\n")
    messages = read_all(path, batch_rows=1)
    assert [(m.offset, json.loads(m.value)["sequence"]) for m in messages] == [(0, "AB1"), (1, "AB2")]  # type: ignore[arg-type]


def test_a_csv_row_with_cells_missing_or_over_is_read_as_the_csv_module_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text('sequence,time,weight\nAB1,5\n"AB,2",6,1,extra,more\n,7,1\n')
    assert values(read_all(path)) == [
        {"sequence": "AB1", "time": 5.0, "weight": None},
        {"sequence": "AB,2", "time": 6.0, "weight": 1.0, "None": ["extra", "more"]},
        {"sequence": "", "time": 7.0, "weight": 1.0}]  # an empty sequence stays text, for the decoder to name


def test_a_csv_line_the_csv_module_cannot_read_is_passed_on_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"sequence,time\nAB\r1,5\nAB2,6\n")
    messages = read_all(path)
    assert messages[0].value == b"AB\r1,5"
    assert json.loads(messages[1].value) == {"sequence": "AB2", "time": 6.0}  # type: ignore[arg-type]


@pytest.mark.parametrize("name, content, problem", [
    ("missing.csv", None, "does not exist"),
    ("empty.csv", b"", "is empty"),
    ("blank.csv", b"\n", "a CSV input needs a header line"),
    ("binary.txt", b"\x7fELF\x02\x01\x01\x00" * 10, "is not text"),
])
def test_a_file_that_cannot_be_read_is_refused_before_anything_is_read(
        tmp_path: Path, name: str, content: bytes | None, problem: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=problem):
        read_all(path)


@pytest.mark.parametrize("name, content, columns", [
    ("events.csv", "sequence,time,weight\nAB1,5,1\n", ["sequence", "time", "weight"]),
    ("events.jsonl", '{"sequence": "AB1", "ts": 5}\n{"other": 1}\n', ["sequence", "ts"]),
    ("events.jsonl", "[1, 2]\n", []),
    ("events.txt", "AB121E\nDN176\n", []),
])
def test_the_columns_of_a_file_are_its_csv_header_or_its_first_json_objects_fields(
        tmp_path: Path, name: str, content: str, columns: list[str]) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert file_columns(path) == columns
