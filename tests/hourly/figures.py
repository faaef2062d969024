"""Hours built from figures alone, for tests of the calibrated judgement and of what reports it."""

from __future__ import annotations

import numpy as np

from monitor.hourly.evidence import Levels, slot_of
from monitor.hourly.history import History
from monitor.hourly.hour_figures import HourFigures
from monitor.hourly.timeline import HOUR_MS
from monitor.settings import CompareConfig

OUTLIER = "ORD-2024-11-05-0042"
# A model whose training never had a record far above normal: its errors all 1e-5, its threshold 1e-3.
QUIET_LEVELS = Levels.of_model(1e-3, np.full(10_000, 1e-5))


def tiny_hour(h: int, far: int) -> HourFigures:
    """Hour ``h`` of three records, ``far`` of them (0 or 1: ``OUTLIER``) far above normal."""
    histogram = [0] * 66
    histogram[slot_of(1e-5)] = 3 - far
    histogram[slot_of(1.0)] = far
    top = ((OUTLIER, 1.0),) if far else (("AB121E", 1e-5),)
    return HourFigures(h * HOUR_MS, 3, 3.0, 1e-5 + far * 0.3, far / 3, tuple(histogram), top=top)


def quiet_history(hours: int = 29) -> History:
    """``hours`` quiet tiny hours, judged: hour ``hours`` with one far record departs by it alone."""
    history = History(CompareConfig(min_history=24))
    for h in range(hours):
        history.judge(tiny_hour(h, 0), levels=QUIET_LEVELS)
    return history
