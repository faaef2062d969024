"""A window's running figures: exact sums, an error histogram, a sample, format counts and top records.

A ``WindowAccumulator`` holds them for one window and one source partition; ``merge`` (and ``merged``, over
a window's partitions) adds another's, exactly for counts and up to float rounding for sums, so a window
split across partitions or instances adds up to the same figures. ``monitor.hourly.window`` keeps one per
open window and partition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.hourly.format_counts import DEFAULT_SLOTS, FormatCounts
from monitor.hourly.histogram import ErrorHistogram
from monitor.hourly.sample import DEFAULT_SIZE, WindowSample
from monitor.hourly.top_records import TopRecords
from monitor.records import Position


@dataclass
class WindowAccumulator:
    """Running figures of one window (and one partition, or merged over several); ``merge`` adds another.

    ``count`` counts every record, weight 0 included; the weight sums and the weighted mean use weights.
    The sums stay finite: an ``add`` or ``merge`` that would overflow one raises and changes nothing.
    ``histogram`` counts records. Float sums merge exactly up to float rounding; counts merge exactly.
    ``sample``: a weighted random sample of the window's sequences (``monitor.hourly.sample``), which merges
    exactly; it lets the window be re-scored by another model. ``formats``: records per format
    (``monitor.hourly.format_counts``), with examples. ``top``: the highest-error records
    (``monitor.hourly.top_records``), which merge exactly too.
    """

    count: int = 0
    weight_sum: float = 0.0
    weighted_error_sum: float = 0.0
    above_threshold_count: int = 0
    above_threshold_weight: float = 0.0
    histogram: ErrorHistogram = field(default_factory=ErrorHistogram)
    min_event_time_ms: int | None = None
    max_event_time_ms: int | None = None
    sample: WindowSample = field(default_factory=WindowSample)
    formats: FormatCounts = field(default_factory=FormatCounts)
    top: TopRecords = field(default_factory=TopRecords)

    def add(self, errors: np.ndarray, weights: np.ndarray, event_times_ms: np.ndarray,
            flags: np.ndarray, sequences: Sequence[str] | None = None, priorities: np.ndarray | None = None,
            formats: FormatRows | None = None, hashes: np.ndarray | None = None) -> None:
        """Adds a batch; the arrays are aligned, ``flags`` is True where the error is above threshold.
        ``sequences`` with their ``priorities`` (``record_priorities``) feed the sample; ``formats``
        (format ids, their names, the sequences' text hashes) the format counts; ``hashes`` (their text
        hashes) with ``sequences`` the top records."""
        if len(errors) == 0:
            return
        with np.errstate(over="ignore"):  # an overflow is refused just below, not warned about
            sums = float(weights.sum()), float(np.dot(errors, weights)), float(weights[flags].sum())
        self._add_sums(*sums)
        if sequences is not None and priorities is not None:
            self.sample.add(sequences, weights, priorities)
        if sequences is not None and hashes is not None:
            self.top.add(errors, weights, event_times_ms, sequences, hashes)
        if formats is not None and sequences is not None:
            ids, names, hashes = formats
            self.formats.add(ids, names, sequences, hashes)
        self.count += len(errors)
        self.above_threshold_count += int(np.count_nonzero(flags))
        self.histogram.add(errors)
        self._widen(int(event_times_ms.min()), int(event_times_ms.max()))

    def merge(self, other: WindowAccumulator) -> None:
        self._add_sums(other.weight_sum, other.weighted_error_sum, other.above_threshold_weight)
        self.count += other.count
        self.above_threshold_count += other.above_threshold_count
        self.histogram.merge(other.histogram)
        self.sample.merge(other.sample)
        self.formats.merge(other.formats)
        self.top.merge(other.top)
        if other.min_event_time_ms is not None and other.max_event_time_ms is not None:
            self._widen(other.min_event_time_ms, other.max_event_time_ms)

    def _add_sums(self, weight: float, weighted_error: float, above_threshold_weight: float) -> None:
        """Adds to the three float sums, or raises ``ValueError`` before changing any when one would not be
        finite: an infinite weight sum would make the window's mean 0 and judge it normal. Decoding bounds
        weights (``input.max_weight``), so this is a last guard, not a way records are refused."""
        sums = (self.weight_sum + weight, self.weighted_error_sum + weighted_error,
                self.above_threshold_weight + above_threshold_weight)
        if not all(map(math.isfinite, sums)):
            raise ValueError(f"the window's weight sums would overflow to {sums}: weights must be bounded "
                             "(input.max_weight)")
        self.weight_sum, self.weighted_error_sum, self.above_threshold_weight = sums

    def _widen(self, low_ms: int, high_ms: int) -> None:
        if self.min_event_time_ms is not None:
            low_ms = min(self.min_event_time_ms, low_ms)
        if self.max_event_time_ms is not None:
            high_ms = max(self.max_event_time_ms, high_ms)
        self.min_event_time_ms, self.max_event_time_ms = low_ms, high_ms

    @property
    def weighted_mean(self) -> float:
        """Weighted mean error, the window's score (higher = more abnormal); ``nan`` without weight."""
        return self.weighted_error_sum / self.weight_sum if self.weight_sum > 0 else float("nan")

    @property
    def above_threshold_share(self) -> float:
        """Share of the weight above the abnormal threshold; ``nan`` without weight."""
        return self.above_threshold_weight / self.weight_sum if self.weight_sum > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and exact: Python's JSON writes floats with ``repr``, which reads back bit for bit."""
        return {"count": self.count, "weight_sum": self.weight_sum,
                "weighted_error_sum": self.weighted_error_sum,
                "above_threshold_count": self.above_threshold_count,
                "above_threshold_weight": self.above_threshold_weight,
                "histogram": self.histogram.to_list(),
                "min_event_time_ms": self.min_event_time_ms, "max_event_time_ms": self.max_event_time_ms,
                "sample": self.sample.to_dict(), "formats": self.formats.to_dict(), "top": self.top.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], sample_size: int = DEFAULT_SIZE,
                  format_slots: int = DEFAULT_SLOTS) -> WindowAccumulator:
        """``sample_size`` and ``format_slots`` apply to a snapshot from before samples or format counts were
        kept (an empty one)."""
        sample = WindowSample.from_dict(data["sample"]) if "sample" in data else WindowSample(sample_size)
        formats = FormatCounts.from_dict(data["formats"]) if "formats" in data else FormatCounts(format_slots)
        # A snapshot from before top records knows none: the window's records already added stay unnamed.
        top = TopRecords.from_dict(data["top"]) if "top" in data else TopRecords()
        return cls(int(data["count"]), float(data["weight_sum"]), float(data["weighted_error_sum"]),
                   int(data["above_threshold_count"]), float(data["above_threshold_weight"]),
                   ErrorHistogram.from_list(data["histogram"]),
                   _optional_int(data["min_event_time_ms"]), _optional_int(data["max_event_time_ms"]), sample,
                   formats, top)


FormatRows = tuple[np.ndarray, Sequence[str], np.ndarray]
"""A batch's format ids (aligned with its records), the names they index, and the records' text hashes."""


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def merged(by_partition: dict[Position, WindowAccumulator], samples: bool = True) -> WindowAccumulator:
    """The partitions' figures summed; ``samples=False`` leaves the sample empty (running figures only)."""
    # Sorted so the float sums come out the same whatever order the partitions arrived in.
    first = next(iter(by_partition.values()), None)
    size = first.sample.size if first else DEFAULT_SIZE
    empty = FormatCounts(first.formats.slots, first.formats.max_examples) if first else FormatCounts()
    total = WindowAccumulator(sample=WindowSample(size), formats=empty.copy())
    for partition in sorted(by_partition):
        part = by_partition[partition]
        total.merge(part if samples else dataclasses.replace(part, sample=WindowSample(size), formats=empty,
                                                             top=TopRecords()))
    return total
