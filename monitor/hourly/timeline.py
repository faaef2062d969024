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


def parse_time(text: str) -> int:
    """A moment given by a person: ISO 8601 (UTC when no offset is given) or epoch milliseconds, as epoch ms.

    >>> parse_time("1970-01-01T01:00:00Z"), parse_time("3600000"), parse_time("1970-01-01T02:00:00+01:00")
    (3600000, 3600000, 3600000)
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 (e.g. 2026-03-01T12:00:00Z) nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
