"""Charts as PNGs: hourly reports against their baseline band, and the pictures of a model's quality.

``hourly_chart``: each window's weighted mean error against its baseline band, alarms marked.
``training_chart``: training and validation loss per epoch, the kept (best) epoch marked.
``error_distribution_chart``: histograms of one score per set (fused, or reconstruction error), with the
threshold; ``SCORES`` names each score as titles, axes and legends say it.
``precision_recall_chart``: the precision-recall curve with operating points.
``confusion_chart``: a 2x2 confusion matrix with counts and row rates.

The only module that imports matplotlib, and only when a chart is drawn: the monitor runs without it.
Each chart is written whole or not at all, at exactly ``size_px`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np

from monitor.core.bundle import Bundle
from monitor.core.evaluation import Evaluation, precision_recall_curve
from monitor.core.train import best_epoch, stopped_at_epoch_limit
from monitor.errors import InputError
from monitor.hourly.report import WindowReport
from monitor.stream.files import open_output

BAND_MADS = 3.0
JUDGED = ("normal", "warning", "critical")
_MARKS = {"warning": ("#f0a020", "^", "warning"), "critical": ("#d62728", "o", "critical")}
_BLUE, _ORANGE, _RED = "#1f4e9a", "#e08a00", "#d62728"
_PALETTE = (_BLUE, _RED, "#2a9d4b", "#8a4fbf", _ORANGE, "#6b6b6b")  # distinct also in greyscale print
_SHAPES = ("o", "s", "D", "^", "v", "P")



@dataclass(frozen=True)
class ScoreName:
    """How the charts name one per-sequence score (``monitor.core.score.METHODS``): ``plural`` in titles,
    ``axis`` on the value axis, ``training`` for the training rows' values a threshold is a quantile of."""

    plural: str
    axis: str
    training: str

    def threshold_label(self, threshold: float, quantile: float) -> str:
        return f"threshold {threshold:.3g} = quantile {quantile:g} of the {self.training}"


SCORES = {
    "fused": ScoreName("Fused scores", "fused score (sum of -log tail probabilities, log scale)",
                       "training rows' fused scores"),
    "autoencoder": ScoreName("Reconstruction errors", "reconstruction error (mean squared, log scale)",
                             "training rows' reconstruction errors"),
}


