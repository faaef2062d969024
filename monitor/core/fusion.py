"""The fused per-sequence score: several signals, each made a tail probability on the training data, in one.

A sequence is abnormal in as many ways as there are signals: its format is rare or new (``FormatTable.rarity``),
the autoencoder reconstructs it badly, a character n-gram model finds it unlikely. Their raw values live
on unrelated scales, so each is first *calibrated*: ``TailCalibration`` turns a value into the share of
training values at least as extreme (an empirical upper-tail probability, with an exponential tail fitted to
the top 1 % beyond it, so two values both past everything seen in training still rank).

The error and likelihood signals are calibrated *within the sequence's format* when training had enough of
that format (``MIN_FORMAT_ROWS``): a rare but valid format is reconstructed worse than a common one, and
comparing it with its own kind keeps it from counting twice (once as rare, once as badly reconstructed).
The fused score is then ``-sum(w * log p)`` over the signals: with every weight 1, the score of a sequence as
unlikely as the product of its tail probabilities (Fisher's method without the chi-squared step, which would
not change the order). The weights are learned per bundle at training time by outlier exposure
(``monitor.core.exposure``: the autoencoder's held-out training rows against corruptions of them), and stay 1
where the corruptions do not show another weighting tells them apart better, or where training had too few
rows to learn from. Higher is more abnormal; the score of a typical training sequence is a few units.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.core import exposure
from monitor.core.format_table import FormatTable
from monitor.core.ngram import CharNgramModel
from monitor.core.signature import FormatReader, Formats

GRID = 257  # quantiles kept per calibration
TAIL_QUANTILE = 0.99  # beyond it, an exponential tail fitted to the training values above it
MIN_FORMAT_ROWS = 200
MIN_RARE_ROWS = 50


@dataclass(frozen=True)
class TailCalibration:
    """Upper-tail probabilities of one signal from its training values: ``p(v)`` = share of training values
    >= ``v``, never below ``1 / (n + 1)`` within the observed range, and decaying exponentially beyond
    the ``TAIL_QUANTILE``-th value with the mean excess of the values above it as scale.

    >>> cal = TailCalibration.fit(np.arange(1000.0))
    >>> [round(float(p), 3) for p in cal.p(np.array([-5.0, 500.0, 990.0]))]
    [1.0, 0.498, 0.008]
    >>> bool(cal.p(np.array([2000.0]))[0] < cal.p(np.array([1500.0]))[0])
    True
    """

    grid: np.ndarray
    count: int
    tail_start: float
    tail_scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> TailCalibration:
        values = np.sort(np.asarray(values, dtype=np.float64))
        if len(values) == 0:
            raise ValueError("a calibration needs at least one training value")
        grid = np.quantile(values, np.linspace(0, 1, GRID))
        start = float(np.quantile(values, TAIL_QUANTILE))
        excess = values[values > start] - start
        scale = float(excess.mean()) if len(excess) else 0.0
        spread = float(grid[-1] - grid[0])
        return cls(grid, len(values), start, max(scale, 1e-3 * spread, 1e-12))

    def p(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        # Share of the grid's quantiles at or above each value: the empirical upper tail.
        above = (len(self.grid) - np.searchsorted(self.grid, values, side="left")) / len(self.grid)
        p = np.maximum(above, 1.0 / (self.count + 1))
        beyond = values > self.tail_start
        if np.any(beyond):
            tail = (1 - TAIL_QUANTILE) * np.exp(-(values[beyond] - self.tail_start) / self.tail_scale)
            p[beyond] = np.minimum(p[beyond], tail)
        return np.maximum(p, 1e-300)

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.tolist(), "count": self.count, "tail_start": self.tail_start,
                "tail_scale": self.tail_scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TailCalibration:
        return cls(np.asarray(data["grid"], dtype=np.float64), int(data["count"]), float(data["tail_start"]),
                   float(data["tail_scale"]))


@dataclass(frozen=True)
class SignalCalibration:
    """One signal calibrated over all of training (``overall``: for formats training never had), within each
    format training had enough of (``by_format``), and over the rows of the rarer formats together
    (``rare``: a rare but valid format is compared with rare ones, not with the common formats)."""

    overall: TailCalibration
    by_format: dict[str, TailCalibration] = field(default_factory=dict)
    rare: TailCalibration | None = None

    @classmethod
    def fit(cls, values: np.ndarray, format_ids: np.ndarray | None = None,
            names: Sequence[str] = ()) -> SignalCalibration:
        by_format, rare = {}, None
        if format_ids is not None:
            counts = np.bincount(format_ids, minlength=len(names))
            for i in np.flatnonzero(counts >= MIN_FORMAT_ROWS):
                by_format[names[i]] = TailCalibration.fit(values[format_ids == i])
            rare_rows = counts[format_ids] < MIN_FORMAT_ROWS
            if rare_rows.sum() >= MIN_RARE_ROWS:
                rare = TailCalibration.fit(values[rare_rows])
        return cls(TailCalibration.fit(values), by_format, rare)

    def p(self, values: np.ndarray, format_ids: np.ndarray | None = None, names: Sequence[str] = (),
          known: Container[str] = ()) -> np.ndarray:
        """Each value's tail probability: against its format's training values where training had enough of
        it, against the rare formats' for another format in ``known`` (training's), else against all."""
        p = self.overall.p(values)
        if format_ids is None or not (self.by_format or self.rare):
            return p
        for i, name in enumerate(names):
            calibration = self.by_format.get(name) or (self.rare if name in known else None)
            if calibration is not None:
                rows = format_ids == i
                if rows.any():
                    p[rows] = calibration.p(values[rows])
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(),
                "by_format": {name: c.to_dict() for name, c in self.by_format.items()},
                "rare": None if self.rare is None else self.rare.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalCalibration:
        rare = data.get("rare")
        return cls(TailCalibration.from_dict(data["overall"]),
                   {str(name): TailCalibration.from_dict(c) for name, c in data.get("by_format", {}).items()},
                   None if rare is None else TailCalibration.from_dict(rare))


def log_error(errors: np.ndarray) -> np.ndarray:
    """Reconstruction errors on a log scale, where their upper tail is close to exponential."""
    return np.log(np.maximum(np.asarray(errors, dtype=np.float64), 1e-12))


def fuse(*tail_probabilities: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """``-sum(w * log p)`` (every ``w`` 1 unless ``weights`` are given): higher is more abnormal."""
    if weights is None:
        return -np.sum([np.log(p) for p in tail_probabilities], axis=0)
    return -np.sum([w * np.log(p) for w, p in zip(weights, tail_probabilities)], axis=0)


SIGNALS = ("format", "autoencoder", "ngram")
DEFAULT_SIGNALS = SIGNALS


@dataclass(frozen=True)
class Fusion:
    """What a bundle needs to fuse: the signals it uses, their calibrations, the training formats, the
    n-gram model (when ``"ngram"`` is a signal) and the sorted fused scores of the training rows (for
    percentile ranks and the flagging threshold)."""

    signals: tuple[str, ...]
    formats: FormatTable
    error: SignalCalibration
    training_scores: np.ndarray
    ngram: CharNgramModel | None = None
    ngram_calibration: SignalCalibration | None = None
    weights: tuple[float, ...] | None = None  # one per signal; None: each 1 (bundles of format version 2)
    learning: Mapping[str, Any] = field(default_factory=dict)  # how the weights were learned (for reports)

    def weight_of(self) -> dict[str, float]:
        """Each signal's weight in the fused score (1 each for a fusion that learned none)."""
        return dict(zip(self.signals, self.weights or (1.0,) * len(self.signals)))

    def weights_note(self) -> str:
        """What each signal weighs in the fused score and where that comes from, in one line, e.g.
        ``format 1.2 (40 %), autoencoder 0 (0 %, left out), ngram 1.8 (60 %); learned ...``."""
        weights = self.weight_of()
        total = sum(weights.values()) or 1.0
        parts = ", ".join(f"{name} {w:.3g} ({w / total:.0%}{', left out' if w == 0 else ''})"
                          for name, w in weights.items())
        learning = self.learning
        if self.weights is None:
            return f"{parts}; equal weights (a bundle from before learned weights)"
        if not learning.get("learned"):
            return f"{parts}; equal weights ({learning.get('held_out', 0):,} held-out rows: too few to learn from)"
        corruptions = sum(learning.get("corruptions", {}).values())
        how = "kept equal: no weighting told them apart better" if all(w == 1 for w in weights.values()) else \
            f"log-loss {learning['log_loss_equal']:.3f} with equal weights, {learning['log_loss']:.3f} with these"
        return (f"{parts}; learned on {learning['held_out']:,} held-out training rows against {corruptions:,} "
                f"corruptions of them ({how})")

    def score(self, sequences: Sequence[str], formats: Formats, errors: np.ndarray) -> np.ndarray:
        """The fused score of each sequence, given its formats and reconstruction errors."""
        p = self.tail_probabilities(sequences, formats, errors)
        weights = self.weight_of()  # 1 each for a bundle without learned weights: the same sums exactly
        return fuse(*p.values(), weights=[weights[s] for s in p])

    def tail_probabilities(self, sequences: Sequence[str], formats: Formats,
                           errors: np.ndarray) -> dict[str, np.ndarray]:
        """Each signal's tail probability per sequence."""
        p: dict[str, np.ndarray] = {}
        if "format" in self.signals:
            p["format"] = self.formats.rarity(formats.names)[formats.ids]
        known = self.formats.counts
        if "autoencoder" in self.signals:
            p["autoencoder"] = self.error.p(log_error(errors), formats.ids, formats.names, known)
        if "ngram" in self.signals and self.ngram is not None and self.ngram_calibration is not None:
            p["ngram"] = self.ngram_calibration.p(self.ngram.nll(sequences), formats.ids, formats.names, known)
        return p

    def to_dict(self) -> dict[str, Any]:
        """The calibrations and weights (the format table, n-gram model and training scores are saved apart)."""
        data = {"signals": list(self.signals), "error": self.error.to_dict(),
                "ngram_calibration": None if self.ngram_calibration is None else self.ngram_calibration.to_dict()}
        if self.weights is not None:
            data["weights"] = self.weight_of()
            data["learning"] = dict(self.learning)
        return data

    @classmethod
    def from_parts(cls, data: Mapping[str, Any], formats: FormatTable, training_scores: np.ndarray,
                   ngram: CharNgramModel | None) -> Fusion:
        calibration = data.get("ngram_calibration")
        signals = tuple(str(s) for s in data["signals"])
        weights = data.get("weights")
        if weights is not None and set(weights) != set(signals):
            raise ValueError(f"weights of {sorted(weights)} for the signals {list(signals)}")
        return cls(signals, formats, SignalCalibration.from_dict(data["error"]),
                   np.asarray(training_scores, dtype=np.float64), ngram,
                   None if calibration is None else SignalCalibration.from_dict(calibration),
                   None if weights is None else tuple(float(weights[s]) for s in signals),
                   dict(data.get("learning", {})))


