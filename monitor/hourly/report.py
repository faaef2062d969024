"""A closed window's report: its own figures, its comparison with history and the model that scored it.

Every output (replay's CSV and JSON lines, the state file, the reports topic, the gauges) derives from
``WindowReport.to_dict``, whose keys are ``REPORT_FIELDS``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.compare import Comparison
from monitor.hourly.format_change import FormatChange
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.hour_figures import ABNORMAL
from monitor.hourly.reasons import Reason, summary
from monitor.hourly.sample import WindowSample
from monitor.hourly.timeline import iso_utc
from monitor.hourly.top_records import TopRecord


@dataclass(frozen=True)
class WindowTotals:
    """A closed window's own figures: records, weight, weighted error sum and mean (its score; higher is more
    abnormal), the weighted share above the model's threshold, and the median and 99th percentile error."""

    count: int
    weight_sum: float
    weighted_error_sum: float
    weighted_mean: float
    above_threshold_share: float
    error_p50: float
    error_p99: float

    @classmethod
    def of(cls, total: WindowAccumulator) -> WindowTotals:
        return cls(total.count, total.weight_sum, total.weighted_error_sum, total.weighted_mean,
                   total.above_threshold_share, total.histogram.quantile(0.5), total.histogram.quantile(0.99))


@dataclass(frozen=True)
class WindowReport:
    """One closed window of one topic: its totals, its comparison with history, and the model version that
    scored it. Every output (replay's CSV and JSON lines, the state file, the gauges) derives from
    ``to_dict``, whose keys are ``REPORT_FIELDS``. ``formats``: what changed in its formats (which may have
    raised the verdict). ``sample`` and ``format_counts``: the window's sample and format counts, stored beside
    the report (not part of it)."""

    topic: str
    start_ms: int
    end_ms: int
    totals: WindowTotals
    comparison: Comparison
    model_version: str
    formats: FormatChange = field(default_factory=FormatChange)
    sample: WindowSample | None = field(default=None, compare=False, repr=False)
    format_counts: FormatCounts | None = field(default=None, compare=False, repr=False)
    top_records: tuple[TopRecord, ...] = ()

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.comparison.reasons

    def reasons_summary(self) -> str:
        """The reasons in one readable line (empty for a window with none)."""
        return summary(self.comparison.reasons)

    def top_records_dicts(self) -> list[dict[str, Any]]:
        """The top records with their share of the window's weighted error sum."""
        total = self.totals.weighted_error_sum
        return [{"sequence": r.sequence, "error": r.error, "weight": r.weight, "event_time": iso_utc(r.event_ms),
                 "error_share": r.error * r.weight / total if total > 0 else None} for r in self.top_records]

    @property
    def abnormal(self) -> bool:
        return self.verdict in ABNORMAL

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-safe (``nan`` becomes ``None``), keys in ``REPORT_FIELDS`` order."""
        comparison = {f.name: getattr(self.comparison, f.name) for f in fields(Comparison) if f.name != "reasons"}
        flat = {"topic": self.topic, "start_ms": self.start_ms, "end_ms": self.end_ms, **asdict(self.totals),
                **comparison, "model_version": self.model_version}
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in flat.items()}
        return {**row, "formats": self.formats.to_dict(), "reasons": [r.to_dict() for r in self.reasons],
                "top_records": self.top_records_dicts()}


REPORT_FIELDS = ("topic", "start_ms", "end_ms", *(f.name for f in fields(WindowTotals)),
                 *(f.name for f in fields(Comparison) if f.name != "reasons"), "model_version", "formats", "reasons",
                 "top_records")
