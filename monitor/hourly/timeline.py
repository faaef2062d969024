"""Event-time arithmetic shared by every layer: hour and day lengths, epoch-aligned window starts, UTC text."""

from __future__ import annotations

from datetime import datetime, timezone

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def window_start(event_time_ms: int, length_ms: int) -> int:
    """Start of the window holding ``event_time_ms``: the epoch-aligned floor, also before 1970.

    >>> window_start(7_199_999, HOUR_MS), window_start(7_200_000, HOUR_MS), window_start(-1, HOUR_MS)
    (3600000, 7200000, -3600000)
    """
    return event_time_ms - event_time_ms % length_ms


def iso_utc(ms: int) -> str:
    """``ms`` (epoch milliseconds) as ISO 8601 in UTC, to the second.

    >>> iso_utc(0)
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
