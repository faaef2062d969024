"""Counts in words, for summaries and logs: ``1 row``, ``3 rows``, and reasons as ``invalid json: 2``."""

from __future__ import annotations

from collections.abc import Mapping


def counted(n: int, noun: str) -> str:
    """``1 window``, ``0 windows``: the noun in the plural unless there is exactly one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def by_reason(counts: Mapping[str, int]) -> str:
    """``invalid timestamp: 2, missing field: 1``, most frequent first; empty when none was counted."""
    ordered = sorted(((reason, n) for reason, n in counts.items() if n), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{reason.replace('_', ' ')}: {n}" for reason, n in ordered)


def reasons_after(counts: Mapping[str, int]) -> str:
    """`` (invalid json: 2)``, to follow a count; nothing when none was counted."""
    reasons = by_reason(counts)
    return f" ({reasons})" if reasons else ""
