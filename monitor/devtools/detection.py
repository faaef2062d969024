"""How well the alarms did on a simulated stream (``monitor.devtools.simulate``): how many hours after a
drift's start the first critical hour came, how many hours before it alarmed falsely, and how much of the
drift stayed critical.

The monitor's verdicts are measured beside two naive references judged on the same windows: a static limit
from the training errors alone, and a rolling mean plus a few standard deviations of the previous hours.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.core.score import Scorer
from monitor.devtools.simulate import Simulation, run
from monitor.hourly.hour_figures import VERDICT_LEVEL
from monitor.hourly.report import WindowReport
from monitor.settings import CompareConfig

CRITICAL = VERDICT_LEVEL["critical"]
WARNING = VERDICT_LEVEL["warning"]


@dataclass(frozen=True)
class Detection:
    """Alarms of one rule on one stream, hours counted from the stream's start.

    ``first_alarm_hour``: the first critical hour at or after the drift (``None``: never, or no drift);
    ``false_critical`` / ``false_warning``: such hours before the drift (all hours without a drift);
    ``drift_hours_critical`` of ``drift_hours``: how much of the drift stayed critical.
    """

    drift_hour: int | None
    first_alarm_hour: int | None
    false_critical: int
    false_warning: int
    drift_hours_critical: int
    drift_hours: int

    @property
    def delay_hours(self) -> int | None:
        if self.first_alarm_hour is None or self.drift_hour is None:
            return None
        return self.first_alarm_hour - self.drift_hour

    @classmethod
    def of(cls, levels: Sequence[int], drift_hour: int | None) -> Detection:
        """From a level per hour (``VERDICT_LEVEL``: 2 critical, 1 warning, lower no alarm).

        >>> d = Detection.of([0, 1, 0, 0, 2, 2], drift_hour=3)
        >>> d.delay_hours, d.false_critical, d.false_warning, d.drift_hours_critical, d.drift_hours
        (1, 0, 1, 2, 3)
        """
        split = len(levels) if drift_hour is None else min(drift_hour, len(levels))
        before, during = levels[:split], levels[split:]
        first = next((split + i for i, level in enumerate(during) if level >= CRITICAL), None)
        return cls(drift_hour, first, sum(level >= CRITICAL for level in before),
                   sum(level == WARNING for level in before), sum(level >= CRITICAL for level in during),
                   len(during))


def verdict_levels(reports: Sequence[WindowReport], sim: Simulation) -> list[int]:
    """The monitor's level of each simulated hour (an hour without a report counts as no alarm)."""
    levels = [VERDICT_LEVEL["insufficient_data"]] * sim.hours
    for report in reports:
        levels[sim.hour_of(report.start_ms)] = VERDICT_LEVEL[report.verdict]
    return levels


def static_rule(reports: Sequence[WindowReport], training_errors: np.ndarray, quantile: float = 0.99) -> list[bool]:
    """Naive reference: an hour alarms when its mean error exceeds the ``quantile`` of the mean of as many
    training errors (normal approximation: training mean + z * std / sqrt(count)). No history involved."""
    mean, std = float(np.mean(training_errors)), float(np.std(training_errors))
    z = statistics.NormalDist().inv_cdf(quantile)
    return [r.totals.weighted_mean > mean + z * std / math.sqrt(max(r.totals.count, 1)) for r in reports]


def rolling_rule(reports: Sequence[WindowReport], history: int = 24, k: float = 3.0) -> list[bool]:
    """Naive reference: an hour alarms when its mean error exceeds the mean of the ``history`` hours before
    it plus ``k`` standard deviations of them (all of them, alarming or not; no alarm before ``history``)."""
    means = [r.totals.weighted_mean for r in reports]
    flags = []
    for i, mean in enumerate(means):
        past = means[max(0, i - history):i]
        flags.append(len(past) == history and mean > statistics.fmean(past) + k * statistics.pstdev(past))
    return flags


def flag_levels(reports: Sequence[WindowReport], flags: Sequence[bool], sim: Simulation) -> list[int]:
    """A naive rule's flags as levels per hour: a flag is its (only) alarm, counted as critical."""
    levels = [0] * sim.hours
    for report, flag in zip(reports, flags):
        levels[sim.hour_of(report.start_ms)] = CRITICAL if flag else 0
    return levels


@dataclass(frozen=True)
class Evaluation:
    """One stream's reports and how the monitor and the two naive references did on it."""

    sim: Simulation
    reports: list[WindowReport]
    monitor: Detection
    static: Detection
    rolling: Detection


def evaluate(sim: Simulation, scorer: Scorer, settings: CompareConfig = CompareConfig()) -> Evaluation:
    """Runs ``sim`` through the monitor and judges its verdicts and the naive rules' on the same hours."""
    reports = run(sim, scorer, settings)
    return Evaluation(
        sim, reports, Detection.of(verdict_levels(reports, sim), sim.drift_from_hour),
        Detection.of(flag_levels(reports, static_rule(reports, scorer.bundle.training_errors), sim),
                     sim.drift_from_hour),
        Detection.of(flag_levels(reports, rolling_rule(reports), sim), sim.drift_from_hour))
