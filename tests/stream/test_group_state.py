"""The group's keys in the changelog and the models topic, and how their values are written and read."""

from __future__ import annotations

import json

from monitor.stream.group_state import (ACCEPTED_PREFIX, SCHEDULE_KEY, encode, hour_key, judge_key, offset_in,
                                        partition_key, topic_state)


def test_each_kind_of_key_names_what_it_holds() -> None:
    assert partition_key(("events", 3)) == "partition/events/3"
    assert judge_key("events") == "judge/events"
    assert hour_key("events", 3_600_000) == "hour/events/3600000"


def test_keys_are_distinct_per_partition_topic_and_hour_and_between_kinds() -> None:
    keys = [partition_key((t, n)) for t in ("a", "a.b", "b") for n in (0, 1, 10)]
    keys += [judge_key(t) for t in ("a", "a.b", "b")]
    keys += [hour_key(t, s) for t in ("a", "a.b", "b") for s in (0, 60_000, 600_000)]
    keys += [SCHEDULE_KEY, ACCEPTED_PREFIX + "0"]
    assert len(set(keys)) == len(keys)


def test_a_judged_topics_snapshot_and_its_hours_are_read_back_from_the_keys_they_were_written_under() -> None:
    snapshot = {"assembly": {"a": 1}, "history": [], "streak": 2}
    state = {judge_key("t"): encode(snapshot),
             hour_key("t", 0): encode({"size": 1}), hour_key("t", 60_000): encode({"size": 2}),
             hour_key("t2", 0): encode({"size": 9}),  # another topic's hour (its name starts the same)
             partition_key(("t", 0)): encode({"offset": 4})}
    assert topic_state(state, "t") == (snapshot, {0: {"size": 1}, 60_000: {"size": 2}})
    assert topic_state(state, "t2") == (None, {0: {"size": 9}})


def test_a_topic_never_judged_has_no_snapshot_and_no_hours() -> None:
    assert topic_state({partition_key(("t", 0)): encode({"offset": 1})}, "t") == (None, {})


def test_values_are_compact_json_that_reads_back_as_written() -> None:
    value = {"windows": {"open": [1, 2]}, "offset": 7, "text": "ÄB-1"}
    encoded = encode(value)
    assert b" " not in encoded and b"\n" not in encoded
    assert json.loads(encoded.decode("utf-8")) == value


def test_the_offset_a_value_is_exact_at_and_minus_one_for_none() -> None:
    assert offset_in(encode({"offset": 12, "windows": {}}), "offset") == 12
    assert offset_in(encode({"windows_offset": 0}), "windows_offset") == 0
    assert offset_in(encode({"windows_offset": None}), "windows_offset") == -1
    assert offset_in(encode({"offset": 12}), "windows_offset") == -1
    assert offset_in(None, "offset") == -1
