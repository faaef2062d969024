"""What the record pipeline makes of a batch (``monitor.stream.pipeline``), and its running totals: what the
observers of the stream (``monitor.stream.hooks``) are handed, apart from the pipeline that makes them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from monitor.core.signature import Formats
from monitor.hourly.report import WindowReport
from monitor.records import Position, Rejected
from monitor.stream.decode import Decoded


@dataclass(frozen=True)
class Outputs:
    """Where the pipeline sends what it produces: dead letters (``None``: count them only) cut to
    ``dead_letter_max_bytes``, and scored events (``None``: none are built)."""

    dead_letters: str | None = None
    scored_events: str | None = None
    dead_letter_max_bytes: int | None = None


@dataclass
class Counts:
    """Running totals: every consumed message is either scored or rejected."""

    consumed: int = 0
    scored: int = 0
    abnormal: int = 0
    late: int = 0
    windows_closed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    @property
    def dead_lettered(self) -> int:
        return sum(self.rejected.values())


@dataclass
class BatchResult:
    """What one batch became. ``next_offsets``: each partition's resume position after it; ``late``: records
    after their window closed, by topic; ``by_partition``: record indices per partition; ``reports``: the
    windows that closed after it, judged."""

    decoded: Decoded
    next_offsets: dict[Position, int]
    errors: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    formats: Formats | None = None
    late: Counter[str] = field(default_factory=Counter)
    by_partition: dict[Position, np.ndarray] = field(default_factory=dict)
    reports: list[WindowReport] = field(default_factory=list)

    @property
    def rejected(self) -> list[Rejected]:
        return self.decoded.rejected
