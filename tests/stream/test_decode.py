from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.records import REJECTION_REASONS, RawMessage, Record, Rejected
from monitor.stream.decode import MAX_JSON_DEPTH, decode, decode_batch


@dataclass(frozen=True)
class Options:
    value_format: str = "text"
    sequence_field: str = "sequence"
    weight_field: str | None = None
    event_time_field: str | None = None
    event_time_format: str = "epoch_ms"
    max_value_bytes: int = 1000
    max_sequence_chars: int = 100
    min_event_time_ms: int = 946_684_800_000  # 2000-01-01T00:00:00Z
    max_future_seconds: float = 86400.0
    max_weight: float = 1e6


TEXT = Options()
JSON = Options(value_format="json", sequence_field="payload.serial", weight_field="w", event_time_field="t")


def message(value: bytes | None, timestamp_ms: int | None = 1_700_000_000_000) -> RawMessage:
    return RawMessage("events", 2, 41, timestamp_ms, b"k", value, (("h", b"v"),))


def reason(value: bytes | None, options: Options = TEXT, timestamp_ms: int | None = 1_700_000_000_000) -> str:
    result = decode(message(value, timestamp_ms), options)
    assert isinstance(result, Rejected), result
    return result.reason


def test_a_text_value_becomes_a_record_with_the_record_timestamp() -> None:
    result = decode(message(b"AB121E"), TEXT)
    assert result == Record("AB121E", 1.0, 1_700_000_000_000, message(b"AB121E"))


def test_text_rejections_carry_their_reason() -> None:
    assert reason(None) == "empty_value"
    assert reason(b"") == "empty_value"
    assert reason(b"   ") == "empty_value"
    assert reason(b"x" * 1001) == "oversized_value"
    assert reason(b"x" * 101) == "oversized_value"
    assert reason(b"AB\xff1") == "invalid_utf8"
    assert reason(b"AB1", timestamp_ms=-1) == "invalid_timestamp"


def test_json_fields_are_read_by_dotted_path() -> None:
    value = json.dumps({"payload": {"serial": "AB121E"}, "w": 2.5, "t": 1_600_000_000_000}).encode()
    result = decode(message(value), JSON)
    assert isinstance(result, Record)
    assert (result.sequence, result.weight, result.event_time_ms) == ("AB121E", 2.5, 1_600_000_000_000)


def test_absent_optional_fields_fall_back_to_weight_one_and_the_record_time() -> None:
    result = decode(message(b'{"payload": {"serial": "AB1"}}'), JSON)
    assert isinstance(result, Record) and (result.weight, result.event_time_ms) == (1.0, 1_700_000_000_000)


@pytest.mark.parametrize("value,expected", [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'{"payload": {}}', "missing_field"),
    (b'{"payload": {"serial": 5}}', "invalid_sequence"),
    (b'{"payload": {"serial": ""}}', "empty_value"),
    (b'{"payload": {"serial": "A"}, "w": "heavy"}', "invalid_weight"),
    (b'{"payload": {"serial": "A"}, "w": -1}', "invalid_weight"),
    (b'{"payload": {"serial": "A"}, "w": true}', "invalid_weight"),
    (b'{"payload": {"serial": "A"}, "w": 1e999}', "invalid_weight"),
    (b'{"payload": {"serial": "A"}, "t": "yesterday"}', "invalid_timestamp"),
    (b'{"payload": {"serial": "A"}, "t": -5}', "invalid_timestamp"),
])
def test_json_rejections_carry_their_reason(value: bytes, expected: str) -> None:
    assert reason(value, JSON) == expected


def test_event_times_in_seconds_and_iso_8601() -> None:
    seconds = replace(JSON, event_time_format="epoch_s")
    iso = replace(JSON, event_time_format="iso8601")
    assert decode(message(b'{"payload": {"serial": "A"}, "t": 1600000000.5}'), seconds).event_time_ms == \
        1_600_000_000_500
    assert decode(message(b'{"payload": {"serial": "A"}, "t": "2020-09-13T12:26:40Z"}'), iso).event_time_ms == \
        1_600_000_000_000
    assert decode(message(b'{"payload": {"serial": "A"}, "t": "2020-09-13T12:26:40"}'), iso).event_time_ms == \
        1_600_000_000_000  # no offset: UTC
    assert reason(b'{"payload": {"serial": "A"}, "t": "13/09/2020"}', iso) == "invalid_timestamp"


