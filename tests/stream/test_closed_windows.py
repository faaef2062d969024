"""Which closed windows an accepted format covers (``accepted_windows``), and what the state keeps of a
closed window beside its figures (``kept_of``): the same for the file store and the group."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.history import History
from monitor.hourly.hour_figures import HourFigures
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.sample import WindowSample, text_hashes
from monitor.settings import CompareConfig
from monitor.stream.closed_windows import accepted_windows, kept_of
from monitor.stream.state import Accepted

MINUTE_MS = 60_000
START_MS = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE_MS


def sample(sequences: list[str], weights: list[float] | None = None) -> WindowSample:
    weights = weights or [1.0] * len(sequences)
    return WindowSample(100, sequences, weights, np.linspace(2.0, 1.0, len(sequences)))


def figures(minute: int, verdict: str, above_threshold_share: float = 0.4) -> HourFigures:
    return HourFigures(START_MS + minute * MINUTE_MS, 10, 10.0, 0.01, above_threshold_share, verdict=verdict)


def judge(windows: dict[str, list[tuple[HourFigures, WindowSample | None]]]) -> HourlyJudge:
    """A judge whose history of each topic holds the given judged windows and their samples."""
    settings = CompareConfig()
    out = HourlyJudge(MINUTE_MS, 0, settings)
    for topic, judged in windows.items():
        out.histories[topic] = History(settings, MINUTE_MS, [f for f, _ in judged],
                                       {f.start_ms: s for f, s in judged if s is not None})
    return out


def accepted(kind: str, value: str = "", topic: str | None = None, sequences: tuple[str, ...] = ()) -> Accepted:
    return Accepted(1, START_MS, kind, value, topic, list(sequences))


# Eight serials and two user ids: the ids are a fifth of the window's weight.
MIXED = ["AB121E", "KQ4411", "MV1200", "DN1761", "RT5521", "ZZ0001", "AA1111", "BB2222", "usr-104512-DE",
         "usr-104513-FR"]


def test_an_accepted_window_covers_that_window_on_its_topic_or_on_every_topic() -> None:
    j = judge({"events": [(figures(0, "normal"), None), (figures(1, "critical"), None)],
               "orders": [(figures(1, "warning"), None)]})
    start = str(START_MS + MINUTE_MS)
    assert accepted_windows(j, accepted("window", start, "events")) == [("events", START_MS + MINUTE_MS)]
    assert accepted_windows(j, accepted("window", start)) == [("events", START_MS + MINUTE_MS),
                                                              ("orders", START_MS + MINUTE_MS)]
    assert accepted_windows(j, accepted("window", str(START_MS + 5 * MINUTE_MS))) == []


def test_a_pattern_covers_the_flagged_windows_where_its_matches_weigh_at_least_half_the_share_above_threshold(
        ) -> None:
    # Above the threshold: 40% in each window; the ids weigh 20% (covered), 10% (not) and 0% (not).
    j = judge({"events": [(figures(0, "warning"), sample(MIXED)),
                          (figures(1, "critical"), sample(MIXED[:8] + ["usr-104512-DE", "CC3333"])),
                          (figures(2, "critical"), sample(MIXED[:8] + ["DD4444", "CC3333"]))]})
    assert accepted_windows(j, accepted("pattern", r"^usr-\d+")) == [("events", START_MS)]


def test_the_matches_count_by_the_weight_they_stand_for() -> None:
    heavy = [1.0] * 9 + [3.0]  # the one id stands for 3 of 12: a quarter, over half the 40% above threshold
    j = judge({"events": [(figures(0, "warning"), sample(MIXED[:9] + ["usr-104513-FR"], heavy))]})
    assert accepted_windows(j, accepted("pattern", "usr-")) == [("events", START_MS)]
    light = [1.0] * 9 + [0.5]
    j = judge({"events": [(figures(0, "warning"), sample(MIXED[:9] + ["usr-104513-FR"], light))]})
    assert accepted_windows(j, accepted("pattern", "usr-")) == []


@pytest.mark.parametrize("verdict", ["normal", "learning", "insufficient_data"])
def test_a_window_that_was_not_flagged_is_never_covered_by_a_file_or_a_pattern(verdict: str) -> None:
    j = judge({"events": [(figures(0, verdict), sample(["usr-1", "usr-2"]))]})
    assert accepted_windows(j, accepted("pattern", "usr-")) == []
    assert accepted_windows(j, accepted("file", "ids.txt", sequences=("usr-1", "usr-2"))) == []


def test_a_flagged_window_without_a_sample_is_not_covered() -> None:
    j = judge({"events": [(figures(0, "critical"), None)]})
    assert accepted_windows(j, accepted("pattern", ".")) == []


def test_a_file_covers_by_whole_sequences_not_by_parts_of_them() -> None:
    j = judge({"events": [(figures(0, "warning"), sample(MIXED))]})
    assert accepted_windows(j, accepted("file", "ids.txt", sequences=("usr-104512-DE", "usr-104513-FR"))) == \
        [("events", START_MS)]
    assert accepted_windows(j, accepted("file", "ids.txt", sequences=("usr-104512", "usr-104513"))) == []


def test_a_file_or_pattern_accepted_on_one_topic_covers_none_of_the_others_windows() -> None:
    j = judge({"events": [(figures(0, "warning"), sample(MIXED))], "orders": [(figures(0, "warning"), sample(MIXED))]})
    assert accepted_windows(j, accepted("pattern", "usr-", "orders")) == [("orders", START_MS)]
    assert accepted_windows(j, accepted("pattern", "usr-")) == [("events", START_MS), ("orders", START_MS)]


def test_the_state_keeps_a_windows_sample_and_its_format_counts_as_they_read_back() -> None:
    kept_sample = sample(["AB121E", "usr-1"])
    counts = FormatCounts()
    counts.add(np.array([0, 1]), ["AA999A", "aaa-9"], ["AB121E", "usr-1"], text_hashes(["AB121E", "usr-1"]))
    kept = kept_of(SimpleNamespace(sample=kept_sample, format_counts=counts))  # type: ignore[arg-type]
    assert WindowSample.from_dict(kept) == kept_sample
    assert FormatCounts.from_dict(kept["formats"]).to_dict() == counts.to_dict()


def test_a_window_without_sample_or_format_counts_is_kept_as_an_empty_sample() -> None:
    kept = kept_of(SimpleNamespace(sample=None, format_counts=None))  # type: ignore[arg-type]
    assert "formats" not in kept
    assert len(WindowSample.from_dict(kept)) == 0
