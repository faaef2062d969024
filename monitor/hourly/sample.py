"""A bounded, weighted, mergeable random sample of a window's sequences, and what it estimates.

Priority sampling (Duffield, Lund and Thorup, 2007): each record gets the priority ``weight / u``, with
``u`` in (0, 1] taken from a hash of its sequence and event time, so the same record has the same priority
whichever partition, batch, process or file it is read from. A sample keeps the ``size + 1`` highest
priorities; the merge of two samples keeps the highest of their union, so a window's sample is the same
however its records were split across partitions, batches and restarts. The (``size`` + 1)-th priority,
``tau``, makes estimates unbiased: each of the ``size`` kept records stands for ``max(weight, tau)`` of
weight. A window with at most ``size`` records keeps them all and its estimates are exact.

When a model changes, a closed window's figures are estimated from its sample under the new model
(``WindowSample.estimate``): the weighted mean error, the share above the threshold, the histogram, and the
standard error of the mean that sampling adds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.hourly.histogram import HIST_EDGES, HIST_SLOTS

DEFAULT_SIZE = 1000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def text_hashes(sequences: Sequence[str]) -> np.ndarray:
    """CRC-32 of each sequence's UTF-8, as uint64 (what a decoder holding the bytes can give at less cost).
    A lone surrogate (JSON can carry one) is encoded as is rather than refused: hashing never raises."""
    encoded = (s.encode("utf-8", "surrogatepass") for s in sequences)
    return np.fromiter(map(zlib.crc32, encoded), dtype=np.uint64, count=len(sequences))


def record_priorities(sequences: Sequence[str], weights: np.ndarray, event_times_ms: np.ndarray,
                      hashes: np.ndarray | None = None) -> np.ndarray:
    """Each record's sampling priority, ``weight / u``: a pure function of the record (0 for weight 0).
    ``hashes``: ``text_hashes(sequences)`` when already known.

    >>> p = record_priorities(["AB121E", "AB121E"], np.array([1.0, 2.0]), np.array([5, 5]))
    >>> bool(p[1] == 2 * p[0]), bool(p[0] >= 1.0)
    (True, True)
    """
    text_hash = text_hashes(sequences) if hashes is None else hashes
    mixed = _splitmix64(text_hash ^ (np.asarray(event_times_ms).astype(np.uint64) * _GOLDEN))
    u = ((mixed >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0 ** 53  # in (0, 1]
    return np.asarray(weights, dtype=np.float64) / u


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # A well-mixed 64-bit hash of 64-bit values; numpy's unsigned arrays wrap around as the mix needs.
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Estimate:
    """A window's figures estimated from its sample under one model. ``sample_size``: records it rests on
    (every record of the window when ``exact``); ``standard_error``: of ``weighted_mean``, from sampling."""

    weighted_mean: float
    above_threshold_share: float
    histogram: tuple[int, ...]
    standard_error: float
    sample_size: int
    exact: bool


class WindowSample:
    """The ``size + 1`` records of highest priority seen so far, highest first: sequence, weight, priority."""

    def __init__(self, size: int = DEFAULT_SIZE, sequences: Sequence[str] = (), weights: Any = (),
                 priorities: Any = ()) -> None:
        self.size = size
        self.sequences = list(sequences)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.priorities = np.asarray(priorities, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def floor(self) -> float:
        """The lowest priority that can still enter (0 until the sample is full)."""
        return float(self.priorities[-1]) if len(self) > self.size else 0.0

    def add(self, sequences: Sequence[str], weights: np.ndarray, priorities: np.ndarray) -> None:
        """Offer a batch (arrays aligned with ``sequences``); only records above the floor are looked at."""
        rows = np.flatnonzero(priorities > self.floor)
        if len(rows) == 0:
            return
        if len(rows) > self.size + 1:  # keep the batch's own best first: the rest cannot enter
            rows = rows[np.argpartition(-priorities[rows], self.size)[:self.size + 1]]
        self._keep([*self.sequences, *(sequences[i] for i in rows)],
                   np.concatenate([self.weights, weights[rows]]), np.concatenate([self.priorities, priorities[rows]]))

    def merge(self, other: WindowSample) -> None:
        """Become the sample of both windows' records together (exact: the same as sampling them at once)."""
        self._keep([*self.sequences, *other.sequences], np.concatenate([self.weights, other.weights]),
                   np.concatenate([self.priorities, other.priorities]))

    def _keep(self, sequences: list[str], weights: np.ndarray, priorities: np.ndarray) -> None:
        # Highest priority first; equal priorities (one record read twice) keep their order of arrival.
        order = np.argsort(-priorities, kind="stable")[:self.size + 1]
        order = order[priorities[order] > 0]
        self.sequences = [sequences[i] for i in order]
        self.weights, self.priorities = weights[order], priorities[order]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowSample) and self.size == other.size and \
            self.sequences == other.sequences and np.array_equal(self.weights, other.weights) and \
            np.array_equal(self.priorities, other.priorities)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"WindowSample(size={self.size}, kept={len(self)})"

    def copy(self) -> WindowSample:
        return WindowSample(self.size, self.sequences, self.weights, self.priorities)

    def kept(self) -> tuple[list[str], np.ndarray]:
        """The sequences estimates rest on (at most ``size``) and the weight each stands for."""
        n = min(len(self), self.size)
        tau = self.floor
        return self.sequences[:n], np.maximum(self.weights[:n], tau)

    def estimate(self, errors: np.ndarray, threshold: float) -> Estimate:
        """The window's figures if every record had the errors the sampled ones have (``errors`` aligned
        with ``kept()``'s sequences): Horvitz-Thompson estimates with their sampling error."""
        n = min(len(self), self.size)
        errors = np.asarray(errors, dtype=np.float64)[:n]
        tau, weights = self.floor, self.weights[:n]
        stands_for = np.maximum(weights, tau)
        total = float(stands_for.sum())
        if n == 0 or total <= 0:
            return Estimate(float("nan"), float("nan"), (), 0.0, 0, tau == 0)
        mean = float(stands_for @ errors) / total
        share = float(stands_for[errors > threshold].sum()) / total
        # Inclusion probability min(1, w / tau): the variance of the ratio estimate by linearisation.
        p = np.ones(n) if tau == 0 else np.minimum(1.0, weights / tau)
        z = weights * (errors - mean) / total
        variance = float(np.sum((1 - p) / np.square(p) * np.square(z)))
        # Records per error bin: each kept record stands for 1 / p records (weights > 0 in a sample).
        slots = np.searchsorted(HIST_EDGES, errors, side="right")
        counts = np.bincount(slots, weights=1.0 / p, minlength=HIST_SLOTS)
        return Estimate(mean, share, tuple(int(round(c)) for c in counts), math.sqrt(variance), n, tau == 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and exact (Python's JSON writes floats with ``repr``)."""
        return {"size": self.size, "sequences": self.sequences, "weights": self.weights.tolist(),
                "priorities": self.priorities.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSample:
        return cls(int(data["size"]), [str(s) for s in data["sequences"]], data["weights"], data["priorities"])