def test_a_rejection_keeps_the_original_message() -> None:
    result = decode(message(b"\xff"), TEXT)
    assert isinstance(result, Rejected) and result.message.value == b"\xff" and result.message.offset == 41


NOW_MS = 1_700_000_000_000  # the wall clock these tests decode at
DAY_MS = 86_400_000


def judged_at_now(value: bytes, options: Options = JSON, timestamp_ms: int | None = NOW_MS) -> Record | Rejected:
    return decode(message(value, timestamp_ms), options, now_ms=NOW_MS)


@pytest.mark.parametrize("time_ms,detail", [
    (253_402_214_400_000, "event time 9999-12-31T00:00:00+00:00 is more than input.max_future_seconds (86400) "
                          "ahead of the clock (2023-11-14T22:13:20+00:00)"),
    (0, "event time 1970-01-01T00:00:00+00:00 is before input.min_event_time (2000-01-01T00:00:00+00:00)"),
    (NOW_MS + DAY_MS + 1, "event time 2023-11-15T22:13:20+00:00 is more than input.max_future_seconds (86400) "
                          "ahead of the clock (2023-11-14T22:13:20+00:00)"),
])
def test_an_implausible_event_time_is_rejected_saying_which_bound_it_breaks(time_ms: int, detail: str) -> None:
    result = judged_at_now(json.dumps({"payload": {"serial": "AB121E"}, "t": time_ms}).encode())
    assert isinstance(result, Rejected) and (result.reason, result.detail) == ("implausible_timestamp", detail)


def test_event_times_at_the_bounds_are_accepted() -> None:
    for time_ms in (NOW_MS + DAY_MS, NOW_MS + DAY_MS - 1, JSON.min_event_time_ms):
        result = judged_at_now(json.dumps({"payload": {"serial": "AB121E"}, "t": time_ms}).encode())
        assert isinstance(result, Record) and result.event_time_ms == time_ms


def test_the_bounds_follow_the_settings() -> None:
    older = replace(JSON, min_event_time_ms=0, max_future_seconds=0.0)
    assert judged_at_now(b'{"payload": {"serial": "A"}, "t": 0}', older).event_time_ms == 0
    assert judged_at_now(f'{{"payload": {{"serial": "A"}}, "t": {NOW_MS + 1}}}'.encode(), older).reason == \
        "implausible_timestamp"


def test_a_record_timestamp_used_as_event_time_must_be_plausible_too() -> None:
    assert judged_at_now(b"AB121E", TEXT, timestamp_ms=0).reason == "implausible_timestamp"
    assert judged_at_now(b'{"payload": {"serial": "A"}}', JSON, timestamp_ms=NOW_MS + 2 * DAY_MS).reason == \
        "implausible_timestamp"
    far = judged_at_now(b"AB121E", TEXT, timestamp_ms=2**62)  # beyond any date: shown in milliseconds
    assert far.reason == "implausible_timestamp" and far.detail.startswith(f"event time {2**62} ms since 1970 ")
    batch = decode_batch([message(b"AB121E", NOW_MS), message(b"DN176", 0)], TEXT, now_ms=NOW_MS)
    assert batch.sequences == ["AB121E"] and [r.reason for r in batch.rejected] == ["implausible_timestamp"]


@pytest.mark.parametrize("weight,detail", [
    (b"1e308", "weight 'w' is 1e+308; it must be from 0 to input.max_weight (1e+06)"),
    (b"NaN", "weight 'w' is nan; it must be from 0 to input.max_weight (1e+06)"),
    (b"Infinity", "weight 'w' is inf; it must be from 0 to input.max_weight (1e+06)"),
    (b"1000001", "weight 'w' is 1000001; it must be from 0 to input.max_weight (1e+06)"),
    (b"1" + b"0" * 400, "weight 'w' is 100000000000... (401 digits); it must be from 0 to input.max_weight (1e+06)"),
])
def test_a_weight_above_the_limit_or_not_a_number_is_rejected(weight: bytes, detail: str) -> None:
    result = judged_at_now(b'{"payload": {"serial": "AB121E"}, "w": ' + weight + b"}")
    assert isinstance(result, Rejected) and (result.reason, result.detail) == ("invalid_weight", detail)


