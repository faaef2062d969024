"""The hourly monitor offline: a CSV or JSONL file of timestamped sequences through the same decoding,
scoring, windows and comparison as the Kafka service, one report row per window.

Each line is decoded exactly as a Kafka message value would be (``monitor.decode``), so a file and a topic
holding the same records give the same window figures.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from monitor.decode import Decoded, decode_batch
from monitor.errors import InputError
from monitor.hourly import HourlyPipeline, WindowReport
from monitor.records import RawMessage
from monitor.score import Scorer

BATCH_ROWS = 5_000
REPORT_COLUMNS = ("topic", "start", "end", "count", "weight_sum", "weighted_mean", "above_threshold_share",
                  "error_p50", "error_p99", "baseline_median", "baseline_mad", "baseline_size", "robust_z",
                  "percentile", "share_ratio", "distribution_distance", "verdict", "model_version")


@dataclass(frozen=True)
class ReplayColumns:
    """Where the fields are: the time column is required, the weight optional (default weight 1)."""

    sequence: str = "sequence"
    time: str = "timestamp"
    weight: str | None = None
    time_format: str = "epoch_ms"  # or epoch_s, iso8601


@dataclass
class ReplayResult:
    reports: list[WindowReport]
    rows: int
    rejected: Counter[str]
    late: int


def replay(path: Path, scorer: Scorer, pipeline: HourlyPipeline, columns: ReplayColumns, input_options: Any,
           topic: str = "replay") -> ReplayResult:
    """Run every line of ``path`` through the hourly pipeline; closes all windows at the end."""
    options = replace(input_options, value_format="json", sequence_field=columns.sequence,
                      weight_field=columns.weight, event_time_field=columns.time,
                      event_time_format=columns.time_format)
    reports: list[WindowReport] = []
    rejected: Counter[str] = Counter()
    rows = late = 0
    messages = _messages(path, topic, columns.sequence)
    while batch := list(itertools.islice(messages, BATCH_ROWS)):
        rows += len(batch)
        decoded = decode_batch(batch, options)
        rejected.update(r.reason for r in decoded.rejected)
        late += _add(decoded, scorer, pipeline, (topic, 0))
        reports += pipeline.close_due(scorer.bundle.version)
    reports += pipeline.flush(scorer.bundle.version)
    return ReplayResult(reports, rows, rejected, late)


def _add(decoded: Decoded, scorer: Scorer, pipeline: HourlyPipeline, partition: tuple[str, int]) -> int:
    if not len(decoded):
        return 0
    scores = scorer.score(decoded.sequences)
    return pipeline.add(partition, scores.errors, decoded.weights, decoded.event_times_ms, scores.flags)


def _messages(path: Path, topic: str, sequence_column: str) -> Iterator[RawMessage]:
    """Each data line as a message whose value is a JSON object (a CSV row becomes one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    with path.open("rb") as handle:
        if path.suffix.lower() == ".csv":
            yield from _csv_messages(handle, path, topic, sequence_column)
        else:
            for offset, line in enumerate(handle):
                yield RawMessage(topic, 0, offset, None, None, line.rstrip(b"\r\n"))


def _csv_messages(handle: Any, path: Path, topic: str, sequence_column: str) -> Iterator[RawMessage]:
    text = (line.decode("utf-8", "replace") for line in handle)
    reader = csv.DictReader(text)
    if not reader.fieldnames:
        raise InputError(f"{path} is empty: a CSV input needs a header line")
    for offset, row in enumerate(reader):
        yield RawMessage(topic, 0, offset, None, None, json.dumps(_typed(row, sequence_column)).encode("utf-8"))


def _typed(row: dict[str, Any], keep_text: str) -> dict[str, Any]:
    """CSV cells are text; other columns that read as numbers become numbers, as weights and epoch times
    are in JSON (the sequence column stays text: ``00123`` is a sequence, not a number). An empty cell of
    another column is CSV's null, as an absent JSON field: an empty weight weighs 1."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or key == keep_text or value in (None, ""):
            out[str(key)] = None if value == "" and key != keep_text else value
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def write_reports(reports: Sequence[WindowReport], out: TextIO, fmt: str = "csv") -> None:
    if fmt == "json":
        for report in reports:
            out.write(json.dumps(report.to_dict()) + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for report in reports:
        row = report.to_dict()
        row["start"], row["end"] = _iso(report.start_ms), _iso(report.end_ms)
        writer.writerow(["" if row[c] is None else _cell(row[c]) for c in REPORT_COLUMNS])


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
