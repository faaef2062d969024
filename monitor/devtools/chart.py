"""Hourly reports as a PNG: each window's weighted mean error against its baseline band, alarms marked.

The only module that imports matplotlib, and only when a chart is drawn: the monitor runs without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monitor.hourly.judge import WindowReport
from monitor.stream.files import open_output

BAND_MADS = 3.0
JUDGED = ("normal", "warning", "critical")
_MARKS = {"warning": ("#f0a020", "^", "warning"), "critical": ("#d62728", "o", "critical")}


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
