"""Riding out broker outages: an action retried with backoff while the cluster is unavailable, one log line
when an outage starts and one when it ends, and a deadline after which a stopping service gives up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from monitor.errors import BrokerUnavailable, ShutdownTimeout
from monitor.records import OutgoingMessage
from monitor.stream.sources import Sink

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 15.0
# How long one delivery or commit may take before it counts as an outage and is retried.
REQUEST_TIMEOUT_S = 10.0


class Retry:
    """Runs actions until they succeed; shared by everything that talks to one cluster, so an outage is
    logged once however many actions it interrupts."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stop_deadline: float | None = None  # set when a stop is requested: retries end by then
        self._sleep = sleep
        self._monotonic = monotonic
        self._outage_since: float | None = None

    def until_done(self, what: str, action: Callable[[], object]) -> None:
        """Run ``action`` until it succeeds, backing off while it raises ``BrokerUnavailable``.

        Raises ``ShutdownTimeout`` when the next wait would end past ``stop_deadline``."""
        delay = BACKOFF_INITIAL_S
        while True:
            try:
                action()
            except BrokerUnavailable as exc:
                if self._outage_since is None:
                    self._outage_since = self._monotonic()
                    log.warning("broker unavailable (%s): %s; retrying with backoff", what, exc)
                if self.stop_deadline is not None and self._monotonic() + delay > self.stop_deadline:
                    raise ShutdownTimeout(what) from exc
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self._outage_since is not None:
                log.warning("broker reachable again after %.1fs; resuming", self._monotonic() - self._outage_since)
                self._outage_since = None
            return


class RetryingSink:
    """A sink whose sends are retried through ``retry`` until acknowledged."""

    def __init__(self, sink: Sink, retry: Retry, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.sink = sink
        self.retry = retry
        self.timeout_s = timeout_s

    def send_all(self, topic: str, messages: Sequence[OutgoingMessage], timeout_s: float | None = None) -> int:
        self.retry.until_done(f"send to {topic}",
                              lambda: self.sink.send_all(topic, messages, timeout_s or self.timeout_s))
        return len(messages)

    def close(self, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.sink.close(timeout_s)
