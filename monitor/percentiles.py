"""Percentile ranks of values among reference values, ties counted half; used by scoring and by the
hourly comparison, so it depends on numpy alone."""

from __future__ import annotations

import numpy as np


def percentile_ranks(values: np.ndarray, sorted_reference: np.ndarray) -> np.ndarray:
    """Percent of ``sorted_reference`` below each value, ties counted half (scipy's ``kind='mean'``);
    ``nan`` for every value when the reference is empty.

    >>> percentile_ranks(np.array([0.5, 2.0, 9.0]), np.array([1.0, 2.0, 3.0, 4.0])).tolist()
    [0.0, 37.5, 100.0]
    """
    n = len(sorted_reference)
    if n == 0:
        return np.full(len(values), np.nan)
    below = np.searchsorted(sorted_reference, values, side="left")
    at_or_below = np.searchsorted(sorted_reference, values, side="right")
    return (below + at_or_below) * (50.0 / n)
