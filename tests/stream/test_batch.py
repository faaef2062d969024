"""What the pipeline makes of a batch and its running totals (``monitor.stream.batch``): the dead-lettered
count is the rejections by reason added up, a result's rejections are its decoded batch's, and no two
results or totals share their counters."""

from __future__ import annotations

from collections import Counter

from monitor.records import RawMessage
from monitor.settings import InputConfig
from monitor.stream.batch import BatchResult, Counts, Outputs
from monitor.stream.decode import decode_batch


def messages(values: list[bytes]) -> list[RawMessage]:
    return [RawMessage("events", 0, i, 1_700_000_040_000, None, v) for i, v in enumerate(values)]


def test_the_dead_lettered_count_is_every_rejection_whatever_its_reason() -> None:
    counts = Counts(consumed=8, scored=2, rejected=Counter(empty_value=3, invalid_utf8=1))
    assert counts.dead_lettered == 4
    counts.rejected["oversized_value"] += 2
    assert counts.dead_lettered == 6 == counts.consumed - counts.scored


def test_fresh_totals_count_nothing_and_share_no_counter() -> None:
    first, second = Counts(), Counts()
    first.rejected["empty_value"] += 1
    assert second.dead_lettered == 0 and second.rejected == Counter()
    assert (second.consumed, second.scored, second.abnormal, second.late, second.windows_closed,
            second.batches) == (0, 0, 0, 0, 0, 0)


def test_a_results_rejections_are_those_of_its_decoded_batch() -> None:
    decoded = decode_batch(messages([b"AB121E", b"", b"\xff\xfe", b"KQ4411"]), InputConfig(topics=("events",)))
    result = BatchResult(decoded, {("events", 0): 4})
    assert [(r.reason, r.message.offset) for r in result.rejected] == [("empty_value", 1), ("invalid_utf8", 2)]
    assert result.decoded.sequences == ["AB121E", "KQ4411"]


def test_a_new_result_has_empty_figures_of_its_own() -> None:
    decoded = decode_batch([], InputConfig(topics=("events",)))
    first, second = BatchResult(decoded, {}), BatchResult(decoded, {})
    first.late["events"] += 1
    first.by_partition[("events", 0)] = first.errors
    assert second.late == Counter() and second.by_partition == {} and second.reports == []
    assert len(second.errors) == len(second.flags) == 0 and second.flags.dtype == bool
    assert second.formats is None


def test_outputs_by_default_send_nothing_and_cut_nothing() -> None:
    assert Outputs() == Outputs(dead_letters=None, scored_events=None, dead_letter_max_bytes=None)
