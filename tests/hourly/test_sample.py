"""Each window's weighted sample: a pure function of its records, exact to merge, and what it estimates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.hourly.sample import WindowSample, record_priorities


def records(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sequences = [f"AB{i:06d}" for i in range(n)]
    return sequences, rng.uniform(0.5, 3.0, n), np.arange(n, dtype=np.int64) * 7, rng.lognormal(-4, 0.5, n)


def sampled(sequences: list[str], weights: np.ndarray, times: np.ndarray, errors: np.ndarray,
            size: int, parts: list[np.ndarray]) -> WindowSample:
    """The sample of the records fed in ``parts`` (row indices), each part a partition merged at the end."""
    merged = WindowSample(size)
    for rows in parts:
        part = WindowSample(size)
        for chunk in np.array_split(rows, 3):  # batches
            seqs = [sequences[i] for i in chunk]
            part.add(seqs, weights[chunk], record_priorities(seqs, weights[chunk], times[chunk]))
        merged.merge(part)
    return merged


def test_priorities_depend_on_the_record_only_and_weight_zero_is_never_sampled() -> None:
    seqs, weights, times, errors = records(200)
    assert np.array_equal(record_priorities(seqs, weights, times), record_priorities(seqs, weights, times))
    other = record_priorities(seqs, weights, times + 1)
    assert not np.array_equal(record_priorities(seqs, weights, times), other)
    zero = WindowSample(10)
    zero.add(seqs, np.zeros(200), record_priorities(seqs, np.zeros(200), times))
    assert len(zero) == 0


def test_the_sample_is_the_same_however_the_records_are_split_and_ordered() -> None:
    seqs, weights, times, errors = records(5_000)
    rows = np.arange(5_000)
    whole = sampled(seqs, weights, times, errors, 300, [rows])
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(rows)
    split = sampled(seqs, weights, times, errors, 300, [shuffled[:700], shuffled[700:3000], shuffled[3000:]])
    assert whole == split and len(whole) == 301


def test_a_window_with_at_most_size_records_keeps_them_all_and_estimates_exactly() -> None:
    seqs, weights, times, errors = records(120)
    sample = sampled(seqs, weights, times, errors, 200, [np.arange(120)])
    kept, stands_for = sample.kept()
    assert sorted(kept) == sorted(seqs) and np.array_equal(np.sort(stands_for), np.sort(weights))
    lookup = dict(zip(seqs, errors))
    estimate = sample.estimate(np.array([lookup[s] for s in kept]), threshold=0.02)
    assert estimate.exact and estimate.standard_error == 0.0
    assert estimate.weighted_mean == pytest.approx(float(np.dot(weights, errors) / weights.sum()), rel=1e-12)
    assert estimate.above_threshold_share == pytest.approx(float(weights[errors > 0.02].sum() / weights.sum()))
    assert sum(estimate.histogram) == 120


def test_estimates_of_a_large_window_are_unbiased_within_their_standard_error() -> None:
    seqs, weights, times, errors = records(20_000, seed=3)
    truth = float(np.dot(weights, errors) / weights.sum())
    offs = []
    for seed in range(20):  # other records each time (the hash of other event times)
        sample = sampled(seqs, weights, times + seed * 1_000_003, errors, 500, [np.arange(20_000)])
        kept, _ = sample.kept()
        lookup = dict(zip(seqs, errors))
        estimate = sample.estimate(np.array([lookup[s] for s in kept]), threshold=1.0)
        assert not estimate.exact and estimate.sample_size == 500
        offs.append((estimate.weighted_mean - truth) / estimate.standard_error)
    assert abs(np.mean(offs)) < 1.0 and 0.5 < np.std(offs) < 1.6  # centred, and the error is the right size
    assert sum(estimate.histogram) == pytest.approx(20_000, rel=0.1)


def test_a_sample_round_trips_exactly_through_json() -> None:
    seqs, weights, times, errors = records(400)
    sample = sampled(seqs, weights, times, errors, 50, [np.arange(400)])
    assert WindowSample.from_dict(json.loads(json.dumps(sample.to_dict()))) == sample
