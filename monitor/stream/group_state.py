"""How a group's state is laid out in Kafka (``state.store: kafka``): the keys of the changelog and of the
models topic, and how their values are read.

The changelog (compacted) holds, by key:

- ``partition/<topic>/<n>``: an input partition's open windows, watermark, closing mark and late counts, with
  the offset they are exact at (``offset``);
- ``judge/<topic>``: an input topic's assembly (its partitions' marks, the closed parts still waiting for the
  others), history figures and streak, how far its windows partition was read (``windows_offset``) and the
  last accepted format it applied (``accepted_through``);
- ``hour/<topic>/<start>``: each history window's sample and format counts, written once when it is judged,
  removed (a tombstone) when the history lets it go.

The models topic (compacted) holds the group's schedule (``schedule``: which model scores which windows)
and each accepted format (``accepted/<id>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from monitor.records import Position

SCHEDULE_KEY = "schedule"
ACCEPTED_PREFIX = "accepted/"


def partition_key(partition: Position) -> str:
    return f"partition/{partition[0]}/{partition[1]}"


def judge_key(topic: str) -> str:
    return f"judge/{topic}"


def hour_key(topic: str, start_ms: int) -> str:
    return f"hour/{topic}/{start_ms}"


def topic_state(state: Mapping[str, bytes], topic: str) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """A judged topic's snapshot (``None``: never judged) and its kept windows' samples and format counts
    by start, from the changelog's latest values."""
    prefix = f"hour/{topic}/"
    hours = {int(k[len(prefix):]): json.loads(v) for k, v in state.items() if k.startswith(prefix)}
    return (json.loads(state[judge_key(topic)]) if judge_key(topic) in state else None), hours


def encode(value: Any) -> bytes:
    """Compact JSON, as every value is written."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def offset_in(value: bytes | None, key: str) -> int:
    """The offset a changelog value is exact at (-1 for none)."""
    if value is None:
        return -1
    offset = json.loads(value).get(key)
    return -1 if offset is None else int(offset)
