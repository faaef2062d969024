"""Which earlier windows a closed window is compared with: its baseline.

A ``Baseline`` strategy (the previous windows, the same hour of day, the same hour of week) chooses among the
earlier windows that may serve (``serves_in_baseline``: enough records, a finite score, not abnormal unless
accepted); ``select_baseline`` applies both as ``compare.baseline`` says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.hourly.hour_figures import ABNORMAL, HourFigures
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.settings import CompareConfig

WEEK_MS = 7 * DAY_MS


class Baseline(Protocol):
    """Chooses, from earlier windows (in start order), the ones a window is compared with."""

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]: ...


@dataclass(frozen=True)
class PreviousWindows:
    """The ``n`` most recent windows before the current one (gaps in the stream are skipped)."""

    n: int = 168

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        earlier = [h for h in history if h.start_ms < current_start_ms]
        return earlier[-self.n:]


@dataclass(frozen=True)
class SameHourOfDay:
    """Windows starting a whole number of days (1..``days``) before the current one: traffic with a daily
    rhythm is compared with the same time of day. For any window length the rule is the same."""

    days: int = 7

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        return [h for h in history if _days_before(current_start_ms - h.start_ms) in range(1, self.days + 1)]


def _days_before(gap_ms: int) -> int:
    return gap_ms // DAY_MS if gap_ms % DAY_MS == 0 else -1


@dataclass(frozen=True)
class SameHourOfWeek:
    """Windows starting a whole number of weeks (1..``weeks``) before the current one: a stream with a weekly
    rhythm (weekend batch jobs, a weekend-only format) is compared with the same hour of the same weekday."""

    weeks: int = 4

    def select(self, history: Sequence[HourFigures], current_start_ms: int,
               length_ms: int) -> list[HourFigures]:
        return [h for h in history if (current_start_ms - h.start_ms) % WEEK_MS == 0
                and 1 <= (current_start_ms - h.start_ms) // WEEK_MS <= self.weeks]


def baseline_strategy(settings: CompareConfig) -> Baseline:
    """The ``Baseline`` that ``settings.baseline`` names, sized by its settings."""
    if settings.baseline == "same_hour":
        return SameHourOfDay(settings.same_hour_days)
    if settings.baseline == "same_hour_of_week":
        return SameHourOfWeek(settings.same_hour_weeks)
    return PreviousWindows(settings.previous_windows)


def select_baseline(current: HourFigures, history: Sequence[HourFigures], settings: CompareConfig,
                    length_ms: int = HOUR_MS) -> list[HourFigures]:
    """The windows ``current`` is compared with: usable ones only, then the strategy's choice."""
    # A weekly baseline keeps windows of every verdict: a weekend-only pattern judged abnormal on its first
    # weekend must be what the second one is compared with (its median across weeks resists one incident).
    serves = serves_in_baseline if settings.baseline != "same_hour_of_week" else _finite
    usable = [h for h in sorted(history, key=_start) if serves(h, settings)
              and not (settings.same_model_only and h.model_version != current.model_version)]
    return baseline_strategy(settings).select(usable, current.start_ms, length_ms)


def _start(figures: HourFigures) -> int:
    return figures.start_ms


def serves_in_baseline(figures: HourFigures, settings: CompareConfig) -> bool:
    """Whether a window may serve in a baseline, whatever the window being judged."""
    if not _finite(figures, settings):
        return False
    return figures.accepted or not (settings.exclude_abnormal and figures.verdict in ABNORMAL)


def _finite(figures: HourFigures, settings: CompareConfig) -> bool:
    return figures.count >= settings.min_count and math.isfinite(figures.weighted_mean)
