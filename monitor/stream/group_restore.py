"""How a member of a group takes partitions and judged topics over from the changelog
(``monitor.stream.group``): it waits until the changelog holds the state of every committed offset, then
restores each key (an unreadable value falls back to an older readable one, ``monitor.stream.state_recovery``)
and says where each partition resumes, which keys it could not read at all, and which it must write anew.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.errors import StateError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.restoring import restoring
from monitor.records import Position
from monitor.stream.group_state import hour_key, judge_key, offset_in, partition_key
from monitor.stream.kafka_state import partition_of
from monitor.stream.state_recovery import Restored, Versions, restore

log = logging.getLogger(__name__)

WAIT_STEP_S = 0.5


@dataclass
class TakenOver:
    """What was taken over: the offset each partition resumes at (inputs, and windows partitions read again
    from an older judging), the partitions whose key has no readable value (by key: they stop), what an
    older value stood in for (written anew at the next commit), each judged topic's last applied accepted
    format and its kept hours, and how many changelog records were read."""

    resume: dict[Position, int] = field(default_factory=dict)
    stopped: dict[Position, str] = field(default_factory=dict)
    rewrite_partitions: set[Position] = field(default_factory=set)
    rewrite_topics: set[str] = field(default_factory=set)
    accepted_through: dict[str, int] = field(default_factory=dict)
    stored_hours: dict[str, set[int]] = field(default_factory=dict)
    read: int = 0


class ChangelogRestore:
    """Takes state over from ``changelog`` (a ``ChangelogReader``) into ``judge``; ``on_unreadable(outcome,
    times)`` hears of each unreadable record (``older value used``, ``stopped``, ``left out``)."""

    def __init__(self, config: Any, changelog: Versions, judge: HourlyJudge, windows_partitions: int,
                 on_unreadable: Callable[[str, int], None]) -> None:
        self.config = config
        self.changelog: Any = changelog
        self.judge = judge
        self.windows_topic = config.windows_topic
        self.windows_partitions = windows_partitions
        self.on_unreadable = on_unreadable

    def take_over(self, committed: dict[Position, int | None], inputs: set[Position],
                  judged: set[str]) -> TakenOver:
        """Restore ``inputs`` and ``judged`` once the changelog shows the ``committed`` offsets' state."""
        state, read = self.read_up_to(committed, inputs, judged)
        taken = TakenOver(read=read)
        topic_name = self.config.changelog_topic
        for partition in sorted(inputs):
            key = partition_key(partition)
            restored = restore(self.changelog, state, key, f"the state of {partition[0]}[{partition[1]}] in the "
                               f"changelog {topic_name!r}", lambda v, p=partition: self._own(p, v))
            self._tell(restored)
            if restored.stopped:
                taken.stopped[partition] = key
                continue
            if restored.fallback is not None:
                taken.rewrite_partitions.add(partition)
            if restored.result is not None:
                taken.resume[partition] = restored.result
            elif committed.get(partition) is not None:
                taken.resume[partition] = int(committed[partition])  # type: ignore[arg-type]
        for topic in sorted(judged):
            key = judge_key(topic)
            windows_partition = (self.windows_topic, partition_of(topic, self.windows_partitions))
            restored = restore(self.changelog, state, key, f"the judging of {topic!r} in the changelog "
                               f"{topic_name!r}", lambda v, t=topic: self._judge_from(t, v, state, taken))
            self._tell(restored)
            if restored.stopped:
                taken.stopped[windows_partition] = key
            elif restored.fallback is not None and restored.result is not None:
                taken.resume[windows_partition] = restored.result  # its windows are read again from there
                taken.rewrite_topics.add(topic)
        return taken

    def _own(self, partition: Position, stored: dict[str, Any] | None) -> int | None:
        """Take ``partition`` over from its changelog value (``None``: it has none); returns the offset the
        value is exact at. A value of the wrong shape changes nothing (``StateError``)."""
        if stored is None:
            self.judge.own_partition(partition, None)
            return None
        offset = int(stored["offset"])
        if offset < 0:
            raise ValueError(f"its offset {offset} is negative")
        self.judge.own_partition(partition, stored["windows"])
        return offset

    def _judge_from(self, topic: str, stored: dict[str, Any] | None, state: dict[str, bytes],
                    taken: TakenOver) -> int | None:
        """Take the judging of ``topic`` over from its changelog value and its kept hours (an unreadable hour is
        logged and left out: its window keeps its figures, without sample and format counts); returns how far
        its windows partition was read."""
        hours: dict[int, dict[str, Any]] = {}
        prefix = hour_key(topic, 0)[:-1]
        for key in [k for k in state if k.startswith(prefix)]:
            try:
                with restoring(f"the kept window {key!r}"):
                    hours[int(key[len(prefix):])] = json.loads(state[key])
            except StateError as exc:
                partition, offset = self.changelog.locations.get(key, (0, -1))
                log.error("unreadable record in the changelog %s[%d] at offset %d (key %r), left out: %s",
                          self.config.changelog_topic, partition, offset, key, exc)
                self.on_unreadable("left out", 1)
        self.judge.judge_topic(topic, stored, hours)
        taken.accepted_through[topic] = int(stored.get("accepted_through", -1)) if stored else -1
        taken.stored_hours[topic] = set(hours)
        offset = stored.get("windows_offset") if stored else None
        return None if offset is None else int(offset)

    def _tell(self, restored: Restored) -> None:
        if restored.unreadable:
            self.on_unreadable("stopped" if restored.stopped else "older value used", len(restored.unreadable))

    def read_up_to(self, committed: dict[Position, int | None], inputs: set[Position],
                   judged: set[str]) -> tuple[dict[str, bytes], int]:
        """The changelog once it holds the state of every committed offset. A member that died inside a
        transaction leaves it open until ``state.transaction_timeout_seconds``; until then the changelog's
        committed end stops before it, and other members' later commits are not visible yet: wait for them
        (resuming from older state would score records again that outputs already hold). A key removed on
        purpose (``state drop-key``: its latest record a tombstone) is not waited for: it starts afresh."""
        deadline = time.monotonic() + self.config.state.transaction_timeout_seconds + 30
        waited = False
        while True:
            state, read = self.changelog.read()
            needed = [(p, partition_key(p), "offset") for p in sorted(inputs)]
            needed += [((self.windows_topic, partition_of(t, self.windows_partitions)), judge_key(t), "windows_offset")
                       for t in sorted(judged)]
            behind = [p for p, key, field_name in needed
                      if committed.get(p) is not None and key not in self.changelog.removed
                      and _offset_or_end(state.get(key), field_name) < committed[p]]  # type: ignore[operator]
            if not behind:
                return state, read
            if time.monotonic() > deadline:
                log.error("the changelog still holds older state than the committed offsets of %s; resuming from "
                          "it (window figures stay exact; outputs since may repeat)", behind)
                return state, read
            if not waited:
                log.info("waiting for the changelog to show the committed state of %s (a former member's "
                         "transaction is still open)", behind)
                waited = True
            time.sleep(WAIT_STEP_S)


def _offset_or_end(value: bytes | None, field_name: str) -> float:
    """The offset a changelog value is exact at; infinite for an unreadable one (waiting cannot mend it:
    ``take_over`` deals with it)."""
    try:
        return offset_in(value, field_name)
    except (ValueError, TypeError, AttributeError):
        return float("inf")
