"""What a dead letter and a scored event carry."""

from __future__ import annotations

import json

from kafka.consumer.fetcher import ConsumerRecord

from monitor.records import RawMessage, Record, Rejected
from monitor.stream.events import dead_letter, scored_event


def consumer_record(offset: int, timestamp: int, headers: list[tuple[str, bytes | None]]) -> ConsumerRecord:
    """A record as kafka-python's consumer hands it to the service (it is not converted)."""
    return ConsumerRecord("events", 3, 0, offset, timestamp, 0, b"key", b"AB\xff", headers, None, 3, 3, -1)


def test_a_dead_letter_keeps_the_original_and_says_where_it_came_from_and_why() -> None:
    message = consumer_record(41, 1_700_000_000_000, [("origin", b"x"), ("empty", None)])
    key, value, headers = dead_letter(Rejected("invalid_utf8", "invalid UTF-8 at byte 2", message))
    assert (key, value) == (b"key", b"AB\xff")
    assert headers == [("origin", b"x"), ("empty", b""),  # a header without a value is sent on as empty
                       ("monitor.reason", b"invalid_utf8"), ("monitor.detail", b"invalid UTF-8 at byte 2"),
                       ("monitor.source.topic", b"events"), ("monitor.source.partition", b"3"),
                       ("monitor.source.offset", b"41"), ("monitor.source.timestamp_ms", b"1700000000000")]


def test_a_record_without_a_timestamp_has_an_empty_timestamp_header() -> None:
    _, _, headers = dead_letter(Rejected("invalid_timestamp", "no timestamp", consumer_record(0, -1, [])))
    assert dict(headers)["monitor.source.timestamp_ms"] == b""


def test_a_scored_event_is_json_keyed_and_headed_like_its_source() -> None:
    message = RawMessage("events", 0, 7, 1_700_000_000_000, b"k", b"AB121E", (("origin", b"x"),))
    key, value, headers = scored_event(Record("AB121E", 2.0, 1_700_000_000_000, message), 0.25, 99.5, True,
                                       [("position 1 'A'", 0.8)], "AA999A", 0.4)
    assert key == b"k" and headers == [("origin", b"x")]
    assert json.loads(value) == {
        "sequence": "AB121E", "error": 0.25, "percentile": 99.5, "abnormal": True,
        "format": "AA999A", "format_share": 0.4, "explanation": [{"part": "position 1 'A'", "share": 0.8}], "weight": 2.0,
        "event_time_ms": 1_700_000_000_000, "source": {"topic": "events", "partition": 0, "offset": 7}}


def test_a_dead_letter_longer_than_the_limit_is_cut_and_says_so() -> None:
    message = RawMessage("events", 0, 1, 1_700_000_000_000, None, b"x" * 10)
    _, value, headers = dead_letter(Rejected("oversized_value", "10 bytes", message), max_value_bytes=4)
    assert value == b"xxxx" and dict(headers)["monitor.value_cut_from_bytes"] == b"10"
    _, value, headers = dead_letter(Rejected("oversized_value", "10 bytes", message), max_value_bytes=10)
    assert value == b"x" * 10 and "monitor.value_cut_from_bytes" not in dict(headers)
