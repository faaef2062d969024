"""The record pipeline: every message scored or rejected, dead letters and scored events to the sink, windows
closed and judged once, the same figures however the records are cut into batches."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.records import RawMessage
from monitor.settings import CompareConfig, InputConfig
from monitor.stream.hooks import NoHooks
from monitor.stream.batch import BatchResult, Outputs
from monitor.stream.pipeline import RecordPipeline, drain
from monitor.stream.sources import MemorySink, MemorySource, next_offsets

MINUTE_MS = 60_000
START_MS = 1_700_000_040_000  # a minute boundary
SETTINGS = CompareConfig(min_history=2, previous_windows=10)
OUTPUTS = Outputs(dead_letters="dlq", scored_events="scored", dead_letter_max_bytes=1000)


class Recorder(NoHooks):
    def __init__(self) -> None:
        self.batches: list[BatchResult] = []
        self.closed: list[tuple[WindowReport, int]] = []

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        self.batches.append(result)

    def on_window_closed(self, report: WindowReport, streak: int) -> None:
        self.closed.append((report, streak))


def messages(values: list[bytes], partitions: int = 1, minutes: int = 6) -> list[RawMessage]:
    """``values`` spread evenly over ``minutes`` of event time, dealt round-robin to ``partitions``."""
    step = minutes * MINUTE_MS // len(values)
    offsets = [0] * partitions
    out = []
    for i, value in enumerate(values):
        partition = i % partitions
        out.append(RawMessage("events", partition, offsets[partition], START_MS + i * step, b"k", value))
        offsets[partition] += 1
    return out


def pipeline(scorer: Scorer, sink: MemorySink | None = None, hooks: list[Any] | None = None,
             outputs: Outputs = OUTPUTS) -> RecordPipeline:
    return RecordPipeline(scorer, HourlyJudge(MINUTE_MS, 0, SETTINGS), InputConfig(), sink or MemorySink(),
                          outputs, hooks or [])


@pytest.fixture(scope="module")
def scorer(serial_bundle: Bundle) -> Scorer:
    return Scorer(serial_bundle)


@pytest.fixture(scope="module")
def stream() -> list[RawMessage]:
    values = [s.encode() for s in generate.sample("serial", 600, seed=11)]
    values[::50] = [b"\xff\xfe"] * len(values[::50])  # invalid UTF-8: dead letters
    return messages(values, partitions=3)


def figures(reports: list[WindowReport]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in reports]


def test_every_message_is_scored_or_dead_lettered_and_sent_on(scorer: Scorer, stream: list[RawMessage]) -> None:
    sink = MemorySink()
    line = pipeline(scorer, sink)
    result = line.process(MemorySource.of_messages(stream, len(stream)).next_batch(len(stream), 0))
    bad = sum(m.value == b"\xff\xfe" for m in stream)
    assert line.counts.consumed == len(stream) and line.counts.scored == len(stream) - bad
    assert line.counts.rejected == {"invalid_utf8": bad}
    assert len(sink.sent["dlq"]) == bad and len(sink.sent["scored"]) == len(stream) - bad
    assert all(dict(headers)["monitor.reason"] == b"invalid_utf8" for _, _, headers in sink.sent["dlq"])
    offsets = sorted((e["source"]["partition"], e["source"]["offset"])
                     for e in (json.loads(value) for _, value, _ in sink.sent["scored"]))
    assert len(set(offsets)) == len(offsets)
    assert result.next_offsets == next_offsets(stream)
    assert {p: idx.tolist() for p, idx in result.by_partition.items()} == {
        p: [i for i, m in enumerate(result.decoded.messages) if (m.topic, m.partition) == p]
        for p in result.by_partition}


def test_without_output_topics_nothing_is_sent_but_rejections_are_counted(scorer: Scorer,
                                                                         stream: list[RawMessage]) -> None:
    sink = MemorySink()
    line = pipeline(scorer, sink, outputs=Outputs())
    drain(MemorySource.of_messages(stream, 100), line, 100)
    assert not sink.sent and line.counts.dead_lettered == sum(m.value == b"\xff\xfe" for m in stream)


@pytest.mark.parametrize("batch_size", [1, 37, 250])
def test_the_figures_do_not_depend_on_how_the_records_are_batched(scorer: Scorer, stream: list[RawMessage],
                                                                  batch_size: int) -> None:
    whole = drain(MemorySource.of_messages(stream, len(stream)), pipeline(scorer), len(stream))
    cut = drain(MemorySource.of_messages(stream, batch_size), pipeline(scorer), batch_size)
    assert len(whole) == 6
    for a, b in zip(figures(whole), figures(cut), strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():  # float sums may differ in their last bits with the order of addition
            if key == "top_records":
                continue
            assert b[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
        # The top records are the same records, in the same order; their share of the hour's error is a float.
        assert [{**r, "error_share": pytest.approx(r["error_share"], rel=1e-9)} for r in a["top_records"]] == \
            b["top_records"]


def test_windows_close_once_each_and_hooks_hear_of_every_batch_and_window(scorer: Scorer,
                                                                          stream: list[RawMessage]) -> None:
    recorder = Recorder()
    reports = drain(MemorySource.of_messages(stream, 100), pipeline(scorer, hooks=[recorder]), 100)
    assert len(recorder.batches) == 6
    assert [r for r, _ in recorder.closed] == reports
    assert [r.start_ms for r in reports] == [START_MS + i * MINUTE_MS for i in range(6)]
    assert sum(r.totals.count for r in reports) == sum(m.value != b"\xff\xfe" for m in stream)
    assert [streak for _, streak in recorder.closed] == [0] * 6  # nothing abnormal


def test_a_window_closes_when_the_watermark_passes_it_not_before(scorer: Scorer) -> None:
    line = pipeline(scorer, outputs=Outputs())
    first = messages([b"AB121E"] * 10, minutes=1)
    later = [m._replace(timestamp=m.timestamp + MINUTE_MS, offset=m.offset + 10) for m in first]
    assert line.process(MemorySource([first]).next_batch(10, 0)).reports == []
    [closed] = line.process(MemorySource([later]).next_batch(10, 0)).reports
    assert (closed.start_ms, closed.totals.count) == (START_MS, 10)
    assert line.close_due(now_ms=START_MS + 2 * MINUTE_MS)[0].start_ms == START_MS + MINUTE_MS


def test_an_event_time_from_the_future_does_not_close_windows_early_when_the_clock_is_given(
        scorer: Scorer) -> None:
    line = pipeline(scorer, outputs=Outputs())
    batch = messages([b"AB121E"] * 5, minutes=1)
    batch.append(batch[-1]._replace(offset=5, timestamp=START_MS + 1000 * MINUTE_MS))
    assert line.process(MemorySource([batch]).next_batch(10, 0), now_ms=START_MS + 30_000).reports == []
    assert np.array_equal(sorted(line.judge.open_summary()["events"][i][0] for i in range(2)),
                          [START_MS, START_MS + 1000 * MINUTE_MS])


def test_an_event_time_too_far_from_the_given_clock_is_dead_lettered_with_its_reason(scorer: Scorer) -> None:
    sink = MemorySink()
    line = pipeline(scorer, sink)
    batch = messages([b"AB121E"] * 4, minutes=1)
    batch += [batch[-1]._replace(offset=4, timestamp=START_MS + 2 * 86_400_000),  # two days ahead of the clock
              batch[-1]._replace(offset=5, timestamp=0)]  # 1970
    result = line.process(MemorySource([batch]).next_batch(10, 0), now_ms=START_MS)
    assert line.counts.rejected == {"implausible_timestamp": 2} and len(result.decoded) == 4
    details = [dict(headers)["monitor.detail"].decode() for _, _, headers in sink.sent["dlq"]]
    assert [dict(headers)["monitor.reason"] for _, _, headers in sink.sent["dlq"]] == [b"implausible_timestamp"] * 2
    assert "ahead of the clock" in details[0] and "before input.min_event_time" in details[1]
    assert [start for start, _ in line.judge.open_summary()["events"]] == [START_MS]


class FailsOn:
    """A scorer that raises on one sequence: a fault no real model can be made to produce on demand."""

    def __init__(self, scorer: Scorer, poison: str) -> None:
        self.scorer, self.poison, self.bundle = scorer, poison, scorer.bundle
        self.version, self.threshold = scorer.version, scorer.threshold

    def score(self, sequences: list[str]) -> Any:
        if self.poison in sequences:
            raise ValueError(f"cannot score {self.poison!r}")
        return self.scorer.score(sequences)

    def explain(self, sequences: list[str]) -> Any:
        return self.scorer.explain(sequences)


def test_a_sequence_that_cannot_be_scored_is_dead_lettered_and_the_rest_are_scored(
        scorer: Scorer, stream: list[RawMessage]) -> None:
    poison = b"ZZ999Z"
    with_poison = stream[:300] + [stream[300]._replace(value=poison)] + stream[301:]
    sink = MemorySink()
    line = RecordPipeline(FailsOn(scorer, poison.decode()), HourlyJudge(MINUTE_MS, 0, SETTINGS),  # type: ignore[arg-type]
                          InputConfig(), sink, OUTPUTS)
    reports = drain(MemorySource.of_messages(with_poison, 250), line, 250)
    assert line.counts.rejected["unscorable"] == 1
    [letter] = [m for m in sink.sent["dlq"] if dict(m[2])["monitor.reason"] == b"unscorable"]
    assert letter[1] == poison and b"ValueError" in dict(letter[2])["monitor.detail"]
    clean = drain(MemorySource.of_messages(stream[:300] + stream[301:], 250), pipeline(scorer), 250)
    assert [r.totals.count for r in reports] == [r.totals.count for r in clean]
    assert [r.totals.weighted_mean for r in reports] == pytest.approx([r.totals.weighted_mean for r in clean])


def test_a_json_sequence_holding_a_lone_surrogate_is_scored_windowed_and_sampled(scorer: Scorer) -> None:
    # JSON may escape half of a surrogate pair; such a string cannot be encoded strictly as UTF-8.
    values = [json.dumps({"sequence": s}).encode() for s in ["AB121E", "\ud800AB", "KQ4324"]]
    line = RecordPipeline(scorer, HourlyJudge(MINUTE_MS, 0, SETTINGS),
                          InputConfig(value_format="json"), MemorySink(), Outputs())
    [report] = drain(MemorySource.of_messages(messages(values, minutes=1), 10), line, 10)
    assert report.totals.count == 3 and line.counts.dead_lettered == 0
    assert report.sample is not None and "\ud800AB" in report.sample.sequences


def test_a_plain_batch_and_the_same_records_as_json_sample_the_same_sequences(scorer: Scorer) -> None:
    # Plain text hashes the message bytes, JSON the decoded strings: the same function of the sequence.
    sequences = generate.sample("serial", 3_000, seed=4) + ["Zürich-7"]
    plain = messages([s.encode() for s in sequences])
    as_json = [m._replace(value=json.dumps({"sequence": m.value.decode()}).encode()) for m in plain]
    samples = []
    for options, batch in ((InputConfig(), plain), (InputConfig(value_format="json"), as_json)):
        judge = HourlyJudge(MINUTE_MS, 0, SETTINGS, sample_size=50)
        reports = drain(MemorySource.of_messages(batch, 500), RecordPipeline(scorer, judge, options, MemorySink()),
                        500)
        samples.append([r.sample.sequences for r in reports if r.sample is not None])
    assert samples[0] == samples[1] and len(samples[0]) > 1
