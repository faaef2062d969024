"""State kept in a SQLite file, for a lone instance (``state.store: sqlite``): the ``Store`` the live loop
(``monitor.stream.loop``) runs with when one instance reads a consumer group's partitions.

Window sums and the offsets they are exact at are checkpointed together (``monitor.stream.state``); Kafka
offsets are committed after each checkpoint, never ahead of it, and only once every record up to them was
scored or dead-lettered and each message sent was acknowledged. A crash re-reads from the checkpoint, so no
record is counted twice in a window (scored events and dead letters may repeat: at least once); a clean
stop checkpoints last and re-reads nothing. Broker outages are retried (``monitor.stream.retry``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.core.score import Scorer
from monitor.counted import counted
from monitor.errors import StateError
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.sample import WindowSample
from monitor.hourly.shadow import ShadowReport
from monitor.hourly.timeline import iso_utc
from monitor.hourly.restoring import restoring
from monitor.records import Polled, Position
from monitor.stream.closed_windows import accept_covered, kept_of
from monitor.stream.hooks import Hooks, say_unreachable
from monitor.stream.batch import BatchResult
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.retry import REQUEST_TIMEOUT_S, Retry, replaced
from monitor.stream.sources import Source
from monitor.stream.state import Accepted, Checkpoint, StateStore

log = logging.getLogger(__name__)


class FileStore:
    """State in a SQLite file (``state``), for one instance of a consumer group: windows close and are judged
    where they are read (``HourlyJudge``), and every commit is a checkpoint of the file followed by the
    offsets committed to Kafka. ``positions``: where the restored window state is exact, per partition.
    ``reconnect``: a new source resuming at the given positions, for when commits keep failing.
    ``accepted_applied``: the last accepted format the restored history took in; ``on_accepted`` is called
    (with the new ones) when operators accept more."""

    def __init__(self, config: Any, pipeline: RecordPipeline, source: Source, state: StateStore, retry: Retry,
                 positions: Mapping[Position, int] | None = None, hooks: Sequence[Hooks] = (),
                 reconnect: Callable[[Mapping[Position, int]], Source] | None = None,
                 clock: Callable[[], float] = time.time, accepted_applied: int = 0,
                 on_accepted: Callable[[list[Accepted]], None] | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.source = source
        self.reconnect = reconnect
        self.state = state
        self.retry = retry
        self.positions: dict[Position, int] = dict(positions or {})
        self.hooks = list(hooks)
        self.last_checkpoint_at = clock()
        self._clock = clock
        self._closed_since_checkpoint: list[WindowReport] = []
        self.accepted_applied = accepted_applied
        self.on_accepted = on_accepted
        self._unreachable: frozenset[Position] = frozenset()  # partitions whose broker is not answering

    @property
    def scorer(self) -> Scorer:
        return self.pipeline.scorer

    def describe(self) -> str:
        config = self.config
        return (f"consuming {', '.join(config.input.topics)} as group {config.input.group_id!r}; dead letters to "
                f"{config.dead_letter.topic!r}; " + (f"scored events to {config.output.topic!r}" if config.output.topic
                                                    else "no scored events (output.topic is not set)"))

    # -- state ----------------------------------------------------------------------------------------------
    def commit(self) -> None:
        """Store windows, history, samples, the models in use and positions in one transaction, then commit
        the positions to Kafka."""
        judge = self.pipeline.judge
        windows, history = judge.snapshot()
        closed = self._closed_since_checkpoint
        kept = judge.history_windows()
        self.state.save(Checkpoint(dict(self.positions), windows, history, self.scorer.version,
                                   models=self.pipeline.models.snapshot(), accepted_applied=self.accepted_applied),
                        [r.to_dict() for r in closed],
                        [(r.topic, r.start_ms, kept_of(r)) for r in closed
                         if (r.sample is not None or r.format_counts is not None)
                         and r.start_ms in kept.get(r.topic, ())], kept)
        self._closed_since_checkpoint = []
        self.last_checkpoint_at = self._clock()
        for hook in self.hooks:
            hook.on_checkpoint(self.last_checkpoint_at)
        positions = dict(self.positions)
        self.retry.until_done("commit offsets", lambda: self.source.commit(positions, int(REQUEST_TIMEOUT_S * 1000)),
                              reconnect=self._reconnect_source if self.reconnect else None)

    def _reconnect_source(self) -> None:
        """Replace a consumer that keeps failing; the new one resumes where the state is exact."""
        reconnect = self.reconnect
        assert reconnect is not None
        self.source = replaced(self.source, lambda: reconnect(dict(self.positions)), lambda old: old.close(),
                               "consumer")

    def stopping(self, deadline: float) -> None:
        self.retry.stop(deadline)

    # -- the loop's steps -----------------------------------------------------------------------------------
    def take(self, polled: Polled) -> BatchResult | None:
        """Fully process one batch; ``None`` when nothing arrived."""
        if not polled.messages:
            return None
        progress = self.source.progress(self.config.window.quiet_seconds)
        result = self.pipeline.process(polled, now_ms=int(self._clock() * 1000), progress=progress)
        self.positions.update(result.next_offsets)
        self.source.processed(result.next_offsets)
        self.keep(result.reports)
        return result

    def decide(self, report: ShadowReport, scorer: Scorer | None) -> bool:
        boundary = None
        if scorer is not None:
            previous = self.scorer.version
            boundary = self.pipeline.promote(scorer)
            log.info("model %s promoted over %s (%s): it scores the windows from %s; earlier ones keep theirs",
                     scorer.version, previous, report.outcome, "the first" if boundary is None else iso_utc(boundary))
        else:
            log.warning("candidate model %s refused; %s stays: %s", report.candidate, self.scorer.version,
                        "; ".join(report.reasons))
        self.state.record_decision(report.candidate, report.outcome, boundary, report.to_dict())
        self.commit()  # the promotion is part of the state from here on
        return True

    def between_batches(self, committed: bool) -> None:
        if committed:
            self.apply_accepted()

    def apply_accepted(self) -> list[Accepted]:
        """Take in the formats accepted since the last time (``python -m monitor accept``)."""
        new = self.state.accepted(self.accepted_applied)
        for accepted in new:
            windows = accept_covered(self.pipeline.judge, accepted)
            log.warning("format accepted (%s): the retraining corpus takes in %s, baselines take in %s again",
                        accepted.described, counted(len(accepted.sequences), "sequence"),
                        counted(len(windows), "window"))
            self.accepted_applied = accepted.id
        if new and self.on_accepted is not None:
            self.on_accepted(new)
        return new

    def close_by_clock(self) -> None:
        """A quiet stream moves no watermark: idle partitions (caught up, quiet, their broker answering) stop
        holding windows, and once every one is idle the event time moves on by the wall time since its
        latest record (``monitor.hourly.window.Windows``). Reading a backlog or an outage is never idle."""
        progress = self.source.progress(self.config.window.quiet_seconds)
        self._unreachable = say_unreachable(progress.unreachable, self._unreachable)
        self.keep(self.pipeline.close_due(progress=progress, wall_ms=int(self._clock() * 1000)))

    def keep(self, reports: Sequence[WindowReport]) -> None:
        """Closed windows for the next checkpoint."""
        self._closed_since_checkpoint += reports

    def mend(self) -> None:
        """Nothing to mend: outages are retried where they happen (``monitor.stream.retry``)."""

    def recover(self, exc: BaseException) -> bool:
        return False

    def lag_and_assigned(self) -> tuple[Mapping[Position, int], bool]:
        return self.source.lag(), bool(self.source.assignment())

    def stats(self) -> str:
        return ""

    def close(self) -> None:
        for name, close in (("consumer", self.source.close), ("producer", self.pipeline.sink.close),
                            ("state file", self.state.close)):
            try:
                close()
            except Exception:  # closing is best effort: what matters is checkpointed and committed
                log.warning("closing the %s failed", name, exc_info=True)


def restore(state: StateStore, judge: HourlyJudge) -> Checkpoint | None:
    """Load the last checkpoint of ``state`` (and the samples of its history) into the judge; returns it
    (``None`` on a first start): its offsets are where the restored windows are exact. State that cannot be
    restored is refused with ``StateError`` naming the file, which nothing has written to yet."""
    checkpoint = state.load()
    if checkpoint is None:
        return None
    stored = state.samples()
    try:
        with restoring("the saved samples of the history"):
            samples = {topic: {start: WindowSample.from_dict(s) for start, s in by_start.items()}
                       for topic, by_start in stored.items()}
            formats = {topic: {start: FormatCounts.from_dict(s["formats"]) for start, s in by_start.items()
                               if "formats" in s}
                       for topic, by_start in stored.items()}
        judge.restore(checkpoint.windows, checkpoint.history, samples, formats)
    except StateError as exc:
        raise StateError(f"{state.path}: {exc}; it was left untouched") from exc
    log.info("state restored from %s: %d partitions, checkpoint of %s", state.path, len(checkpoint.offsets),
             iso_utc(checkpoint.saved_at_ms))
    return checkpoint
