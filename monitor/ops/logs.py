"""Logging set-up: a human format by default, or one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# kafka-python logs every failed connection attempt, many a second during an outage, and the service logs
# outages itself once per change of state. Its errors still say why a connection fails (refused, TLS,
# authentication), so they pass, each message at most once per LIBRARY_REPEAT_S; its warnings do not.
QUIET_LOGGERS = {"kafka": logging.ERROR, "apscheduler": logging.WARNING}
LIBRARY_REPEAT_S = 60.0


class OncePerInterval(logging.Filter):
    """Lets each message of the loggers under ``prefix`` through at most once per ``interval_s``.

    A message is its template (``record.msg``), so a retry loop that logs the same failure with a new
    connection in its arguments still counts as one message.
    """

    def __init__(self, prefix: str, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix, self.interval_s, self._clock = prefix, interval_s, clock
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != self.prefix and not record.name.startswith(self.prefix + "."):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True


class ExpectedDuringHandOver(logging.Filter):
    """Demotes kafka-python's ``ERROR Unknown error fetching offsets ...: UnstableOffsetCommitError`` to an
    INFO line saying it is expected, and lets it through only at or above ``level``.

    A member that takes a partition over while the former owner's transaction is still open is told the
    committed offset is not stable yet; kafka-python logs an error and the fetch is retried until the
    transaction ends. Every other record passes untouched.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.name.startswith("kafka"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if not any(type(arg).__name__ == "UnstableOffsetCommitError" for arg in args):
            return True
        record.msg = (f"{record.getMessage()}: expected during a hand-over (the partition's former owner has a "
                      "transaction open); the fetch is retried until it ends")
        record.args = ()
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return self.level <= logging.INFO


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` plus ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "human") -> None:
    """Replace the root logger's handlers with one writing to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(HUMAN_FORMAT))
    handler.addFilter(ExpectedDuringHandOver(logging.getLevelName(level)))
    handler.addFilter(OncePerInterval("kafka", LIBRARY_REPEAT_S))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, logging.getLevelName(level)))
