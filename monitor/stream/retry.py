"""Riding out broker outages of any length: an action retried with backoff while the cluster is unavailable,
a log line when an outage starts, when its reason changes and when it ends, the client closed and created
anew when it keeps failing, and a deadline after which a stopping service gives up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from monitor.errors import BrokerUnavailable, ShutdownTimeout
from monitor.records import OutgoingMessage
from monitor.stream.sources import Sink

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 15.0
# How long one delivery or commit may take before it counts as an outage and is retried.
REQUEST_TIMEOUT_S = 10.0
RECONNECT_AFTER_S = 60.0


class Retry:
    """Runs actions until they succeed; shared by everything that talks to one cluster, so an outage is
    logged once however many actions it interrupts. ``stop`` ends every wait at once."""

    def __init__(self, reconnect_after_s: float = RECONNECT_AFTER_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.reconnect_after_s = reconnect_after_s
        self.stop_deadline: float | None = None  # set when a stop is requested: retries end by then
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._outage_since: float | None = None
        self._reason = ""

    def stop(self, deadline: float) -> None:
        """From now on, give up (``ShutdownTimeout``) rather than wait past ``deadline`` (monotonic)."""
        self.stop_deadline = deadline
        self._stopping.set()

    def until_done(self, what: str, action: Callable[[], object],
                   reconnect: Callable[[], None] | None = None) -> None:
        """Run ``action`` until it succeeds, backing off while it raises ``BrokerUnavailable``; after
        ``reconnect_after_s`` of failures in a row, call ``reconnect`` (a new client), and again after as
        long. Raises ``ShutdownTimeout`` when the next wait would end past ``stop_deadline``."""
        delay = BACKOFF_INITIAL_S
        failing_since = renewed_at = None
        while True:
            try:
                action()
            except BrokerUnavailable as exc:
                now = self._monotonic()
                failing_since = now if failing_since is None else failing_since
                self._note(what, exc, now)
                if reconnect is not None and now - (renewed_at or failing_since) >= self.reconnect_after_s:
                    log.warning("%s has failed for %.0fs: closing the client and connecting anew", what,
                                now - failing_since)
                    reconnect()
                    renewed_at = now
                if self.stop_deadline is not None and now + delay > self.stop_deadline:
                    raise ShutdownTimeout(what) from exc
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self._outage_since is not None:
                log.warning("broker reachable again after %.1fs (%s); resuming", self._monotonic() - self._outage_since,
                            what)
                self._outage_since, self._reason = None, ""
            return

    def _note(self, what: str, exc: BrokerUnavailable, now: float) -> None:
        """Log the outage when it starts and whenever what blocks it changes; not on every retry."""
        reason = f"{what}: {type(exc.__cause__ or exc).__name__}"
        if self._outage_since is None:
            self._outage_since = now
            log.warning("broker unavailable (%s): %s; retrying with backoff", what, exc)
        elif reason != self._reason:
            log.warning("still blocked after %.0fs (%s): %s", now - self._outage_since, what, exc)
        self._reason = reason


C = TypeVar("C")


def replaced(old: C, connect: Callable[[], C], close: Callable[[C], object], what: str) -> C:
    """A new client from ``connect`` with ``old`` closed (best effort), or ``old`` if none can be made yet."""
    try:
        fresh = connect()
    except Exception as exc:  # noqa: BLE001 - the cluster may still be away: the next retry tries again
        log.warning("a new %s could not be created yet: %s", what, exc)
        return old
    try:
        close(old)
    except Exception:  # noqa: BLE001 - a broken client may fail to close; it is dropped either way
        log.debug("closing the replaced %s failed", what, exc_info=True)
    return fresh


class RetryingSink:
    """A sink whose sends are retried through ``retry`` until acknowledged; with ``connect``, a client that
    keeps failing is closed and replaced by a new one from it."""

    def __init__(self, sink: Sink, retry: Retry, connect: Callable[[], Sink] | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.sink = sink
        self.retry = retry
        self.connect = connect
        self.timeout_s = timeout_s

    def send_all(self, topic: str, messages: Sequence[OutgoingMessage], timeout_s: float | None = None) -> int:
        self.retry.until_done(f"send to {topic}",
                              lambda: self.sink.send_all(topic, messages, timeout_s or self.timeout_s),
                              reconnect=self.reconnect if self.connect else None)
        return len(messages)

    def reconnect(self) -> None:
        """Use a new producer in place of one that keeps failing."""
        assert self.connect is not None
        self.sink = replaced(self.sink, self.connect, lambda old: old.close(1.0), "producer")

    def close(self, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.sink.close(timeout_s)
