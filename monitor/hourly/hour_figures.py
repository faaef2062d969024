"""One closed window's figures as history keeps them (``HourFigures``), and the verdicts a window can get.

``HourFigures.of`` takes them from a window's running figures when it closes; ``monitor.hourly.compare``
judges them against a baseline and ``monitor.hourly.history`` keeps them, judged, for the windows to come.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

VERDICT_LEVEL = {"learning": -1, "insufficient_data": -1, "normal": 0, "warning": 1, "critical": 2}
"""Each verdict as a number, for metrics and alert rules: below 0 no judgement, above 0 abnormal."""
VERDICTS = tuple(VERDICT_LEVEL)
ABNORMAL = frozenset({"warning", "critical"})


class _Histogram(Protocol):
    def to_list(self) -> list[int]: ...


class RunningFigures(Protocol):
    """A window's running figures as ``HourFigures.of`` reads them when it closes
    (``monitor.hourly.accumulator.WindowAccumulator`` has them)."""

    @property
    def count(self) -> int: ...
    @property
    def weight_sum(self) -> float: ...
    @property
    def weighted_mean(self) -> float: ...
    @property
    def above_threshold_share(self) -> float: ...
    @property
    def histogram(self) -> _Histogram: ...


@dataclass(frozen=True)
class HourFigures:
    """One closed window's figures. ``weighted_mean`` is its score (higher = more abnormal);
    ``histogram`` the error counts in ``monitor.hourly.histogram``'s fixed bins; ``verdict`` is set once judged.

    ``sample_size`` > 0 marks figures *estimated* from that many sampled records after a model change
    (``History.rescore``), with ``standard_error`` the sampling error of the mean (0 when the sample held the
    whole window); 0 marks the figures the window was scored with live. ``accepted``: an operator declared
    what the window holds legitimate, so it serves in baselines whatever its verdict. ``top``: the window's
    highest-error records as (sequence, error), highest first (``monitor.hourly.top_records``); the calibrated
    judgement sets them aside as outliers."""

    start_ms: int
    count: int
    weight_sum: float
    weighted_mean: float
    above_threshold_share: float
    histogram: tuple[int, ...] = ()
    verdict: str = ""
    model_version: str = ""
    sample_size: int = 0
    standard_error: float = 0.0
    accepted: bool = False
    top: tuple[tuple[str, float], ...] = ()

    @property
    def top_errors(self) -> tuple[float, ...]:
        return tuple(error for _, error in self.top)

    def __post_init__(self) -> None:
        if self.verdict and self.verdict not in VERDICT_LEVEL:
            raise ValueError(f"verdict must be one of {VERDICTS} or empty, got {self.verdict!r}")

    @classmethod
    def of(cls, start_ms: int, totals: RunningFigures, model_version: str = "",
           top: tuple[tuple[str, float], ...] = ()) -> HourFigures:
        """The figures of a closed window, e.g. ``HourFigures.of(closed.start_ms, closed.total)``."""
        return cls(start_ms, totals.count, totals.weight_sum, totals.weighted_mean,
                   totals.above_threshold_share, tuple(totals.histogram.to_list()), "", model_version, top=top)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (``nan`` becomes ``None``) and exact."""
        return {"start_ms": self.start_ms, "count": self.count, "weight_sum": self.weight_sum,
                "weighted_mean": _none_if_nan(self.weighted_mean),
                "above_threshold_share": _none_if_nan(self.above_threshold_share),
                "histogram": list(self.histogram), "verdict": self.verdict, "model_version": self.model_version,
                "sample_size": self.sample_size, "standard_error": self.standard_error, "accepted": self.accepted,
                "top": [[sequence, error] for sequence, error in self.top]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HourFigures:
        return cls(int(data["start_ms"]), int(data["count"]), float(data["weight_sum"]),
                   _nan_if_none(data["weighted_mean"]), _nan_if_none(data["above_threshold_share"]),
                   tuple(int(c) for c in data["histogram"]), str(data["verdict"]), str(data["model_version"]),
                   int(data.get("sample_size", 0)), float(data.get("standard_error", 0.0)),
                   bool(data.get("accepted", False)),
                   tuple((str(sequence), float(error)) for sequence, error in data.get("top", ())))


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)