def hourly_chart(reports: Sequence[WindowReport], path: Path, title: str, *, marker_ms: int | None = None,
                 marker_label: str = "", size_px: tuple[int, int] = (1200, 520), dpi: int = 100) -> Path:
    """Draws ``reports`` (one topic, in start order) to the PNG ``path`` of exactly ``size_px`` pixels.

    The weighted mean error is on a log scale: an incident is often orders of magnitude above normal.
    The band is the baseline median +- ``BAND_MADS`` scaled MADs of judged windows (learning ones have
    no settled baseline); ``marker_ms`` draws a vertical line, e.g. where a drift was injected.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no GUI backend; PNG through Agg
    )

    if not reports:
        raise ValueError("no window reports to draw")
    figure = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    starts = [_utc(r.start_ms) for r in reports]
    means = [r.totals.weighted_mean for r in reports]
    _shade_learning(axes, reports)
    _draw_baseline(axes, reports, starts, floor=min((m for m in means if m > 0), default=1e-9) / 2)
    axes.plot(starts, means, color="#1f4e9a", linewidth=1.2, marker=".", markersize=4,
              label="weighted mean error")
    for verdict, (color, shape, label) in _MARKS.items():
        hits = [(s, m) for s, m, r in zip(starts, means, reports) if r.verdict == verdict]
        if hits:
            axes.scatter(*zip(*hits), color=color, marker=shape, s=36, zorder=3, label=f"{label} ({len(hits)})")
    if marker_ms is not None:
        axes.axvline(_utc(marker_ms), color="black", linestyle=":", linewidth=1.2, label=marker_label or None)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_yscale("log")
    axes.set(title=title, xlabel=f"window start (UTC), windows of {_length(reports[0])}",
             ylabel="weighted mean reconstruction error (log)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", framealpha=0.9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_output(path, binary=True) as handle:  # whole or not at all: an old chart survives a failure
        figure.savefig(handle, format="png")
    return path


def _shade_learning(axes: Any, reports: Sequence[WindowReport]) -> None:
    """Grey spans over runs of consecutive learning windows (one legend entry)."""
    label = "learning (baseline too short)"
    run_start: int | None = None
    for i, report in enumerate([*reports, None]):
        learning = report is not None and report.verdict == "learning"
        if learning and run_start is None:
            run_start = i
        elif not learning and run_start is not None:
            axes.axvspan(_utc(reports[run_start].start_ms), _utc(reports[i - 1].end_ms), color="#999999",
                         alpha=0.12, linewidth=0, label=label)
            label, run_start = "", None


def _draw_baseline(axes: Any, reports: Sequence[WindowReport], starts: list[datetime], floor: float) -> None:
    """Median and band where the window was judged; gaps elsewhere (``nan`` breaks the line)."""
    nan = float("nan")
    judged = [r.verdict in JUDGED and math.isfinite(r.comparison.baseline_median) for r in reports]
    median = [r.comparison.baseline_median if ok else nan for r, ok in zip(reports, judged)]
    # On a log axis a band edge at or below zero cannot be drawn: it is held at half the lowest mean.
    low = [max(r.comparison.baseline_median - BAND_MADS * r.comparison.baseline_mad, floor) if ok else nan for r, ok in zip(reports, judged)]
    high = [r.comparison.baseline_median + BAND_MADS * r.comparison.baseline_mad if ok else nan for r, ok in zip(reports, judged)]
    axes.fill_between(starts, low, high, color="#7fa7d9", alpha=0.3, linewidth=0, step="mid",
                      label=f"baseline median \u00b1 {BAND_MADS:g} MAD")
    axes.plot(starts, median, color="#4a6f9e", linestyle="--", linewidth=1,
              drawstyle="steps-mid", label="baseline median")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _length(report: WindowReport) -> str:
    seconds = (report.end_ms - report.start_ms) / 1000
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def training_chart(history: Mapping[str, Sequence[float]], path: Path, title: str, *,
                   epoch_limit: int | None = None, size_px: tuple[int, int] = (900, 500),
                   dpi: int = 100) -> Path:
    """Draws the training loss (``history["loss"]``) and validation loss (``history["val_loss"]``, may be
    empty or absent) per epoch to the PNG ``path`` of exactly ``size_px`` pixels.

    The loss is on a log scale: the first epochs are often orders of magnitude above the last. The epoch
    of the lowest validation loss is marked: training keeps that epoch's weights, not the last ones. When
    that epoch is ``epoch_limit`` (``--epochs``), a note under the title says training stopped before the
    loss settled.
    """
    from matplotlib.ticker import MaxNLocator

    loss, val = _finite_or_nan(history.get("loss", ())), _finite_or_nan(history.get("val_loss", ()))
    if not loss.size and not val.size:
        raise ValueError("no training history to draw")
    figure, axes = _figure(size_px, dpi)
    # Dots only while they can be told apart; a single epoch would be invisible as a line alone.
    dots = {"marker": "o", "markersize": 3} if max(loss.size, val.size) <= 60 else {}
    axes.plot(_epochs(loss), loss, color=_BLUE, linewidth=1.6, label="training loss", **dots)
    if val.size:
        axes.plot(_epochs(val), val, color=_ORANGE, linewidth=1.6, label="validation loss", **dots)
        _mark_best(axes, val)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(0.5, max(loss.size, val.size) + 0.5)  # epochs count from 1: no tick at 0
    _log_scale_if_positive(axes, np.concatenate([loss, val]))
    if epoch_limit is not None and stopped_at_epoch_limit(history, epoch_limit):
        title = f"{title}\n{epoch_limit_note(epoch_limit)}"
    axes.set(title=title, xlabel="epoch", ylabel="loss (mean squared error)")
    axes.grid(True, which="major", alpha=0.3)
    axes.grid(True, which="minor", axis="y", alpha=0.12)  # late epochs often move within one decade
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return _save(figure, path)


def epoch_limit_note(epoch_limit: int) -> str:
    """What the training chart and ``train`` say when the best epoch is the last one allowed."""
    return f"the best epoch is the --epochs limit ({epoch_limit}): training stopped before it converged"


def _epochs(values: np.ndarray) -> np.ndarray:
    return np.arange(1, values.size + 1)


def _mark_best(axes: Any, val: np.ndarray) -> None:
    """A ring and a faint vertical line at the first lowest finite validation loss (the epoch kept)."""
    best = best_epoch({"val_loss": val})
    if best is None:
        return
    axes.axvline(best, color=_RED, linestyle=":", linewidth=1, alpha=0.6)
    axes.scatter([best], [val[best - 1]], s=110, facecolors="none", edgecolors=_RED, linewidths=2, zorder=3,
                 label=f"best validation loss (epoch {best})")


def error_distribution_chart(path: Path, title: str, sets: Mapping[str, np.ndarray], threshold: float,
                             threshold_label: str, *, method: str = "autoencoder",
                             size_px: tuple[int, int] = (900, 500), dpi: int = 100) -> Path:
    """Draws one histogram per named set of scores of ``method`` (``SCORES``: reconstruction errors by
    default) and the ``threshold`` to the PNG ``path``.

    The bins are shared and log-spaced over every set's positive scores (and the threshold), since scores
    span decades; a score of 0 cannot sit on a log axis and is counted in the first bin instead.
    Non-finite scores are left out (the legend says how many). Counts go on a log scale when they span
    more than two decades, so a small set of anomalies stays visible beside a large normal one.
    """
    finite = {name: _finite(values) for name, values in sets.items()}
    if not any(v.size for v in finite.values()):
        raise ValueError(f"no {SCORES[method].plural.lower()} to draw")
    bins = _log_bins([*finite.values()], threshold)
    counts = {name: np.histogram(np.clip(v, bins[0], None), bins)[0] for name, v in finite.items()}
    positive = np.concatenate([c[c > 0] for c in counts.values()])
    log_counts = positive.max() / positive.min() > 100
    figure, axes = _figure(size_px, dpi)
    baseline = 0.5 if log_counts else 0  # below a count of 1: a single sequence still shows as a bar
    for (name, count), color in zip(counts.items(), cycle(_PALETTE)):
        axes.stairs(count, bins, baseline=baseline, fill=True, color=color, alpha=0.2, linewidth=0)
        axes.stairs(count, bins, baseline=baseline, color=color, linewidth=1.6,
                    label=_set_label(name, sets[name], finite[name]))
    if math.isfinite(threshold) and threshold > 0:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1.4, label=threshold_label)
    else:  # a log axis has no place for it; the legend still names it
        axes.plot([], [], color="black", linestyle="--", label=f"{threshold_label} (not > 0: off the axis)")
    axes.set_xscale("log")
    axes.set_xlim(bins[0] / 1.5, bins[-1] * 1.5)  # a margin: a threshold at the last edge stays visible
    # Head room above the highest bar for the legend: a log axis needs a factor, a linear one a share.
    if log_counts:
        axes.set_yscale("log")
        axes.set_ylim(baseline, positive.max() * 8)
    else:
        axes.set_ylim(0, positive.max() * 1.35)
    axes.set(title=title, xlabel=SCORES[method].axis, ylabel="sequences" + (" (log scale)" if log_counts else ""))
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return _save(figure, path)


def _log_bins(sets: Sequence[np.ndarray], threshold: float, count: int | None = None) -> np.ndarray:
    """Log-spaced bin edges from the lowest to the highest positive value or threshold; about the square
    root of the number of values (10 to 60) unless ``count`` is given."""
    positive = np.concatenate([*(v[v > 0] for v in sets), [threshold] if threshold > 0 else []])
    positive = positive[np.isfinite(positive)]
    low, high = (positive.min(), positive.max()) if positive.size else (1e-6, 1e-6)
    if high <= low * 1.01:  # one value (or all equal): a few bins around it, not a zero-width range
        low, high = low / 2, high * 2
    count = count or int(np.clip(np.sqrt(sum(v.size for v in sets)), 10, 60))
    return np.geomspace(low, high, count + 1)


def _set_label(name: str, given: np.ndarray, finite: np.ndarray) -> str:
    notes = [f"{np.asarray(given).size:,}"]
    if zeros := int((finite <= 0).sum()):
        notes.append(f"{zeros:,} at 0 in the first bin")
    if dropped := np.asarray(given).size - finite.size:
        notes.append(f"{dropped:,} not finite, left out")
    return f"{name} ({'; '.join(notes)})"


def precision_recall_chart(path: Path, title: str, recall: np.ndarray, precision: np.ndarray,
                           average_precision: float, points: Sequence[tuple[str, float, float]], *,
                           size_px: tuple[int, int] = (700, 600), dpi: int = 100) -> Path:
    """Draws the precision-recall curve and the operating points ``(label, recall, precision)`` (e.g. one
    per threshold) to the PNG ``path`` of exactly ``size_px`` pixels.

    The curve is drawn in steps, as scikit-learn's ``precision_recall_curve`` output means it: precision
    holds until the next threshold. Each point is a marker named in the legend
    with its values.
    """
    recall, precision = np.ravel(recall).astype(float), np.ravel(precision).astype(float)
    if recall.size != precision.size:
        raise ValueError(f"{recall.size} recall values but {precision.size} precision values")
    figure, axes = _figure(size_px, dpi)
    axes.plot(recall, precision, drawstyle="steps-post", color=_BLUE, linewidth=1.8,
              label=f"precision-recall curve, AP {average_precision:.3f}")
    for (label, r, p), color, shape in zip(points, cycle(_PALETTE[1:]), cycle(_SHAPES)):
        axes.scatter([r], [p], color=color, marker=shape, s=60, edgecolors="black", linewidths=0.8, zorder=4,
                     label=f"{label}: recall {r:.3f}, precision {p:.3f}")
    margin = 0.03
    axes.set(title=title, xlabel="recall", ylabel="precision", xlim=(-margin, 1 + margin),
             ylim=(-margin, 1 + margin))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small", framealpha=0.9)
    return _save(figure, path)


CONFUSION_ROWS = ("actual normal", "actual anomaly")
CONFUSION_COLUMNS = ("flagged normal", "flagged abnormal")
_CELL_NAMES = (("true negatives", "false positives"), ("false negatives", "true positives"))


def confusion_chart(path: Path, title: str, matrix: np.ndarray, subtitle: str = "", *,
                    size_px: tuple[int, int] = (600, 560), dpi: int = 100) -> Path:
    """Draws the 2x2 ``matrix`` [[true negatives, false positives], [false negatives, true positives]]
    to the PNG ``path`` of exactly ``size_px`` pixels; ``subtitle`` (e.g. the threshold) under the title.

    Each cell shows its count and its share of the actual row (the rates that matter: how many normal
    sequences are flagged, how many anomalies are caught), and is shaded by that share. A row without
    sequences has no rate: "–", shaded grey.
    """
    import matplotlib

    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (2, 2):
        raise ValueError(f"a confusion matrix is 2x2, got shape {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.full_like(matrix, np.nan), where=totals > 0)
    figure, axes = _figure(size_px, dpi)
    shades = matplotlib.colormaps["Blues"].with_extremes(bad="#e6e6e6")
    image = axes.imshow(rates, cmap=shades, vmin=0, vmax=1, aspect="auto")  # cells fill the figure
    for (row, column), count in np.ndenumerate(matrix):
        _write_cell(axes, row, column, count, rates[row, column])
    axes.set_xticks([0, 1], CONFUSION_COLUMNS)
    axes.set_yticks([0, 1], [f"{name}\n({total:,.0f})" for name, total in zip(CONFUSION_ROWS, totals[:, 0])])
    axes.tick_params(length=0, labelsize="medium")
    bar = figure.colorbar(image, ax=axes, shrink=0.8, format=lambda x, _: f"{100 * x:.0f} %")
    bar.set_label("share of the actual row")
    figure.suptitle(title, fontsize="large")
    if subtitle:
        axes.set_title(subtitle, fontsize="medium", color="#444444")
    return _save(figure, path)


def _write_cell(axes: Any, row: int, column: int, count: float, rate: float) -> None:
    """Count and row rate, large, with the cell's name small below; white on the dark shades only."""
    color = "white" if math.isfinite(rate) and rate > 0.6 else "#1a1a1a"
    rate_text = f"{100 * rate:.1f} %" if math.isfinite(rate) else "\u2013"
    axes.text(column, row - 0.05, f"{count:,.0f}\n{rate_text}", ha="center", va="center", color=color,
              fontsize="x-large", fontweight="bold")
    axes.text(column, row + 0.3, _CELL_NAMES[row][column], ha="center", va="center", color=color,
              fontsize="small")


