"""Batch scoring: reconstruction error, format, fused score, percentile rank, abnormal flag, explanation,
group score.

Two per-sequence scores: the autoencoder's reconstruction ``errors`` (what the hourly windows average) and
the ``fused`` score (``monitor.core.fusion``: the error, the rarity of the format and a character n-gram
likelihood in one), the default wherever one sequence is judged. Higher always means more abnormal. No I/O
happens here: strings in, arrays out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from monitor.core.bundle import Bundle
from monitor.core.dense_errors import AGREEMENT, DenseErrors
from monitor.core.format_table import FormatTable
from monitor.core.fusion import (
    Fusion,
    SignalCalibration,
    TailCalibration,
    fuse,
    log_error,
)
from monitor.core.model import Reconstructor, dense_layers
from monitor.core.prepare import Preparer
from monitor.core.row_memo import MEMO_SIZE, RowMemo
from monitor.core.signature import FormatReader, Formats
from monitor.percentiles import percentile_ranks

log = logging.getLogger(__name__)

METHODS = ("fused", "autoencoder")
"""What ranks and flags one sequence: the fused score or the autoencoder's error alone."""
DEFAULT_METHOD = "fused"  # it measures better on every task of bench/quality.py (docs/benchmarks.md)
RARE_FORMAT = 0.01  # an explanation names the format when at most this share of training was as rare


