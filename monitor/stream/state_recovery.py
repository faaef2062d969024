"""What a group member does with a changelog value it cannot read: name it, fall back to the key's newest
readable older value, or stop what the key holds alone.

A changelog can hold a bad record: a bug in an older version, a hand-made repair, a tool that wrote to the
wrong topic. One bad value must not stop the group (every member that takes the key over would fail the
same way). ``restore`` tries the latest value of a key; if it is unreadable (not JSON, or the wrong shape:
``StateError``), it logs the record's topic, partition, offset and key, and tries the values before it
that compaction has not removed yet, newest first. A readable one is used (state from an earlier commit:
the records since are scored again, and the member writes the key anew at its next commit). If none is,
the caller stops what the key holds (an input partition, or the judging on a windows partition) until an
operator repairs the key (``python -m monitor state``) and the member tries again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.errors import IncompatibleState, StateError
from monitor.hourly.restoring import restoring
from monitor.records import Position

log = logging.getLogger(__name__)


class Versions(Protocol):
    """The changelog as ``restore`` reads it (``ChangelogReader``)."""

    topic: str
    locations: dict[str, Position]
    removed: set[str]  # keys whose latest record is a tombstone

    def versions(self, key: str) -> list[tuple[Position, bytes | None]]: ...


@dataclass(frozen=True)
class Restored:
    """How a key was restored: ``result`` of ``apply`` (``None`` when stopped), ``fallback`` the offset of the
    older value used (``None``: the latest, or the key had no value), ``stopped`` when no value was
    readable, ``unreadable`` the offsets of the values found unreadable."""

    result: Any = None
    fallback: int | None = None
    stopped: bool = False
    unreadable: Sequence[int] = ()


def restore(changelog: Versions, state: dict[str, bytes], key: str, what: str,
            apply: Callable[[Any], Any]) -> Restored:
    """``apply`` (the parsed value, ``None`` for a key without one) to the latest readable value of ``key``:
    see the module's description. ``apply`` raises ``StateError`` (or an error ``restoring`` turns into one)
    for a value of the wrong shape and must change nothing then."""
    value = state.get(key)
    if value is None:
        return Restored(apply(None))
    partition, offset = changelog.locations.get(key, (0, -1))
    try:
        return Restored(_apply(value, what, apply))
    except IncompatibleState:
        raise  # the configuration changed, not the value: exit 4 with what to do
    except StateError as exc:
        log.error("unreadable record in the changelog %s[%d] at offset %d (key %r): %s", changelog.topic,
                  partition, offset, key, exc)
    unreadable = [offset]
    for (_, older_offset), older in changelog.versions(key):
        if older_offset >= offset:
            continue
        if older is None:
            break  # removed before: nothing older belongs to the state that was lost
        try:
            result = _apply(older, what, apply)
        except StateError as exc:
            log.error("the older value at offset %d (key %r) is unreadable too: %s", older_offset, key, exc)
            unreadable.append(older_offset)
            continue
        log.warning("%s restored from the older value at offset %d of %s[%d]: what was read since it was "
                    "committed is read again (scored events and reports since may repeat)", what, older_offset,
                    changelog.topic, partition)
        return Restored(result, older_offset, unreadable=unreadable)
    return Restored(stopped=True, unreadable=unreadable)


def _apply(value: bytes, what: str, apply: Callable[[Any], Any]) -> Any:
    with restoring(what):
        return apply(json.loads(value))