def _figure(size_px: tuple[int, int], dpi: int) -> tuple[Any, Any]:
    """A figure of exactly ``size_px`` pixels at ``dpi`` with one axes, laid out to fit its labels."""
    # No pyplot: no global state, no GUI backend; PNG through Agg.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, layout="constrained")
    return figure, figure.add_subplot()


def _save(figure: Any, path: Path) -> Path:
    """Writes ``figure`` as a PNG to ``path``, whole or not at all: an old chart survives a failure. The
    folder must exist (``InputError`` otherwise): a mistyped folder is not created silently."""
    path = Path(path)
    with open_output(path, binary=True) as handle:
        # dpi given again: savefig's default comes from the user's matplotlibrc and would change the size.
        figure.savefig(handle, format="png", dpi=figure.dpi)
    return path


def _finite(values: Any) -> np.ndarray:
    values = np.ravel(np.asarray(values, dtype=float))
    return values[np.isfinite(values)]


def _finite_or_nan(values: Any) -> np.ndarray:
    """Floats with inf as nan: a line breaks at a diverged epoch instead of running off the axis."""
    values = np.ravel(np.asarray(values, dtype=float))
    return np.where(np.isfinite(values), values, np.nan)


def _log_scale_if_positive(axes: Any, values: np.ndarray) -> None:
    """Log y axis unless no value is positive (a log axis would have nothing to show)."""
    if (values[np.isfinite(values)] > 0).any():
        axes.set_yscale("log")


