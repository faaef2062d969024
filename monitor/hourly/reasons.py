"""Why a window got its verdict: one ``Reason`` per signal that fired, in words and in figures.

An alarm that cannot say why gets muted. Every warning or critical window carries its reasons, each naming
the signal, what was observed against what was expected, the tail probability, and the records and formats
that drove it; a normal window whose departure was only its top records says so too (``outliers``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

LEVELS = ("info", "warning", "critical")

SIGNAL_TEXT = {
    "far_records": "records far above normal",
    "flagged_records": "records above the threshold",
    "elevated_records": "many records somewhat above normal",
    "outliers": "outliers only",
    "new_format": "new format",
    "vanished_format": "vanished format",
    "moved_formats": "format shares moved",
}
"""Every signal a reason can name (also the values of the ``window_signal`` gauge's label)."""


@dataclass(frozen=True)
class Reason:
    """One signal behind a verdict. ``level``: the verdict it supports (``info``: noted, not alarming);
    ``observed`` and ``expected``: its figure in the window (over ``hours`` hours) and in the baseline;
    ``p_value``: the tail probability of so much departure by chance, corrected for the spans and signals
    tried (``None`` for rules without one); ``records``: sequences that drove it (highest error first);
    ``formats``: the formats it concerns; ``detail``: one readable sentence."""

    signal: str
    level: str
    detail: str
    observed: float = float("nan")
    expected: float = float("nan")
    p_value: float | None = None
    hours: int = 1
    records: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.signal not in SIGNAL_TEXT:
            raise ValueError(f"unknown signal {self.signal!r}; known: {sorted(SIGNAL_TEXT)}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")

    def with_records(self, records: tuple[str, ...]) -> Reason:
        return replace(self, records=records)

    def describe(self) -> str:
        """The reason in one line: level, signal, detail, and the records that drove it."""
        records = f" e.g. {', '.join(repr(r) for r in self.records[:3])}" if self.records else ""
        return f"{self.level} {self.signal}: {self.detail}{records}"

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "level": self.level, "detail": self.detail,
                "observed": _finite(self.observed), "expected": _finite(self.expected), "p_value": self.p_value,
                "hours": self.hours, "records": list(self.records), "formats": list(self.formats)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reason:
        return cls(str(data["signal"]), str(data["level"]), str(data["detail"]), _nan(data.get("observed")),
                   _nan(data.get("expected")), None if data.get("p_value") is None else float(data["p_value"]),
                   int(data.get("hours", 1)), tuple(str(r) for r in data.get("records", ())),
                   tuple(str(f) for f in data.get("formats", ())))


def summary(reasons: tuple[Reason, ...] | list[Reason]) -> str:
    """All reasons in one readable line (a CSV cell, a log line); empty when there are none."""
    return " | ".join(r.describe() for r in reasons)


def firing(reasons: tuple[Reason, ...] | list[Reason]) -> str:
    """The signal behind the verdict: the first reason at the highest level (``""`` when none is above info)."""
    ranked = [r for r in reasons if r.level != "info"]
    if not ranked:
        return ""
    return max(ranked, key=lambda r: LEVELS.index(r.level)).signal


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
