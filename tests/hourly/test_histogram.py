"""The shared error histogram: under- and overflow, quantiles, merging, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.hourly.histogram import HIST_BINS, HIST_EDGES, HIST_SLOTS, ErrorHistogram

BIN_DECADES = np.log10(HIST_EDGES[-1] / HIST_EDGES[0]) / HIST_BINS


def test_histogram_puts_zero_below_range_in_underflow_and_large_errors_in_overflow() -> None:
    histogram = ErrorHistogram()
    histogram.add(np.array([0.0, 5e-8, 1e-7, 9.99, 10.0, 1e6]))
    counts = histogram.counts
    assert len(counts) == HIST_SLOTS
    assert counts[0] == 2 and counts[1] == 1 and counts[HIST_BINS] == 1 and counts[-1] == 2
    assert histogram.total == 6


def test_histogram_quantile_is_within_one_bin_of_numpy_on_lognormal_errors() -> None:
    errors = np.random.default_rng(11).lognormal(mean=np.log(2e-3), sigma=1.2, size=20_000)
    histogram = ErrorHistogram()
    histogram.add(errors)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
        assert abs(np.log10(histogram.quantile(q)) - np.log10(np.quantile(errors, q))) <= BIN_DECADES


def test_histogram_quantile_of_empty_histogram_is_nan_and_q_is_checked() -> None:
    assert np.isnan(ErrorHistogram().quantile(0.5))
    with pytest.raises(ValueError, match="within"):
        ErrorHistogram().quantile(1.5)


def test_histogram_merges_and_round_trips_through_a_list() -> None:
    a, b = ErrorHistogram(), ErrorHistogram()
    a.add(np.array([1e-3, 2.0]))
    b.add(np.array([1e-3]))
    a.merge(b)
    assert a.total == 3
    assert ErrorHistogram.from_list(json.loads(json.dumps(a.to_list()))) == a
    with pytest.raises(ValueError, match="slots"):
        ErrorHistogram.from_list([1, 2, 3])
