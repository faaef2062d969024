"""Which model scores which window: a new model takes over at a window boundary.

Each window is scored by exactly one model, the one in use when it started: records of a window open at a
promotion (and late records for it) are still scored by the model it started with, and the new model scores
the windows that start at or after the promotion's boundary. Older models are let go once every window they
score has closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from monitor.core.score import Scorer
from monitor.hourly.timeline import iso_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Takeover:
    """``scorer`` scores the windows starting at or after ``from_ms`` (``None``: from the first)."""

    from_ms: int | None
    scorer: Scorer


class ModelSchedule:
    """The models in use, in takeover order; ``current`` is the newest."""

    def __init__(self, scorer: Scorer, length_ms: int) -> None:
        self.length_ms = length_ms
        self.takeovers: list[Takeover] = [Takeover(None, scorer)]

    @property
    def current(self) -> Scorer:
        return self.takeovers[-1].scorer

    def scorer_for(self, start_ms: int) -> Scorer:
        """The model of the window starting at ``start_ms``."""
        chosen = self.takeovers[0].scorer
        for takeover in self.takeovers[1:]:
            if takeover.from_ms is not None and takeover.from_ms <= start_ms:
                chosen = takeover.scorer
        return chosen

    def boundary_after(self, event_time_ms: int | None) -> int | None:
        """The first window boundary after ``event_time_ms``: where a model promoted now takes over (the
        window holding the latest event seen keeps its model). ``None`` before any event: from the first."""
        if event_time_ms is None:
            return None
        return event_time_ms - event_time_ms % self.length_ms + self.length_ms

    def promote(self, scorer: Scorer, from_ms: int | None) -> None:
        """``scorer`` scores the windows from ``from_ms`` on (a window boundary, or ``None``: every window)."""
        if from_ms is not None and from_ms % self.length_ms:
            raise ValueError(f"a model takes over at a window boundary; {from_ms} is not one")
        if from_ms is None:
            self.takeovers = [Takeover(None, scorer)]
        else:
            self.takeovers = [t for t in self.takeovers if t.from_ms is None or t.from_ms < from_ms]
            self.takeovers.append(Takeover(from_ms, scorer))
        log.info("model %s scores the windows from %s", scorer.version,
                 "the first" if from_ms is None else iso_utc(from_ms))

    def retire(self, closed_before_ms: int | None) -> None:
        """Let go of models whose windows have all closed (every window before ``closed_before_ms``)."""
        if closed_before_ms is None:
            return
        while len(self.takeovers) > 1 and (self.takeovers[1].from_ms or 0) <= closed_before_ms:
            self.takeovers.pop(0)

    def split(self, event_times_ms: np.ndarray) -> list[tuple[Scorer, np.ndarray | slice]]:
        """The batch's rows by the model of their window (one group, ``slice(None)``, almost always)."""
        if len(self.takeovers) == 1:
            return [(self.current, slice(None))]
        bounds = np.array([t.from_ms for t in self.takeovers[1:]], dtype=np.int64)
        starts = event_times_ms - np.mod(event_times_ms, self.length_ms)
        which = np.searchsorted(bounds, starts, side="right")
        groups = [(self.takeovers[i].scorer, np.flatnonzero(which == i)) for i in np.unique(which)]
        return [(groups[0][0], slice(None))] if len(groups) == 1 else groups

    def snapshot(self) -> list[list[object]]:
        """``[from_ms, version]`` per takeover, oldest first (JSON-safe)."""
        return [[t.from_ms, t.scorer.version] for t in self.takeovers]
