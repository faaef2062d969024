"""The hourly monitor offline: a CSV or JSONL file of timestamped sequences through the same record
pipeline as the Kafka service (``monitor.stream.pipeline``), one report row per window.

Each line is decoded exactly as a Kafka message value would be, so a file and a topic holding the same
records give the same window figures. ``run_replay`` is what ``python -m monitor replay`` does.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from monitor.core import bundle as bundle_lib
from monitor.core.score import Scorer
from monitor.counted import by_reason, counted, reasons_after
from monitor.errors import InputError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import REPORT_FIELDS, WindowReport
from monitor.hourly.timeline import iso_utc, parse_time
from monitor.settings import load_config
from monitor.stream.files import open_output
from monitor.stream.pipeline import RecordPipeline, drain
from monitor.stream.sources import MemorySink, file_columns, file_source

BATCH_ROWS = 5_000
# Time columns looked for, in order, when none is named: replay's own default, then what `produce --json` writes.
TIME_COLUMNS = ("timestamp", "event_time_ms")
# A report's fields, with its start and end as ISO 8601 text in place of epoch milliseconds.
REPORT_COLUMNS = tuple({"start_ms": "start", "end_ms": "end"}.get(name, name) for name in REPORT_FIELDS)


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


def replay(path: Path, scorer: Scorer, judge: HourlyJudge, columns: ReplayColumns, input_options: Any,
           topic: str = "replay", changes: Sequence[tuple[int, Scorer]] = ()) -> ReplayResult:
    """Run every line of ``path`` through the record pipeline; closes all windows at the end. ``changes``:
    (window boundary, model) promotions, applied as the service applies them: each model scores the windows
    from its boundary on, and history is re-scored from the samples when its first window is judged."""
    decoding = replace(input_options, value_format="json", sequence_field=columns.sequence,
                       weight_field=columns.weight, event_time_field=columns.time,
                       event_time_format=columns.time_format)
    pipeline = RecordPipeline(scorer, judge, decoding, MemorySink())
    for from_ms, changed in sorted(changes, key=lambda change: change[0]):
        pipeline.promote(changed, from_ms)
    reports = drain(file_source(path, topic, columns.sequence, BATCH_ROWS), pipeline, BATCH_ROWS)
    counts = pipeline.counts
    return ReplayResult(reports, counts.consumed, counts.rejected, counts.late)


def write_reports(reports: Sequence[WindowReport], out: TextIO, fmt: str = "csv") -> None:
    """One JSON object per line (``json``), or CSV with ``REPORT_COLUMNS``."""
    if fmt == "json":
        for report in reports:
            row = report.to_dict()
            out.write(json.dumps({"start": iso_utc(report.start_ms), "end": iso_utc(report.end_ms), **row}) + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for report in reports:
        row = report.to_dict()
        row["start_ms"], row["end_ms"] = iso_utc(report.start_ms), iso_utc(report.end_ms)
        row["formats"] = report.formats.summary()  # JSON lines carry the whole change; a cell, one line of it
        row["reasons"] = report.reasons_summary()
        row["top_records"] = "; ".join(f"{r['sequence']!r} {r['error']:.3g}" + (
            f" ({r['error_share']:.0%} of the error)" if r["error_share"] is not None else "")
            for r in row["top_records"])
        writer.writerow(["" if row[name] is None else _cell(row[name]) for name in REPORT_FIELDS])


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def run_replay(model_dir: Path, input_path: Path, config_path: Path | None, sequence_column: str,
               time_column: str | None, weight_column: str | None, time_format: str, window_seconds: float | None,
               output: str, report_format: str, model_changes: Sequence[tuple[int, Path]] = ()) -> int:
    """``python -m monitor replay``: reports to ``output``, a summary line to standard error. ``time_column``
    ``None``: the first of ``TIME_COLUMNS`` the file has; ``model_changes``: (time, bundle folder) pairs."""
    config = load_config(config_path)
    length_ms = int(window_seconds * 1000) if window_seconds else config.window.length_ms
    columns = resolve_columns(input_path, sequence_column, time_column, weight_column, time_format)
    out_file = open_output(output, inputs=[input_path])
    judge = HourlyJudge.from_config(config, length_ms)
    changes = [(model_change_boundary(time, length_ms), directory) for time, directory in model_changes]
    scorer = Scorer(bundle_lib.load(model_dir))
    promoted = [(boundary, Scorer(bundle_lib.load(directory))) for boundary, directory in changes]
    result = replay(input_path, scorer, judge, columns, config.input, changes=promoted)
    if result.rows and not result.reports:
        hint = _columns_hint(input_path, columns)
        if result.rejected["implausible_timestamp"]:
            hint += f"; {_time_bounds_hint(config.input)}"
        raise InputError(f"{input_path}: {counted(result.rows, 'row')} read, none gave a record "
                         f"({by_reason(result.rejected)}); {hint}")
    with out_file as out:
        write_reports(result.reports, out, report_format)
    abnormal = sum(r.abnormal for r in result.reports)
    rejected = counted(sum(result.rejected.values()), "row") + " rejected" + reasons_after(result.rejected)
    print(f"replayed {counted(result.rows, 'row')} into {counted(len(result.reports), 'window')} ({abnormal} "
          f"warning or critical); {rejected}, {result.late} late", file=sys.stderr)
    return 0


def parse_model_change(text: str) -> tuple[int, Path]:
    """``TIME=DIR`` (TIME in ISO 8601, e.g. 2026-03-01T12:00:00Z, or epoch ms) as (epoch ms, bundle folder)."""
    time, separator, directory = text.partition("=")
    if not separator or not directory:
        raise InputError(f"--model-change {text!r}: expected TIME=DIR, e.g. 2026-03-01T12:00:00Z=models/v2")
    try:
        return parse_time(time), Path(directory)
    except ValueError as exc:
        raise InputError(f"--model-change {text!r}: {exc}") from exc


def model_change_boundary(time_ms: int, length_ms: int) -> int:
    """The first window boundary at or after ``time_ms``: where a change at that time takes over."""
    return -(-time_ms // length_ms) * length_ms


def resolve_columns(path: Path, sequence: str, time: str | None, weight: str | None,
                    time_format: str) -> ReplayColumns:
    """The columns to read: ``time`` ``None`` takes the first of ``TIME_COLUMNS`` the file has. Raises
    ``InputError`` naming the file's columns when a named one is missing."""
    found = file_columns(path)
    if not found:
        return ReplayColumns(sequence, time or TIME_COLUMNS[0], weight, time_format)
    time = time or next((name for name in TIME_COLUMNS if name in found), None)
    missing = [f"{flag} {name!r}" for flag, name in (("--sequence-column", sequence), ("--time-column", time),
                                                     ("--weight-column", weight)) if name and name not in found]
    if time is None:
        missing.append(f"a time column (looked for {', '.join(TIME_COLUMNS)})")
    if missing:
        raise InputError(f"{path} has no {' and no '.join(missing)}; its columns are "
                         f"{', '.join(map(repr, found))}: name them with --sequence-column and --time-column")
    return ReplayColumns(sequence, time, weight, time_format)  # type: ignore[arg-type]


def _time_bounds_hint(options: Any) -> str:
    # Epoch seconds read as milliseconds fall in 1970: the time format is the first suspect, then the bounds.
    return (f"event times must be from input.min_event_time ({options.min_event_time}) to "
            f"input.max_future_seconds ({options.max_future_seconds:g}) ahead of now; set them with --config to "
            "replay other times")


def _columns_hint(path: Path, columns: ReplayColumns) -> str:
    return (f"read the sequence from {columns.sequence!r} and the time from {columns.time!r} as "
            f"{columns.time_format}; the file's columns are {', '.join(map(repr, file_columns(path))) or 'unknown'}: "
            "choose them with --sequence-column, --time-column and --time-format")
