"""The one path every record takes, whatever its source: decode → score → window → close → assemble →
judge → announce.

The Kafka service (a lone instance or a member of a group), ``replay`` (a file) and the simulation
(generated hours in memory) all hand their batches to ``RecordPipeline.process``; that is why a file and a
topic holding the same records give the same hourly figures. A lone instance assembles each topic's hours
from its partitions' closed windows itself; a group member sends them to the member that judges the topic
(a ``Route``) and judges the hours of its own topics as their windows arrive (``judge_hours``). The
pipeline does no polling, committing or checkpointing: the caller owns the loop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from monitor.core.score import Scorer, Scores
from monitor.hourly.judge import HourlyJudge, Route
from monitor.hourly.report import WindowReport
from monitor.hourly.window import Progress
from monitor.records import Polled, Position, Rejected
from monitor.stream import events
from monitor.stream.batch import BatchResult, Counts, Outputs
from monitor.stream.decode import Decoded, DecodeOptions, decode_batch
from monitor.stream.hooks import Hooks
from monitor.stream.models import ModelSchedule
from monitor.stream.sources import Sink, Source

log = logging.getLogger(__name__)


class RecordPipeline:
    """Decodes, scores and windows each batch, closes and judges the windows it completes, sends dead
    letters and scored events to ``sink`` and tells ``hooks``. Between batches ``promote`` hands the windows
    still to start to another model (``monitor.stream.models``)."""

    def __init__(self, scorer: Scorer, judge: HourlyJudge, decoding: DecodeOptions, sink: Sink,
                 outputs: Outputs = Outputs(), hooks: Sequence[Hooks] = ()) -> None:
        self.models = ModelSchedule(scorer, judge.length_ms)
        self.judge = judge
        self.decoding = decoding
        self.sink = sink
        self.outputs = outputs
        self.hooks = list(hooks)
        self.counts = Counts()
        self._late_unreported: Counter[str] = Counter()

    def process(self, polled: Polled, now_ms: int | None = None, progress: Progress = Progress(),
                route: Route | None = None) -> BatchResult:
        """One batch, all the way. ``now_ms`` (the wall clock, live) is what decoding measures event times
        from the future against, and keeps one it lets through from moving a watermark past now; leave it
        out when event times need not follow a given clock (decoding then reads the wall clock).
        ``progress``: which partitions hold windows open (``monitor.hourly.window.Windows``); ``route``:
        where closed windows go when their topics are judged elsewhere (``close_due``)."""
        started = time.perf_counter()
        decoded, scores = self._score(decode_batch(polled.messages, self.decoding, now_ms))
        result = BatchResult(decoded, polled.next_offsets)
        if scores is not None:
            result.errors, result.flags, result.formats = scores.errors, scores.flags, scores.formats
            result.by_partition = _by_partition(decoded, polled.next_offsets)
            result.late = self._window(result, now_ms)
        self._emit(decoded, scores)
        result.reports = self.close_due(progress=progress, wall_ms=now_ms, route=route)
        result.late.update(self._late_unreported)  # records that came after their hour was judged
        self._late_unreported.clear()
        self._account(len(polled.messages), result)
        seconds = time.perf_counter() - started
        for hook in self.hooks:
            hook.on_batch(result, seconds)
        return result

    @property
    def scorer(self) -> Scorer:
        """The newest model: it scores every window that starts from now on."""
        return self.models.current

    def promote(self, scorer: Scorer, from_ms: int | None | str = "next") -> int | None:
        """``scorer`` takes over the windows from ``from_ms`` on (a window boundary; ``None``: every window,
        open ones included; ``"next"``: the windows after the one holding the latest event seen, as the
        service does). Returns the boundary."""
        boundary = self.models.boundary_after(self.judge.latest_event_ms()) if from_ms == "next" else from_ms
        self.models.promote(scorer, boundary)  # type: ignore[arg-type]
        return boundary  # type: ignore[return-value]

    def close_due(self, now_ms: int | None = None, progress: Progress = Progress(), wall_ms: int | None = None,
                  route: Route | None = None) -> list[WindowReport]:
        """Close the windows each partition's event time has passed (an idle one's moved on by the wall clock
        ``wall_ms``; ``now_ms``: an explicit event time), assemble the hours every partition has passed and
        judge them, oldest first, and tell the hooks: here, or, with ``route``, through a group's windows
        topic to the member that judges the topic (``monitor.hourly.judge``)."""
        return self.announce(self.judge.close_due(self.models.scorer_for, now_ms, progress, wall_ms, route))

    def judge_hours(self, route: Route | None = None) -> list[WindowReport]:
        """Judge the hours completed by closed windows received since (a group's windows topic), and tell
        the hooks."""
        return self.announce(self.judge.assemble(self.models.scorer_for, route))

    def flush(self) -> list[WindowReport]:
        """Close and judge every open window (the end of a finite input)."""
        return self.announce(self.judge.flush(self.models.scorer_for))

    def _score(self, decoded: Decoded) -> tuple[Decoded, Scores | None]:
        """Scores of the batch, each record by its window's model; if scoring raises, the batch is split
        until the sequences that raise are found alone, and those are rejected as ``unscorable`` while the
        rest are scored."""
        if not len(decoded):
            return decoded, None
        try:
            return decoded, self._score_rows(decoded, np.arange(len(decoded)))
        except Exception:  # noqa: BLE001 - found out below, record by record
            pieces, failed = self._score_apart(decoded, np.arange(len(decoded)))
        log.warning("%d of %d sequences could not be scored and were dead-lettered as unscorable (first: %s)",
                    len(failed), len(decoded), next(iter(failed.values())).detail if failed else "none")
        rest = decoded.without(failed)
        if not len(rest):
            return rest, None
        bounds = np.cumsum([0, *(len(rows) for rows, _ in pieces)])
        return rest, Scores.combined(len(rest), [(np.arange(low, high), s)
                                                 for (_, s), low, high in zip(pieces, bounds[:-1], bounds[1:])])

    def _score_rows(self, decoded: Decoded, rows: np.ndarray) -> Scores:
        """Scores of ``rows``, each by the model of its window."""
        groups = self.models.split(decoded.event_times_ms[rows])
        if len(groups) == 1:
            sequences = decoded.sequences if len(rows) == len(decoded) else [decoded.sequences[i] for i in rows]
            return groups[0][0].score(sequences)
        return Scores.combined(len(rows), [(part, scorer.score([decoded.sequences[i] for i in rows[part]]))
                                           for scorer, part in groups])

    def _score_apart(self, decoded: Decoded, rows: np.ndarray) -> tuple[list[tuple[np.ndarray, Scores]],
                                                                        dict[int, Rejected]]:
        """Scores of ``rows`` in order, in as few pieces as scoring allows, and the rows that raise alone."""
        try:
            return [(rows, self._score_rows(decoded, rows))], {}
        except Exception as exc:  # noqa: BLE001
            if len(rows) == 1:
                row = int(rows[0])
                detail = f"scoring raised {type(exc).__name__}: {str(exc)[:200]}"
                return [], {row: Rejected("unscorable", detail, decoded.messages[row])}
        half = len(rows) // 2
        left, right = self._score_apart(decoded, rows[:half]), self._score_apart(decoded, rows[half:])
        return left[0] + right[0], {**left[1], **right[1]}

    def _window(self, result: BatchResult, now_ms: int | None) -> Counter[str]:
        late: Counter[str] = Counter()
        decoded = result.decoded
        single = len(result.by_partition) == 1
        hashes = decoded.text_hashes
        formats = result.formats
        for partition, idx in result.by_partition.items():
            sequences = decoded.sequences if single else [decoded.sequences[i] for i in idx]
            late[partition[0]] += self.judge.add(partition, result.errors[idx], decoded.weights[idx],
                                                 decoded.event_times_ms[idx], result.flags[idx], now_ms=now_ms,
                                                 sequences=sequences,
                                                 hashes=hashes if single or hashes is None else hashes[idx],
                                                 format_ids=None if formats is None else formats.ids[idx],
                                                 format_names=() if formats is None else formats.names)
        return late

    def _emit(self, decoded: Decoded, scores: Scores | None) -> None:
        outputs = self.outputs
        if decoded.rejected and outputs.dead_letters:
            self.sink.send_all(outputs.dead_letters,
                               events.dead_letters(decoded.rejected, outputs.dead_letter_max_bytes))
        if scores is not None and outputs.scored_events:
            self.sink.send_all(outputs.scored_events, events.scored_events(decoded, scores, self.scorer))

    def _account(self, consumed: int, result: BatchResult) -> None:
        c = self.counts
        c.batches += 1
        c.consumed += consumed
        c.scored += len(result.decoded)
        c.abnormal += int(result.flags.sum())
        c.late += sum(result.late.values())
        c.rejected.update(r.reason for r in result.rejected)

    def announce(self, reports: list[WindowReport]) -> list[WindowReport]:
        """Tell the hooks of judged windows; keep the records that reached their hour after it was judged
        for the next batch's late counts."""
        late = self.judge.take_late_assembled()
        for topic, n in sorted(late.items()):
            log.warning("%d records of %s arrived after their hour was judged (a partition idle or not read "
                        "when the hour closed); counted as late", n, topic)
        self._late_unreported.update(late)
        self.models.retire(self.judge.closed_before_ms())
        self.counts.windows_closed += len(reports)
        for report in reports:
            streak = self.judge.streaks.get(report.topic, 0)
            for hook in self.hooks:
                hook.on_window_closed(report, streak)
        return reports


def drain(source: Source, pipeline: RecordPipeline, batch_records: int) -> list[WindowReport]:
    """Every batch of a finite ``source`` through ``pipeline``, then every window closed: the reports of
    all windows, oldest first. Replay and the simulation run this; the service runs its own live loop."""
    reports: list[WindowReport] = []
    while (polled := source.next_batch(batch_records, 0)).messages:
        reports += pipeline.process(polled).reports
        source.processed(polled.next_offsets)
    return reports + pipeline.flush()


def _by_partition(decoded: Decoded, next_offsets: dict[Position, int]) -> dict[Position, np.ndarray]:
    """Indices of each partition's records in a batch, in order."""
    if len(next_offsets) == 1:  # the usual batch: one partition, no grouping needed
        return {next(iter(next_offsets)): np.arange(len(decoded))}
    groups: dict[Position, list[int]] = {}
    positions = getattr(decoded.messages, "positions", None)  # a client's batch that has read them already
    for i, position in enumerate(positions() if positions is not None else ((m.topic, m.partition)
                                                                            for m in decoded.messages)):
        groups.setdefault(position, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}
