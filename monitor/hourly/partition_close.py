"""What one partition tells its topic's judge when its windows close: the ``PartitionClose`` record.

Windows close per partition, on that partition's own event time (``monitor.hourly.judge.HourlyJudge``); a
closed part and the partition's new mark go to the topic's judge (``monitor.hourly.topic_judge``), on the
same instance or, in a group, through the windows topic, where this record is its JSON value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.hourly.accumulator import WindowAccumulator
from monitor.hourly.history import ErrorModel
from monitor.records import Position

StillAt = Callable[[Mapping[Position, int]], Collection[Position] | None]
"""Which of these partitions still end at the given offset (nothing written to them since); ``None`` when
that cannot be known now (the cluster does not answer)."""


@dataclass(frozen=True)
class PartitionClose:
    """What one partition tells its topic's judge: its new mark (every window starting before it is closed
    on the partition; ``None`` before it has closed any) and the windows it closed, by start. ``idle``: the
    partition is idle (caught up, quiet, its broker answering), so the topic's hours need not wait for it;
    ``open_parts`` are then its open windows as they stand, to be merged into an hour judged while it is
    idle (its final part, when the partition closes the window itself, adds only what came after), and
    ``idle_at`` the offset it was read to: the judge checks that its end is still there before judging an
    hour without it (a word that it is idle can reach the judge after its next records were written)."""

    partition: Position
    mark_ms: int | None
    parts: dict[int, WindowAccumulator] = field(default_factory=dict)
    model_version: str = ""  # the model that scored the first part: members must agree on it
    idle: bool = False
    open_parts: dict[int, WindowAccumulator] = field(default_factory=dict)
    idle_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.partition[0], "partition": self.partition[1], "mark_ms": self.mark_ms,
                "model_version": self.model_version, "idle": self.idle, "idle_at": self.idle_at,
                "parts": _parts_list(self.parts), "open_parts": _parts_list(self.open_parts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionClose:
        mark, idle_at = data["mark_ms"], data.get("idle_at")
        return cls((str(data["topic"]), int(data["partition"])), None if mark is None else int(mark),
                   _parts_of(data["parts"]), str(data.get("model_version", "")), bool(data.get("idle", False)),
                   _parts_of(data.get("open_parts", [])), None if idle_at is None else int(idle_at))


def _parts_list(parts: dict[int, WindowAccumulator]) -> list[dict[str, Any]]:
    return [{"start_ms": start, "accumulator": acc.to_dict()} for start, acc in sorted(parts.items())]


def _parts_of(items: list[dict[str, Any]]) -> dict[int, WindowAccumulator]:
    return {int(p["start_ms"]): WindowAccumulator.from_dict(p["accumulator"]) for p in items}


def model_version(model_for: Callable[[int], ErrorModel] | str, start_ms: int) -> str:
    """The version of the model that scores the window starting at ``start_ms``."""
    return model_for if isinstance(model_for, str) else model_for(start_ms).version