# The n-gram model's order, by the training data's median length (measured on bench/quality.py): identifiers
# do best at 7 (at 9 the model all but memorises a short string and new valid ones score noisily), log lines
# and other long text at 9 (below, a misspelled word in a long message stands out less).
NGRAM_ORDER_SHORT, NGRAM_ORDER_LONG, LONG_TEXT = 7, 9, 24


def ngram_order_for(sequences: Sequence[str]) -> int:
    """The order of the n-gram model for a training corpus: ``NGRAM_ORDER_LONG`` when its median length is
    ``LONG_TEXT`` characters or more."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    return NGRAM_ORDER_LONG if len(lengths) and np.median(lengths) >= LONG_TEXT else NGRAM_ORDER_SHORT


@dataclass(frozen=True)
class HeldOut:
    """The training rows the autoencoder was not fitted on (its validation rows, by index) and how to get the
    reconstruction error of any string: the normal side of the outlier exposure that learns the weights."""

    rows: np.ndarray
    errors: Callable[[Sequence[str]], np.ndarray]
    seed: int = 0


MAX_HELD_OUT = 4000  # held-out rows the weights are learned on, at most (a sample of them beyond)
MIN_HELD_OUT = 200  # fewer: too few to learn from, every weight stays 1
CORRUPTIONS_PER_ROW = 0.2  # corruptions of each kind per held-out row


def fit_fusion(sequences: Sequence[str], errors: np.ndarray, signals: Sequence[str] = DEFAULT_SIGNALS,
               ngram_order: int | None = None, held_out: HeldOut | None = None) -> Fusion:
    """The fusion of a model trained on ``sequences``, whose reconstruction errors are ``errors`` (row order).

    The n-gram model's calibration values are cross-fitted (each half scored by a model fitted on the other
    half): scored on its own training strings, an n-gram model finds them likelier than it will find new
    normal strings, and every new string would look rare. With ``held_out`` (at least ``MIN_HELD_OUT``
    rows) the signals' weights are learned by outlier exposure (``exposure.learn_weights``); without, each weighs 1.
    """
    unknown = set(signals) - set(SIGNALS)
    if unknown or not signals:
        raise ValueError(f"signals must be a non-empty subset of {SIGNALS}, got {list(signals)}")
    formats = FormatReader().read(sequences)
    table = FormatTable.learn(sequences, formats)
    error = SignalCalibration.fit(log_error(errors), formats.ids, formats.names)
    ngram, ngram_calibration, halves = None, None, None
    ngram_order = ngram_order_for(sequences) if ngram_order is None else ngram_order
    chosen = tuple(s for s in SIGNALS if s in signals)
    p = {"format": table.rarity(formats.names)[formats.ids],
         "autoencoder": error.p(log_error(errors), formats.ids, formats.names, table.counts)}
    if "ngram" in signals:
        ngram = CharNgramModel.fit(sequences, ngram_order)
        held_out_nll, halves = _cross_fitted_nll(sequences, ngram_order)
        ngram_calibration = SignalCalibration.fit(held_out_nll, formats.ids, formats.names)
        p["ngram"] = ngram_calibration.p(held_out_nll, formats.ids, formats.names, table.counts)
    fusion = Fusion(chosen, table, error, np.empty(0), ngram, ngram_calibration)
    weights, learning = None, {}
    if held_out is not None:
        weights, learning = _learned_weights(fusion, sequences, p, held_out, halves)
    # The training rows' own fused scores, with the n-gram signal as new strings get it (held out): scored in
    # sample they would come out lower than new normal strings, and the threshold would flag too many.
    training = np.sort(fuse(*(p[s] for s in chosen), weights=weights))
    return Fusion(chosen, table, error, training, ngram, ngram_calibration, weights, learning)


def _learned_weights(fusion: Fusion, sequences: Sequence[str], p: Mapping[str, np.ndarray], held_out: HeldOut,
                     halves: _Halves | None) -> tuple[tuple[float, ...], dict[str, Any]]:
    """The weights outlier exposure learns (``exposure.learn_weights``): the held-out rows' tail probabilities
    against their corruptions', each corruption scored as a new string is (its n-gram likelihood by the
    model of the half its string was not in)."""
    rows = np.asarray(held_out.rows, dtype=np.int64)
    if len(rows) > MAX_HELD_OUT:
        rows = np.sort(np.random.default_rng(held_out.seed).choice(rows, MAX_HELD_OUT, replace=False))
    signals = fusion.signals
    if len(rows) < MIN_HELD_OUT or len(signals) < 2:
        return (1.0,) * len(signals), {"held_out": int(len(rows)), "learned": False}
    strings = [sequences[i] for i in rows]
    made = exposure.corrupt(strings, max(1, int(CORRUPTIONS_PER_ROW * len(rows))), set(sequences), held_out.seed)
    kinds = [kind for kind, (_, xs) in made.items() if xs]
    corrupted = [x for kind in kinds for x in made[kind][1]]
    sources = rows[np.concatenate([made[kind][0] for kind in kinds])] if kinds else np.empty(0, np.int64)
    if not corrupted:
        return (1.0,) * len(signals), {"held_out": int(len(rows)), "learned": False}
    formats = FormatReader().read(corrupted)
    q = fusion.tail_probabilities(corrupted, formats, held_out.errors(corrupted))
    if "ngram" in signals and fusion.ngram_calibration is not None and halves is not None:
        nll = halves.nll(corrupted, sources)
        q["ngram"] = fusion.ngram_calibration.p(nll, formats.ids, formats.names, fusion.formats.counts)
    bounds = np.cumsum([0] + [len(made[kind][1]) for kind in kinds])
    normal = {s: -np.log(p[s][rows]) for s in signals}
    abnormal = {kind: {s: -np.log(q[s][a:b]) for s in signals} for kind, a, b in zip(kinds, bounds, bounds[1:])}
    return exposure.learn_weights(normal, abnormal, signals)


class _Halves:
    """The two n-gram models of the cross-fitting: ``models[h]`` was fitted without the rows of half ``h``."""

    def __init__(self, halves: np.ndarray, models: dict[bool, CharNgramModel]) -> None:
        self.halves, self.models = halves, models

    def nll(self, texts: Sequence[str], sources: np.ndarray) -> np.ndarray:
        """Each text's NLL by the model that never saw the training row it comes from (``sources``)."""
        out = np.empty(len(texts))
        for half, model in self.models.items():
            mine = self.halves[sources] == half
            out[mine] = model.nll([t for t, m in zip(texts, mine) if m])
        return out


def _cross_fitted_nll(sequences: Sequence[str], order: int) -> tuple[np.ndarray, _Halves]:
    halves = (np.arange(len(sequences)) % 2).astype(bool)
    nll = np.empty(len(sequences))
    models = {}
    for half in (True, False):
        held_out = halves == half
        kept = [s for s, out in zip(sequences, held_out) if not out]
        scored = [s for s, out in zip(sequences, held_out) if out]
        models[half] = CharNgramModel.fit(kept, order)
        nll[held_out] = models[half].nll(scored)
    return nll, _Halves(halves, models)
