"""What the stream tells its observers (``monitor.stream.hooks``): partitions that stop answering and answer
again are each said once, and the window log warns of abnormal windows only."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from monitor.stream.hooks import WindowLog, say_unreachable


def test_partitions_are_said_unreachable_once_and_answering_again_once(caplog: pytest.LogCaptureFixture) -> None:
    down = frozenset({("events", 1), ("events", 0)})
    with caplog.at_level(logging.INFO, logger="monitor.stream.hooks"):
        state = say_unreachable(down, frozenset())
        state = say_unreachable(down, state)  # still down: nothing new to say
        state = say_unreachable(frozenset({("events", 1)}), state)
    assert state == frozenset({("events", 1)})
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(said) == 2
    assert said[0][0] == logging.WARNING
    assert said[0][1].startswith("the broker of events[0], events[1] is not answering")
    assert said[1] == (logging.INFO, "the broker of events[0] answers again")


def report(verdict: str, abnormal: bool, reasons: str = "") -> SimpleNamespace:
    return SimpleNamespace(topic="events", start_ms=1_700_000_040_000 - 1_700_000_040_000 % 60_000,
                           totals=SimpleNamespace(count=120, weighted_mean=0.0125),
                           comparison=SimpleNamespace(p_value=0.001), verdict=verdict, abnormal=abnormal,
                           reasons_summary=lambda: reasons)


def test_the_window_log_warns_of_an_abnormal_window_with_its_reasons_and_tells_a_normal_one(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="monitor.stream.hooks"):
        abnormal = report("critical", True, "mean error 5x the baseline")
        WindowLog().on_window_closed(abnormal, 1)  # type: ignore[arg-type]
        WindowLog().on_window_closed(report("normal", False), 0)  # type: ignore[arg-type]
    (warned, told) = caplog.records
    assert warned.levelno == logging.WARNING and told.levelno == logging.INFO
    assert warned.getMessage() == ("window events 2023-11-14T22:14:00+00:00 closed: 120 records, weighted mean "
                                   "error 0.0125, p 0.001, verdict critical; reasons: mean error 5x the baseline")
    assert told.getMessage().endswith("verdict normal")

