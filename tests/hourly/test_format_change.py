"""A window's formats against its baseline's: what is new, what vanished, what moved, and the verdict."""

from __future__ import annotations

import math
import zlib

import numpy as np

from monitor.hourly.compare import Comparison
from monitor.hourly.format_change import (
    FormatChange,
    FormatShift,
    compare_formats,
    escalate,
)
from monitor.hourly.format_counts import FormatCounts
from monitor.settings import FormatConfig


def counts(mix: dict[str, int], tag: str = "") -> FormatCounts:
    """A window holding ``mix[name]`` records of each format; sequence texts are ``name:tag:i``."""
    names = list(mix)
    ids = np.repeat(np.arange(len(names), dtype=np.int32), [mix[n] for n in names])
    sequences = [f"{names[i]}:{tag}:{k}" for i, k in zip(ids, range(len(ids)))]
    hashes = np.array([zlib.crc32(s.encode()) for s in sequences], dtype=np.uint64)
    window = FormatCounts()
    window.add(ids, names, sequences, hashes)
    return window


BASELINE = [counts({"AA999A": 600, "AA999": 300, "AA99": 100}, str(h)) for h in range(5)]
TRAINING = {"AA999A": 0.6, "AA999": 0.3, "AA99": 0.1}


def test_a_steady_window_changes_nothing() -> None:
    change = compare_formats(counts({"AA999A": 590, "AA999": 310, "AA99": 100}), BASELINE, TRAINING)
    assert not change.changed and change.against == "baseline" and change.distance < 0.05
    assert change.top[0] == ("AA999A", 0.59) and change.summary() == ""


def test_a_new_format_is_named_with_its_share_and_examples() -> None:
    change = compare_formats(counts({"AA999A": 500, "AA999": 300, "AA99": 100, "aaa-9{6}-AA": 100}), BASELINE,
                             TRAINING)
    [new] = change.new
    assert (new.format, new.share, new.baseline_share, new.training_share) == ("aaa-9{6}-AA", 0.1, 0.0, 0.0)
    assert len(new.examples) == 3 and all(e.startswith("aaa-9{6}-AA:") for e in new.examples)
    assert change.changed and change.new_to_training == (new,)
    assert "new format (vs baseline): aaa-9{6}-AA 0.0% -> 10.0%" in change.summary()
    assert change.to_dict()["new"][0] == {"format": "aaa-9{6}-AA", "share": 0.1, "baseline_share": 0.0,
                                          "training_share": 0.0, "examples": list(new.examples)}


def test_a_few_stray_records_or_a_small_share_are_no_new_format() -> None:
    settings = FormatConfig()
    few = compare_formats(counts({"AA999A": 100, "A-9": settings.new_min_records - 1}), BASELINE, TRAINING)
    small = compare_formats(counts({"AA999A": 6_000, "AA999": 3_000, "AA99": 1_000, "A-9": 50}), BASELINE, TRAINING)
    assert not few.new and not small.new


def test_a_vanished_format_is_named_when_the_window_should_have_held_it() -> None:
    change = compare_formats(counts({"AA999A": 650, "AA999": 350}), BASELINE, TRAINING)
    [gone] = change.vanished
    assert (gone.format, gone.share, gone.baseline_share) == ("AA99", 0.0, 0.1) and gone.examples
    # In a window of 50 records, 10 % is 5 expected: missing by chance is too likely to say so.
    assert not compare_formats(counts({"AA999A": 30, "AA999": 20}), BASELINE, TRAINING).vanished


def test_moved_shares_beyond_the_distance_join_the_verdict() -> None:
    change = compare_formats(counts({"AA999A": 50, "AA999": 150, "AA99": 800}), BASELINE, TRAINING)
    assert change.moved_beyond and change.distance > FormatConfig().moved_distance
    assert change.moved[0].format == "AA99" and change.moved[0].share == 0.8
    assert "format shares moved" in change.summary()


def test_without_a_baseline_formats_are_compared_with_training_and_without_either_with_nothing() -> None:
    change = compare_formats(counts({"AA999A": 80, "PHE": 20}), [], TRAINING)
    assert change.against == "training" and [s.format for s in change.new] == ["PHE"]
    nothing = compare_formats(counts({"AA999A": 80}), [], {})
    assert nothing.against == "nothing" and not nothing.changed and math.isnan(nothing.distance)


def test_the_comparison_does_not_depend_on_the_order_of_the_baseline() -> None:
    window = counts({"AA999A": 500, "AA999": 250, "AA99": 50, "X": 200})
    assert compare_formats(window, BASELINE, TRAINING) == compare_formats(window, BASELINE[::-1], TRAINING)


def test_a_format_change_raises_a_normal_window_to_warning_and_a_learning_one_only_for_formats_training_lacked() -> None:
    normal = Comparison("normal", 0.1, 50.0, 1.0, 0.01, 0.01, 0.001, 24)
    learning = Comparison("learning", 0.1, 50.0, 1.0, 0.01, 0.01, 0.001, 2)
    critical = Comparison("critical", 9.0, 100.0, 1.0, 0.01, 0.01, 0.001, 24)
    new_to_baseline = FormatChange(new=(FormatShift("AA99", 0.1, 0.0, 0.1),), against="baseline")
    new_to_training = FormatChange(new=(FormatShift("PHE", 0.1, 0.0, 0.0),), against="baseline")
    assert escalate(normal, new_to_baseline).verdict == "warning"
    assert escalate(learning, new_to_baseline).verdict == "learning"
    assert escalate(learning, new_to_training).verdict == "warning"
    assert escalate(critical, new_to_training).verdict == "critical"
    assert escalate(normal, FormatChange()).verdict == "normal"


def test_a_format_a_sparse_baseline_missed_by_chance_is_not_new_under_the_calibrated_judgement() -> None:
    """Twenty records miss a format holding a fifth of the traffic one time in ninety: with a chance test
    (``moved_p``, the calibrated judgement's warning rate) that is no new format; a big baseline's miss is."""
    sparse = [counts({"AA999A": 12, "AA999": 8}, "sparse")]
    window = counts({"AA999A": 10, "AA999": 7, "AA99": 5})
    assert [s.format for s in compare_formats(window, sparse, TRAINING).new] == ["AA99"]  # no chance test
    assert not compare_formats(window, sparse, TRAINING, moved_p=4e-3).new
    big = [counts({"AA999A": 600, "AA999": 400}, str(h)) for h in range(3)]
    assert [s.format for s in compare_formats(window, big, TRAINING, moved_p=4e-3).new] == ["AA99"]


def test_shares_of_sparse_windows_move_by_chance_without_counting_as_moved() -> None:
    """Two draws of fifty records from the same ten formats: the shares wander beyond the moved distance,
    and the G-test with every format its own cell would call it a move (p 0.002); with the formats expected
    fewer than five times merged it does not (p 0.07)."""
    baseline = [counts({"AA999A": 23, "AA999": 16, "AA99": 6, "AA9999": 3, "B-9": 2}, "b")]
    window = counts({"AA999A": 20, "AA999": 9, "AA99": 1, "AA9999": 4, "AA9999A": 8, "A-9": 1, "B-9": 3, "C-9": 3,
                     "D-9": 1})
    loose = compare_formats(window, baseline, TRAINING)
    assert loose.distance >= FormatConfig().moved_distance and loose.moved_beyond
    assert not compare_formats(window, baseline, TRAINING, moved_p=4e-3).moved_beyond