@dataclass(frozen=True)
class Fused:
    """The fused scores of a batch, their ranks among the training rows' (0-100) and flags."""

    values: np.ndarray
    percentiles: np.ndarray
    flags: np.ndarray


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
    formats: Formats | None = None
    _fuse: Callable[[], Fused] | None = field(default=None, repr=False, compare=False)
    _shares: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def percentiles(self) -> np.ndarray:
        return percentile_ranks(self.errors, self.sorted_training_errors)

    @cached_property
    def _fused(self) -> Fused:
        if self._fuse is None:
            raise ValueError("these scores were made without a fused score")
        return self._fuse()

    @property
    def fused(self) -> np.ndarray:
        """The fused score of each sequence (computed on first use: the hourly path never needs it)."""
        return self._fused.values

    @property
    def fused_percentiles(self) -> np.ndarray:
        return self._fused.percentiles

    @property
    def fused_flags(self) -> np.ndarray:
        return self._fused.flags

    @cached_property
    def format_shares(self) -> np.ndarray:
        """Each sequence's format's share of the training data (0: new or in the long tail)."""
        if self._shares is None:
            raise ValueError("these scores were made without formats")
        return self._shares()

    def by(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score, percentile rank and flag of each sequence under ``method`` (``METHODS``)."""
        if method == "autoencoder":
            return self.errors, self.percentiles, self.flags
        return self.fused, self.fused_percentiles, self.fused_flags

    @classmethod
    def combined(cls, length: int, parts: Sequence[tuple[np.ndarray, Scores]]) -> Scores:
        """One batch's scores from parts scored by different models (``rows`` of the batch each): each
        part keeps its own model's flags and ranks."""
        errors, flags, ranks = np.empty(length), np.zeros(length, dtype=bool), np.empty(length)
        for rows, scores in parts:
            errors[rows], flags[rows], ranks[rows] = scores.errors, scores.flags, scores.percentiles
        names: dict[str, int] = {}
        ids = np.empty(length, dtype=np.int32)
        for rows, scores in parts:
            if scores.formats is not None:
                mine = np.array([names.setdefault(n, len(names)) for n in scores.formats.names], dtype=np.int32)
                ids[rows] = mine[scores.formats.ids]

        def fused() -> Fused:
            values, percentiles, fused_flags = np.empty(length), np.empty(length), np.zeros(length, dtype=bool)
            for rows, scores in parts:
                values[rows], percentiles[rows], fused_flags[rows] = scores.by("fused")
            return Fused(values, percentiles, fused_flags)

        def shares() -> np.ndarray:
            out = np.empty(length)
            for rows, scores in parts:
                out[rows] = scores.format_shares
            return out

        with_formats = all(scores.formats is not None for _, scores in parts)
        combined = cls(errors, flags, parts[-1][1].sorted_training_errors,
                       Formats(ids, list(names)) if with_formats else None, fused, shares)
        combined.__dict__["percentiles"] = ranks  # set the cached value: ranks against each part's own model
        return combined


class Scorer:
    """Scores batches of sequences with one bundle, e.g.
    ``Scorer(bundle.load("models/serials")).score(["AB121E", "9 ER 223 ABCDSED"]).percentiles``.

    Building it compiles the model's forward pass and checks the errors from feature indices against it
    (``monitor.core.dense_errors``) once; reuse one scorer for many batches.
    """

    def __init__(self, bundle: Bundle, batch_size: int = 8192) -> None:
        self.bundle = bundle
        self._reconstruct = Reconstructor(bundle.model, batch_size)
        # A dense model's errors come from the feature indices without TensorFlow (monitor.core.dense_errors).
        self._dense = _dense_errors(bundle, self._reconstruct)
        self._formats = FormatReader()
        # A string's error under one model never changes: a repeat (most of a stream of serials) skips
        # encoding and the model alike.
        self._errors = RowMemo(MEMO_SIZE, dtype=np.float64)

    @cached_property
    def fusion(self) -> Fusion:
        return self.bundle.fusion if self.bundle.fusion is not None else _error_only(self.bundle)

    @cached_property
    def fused_threshold(self) -> float:
        """A sequence is flagged by the fused score above this quantile of the training rows' fused scores."""
        return float(np.quantile(self.fusion.training_scores, self.bundle.threshold_quantile))

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

    @property
    def training_errors(self) -> np.ndarray:
        """The training rows' reconstruction errors, sorted (the hourly judgement's error levels)."""
        return self.bundle.training_errors

    def errors(self, sequences: Sequence[str]) -> np.ndarray:
        """Mean squared reconstruction error of each sequence (float64)."""
        if not len(sequences):
            return np.empty(0)
        return self._errors.rows(sequences, self._fresh_errors)[:, 0]

    def _fresh_errors(self, sequences: list[str]) -> np.ndarray:
        if self._dense is not None:
            return self._dense.errors(self.bundle.preparer.active_features(sequences))[:, None]
        x = self.bundle.preparer.encode(sequences)
        return reconstruction_errors(x, self._reconstruct(x))[:, None]

    def forget(self) -> None:
        """Forget every remembered error and encoding (benchmarks start each run as cold as a new process)."""
        self._errors.forget()
        self.bundle.preparer.forget()

    @property
    def training_formats(self) -> FormatTable:
        return self.fusion.formats

    def training_format_shares(self) -> dict[str, float]:
        """Each kept training format's share (empty for a bundle from before formats)."""
        return self.fusion.formats.share_by_format()

    def formats(self, sequences: Sequence[str]) -> Formats:
        return self._formats.read(sequences)

    def score(self, sequences: Sequence[str]) -> Scores:
        """Errors, flags and formats now; fused scores, ranks and format shares on first use."""
        errors = self.errors(sequences)
        formats = self.formats(sequences)

        def fused() -> Fused:
            values = self.fusion.score(sequences, formats, errors)
            return Fused(values, percentile_ranks(values, self.fusion.training_scores), values > self.fused_threshold)

        def shares() -> np.ndarray:
            return self.fusion.formats.shares(formats.names)[formats.ids]

        return Scores(errors, errors > self.bundle.threshold, self.bundle.training_errors, formats, fused, shares)

    def format_note(self, name: str) -> str | None:
        """What to say of a format in an explanation: that it is new or rare in training (else nothing)."""
        table = self.fusion.formats
        if not table.total:
            return None
        share = table.share(name)
        if share == 0:
            return f"format {name} never seen in training" if table.tail_formats == 0 else \
                f"format {name} not among the {len(table.counts)} training formats"
        if float(table.rarity([name])[0]) <= RARE_FORMAT:
            return f"rare format {name} ({share:.2%} of training)"
        return None

    def explain(self, sequences: Sequence[str], top: int = 3) -> list[list[tuple[str, float]]]:
        """For each sequence, the parts that carry most of its error, with their share of it."""
        x = self.bundle.preparer.encode(sequences)
        squared = np.square(x - self._reconstruct(x))
        return [self.bundle.preparer.describe(s, row, top) for s, row in zip(sequences, squared)]


def _dense_errors(bundle: Bundle, reconstruct: Reconstructor) -> DenseErrors | None:
    """The errors of ``bundle``'s model from feature indices, if it is a dense model whose errors this path
    computes as TensorFlow does (checked here, once per scorer); else ``None``: TensorFlow scores it."""
    preparer = bundle.preparer
    dense = DenseErrors.of(dense_layers(bundle.model), preparer.repeats_features, reconstruct.batch_size)
    if dense is None or dense.width != preparer.width:
        return None
    difference = dense.agrees_with(lambda x: reconstruction_errors(x, reconstruct(x)), preparer.ones_per_sequence)
    if difference > AGREEMENT:
        log.warning("model %s: the errors computed from feature indices differ from TensorFlow's by up to %.1e "
                    "(relative); this model is scored by TensorFlow", bundle.version, difference)
        return None
    return dense


def _error_only(bundle: Bundle) -> Fusion:
    """A bundle from before formats: the fused score is the error's tail probability alone."""
    calibration = SignalCalibration(TailCalibration.fit(log_error(bundle.training_errors)))
    training_scores = np.sort(fuse(calibration.overall.p(log_error(bundle.training_errors))))
    return Fusion(("autoencoder",), FormatTable({}, 0), calibration, training_scores)


def reconstruction_errors(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Each row's mean squared reconstruction error (float64): the per-sequence score of the autoencoder."""
    return np.mean(np.square(x - reconstruction), axis=1, dtype=np.float64)


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
