"""Percentile ranks against a sorted reference."""

from __future__ import annotations

import numpy as np

from monitor.percentiles import percentile_ranks


def test_percentile_rank_counts_ties_half() -> None:
    training = np.array([1.0, 2.0, 2.0, 3.0])
    ranks = percentile_ranks(np.array([0.5, 2.0, 3.5]), training)
    assert ranks.tolist() == [0.0, 50.0, 100.0]


def test_percentile_rank_matches_a_loop_over_the_training_errors() -> None:
    rng = np.random.default_rng(1)
    training = np.sort(rng.exponential(size=500))
    probes = rng.exponential(size=50)
    expected = [(np.sum(training < e) + np.sum(training <= e)) / 2 / len(training) * 100 for e in probes]
    assert np.allclose(percentile_ranks(probes, training), expected)
