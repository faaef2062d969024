"""Histogram bucket bounds of the exported metrics, and the cumulative counts Prometheus reads from them."""

from __future__ import annotations

import numpy as np

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Taking partitions and judged topics over from the changelog: a few records (10 ms) .. a long changelog
# (minutes). A wait for a former member's open transaction is not in it: committed_offsets_wait_seconds.
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def error_buckets(training_errors: np.ndarray, count: int = 24) -> tuple[float, ...]:
    """Log-spaced upper bounds from well below the typical training error to far above the worst.

    Default Prometheus buckets (5 ms .. 10 s) say nothing about errors of 1e-5 .. 1e-1; these follow the
    model. They are fixed for the life of the process so the series stay comparable across a model reload.
    """
    positive = training_errors[training_errors > 0]
    low = float(np.quantile(positive, 0.01)) / 10 if len(positive) else 1e-7
    high = max(float(training_errors.max(initial=0.0)) * 100, low * 1e4)
    return tuple(float(f"{b:.3g}") for b in np.geomspace(max(low, 1e-9), high, count))


def cumulative(bounds: np.ndarray, counts: np.ndarray) -> list[tuple[str, float]]:
    """``(upper bound, count at or below it)`` pairs from per-bucket ``counts`` (the last one: above all)."""
    running = np.cumsum(counts)
    buckets = [(f"{b:g}", float(n)) for b, n in zip(bounds, running[:-1])]
    return buckets + [("+Inf", float(running[-1]))]
