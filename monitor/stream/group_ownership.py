"""What a member of a group owns between two hand-overs (``monitor.stream.group``), and what of it changed
since its last commit: the changelog records the next commit writes (``monitor.stream.group_state``), and
the accepted formats each judged topic has taken in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

from monitor.counted import counted
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.records import Position
from monitor.stream.closed_windows import accept_covered, kept_of
from monitor.stream.group_state import encode, hour_key, judge_key, partition_key
from monitor.stream.state import Accepted

log = logging.getLogger(__name__)


@dataclass
class Ownership:
    """``owned`` input partitions and ``judged`` topics; ``positions``: the offset each owned partition (and
    each windows partition read) is exact at; what changed since the last commit (``dirty_partitions``,
    ``dirty_topics``, ``judged_since_commit``); per judged topic the hours stored in the changelog and the
    last accepted format applied."""

    owned: set[Position] = field(default_factory=set)
    judged: set[str] = field(default_factory=set)
    positions: dict[Position, int] = field(default_factory=dict)
    dirty_partitions: set[Position] = field(default_factory=set)
    dirty_topics: set[str] = field(default_factory=set)
    judged_since_commit: list[WindowReport] = field(default_factory=list)
    stored_hours: dict[str, set[int]] = field(default_factory=dict)
    accepted_through: dict[str, int] = field(default_factory=dict)

    def changed_state(self, judge: HourlyJudge,
                      windows_partition: Callable[[str], Position]) -> Iterator[tuple[str, bytes | None]]:
        """The changelog records of what changed (key, value; ``None``: a tombstone): each changed owned
        partition's windows with its offset, each hour judged since with its sample and format counts, each
        changed judged topic's assembly and history, and tombstones for the hours its history let go."""
        for partition in sorted(self.dirty_partitions & self.owned):
            if partition in self.positions:
                yield partition_key(partition), encode({"windows": judge.partition_snapshot(partition),
                                                        "offset": self.positions[partition]})
        for report in self.judged_since_commit:
            if report.topic in self.judged:
                yield hour_key(report.topic, report.start_ms), encode(kept_of(report))
        for topic in sorted(self.dirty_topics & self.judged):
            yield judge_key(topic), encode({**judge.topic_snapshot(topic),
                                            "windows_offset": self.positions.get(windows_partition(topic)),
                                            "accepted_through": self.accepted_through.get(topic, -1)})
            stored = self.stored_hours.setdefault(topic, set())
            stored.update(r.start_ms for r in self.judged_since_commit if r.topic == topic)
            kept = set(judge.kept_windows(topic))
            for start in sorted(stored - kept):
                yield hour_key(topic, start), None
            self.stored_hours[topic] = stored & kept

    def apply_accepted(self, accepted: Sequence[Accepted], judge: HourlyJudge, topics: Collection[str]) -> None:
        """Apply each accepted format once to each judged topic of ``topics`` (its windows serve in baselines
        again); how far a topic has taken them in is part of its state, so a new judge does not apply one
        twice."""
        for one in accepted:
            for topic in sorted(topics):
                if one.id <= self.accepted_through.get(topic, -1) or one.topic not in (None, topic):
                    self.accepted_through[topic] = max(self.accepted_through.get(topic, -1), one.id)
                    continue
                windows = accept_covered(judge, one, [topic])
                log.warning("format accepted (%s) on %s: baselines take in %s again", one.described, topic,
                            counted(len(windows), "window"))
                self.accepted_through[topic] = one.id
                self.dirty_topics.add(topic)

    def committed(self) -> None:
        """The changes are committed: nothing has changed since."""
        self.dirty_partitions.clear()
        self.dirty_topics.clear()
        self.judged_since_commit = []

    def release(self) -> None:
        """Own nothing (a hand-over: what comes back is restored from the changelog)."""
        self.owned, self.judged = set(), set()
        self.positions.clear()
        self.committed()
        self.stored_hours.clear()
        self.accepted_through.clear()


def partitions_text(partitions: set[Position]) -> str:
    """``topic 0,1; other 3``: partitions as the log names them."""
    by_topic: dict[str, list[int]] = {}
    for topic, number in sorted(partitions):
        by_topic.setdefault(topic, []).append(number)
    return "; ".join(f"{t} {','.join(map(str, ns))}" for t, ns in by_topic.items()) or "none"
