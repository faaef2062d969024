"""Batch scoring: reconstruction error, percentile rank, abnormal flag, explanation, group score.

Higher always means more abnormal. No I/O happens here: strings in, arrays out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from monitor.core.bundle import Bundle
from monitor.core.model import Reconstructor
from monitor.core.prepare import Preparer
from monitor.percentiles import percentile_ranks


@dataclass(frozen=True)
class Scores:
    """Per-sequence results, aligned with the input.

    ``errors``: mean squared reconstruction error. ``flags``: error above the bundle's threshold.
    ``percentiles``: rank of each error among the training errors, 0-100 (the seed's
    ``get_sequence_anomaly_rank``), computed on first use: the hourly path never needs them.
    """

    errors: np.ndarray
    flags: np.ndarray
    sorted_training_errors: np.ndarray = field(repr=False)

    @cached_property
    def percentiles(self) -> np.ndarray:
        return percentile_ranks(self.errors, self.sorted_training_errors)

    @classmethod
    def combined(cls, length: int, parts: Sequence[tuple[np.ndarray, Scores]]) -> Scores:
        """One batch's scores from parts scored by different models (``rows`` of the batch each): each
        part keeps its own model's flags and ranks."""
        errors, flags, ranks = np.empty(length), np.zeros(length, dtype=bool), np.empty(length)
        for rows, scores in parts:
            errors[rows], flags[rows], ranks[rows] = scores.errors, scores.flags, scores.percentiles
        combined = cls(errors, flags, parts[-1][1].sorted_training_errors)
        combined.__dict__["percentiles"] = ranks  # set the cached value: ranks against each part's own model
        return combined


class Scorer:
    """Scores batches of sequences with one bundle, e.g.
    ``Scorer(bundle.load("models/serials")).score(["AB121E", "9 ER 223 ABCDSED"]).percentiles``.

    Building it compiles the model's forward pass once; reuse one scorer for many batches.
    """

    def __init__(self, bundle: Bundle, batch_size: int = 8192) -> None:
        self.bundle = bundle
        self._reconstruct = Reconstructor(bundle.model, batch_size)

    def for_another_thread(self) -> Scorer:
        """A scorer of the same bundle with a memo of encodings of its own: the memo is not thread-safe, and
        the service's loop keeps scoring with this one meanwhile."""
        preparer = Preparer.from_dict(self.bundle.preparer.to_dict())
        return Scorer(dataclasses.replace(self.bundle, preparer=preparer), self._reconstruct.batch_size)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    def errors(self, sequences: Sequence[str]) -> np.ndarray:
        """Mean squared reconstruction error of each sequence (float64)."""
        x = self.bundle.preparer.encode(sequences)
        return np.mean(np.square(x - self._reconstruct(x)), axis=1, dtype=np.float64)

    def score(self, sequences: Sequence[str]) -> Scores:
        errors = self.errors(sequences)
        return Scores(errors, errors > self.bundle.threshold, self.bundle.training_errors)

    def explain(self, sequences: Sequence[str], top: int = 3) -> list[list[tuple[str, float]]]:
        """For each sequence, the parts that carry most of its error, with their share of it."""
        x = self.bundle.preparer.encode(sequences)
        squared = np.square(x - self._reconstruct(x))
        return [self.bundle.preparer.describe(s, row, top) for s, row in zip(sequences, squared)]


def group_score(errors: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted mean error of a group (an hour, a batch): how abnormal the group is as a whole.

    Weights default to 1; a group whose weights sum to zero has no score (``nan``).
    """
    errors = np.asarray(errors, dtype=np.float64)
    weights = np.ones_like(errors) if weights is None else np.asarray(weights, dtype=np.float64)
    if errors.shape != weights.shape:
        raise ValueError(f"errors and weights differ in shape: {errors.shape} and {weights.shape}")
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError("weights must be finite and non-negative")
    total = weights.sum()
    return float(np.dot(errors, weights) / total) if total > 0 else float("nan")
