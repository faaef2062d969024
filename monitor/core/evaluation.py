"""How well a model separates sequences known to be normal from known anomalies: ranking figures (AUROC,
average precision, precision at k) and, at chosen thresholds, confusion matrices. Errors in, figures out;
numpy only, with the same definitions as scikit-learn's ``roc_auc_score`` and ``average_precision_score``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Quantiles of the training errors shown beside the bundle's own threshold.
DEFAULT_QUANTILES = (0.95, 0.99, 0.995, 0.999)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance that an anomaly scores above a normal sequence, ties half.

    >>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    labels, scores = _checked(labels, scores)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank of each distinct score, ties averaged
    rank_sum = float(mean_rank[inverse][labels == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` for flagging every score at or above each distinct score,
    highest threshold first."""
    labels, scores = _checked(labels, scores)
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked, hits = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[last_of_each]
    flagged = last_of_each + 1
    return true_positives / flagged, true_positives / true_positives[-1], ranked[last_of_each]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Precision averaged over the recall gained at each threshold (no interpolation).

    >>> round(average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
    0.8333
    """
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_k(labels: np.ndarray, scores: np.ndarray, k: int | None = None) -> float:
    """Share of anomalies among the ``k`` highest scores (default: as many as there are anomalies)."""
    labels, scores = _checked(labels, scores)
    k = int(labels.sum()) if k is None else k
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


@dataclass(frozen=True)
class OperatingPoint:
    """Flagging errors above ``threshold`` (the ``quantile`` of the training errors): the confusion matrix."""

    quantile: float
    threshold: float
    true_negatives: int
    false_positives: int
    false_negatives: int
    true_positives: int

    @property
    def normal_flag_rate(self) -> float:
        """Share of the normal sequences flagged (the false-positive rate)."""
        return _ratio(self.false_positives, self.false_positives + self.true_negatives)

    @property
    def recall(self) -> float:
        """Share of the anomalies flagged (``nan`` without anomalies)."""
        return _ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def precision(self) -> float:
        """Share of the flagged sequences that are anomalies (``nan`` when nothing is flagged)."""
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    def matrix(self) -> np.ndarray:
        """``[[true negatives, false positives], [false negatives, true positives]]``."""
        return np.array([[self.true_negatives, self.false_positives],
                         [self.false_negatives, self.true_positives]])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "normal_flag_rate": _none_if_nan(self.normal_flag_rate),
                "recall": _none_if_nan(self.recall), "precision": _none_if_nan(self.precision)}


@dataclass(frozen=True)
class Evaluation:
    """A model on ``normal`` sequences believed normal and, optionally, ``anomalies`` known to be bad.

    Ranking figures are ``None`` without anomalies; ``points`` hold the bundle's threshold (``quantile`` equal
    to ``bundle_quantile``) and the other quantiles asked for, in increasing order."""

    normal: int
    anomalies: int
    bundle_quantile: float
    auroc: float | None
    average_precision: float | None
    precision_at_k: float | None
    points: tuple[OperatingPoint, ...]

    @property
    def at_bundle_threshold(self) -> OperatingPoint:
        return next(p for p in self.points if p.quantile == self.bundle_quantile)

    def to_dict(self) -> dict[str, Any]:
        return {"normal": self.normal, "anomalies": self.anomalies, "bundle_quantile": self.bundle_quantile,
                "auroc": self.auroc, "average_precision": self.average_precision,
                "precision_at_k": self.precision_at_k, "points": [p.to_dict() for p in self.points]}


def evaluate(normal_errors: np.ndarray, anomaly_errors: np.ndarray, training_errors: np.ndarray,
             bundle_quantile: float, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Evaluation:
    """Figures for the errors of normal sequences and of anomalies (may be empty), with thresholds at
    ``bundle_quantile`` and ``quantiles`` of the training errors. A sequence is flagged when its error is
    above the threshold, as scoring flags it."""
    normal_errors, anomaly_errors = np.asarray(normal_errors, float), np.asarray(anomaly_errors, float)
    labels = np.r_[np.zeros(len(normal_errors)), np.ones(len(anomaly_errors))].astype(int)
    scores = np.r_[normal_errors, anomaly_errors]
    ranked = len(anomaly_errors) > 0 and len(normal_errors) > 0
    points = tuple(_point(q, float(np.quantile(training_errors, q)), normal_errors, anomaly_errors)
                   for q in sorted({*quantiles, bundle_quantile}))
    return Evaluation(len(normal_errors), len(anomaly_errors), bundle_quantile,
                      auroc(labels, scores) if ranked else None,
                      average_precision(labels, scores) if ranked else None,
                      precision_at_k(labels, scores) if ranked else None, points)


def _point(quantile: float, threshold: float, normal: np.ndarray, anomalies: np.ndarray) -> OperatingPoint:
    flagged_normal, flagged_anomalies = int(np.sum(normal > threshold)), int(np.sum(anomalies > threshold))
    return OperatingPoint(quantile, threshold, len(normal) - flagged_normal, flagged_normal,
                          len(anomalies) - flagged_anomalies, flagged_anomalies)


def _checked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of one length, got {labels.shape} and {scores.shape}")
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ValueError("ranking figures need both normal sequences and anomalies")
    return labels, scores


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