# -- reports: the charts of `evaluate --report` and `train --report` ----------------------------------------
DISTRIBUTIONS = "error-distributions.png"
PRECISION_RECALL = "precision-recall.png"
CONFUSION = "confusion-matrix.png"
TRAINING_LOSS = "training-loss.png"
TRAINING_SCORES = "training-scores.png"
TRAINING_ERRORS = "training-errors.png"


def evaluation_charts(folder: Path, bundle: Bundle, result: Evaluation, normal_scores: np.ndarray,
                      anomaly_scores: np.ndarray, *, method: str) -> list[Path]:
    """The distributions of the ``method``'s scores with the threshold; with anomalies also the
    precision-recall curve and the confusion matrix at the bundle's threshold. ``result`` is of the same
    scores (its thresholds quantiles of the training rows' scores of ``method``). Returns the files written."""
    folder = report_folder(folder)
    name = SCORES[method]
    at = result.at_bundle_threshold
    label = name.threshold_label(at.threshold, at.quantile)
    sets = {"normal": normal_scores, **({"anomalies": anomaly_scores} if len(anomaly_scores) else {})}
    written = [error_distribution_chart(folder / DISTRIBUTIONS, f"{name.plural}, model {bundle.version}", sets,
                                        at.threshold, label, method=method)]
    if len(anomaly_scores):
        labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))]
        precision, recall, _ = precision_recall_curve(labels, np.r_[normal_scores, anomaly_scores])
        points = [(f"q={p.quantile:g}" + (" (bundle)" if p.quantile == at.quantile else ""), p.recall,
                   p.precision) for p in result.points if not np.isnan(p.precision)]
        written.append(precision_recall_chart(folder / PRECISION_RECALL,
                                               f"Precision and recall by {name.plural.lower()}: "
                                               f"{result.normal:,} normal, {result.anomalies:,} anomalies",
                                               recall, precision, float(result.average_precision or 0),
                                               points))
        written.append(confusion_chart(folder / CONFUSION, f"Confusion matrix by {name.plural.lower()}",
                                       at.matrix(), f"model {bundle.version}\n{label}"))
    return written