def test_a_weight_at_the_limit_is_accepted() -> None:
    assert judged_at_now(b'{"payload": {"serial": "AB121E"}, "w": 1000000}').weight == 1e6
    assert judged_at_now(b'{"payload": {"serial": "AB121E"}, "w": 0}').weight == 0.0


@given(st.binary(max_size=200), st.sampled_from([TEXT, JSON]))
def test_any_bytes_give_a_record_or_a_known_rejection(value: bytes, options: Options) -> None:
    result = decode(message(value), options)
    assert isinstance(result, (Record, Rejected))
    if isinstance(result, Rejected):
        assert result.reason in REJECTION_REASONS and result.detail


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children,
                                                                                     max_size=3), max_leaves=10))
def test_any_json_document_gives_a_record_or_a_known_rejection(document: object) -> None:
    value = json.dumps({"payload": {"serial": document}, "w": document, "t": document}).encode()
    result = decode(message(value), JSON)
    assert isinstance(result, (Record, Rejected))


_TEXTISH = st.one_of(st.text(max_size=8).map(str.encode), st.binary(max_size=8), st.just(b" \t"), st.just(b""),
                     st.just(b"A" * 101), st.none())


@given(st.lists(st.tuples(_TEXTISH, st.none() | st.integers(-5, 2_000_000_000_000)), max_size=12),
       st.sampled_from([TEXT, JSON]))
def test_a_batch_decodes_exactly_as_its_messages_do_one_by_one(parts: list[tuple[bytes | None, int | None]],
                                                               options: Options) -> None:
    messages = [RawMessage("events", 2, offset, timestamp, None, value)
                for offset, (value, timestamp) in enumerate(parts)]
    one_by_one = [decode(m, options, NOW_MS) for m in messages]
    batch = decode_batch(messages, options, NOW_MS)
    assert batch.records() == [d for d in one_by_one if isinstance(d, Record)]
    assert batch.rejected == [d for d in one_by_one if isinstance(d, Rejected)]
    assert batch.weights.dtype == np.float64 and batch.event_times_ms.dtype == np.int64


def test_a_clean_text_batch_keeps_every_message_in_order() -> None:
    messages = [message(f"AB{i}E".encode()) for i in range(5)]
    batch = decode_batch(messages, TEXT)
    assert batch.sequences == [f"AB{i}E" for i in range(5)] and batch.messages == messages
    assert list(batch.event_times_ms) == [1_700_000_000_000] * 5 and list(batch.weights) == [1.0] * 5


def test_json_nested_deeper_than_the_limit_is_rejected_before_parsing() -> None:
    deep = message(b"[" * 60_000)
    rejected = decode(deep, replace(JSON, max_value_bytes=100_000))
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid_json"
    assert f"deeper than {MAX_JSON_DEPTH}" in rejected.detail
    just_deep_enough = ("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)).encode()
    assert decode(message(b'{"payload": {"serial": "AB1"}, "x": ' + just_deep_enough + b"}"), JSON).sequence == "AB1"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    value = json.dumps({"payload": {"serial": "[" * 500 + "\\\"" + "{" * 500}}).encode()
    record = decode(message(value), replace(JSON, max_sequence_chars=5000, max_value_bytes=5000))
    assert isinstance(record, Record) and record.sequence.startswith("[[[")


def test_an_error_nobody_foresaw_becomes_an_undecodable_rejection_not_a_crash() -> None:
    # A timestamp of the wrong type makes the comparison in decoding raise TypeError.
    odd = RawMessage("events", 0, 7, "not a number", None, b"AB121E")  # type: ignore[arg-type]
    decoded = decode_batch([message(b"DN176"), odd, message(b"KQ4411")], TEXT)
    assert decoded.sequences == ["DN176", "KQ4411"]
    [rejected] = decoded.rejected
    assert rejected.reason == "undecodable" and "TypeError" in rejected.detail and rejected.message is odd
