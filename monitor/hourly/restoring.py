"""Saved state of the wrong shape, found while it is restored, refused as ``StateError`` naming what it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from monitor.errors import StateError

# What restoring a snapshot of the wrong shape raises: a missing key, a list where an object belongs, a text
# where a number belongs, a histogram of another length.
_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)


@contextmanager
def restoring(what: str) -> Iterator[None]:
    """Turns a saved ``what`` of the wrong shape, found while it is restored, into ``StateError`` naming it:
    damaged state is refused like a damaged state file, never taken for a bug."""
    try:
        yield
    except _MALFORMED as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise StateError(f"{what} cannot be restored ({detail}): restore the state from a backup, or start "
                         "afresh") from exc
