from __future__ import annotations

from collections import Counter

from monitor.counted import by_reason, counted, reasons_after


def test_a_noun_is_plural_unless_there_is_exactly_one() -> None:
    assert [counted(n, "window") for n in (0, 1, 2)] == ["0 windows", "1 window", "2 windows"]


def test_reasons_read_as_words_most_frequent_first_and_none_adds_nothing() -> None:
    assert by_reason(Counter({"missing_field": 1, "invalid_timestamp": 2})) == "invalid timestamp: 2, missing field: 1"
    assert reasons_after(Counter({"oversized_value": 1})) == " (oversized value: 1)"
    assert reasons_after(Counter()) == "" and reasons_after({"invalid_json": 0}) == ""
