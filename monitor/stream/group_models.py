"""The group's model schedule on one member (``state.store: kafka``): which model scores which windows, the
same on every member, and the formats operators accepted.

Both live in the models topic (``monitor.stream.group_state``). Every member follows it and scores as the
schedule says, loading the models it names; the lead (``GroupStore.is_lead``) is the one that writes it:
the first schedule of a new group, each promotion (from a window boundary far enough ahead for every member
to read it first), and, once every window a model scored is judged, the schedule without that model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from monitor.errors import MonitorError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.timeline import iso_utc
from monitor.stream.group_state import ACCEPTED_PREFIX, SCHEDULE_KEY, encode
from monitor.stream.kafka_state import TopicFollower
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.state import Accepted

log = logging.getLogger(__name__)

PublishedTakeover = tuple[int | None, str]  # (first window it scores, None: from the first; bundle version)


class GroupSchedule:
    """Follows the models topic (``follower``; ``None``: a member without one keeps its own model) and makes
    ``pipeline`` score as the group's schedule says; ``load_model`` gives the scorer of a bundle version."""

    def __init__(self, pipeline: RecordPipeline, judge: HourlyJudge, follower: TopicFollower | None,
                 load_model: Callable[[str], Any] | None, checkpoint_interval_s: float,
                 on_unreadable: Callable[[], None] | None = None) -> None:
        """``on_unreadable``: called for each unreadable record (logged, skipped: the schedule before it
        stays)."""
        self.on_unreadable = on_unreadable
        self.pipeline = pipeline
        self.judge = judge
        self.follower = follower
        self.load_model = load_model
        self.checkpoint_interval_s = checkpoint_interval_s
        self.value: dict[str, Any] | None = None  # the group's latest schedule
        self.known = False  # whether this member has read or written a schedule
        self.accepted: list[Accepted] = []  # every accepted format, in the topic's order

    def read_to_end(self) -> None:
        """Take the schedule and the accepted formats before reading anything: a restart scores each window
        as before."""
        if self.follower is not None:
            self._take(self.follower.read_to_end())

    def poll(self) -> None:
        """Take what arrived since the last call (does not wait)."""
        if self.follower is not None:
            self._take(self.follower.poll())

    def _take(self, records: list[tuple[int, str, bytes]]) -> None:
        schedule = None
        for offset, key, value in records:
            try:
                if key == SCHEDULE_KEY:
                    schedule = _schedule(value)
                elif key.startswith(ACCEPTED_PREFIX):
                    data = json.loads(value)
                    self.accepted.append(Accepted(offset, int(data["at_ms"]), str(data["kind"]),
                                                  str(data["value"]), data.get("topic"), list(data["sequences"])))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                topic = self.follower.topic if self.follower is not None else "the models topic"
                log.error("unreadable record on the models topic %s[0] at offset %d (key %r), skipped: %s: %s",
                          topic, offset, key, type(exc).__name__, exc)
                if self.on_unreadable is not None:
                    self.on_unreadable()
        if schedule is not None:
            self.value = schedule
            self.apply(self.value)

    def publication(self, extra: PublishedTakeover | None = None) -> bytes:
        """The schedule this member scores with (and ``extra``, a promotion), for the models topic."""
        takeovers = [[t.from_ms, t.scorer.version] for t in self.pipeline.models.takeovers]
        return encode({"takeovers": takeovers + ([list(extra)] if extra else [])})

    def boundary_for_promotion(self, now_ms: int) -> int:
        """The first window boundary after both the wall clock and the latest event seen here, with a margin
        for every member to read the schedule (two commits, at least 10 s): no member has a window open past
        it (unless its event times run ahead of the clock)."""
        latest = max(now_ms, self.judge.latest_event_ms() or 0)
        margin_ms = int(max(10.0, 2 * self.checkpoint_interval_s) * 1000)
        return self.pipeline.models.boundary_after(latest + margin_ms)

    def rebuild(self) -> None:
        """Bring back the models of the schedule let go of (partitions taken over may still have their
        windows)."""
        if self.value is not None:
            self.apply(self.value, rebuild=True)

    def apply(self, value: dict[str, Any], rebuild: bool = False) -> None:
        """Score as the group's schedule says: the same model for the same window on every member.
        ``rebuild``: also bring back models let go of."""
        self.known = True
        wanted = [(None if f is None else int(f), str(v)) for f, v in value["takeovers"]]
        current = [(t.from_ms, t.scorer.version) for t in self.pipeline.models.takeovers]
        if current == wanted or (not rebuild and current == wanted[len(wanted) - len(current):]):
            return  # the same, or the same once older models were let go
        models = self.pipeline.models
        latest = self.judge.latest_event_ms()
        late = [(f, v) for f, v in wanted if f is not None and latest is not None and f <= latest
                and (f, v) not in {(t.from_ms, t.scorer.version) for t in models.takeovers}]
        for from_ms, version in late:
            log.error("model %s takes over from %s, but this member has read records up to %s: the window at the "
                      "boundary mixes models on its partitions", version, iso_utc(from_ms), iso_utc(latest))
        known = {t.scorer.version: t.scorer for t in models.takeovers}
        for from_ms, version in wanted:  # rebuilt in order: the first takeover (from None) resets the rest
            scorer = known.get(version)
            if scorer is None and self.load_model is not None:
                try:
                    scorer = self.load_model(version)
                except MonitorError as exc:
                    log.error("the group's schedule names model %s, which this member cannot load (%s): "
                              "publish it at model.path on every member; %s goes on scoring", version, exc,
                              models.current.version)
            if scorer is not None:
                self.pipeline.promote(scorer, from_ms)
        log.info("following the group's model schedule: %s", ", ".join(
            f"{v} from {'the first window' if f is None else iso_utc(f)}" for f, v in wanted))

    def pruned(self) -> bytes | None:
        """The schedule without the models whose windows are all judged on every topic this member judges
        (so every partition has closed them), for the models topic; ``None`` when none can go. For the lead
        when it judges every input topic: members then let those models go and never reload them."""
        value = self.value
        if value is None or len(value["takeovers"]) < 2:
            return None
        marks = [a.judged_before_ms for a in self.judge.assemblers.values()]
        if None in marks:
            return None
        judged_before = min(marks)  # type: ignore[type-var]
        takeovers = list(value["takeovers"])
        while len(takeovers) > 1 and takeovers[1][0] is not None and takeovers[1][0] <= judged_before:
            takeovers = takeovers[1:]
        if len(takeovers) == len(value["takeovers"]):
            return None
        takeovers[0] = [None, takeovers[0][1]]
        log.info("models before %s are no longer needed by any window: the group's schedule keeps %s",
                 iso_utc(judged_before), ", ".join(v for _, v in takeovers))
        return encode({"takeovers": takeovers})


def _schedule(value: bytes) -> dict[str, Any]:
    """A schedule record, checked: ``{"takeovers": [[from_ms or null, version], ...]}``, at least one."""
    data = json.loads(value)
    takeovers = data["takeovers"]
    if not takeovers or any(len(t) != 2 or not isinstance(t[1], str) or not (t[0] is None or isinstance(t[0], int))
                            for t in takeovers):
        raise ValueError("takeovers must be [from_ms or null, version] pairs, at least one")
    return dict(data)