def training_charts(folder: Path, bundle: Bundle, fused_threshold: float | None = None) -> list[Path]:
    """``train --report``: the loss per epoch; the training rows' fused scores with the threshold ``score``
    applies (``fused_threshold``; left out without it); their reconstruction errors with the error's own."""
    folder = report_folder(folder)
    history: dict[str, Any] = bundle.metadata.get("history", {})
    limit = bundle.metadata.get("model", {}).get("epochs")
    q = bundle.threshold_quantile
    written = [training_chart(history, folder / TRAINING_LOSS, f"Training of model {bundle.version}",
                              epoch_limit=limit)]
    if fused_threshold is not None and bundle.fusion is not None:
        written.append(error_distribution_chart(
            folder / TRAINING_SCORES, f"Training rows' fused scores, model {bundle.version}",
            {"training": bundle.fusion.training_scores}, fused_threshold,
            SCORES["fused"].threshold_label(fused_threshold, q), method="fused"))
    written.append(error_distribution_chart(
        folder / TRAINING_ERRORS, f"Training rows' reconstruction errors, model {bundle.version}",
        {"training": bundle.training_errors}, bundle.threshold,
        SCORES["autoencoder"].threshold_label(bundle.threshold, q), method="autoencoder"))
    return written


def report_folder(folder: Path) -> Path:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--report {folder} is a file; name a folder for the charts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
