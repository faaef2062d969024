from __future__ import annotations

from monitor.devtools.demo import cut


def test_a_long_reason_is_cut_after_its_last_whole_example() -> None:
    text = "critical far_records: 245 records; p 2e-184 e.g. 'usr-980840-JP', 'usr-377290-FR', 'usr-373411-FR'"
    shortened = cut(text, 85)
    assert shortened == "critical far_records: 245 records; p 2e-184 e.g. 'usr-980840-JP', 'usr-377290-FR', …"
    assert len(shortened) <= 85 and cut(text, len(text)) == text


def test_text_without_items_is_cut_where_it_must_with_an_ellipsis() -> None:
    assert cut("abcdefghij", 6) == "abcde…"
