"""State kept in Kafka, for a member of a group (``state.store: kafka``): many instances in one consumer group,
exactly once; the ``Store`` the live loop (``monitor.stream.loop``) runs with.

Each instance reads the input partitions the group gives it and the partitions of the windows topic that
hold the input topics it judges. State lives in the compacted changelog topic, keyed by partition and by
topic (``monitor.stream.group_state``); the group's model schedule and accepted formats in the models topic
(``monitor.stream.group_models``).

Batch by batch the record pipeline scores and windows the records; a partition's windows close on its own
event time (``monitor.hourly.judge``) and go, with its mark, to the windows topic keyed by input
topic (the store is the pipeline's ``Route``); the member that owns that key's partition merges the hours
every partition has passed, judges them, writes each report to the reports topic and tells the hooks. Every ``state.checkpoint_interval_seconds``
the changed state goes to the changelog and everything since the last commit, with the input and windows
offsets, commits in one transaction. A member that loses partitions commits first; one that gets
partitions reads the changelog (after the group's offsets are stable, so no open transaction of a former
owner is missed) and takes each partition and judged topic over from it. A failed commit is aborted and
the instance rewinds to the committed state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from monitor.counted import counted
from monitor.errors import BrokerUnavailable, CommittedOffsetsPending, StateError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.partition_close import PartitionClose
from monitor.hourly.restoring import restoring
from monitor.hourly.timeline import iso_utc
from monitor.records import Polled, Position
from monitor.stream.group_models import GroupSchedule, PublishedTakeover
from monitor.stream.group_ownership import Ownership, partitions_text
from monitor.stream.group_pending import PENDING_WAIT_S, OffsetsWait
from monitor.stream.group_restore import ChangelogRestore
from monitor.stream.group_state import SCHEDULE_KEY, encode
from monitor.stream.hooks import Hooks, say_unreachable
from monitor.stream.kafka_state import ChangelogReader, TopicFollower, partition_of
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.sources import GroupSource, TransactionalSink

log = logging.getLogger(__name__)

STOPPED_RETRY_S = 30.0  # how often a member reads the changelog again for a key it could not read


class GroupStore:
    """State in the Kafka changelog, for one member of a group (the ``Store`` of ``monitor.stream.loop``).
    ``connect`` makes its consumer, given this store for the rebalance callbacks (``on_revoked``,
    ``on_assigned``, ``on_lost``; ``None`` when a stop came first: ``source`` is then ``None``);
    ``new_producer`` makes the producer again after a fencing or a lost transaction."""

    def __init__(self, config: Any, pipeline: RecordPipeline, judge: HourlyJudge,
                 connect: Callable[[GroupStore], GroupSource | None],
                 new_producer: Callable[[], TransactionalSink], changelog: ChangelogReader, windows_partitions: int,
                 hooks: Sequence[Hooks] = (), clock: Callable[[], float] = time.time,
                 producer: TransactionalSink | None = None, schedule: TopicFollower | None = None,
                 load_model: Callable[[str], Any] | None = None) -> None:
        """``schedule`` follows the models topic; ``load_model`` gives the scorer of a bundle version (from
        ``model.path`` or the local copies), for the takeovers the lead decides."""
        self.config = config
        self.pipeline = pipeline
        self.judge = judge
        self.new_producer = new_producer
        self.producer: TransactionalSink | None = producer or new_producer()
        pipeline.sink = self.producer
        self.changelog = changelog
        self.restorer = ChangelogRestore(config, changelog, judge, windows_partitions,
                                         lambda outcome, times: self._tell_unreadable(config.changelog_topic, outcome,
                                                                                      times))
        self.windows_partitions = windows_partitions
        self.hooks = list(hooks)
        self._clock = clock
        self.source: GroupSource | None = None
        self.inputs = set(config.input.topics)
        self.windows_topic = config.windows_topic
        self.work = Ownership()
        self._unreachable: frozenset[Position] = frozenset()  # partitions whose broker is not answering
        self.rebalances = 0
        self.aborts = 0
        self._pending_assignment: set[Position] | None = None
        self.offsets_wait = OffsetsWait(config.state.transaction_timeout_seconds, self.hooks, clock)
        self.models = GroupSchedule(pipeline, judge, schedule, load_model, config.state.checkpoint_interval_seconds,
                                    lambda: self._tell_unreadable(config.models_topic, "skipped"))
        self._rewind_needed = False
        self.stopped: dict[Position, str] = {}  # partitions stopped on an unreadable changelog key, with the key
        self._stopped_retry_at = float("inf")
        self.source = connect(self)

    @property
    def is_lead(self) -> bool:
        """Whether this member decides model changes: it owns the windows topic's partition 0."""
        return self.source is not None and (self.windows_topic, 0) in self.source.assignment()

    def if_lead(self, job: Callable[[], Any]) -> Callable[[], None]:
        """``job`` made to run on the lead only (the scheduled check of ``model.path``)."""
        def run() -> None:
            if self.is_lead:
                job()
        return run

    @property
    def scorer(self) -> Any:
        return self.pipeline.scorer

    def describe(self) -> str:
        config = self.config
        return (f"consuming {', '.join(sorted(self.inputs))} as group {config.input.group_id!r} with state in "
                f"{config.changelog_topic!r} ({config.state.delivery.replace('_', ' ')}); closed windows via "
                f"{self.windows_topic!r}, reports to {config.reports_topic!r}")

    def recover(self, exc: BaseException) -> bool:
        """A send or commit failed with an error of the cluster or the group (an outage, a rebalance, a
        fenced or timed-out transaction): abort, and go back to the committed state of what is still owned
        (at the next turn, by ``mend``: during an outage that may fail again, and is retried). Anything
        else is a bug: ``False``."""
        if not _recoverable(exc):
            return False
        self._abort(type(exc).__name__, str(exc))
        self._release()
        self._rewind_needed = True
        return True

    def stopping(self, deadline: float) -> None:
        """Nothing waits for the cluster past a stop here: the last commit is tried once."""

    def take(self, polled: Polled) -> None:
        """A polled batch: input records through the pipeline, closed windows of the judged topics into their
        hours; what closed goes to its judge, what is complete is judged. A new assignment is taken over first
        (records polled with it are read again from where the state resumes)."""
        assert self.source is not None
        if self._pending_assignment is not None:
            assigned, self._pending_assignment = self._pending_assignment, None
            self.take_over(assigned)
        elif polled.messages:  # records polled with an assignment are read again from where the state resumes
            self._take(polled)
        self._judged(self.pipeline.judge_hours(route=self))

    def _take(self, polled: Polled) -> None:
        assert self.source is not None
        inputs, closes = polled.messages, []
        if any(topic == self.windows_topic for topic, _ in polled.next_offsets):  # else, as the usual batch, no split
            inputs = []
            for message in polled.messages:
                (closes if message.topic == self.windows_topic else inputs).append(message)
        offsets = {p: o for p, o in polled.next_offsets.items() if p[0] != self.windows_topic}
        if inputs:
            progress = self.source.progress(self.config.window.quiet_seconds)
            result = self.pipeline.process(Polled(inputs, offsets), now_ms=int(self._clock() * 1000),
                                           progress=progress, route=self)
            self._judged(result.reports)
            self.work.dirty_partitions.update(offsets)
        for message in closes:
            close = self._read_close(message)
            if close is not None:
                mine = self.pipeline.models.scorer_for(min(close.parts)).version if close.parts else ""
                if close.model_version not in ("", mine):
                    log.error("%s[%d] was scored by model %s, this judge's for that window is %s: every member of "
                              "the group must run the same bundle (its hours now mix models)", *close.partition,
                              close.model_version, mine)
                if close.partition[0] in self.work.judged:
                    self.judge.receive(close)  # what came after its hour was judged is counted as late there
                    self.work.dirty_topics.add(close.partition[0])
        for topic, number in polled.next_offsets:
            if topic == self.windows_topic:  # the judge state records how far its windows partition was read
                self.work.dirty_topics.update(t for t in self.work.judged if self._windows_partition(t)[1] == number)
        self.work.positions.update(polled.next_offsets)

    def _read_close(self, message: Any) -> PartitionClose | None:
        """A windows-topic record as a ``PartitionClose``; ``None`` for a tombstone or an unreadable record
        (logged with its location and counted: skipped, it stops nothing)."""
        if message.value is None:
            return None
        try:
            with restoring("a closed window"):
                return PartitionClose.from_dict(json.loads(message.value))
        except StateError as exc:
            key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else message.key
            log.error("unreadable record on the windows topic %s[%d] at offset %d (key %r), skipped: %s",
                      message.topic, message.partition, message.offset, key, exc)
            self._tell_unreadable(message.topic, "skipped")
            return None

    def _tell_unreadable(self, topic: str, outcome: str, times: int = 1) -> None:
        for _ in range(times):
            for hook in self.hooks:
                hook.on_unreadable_state(topic, outcome)

    # -- the route of closed windows (``monitor.hourly.judge.Route``): the windows topic ---------------------
    def forward(self, close: PartitionClose) -> None:
        """A closed partition's windows and mark to its topic's judge, through the windows topic."""
        topic = close.partition[0]
        self._producer().send(self.windows_topic, topic, encode(close.to_dict()),
                              partition_of(topic, self.windows_partitions))
        self.work.dirty_partitions.add(close.partition)

    def partitions_of(self, topic: str) -> set[int]:
        assert self.source is not None
        return set(self.source.partitions_of(topic))

    def still_at(self, offsets: Any) -> Any:
        assert self.source is not None
        return self.source.still_at(offsets)

    def _judged(self, reports: Sequence[Any]) -> None:
        """Hours judged here: to the reports topic, and into the next commit."""
        for report in reports:
            self._producer().send(self.config.reports_topic, report.topic, encode(report.to_dict()))
            self.work.judged_since_commit.append(report)
            self.work.dirty_topics.add(report.topic)
        if reports:
            self._prune_schedule()

    def close_by_clock(self) -> None:
        """Heartbeats: an owned partition caught up and quiet for ``window.quiet_seconds`` (its broker
        answering) moves its event time on by the wall time since its latest record, or says it has none,
        so a quiet partition never holds an hour open and a stream of past event times is not made late."""
        assert self.source is not None
        progress = self.source.progress(self.config.window.quiet_seconds)
        self._unreachable = say_unreachable(progress.unreachable, self._unreachable)
        self._judged(self.pipeline.close_due(progress=progress, wall_ms=int(self._clock() * 1000), route=self))

    def between_batches(self, committed: bool) -> None:
        """Follow the group's schedule and accepted formats; try the stopped partitions again when due."""
        self._follow_schedule()
        if self.stopped and time.monotonic() >= self._stopped_retry_at:
            log.info("reading the changelog again for the stopped %s", ", ".join(sorted(self.stopped.values())))
            self.commit()
            self._rewind_needed = True  # ``mend`` takes the assignment over again from the changelog

    # -- the group's model schedule and accepted formats (the models topic) ------------------------------
    def follow_schedule_at_start(self) -> None:
        """Take the group's schedule and accepted formats before reading anything."""
        self.models.read_to_end()

    def _follow_schedule(self) -> None:
        known = len(self.models.accepted)
        self.models.poll()
        if len(self.models.accepted) > known:
            self.work.apply_accepted(self.models.accepted, self.judge, self.work.judged)
        if self.models.follower is not None and not self.models.known and self.is_lead:
            # The first lead of a new group writes the schedule it starts with: members with another bundle
            # at model.path then follow it (or say they cannot) instead of scoring with their own.
            self._publish_schedule()

    def _publish_schedule(self, extra: PublishedTakeover | None = None) -> None:
        self._producer().send(self.config.models_topic, SCHEDULE_KEY, self.models.publication(extra))
        self.commit()
        self.models.known = True

    def _prune_schedule(self) -> None:
        """On the lead, when it judges every input topic: the schedule without the models no window needs."""
        if not self.is_lead or self.work.judged != self.inputs:
            return
        pruned = self.models.pruned()
        if pruned is not None:
            self._producer().send(self.config.models_topic, SCHEDULE_KEY, pruned)

    def decide(self, report: Any, scorer: Any) -> bool:
        """The lead publishes a promotion for the whole group; a member that is no longer the lead drops it."""
        if scorer is not None and self.is_lead:
            boundary = self.models.boundary_for_promotion(int(self._clock() * 1000))
            log.info("model %s promoted over %s (%s) for the whole group: it scores the windows from %s",
                     scorer.version, self.scorer.version, report.outcome, iso_utc(boundary))
            self._publish_schedule((boundary, scorer.version))
        elif scorer is not None:
            log.warning("candidate %s dropped: this member no longer decides model changes", scorer.version)
            return False
        else:
            log.warning("candidate model %s refused; %s stays: %s", report.candidate, self.scorer.version,
                        "; ".join(report.reasons))
        return True

    # -- commits and hand-overs ------------------------------------------------------------------------------
    def commit(self, inside_poll: bool = False) -> None:
        """Write the changed state to the changelog and commit it with the outputs and offsets.
        ``inside_poll`` (a rebalance callback): at least once, the offsets are not committed through the
        consumer, which cannot block there; the changelog, which holds them too, is where a new owner
        resumes."""
        assert self.source is not None
        producer = self._producer()
        for key, value in self.work.changed_state(self.judge, self._windows_partition):
            producer.send(self.config.changelog_topic, key, value)
        assigned = self.source.assignment()
        producer.commit({p: o for p, o in self.work.positions.items() if p in assigned}, self.source.consumer,
                             through_consumer=not inside_poll)
        self.work.committed()
        now = self._clock()
        for hook in self.hooks:
            hook.on_checkpoint(now)

    def on_revoked(self, revoked: set[Position]) -> None:
        """Before another member gets them: commit what was done, then let go of everything (the group
        hands all partitions out again; what comes back is restored from the changelog)."""
        self.rebalances += 1
        self._pending_assignment = None
        try:
            self.commit(inside_poll=True)
        except Exception as exc:  # noqa: BLE001
            if not _recoverable(exc):
                raise
            self._abort(type(exc).__name__, str(exc))
        self._release()

    def on_lost(self, lost: set[Position]) -> None:
        """The group dropped this member (its session expired: an outage, a stalled loop) and may have given
        ``lost`` to another member already: nothing is committed (a commit now would carry no generation,
        which an empty group accepts: it could move the offsets back under a new owner). The open
        transaction is aborted; what comes back is restored from the changelog."""
        self.rebalances += 1
        self._pending_assignment = None
        log.warning("the group dropped this member (its session expired): the work since the last commit on %s "
                    "is dropped and done again from it", partitions_text(lost))
        if self.producer is not None and self.producer.in_transaction:
            self._abort("MemberLost", "the group dropped this member")
        self._release()

    def on_assigned(self, assigned: set[Position]) -> None:
        """The group handed ``assigned`` over (called from inside ``poll``, where the consumer cannot block:
        the take-over happens as soon as ``poll`` returns)."""
        self._release()
        self._pending_assignment = set(assigned)

    def take_over(self, assigned: set[Position]) -> None:
        """Take the assigned input partitions and judged topics over from the changelog, and seek each to
        where its state resumes."""
        assert self.source is not None
        started = time.monotonic()
        self._release()
        inputs = {p for p in assigned if p[0] in self.inputs}
        windows = {p[1] for p in assigned if p[0] == self.windows_topic}
        judged = {t for t in self.inputs if partition_of(t, self.windows_partitions) in windows}
        # Waits while a transaction of a former owner still holds offsets of these partitions (KIP-447):
        # once they are stable, the changelog holds whatever that transaction committed.
        try:
            committed = self.source.rewind(assigned, PENDING_WAIT_S)
        except CommittedOffsetsPending as exc:  # tried again at the next turn of the loop
            self._pending_assignment = set(assigned)
            answers = not self.source.progress(self.config.window.quiet_seconds).unreachable
            self.offsets_wait.still(partitions_text(assigned), str(exc), answers)
            return
        self.offsets_wait.done()
        taken = self.restorer.take_over(committed, inputs, judged)
        for partition, offset in taken.resume.items():
            self.source.seek(partition, offset)
            if partition[0] != self.windows_topic:
                self.work.positions[partition] = offset
        self.work.dirty_partitions |= taken.rewrite_partitions  # an older value was used: the next commit writes anew
        self.work.dirty_topics |= taken.rewrite_topics
        self.work.accepted_through, self.work.stored_hours = taken.accepted_through, taken.stored_hours
        for windows_partition in [p for p in taken.stopped if p[0] == self.windows_topic]:
            for topic in [t for t in judged if partition_of(t, self.windows_partitions) == windows_partition[1]]:
                judged.discard(topic)
                self.judge.release(topics=[topic])
        inputs -= set(taken.stopped)
        self._stop_unreadable(taken.stopped)
        self.work.owned, self.work.judged = inputs, judged
        self.models.rebuild()
        self.work.apply_accepted(self.models.accepted, self.judge, judged)
        seconds = time.monotonic() - started
        level = logging.WARNING if seconds > self.config.state.restore_warning_seconds else logging.INFO
        log.log(level, "assigned %d input partitions (%s) and the judging of %s; restored in %.2f s from %d "
                "changelog records", len(inputs), partitions_text(inputs), ", ".join(sorted(judged)) or "no topic",
                seconds, taken.read)
        for hook in self.hooks:
            hook.on_assignment(sorted(inputs), sorted(judged), seconds)

    def _stop_unreadable(self, stopped: dict[Position, str]) -> None:
        """Stop reading the partitions whose state is unreadable (their hours wait; everything else goes on)
        until the changelog is repaired; try them again every ``STOPPED_RETRY_S``."""
        assert self.source is not None
        self.source.pause(set(stopped))
        self._stopped_retry_at = time.monotonic() + STOPPED_RETRY_S if stopped else float("inf")
        self.stopped = dict(stopped)
        for partition, key in sorted(stopped.items()):
            log.error("%s[%d] stopped: no readable value of %r in the changelog %r. Its hours wait; everything "
                      "else goes on. Look with `python -m monitor state show --key %s`; to start it afresh from "
                      "the committed offsets run `python -m monitor state drop-key %s` (tried again every %.0f s)",
                      *partition, key, self.config.changelog_topic, key, key, STOPPED_RETRY_S)
        for hook in self.hooks:
            hook.on_stopped(sorted(stopped))

    def _release(self) -> None:
        self.judge.release(set(self.judge.partitions), set(self.judge.assemblers))
        self.work.release()

    def _windows_partition(self, topic: str) -> Position:
        """The windows topic's partition that holds ``topic``'s closed windows (and its judge)."""
        return self.windows_topic, partition_of(topic, self.windows_partitions)

    def _producer(self) -> TransactionalSink:
        if self.producer is None:
            raise BrokerUnavailable("no producer: the last one was given up and a new one is not made yet")
        return self.producer

    def mend(self) -> None:
        """Before a batch: a producer where the last one was given up, the owned state re-read after an
        abort."""
        if self.producer is None:
            self.producer = self.new_producer()
            self.pipeline.sink = self.producer
        if self._rewind_needed:
            assert self.source is not None
            assigned = self.source.assignment()
            if assigned:
                self.take_over(assigned)
            self._rewind_needed = False

    def _abort(self, reason: str, detail: str) -> None:
        self.aborts += 1
        log.warning("transaction aborted (%s: %s); resuming from the last commit", reason, detail[:300])
        for hook in self.hooks:
            hook.on_transaction_abort(reason)
        if self.producer is None:
            return
        try:
            self.producer.abort()
        except Exception:  # noqa: BLE001 - fenced or timed out: this producer is done, a new one takes over
            log.warning("the producer cannot abort (fenced, its transaction timed out, or the cluster is away); "
                        "a new one takes over")
            self.producer.discard()
            self.producer = None

    # -- observers and closing -------------------------------------------------------------------------------
    def lag_and_assigned(self) -> tuple[dict[Position, int], bool]:
        lag = {} if self.source is None else {p: n for p, n in self.source.lag().items() if p[0] in self.inputs}
        return lag, bool(self.work.owned)

    def stats(self) -> str:
        return f" (judged here); {counted(self.rebalances, 'rebalance')}, {counted(self.aborts, 'aborted transaction')}"

    def close(self) -> None:
        for name, close in (("consumer", self.source.close if self.source else None),
                            ("producer", self.producer.close if self.producer else None),
                            ("changelog reader", self.changelog.close),
                            ("schedule follower", self.models.follower.close if self.models.follower else None)):
            try:
                if close is not None:
                    close()
            except Exception:  # noqa: BLE001 - closing is best effort: what matters is committed
                log.warning("closing the %s failed", name, exc_info=True)


def _recoverable(exc: BaseException) -> bool:
    """Errors of the cluster or the group (an outage, a rebalance, a fenced or timed-out transaction): the
    transaction is aborted and the work done again from the last commit. Anything else is a bug."""
    return isinstance(exc, BrokerUnavailable) or type(exc).__module__.startswith(("kafka", "confluent_kafka", "cimpl"))
