"""Retries: backoff while the broker is away, one log line per change, a stop that ends every wait at once,
and a client rebuilt when it keeps failing."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from monitor.errors import BrokerUnavailable, ShutdownTimeout
from monitor.stream.retry import Retry, RetryingSink
from monitor.stream.sources import MemorySink


class Down:
    """An action that fails ``times`` times, as a broker outage does, then succeeds."""

    def __init__(self, times: int, error: str = "refused") -> None:
        self.times, self.error, self.calls = times, error, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise BrokerUnavailable(self.error)


def test_a_stop_request_ends_a_backoff_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.stream.retry.BACKOFF_INITIAL_S", 30.0)
    retry = Retry()
    threading.Timer(0.2, lambda: retry.stop(time.monotonic() + 0.5)).start()
    started = time.monotonic()
    with pytest.raises(ShutdownTimeout):
        retry.until_done("commit offsets", Down(times=10**6))
    assert time.monotonic() - started < 5  # not the 30 s backoff, and not the shutdown watchdog


def test_an_outage_is_logged_when_it_starts_when_its_reason_changes_and_when_it_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("monitor.stream.retry.BACKOFF_INITIAL_S", 0.001)
    retry = Retry()
    with caplog.at_level(logging.WARNING, logger="monitor.stream.retry"):
        retry.until_done("send to scored", Down(times=5))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith("broker unavailable (send to scored)")
    caplog.clear()

    calls = {"n": 0}

    def changing() -> None:  # first a refused connection, then a timeout: what blocks it changed
        calls["n"] += 1
        if calls["n"] <= 6:
            error = BrokerUnavailable("timed out")
            error.__cause__ = TimeoutError() if calls["n"] > 3 else ConnectionRefusedError()
            raise error

    with caplog.at_level(logging.WARNING, logger="monitor.stream.retry"):
        retry.until_done("commit offsets", changing)
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" ")[0] for m in messages] == ["broker", "still", "broker"], messages


def test_a_sink_that_keeps_failing_is_replaced_by_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.stream.retry.BACKOFF_INITIAL_S", 0.01)

    class Broken(MemorySink):
        closed = False

        def send_all(self, topic: str, messages: object, timeout_s: float = 0.0) -> int:
            raise BrokerUnavailable("Timeout waiting for future")

        def close(self, timeout_s: float = 0.0) -> None:
            self.closed = True

    broken, fresh = Broken(), MemorySink()
    sink = RetryingSink(broken, Retry(reconnect_after_s=0.05), connect=lambda: fresh)
    sink.send_all("scored", [(None, b"x", [])])
    assert sink.sink is fresh and broken.closed and fresh.sent["scored"] == [(None, b"x", [])]
