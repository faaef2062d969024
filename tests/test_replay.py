"""Replaying a CSV or JSONL file through decoding, scoring, windows and comparison."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.cli import main
from monitor.commands import replay as replay_module
from monitor.commands.replay import (
    REPORT_COLUMNS,
    ReplayColumns,
    ReplayResult,
    replay,
    write_reports,
)
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.errors import InputError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.timeline import HOUR_MS, iso_utc
from monitor.settings import CompareConfig, InputConfig, config_from_dict

WINDOW_MS = 60_000
START_MS = 1_700_000_040_000  # a window boundary
SETTINGS = CompareConfig(min_history=3, previous_windows=10)
COLUMNS = ReplayColumns(sequence="sequence", time="timestamp", weight="weight")


@pytest.fixture(scope="module")
def scorer(serial_bundle: Bundle) -> Scorer:
    return Scorer(serial_bundle)


@pytest.fixture
def input_options() -> InputConfig:
    return config_from_dict({}, environ={}).input


def timeline(windows: int = 6, per_window: int = 40, drift_window: int | None = 5) -> list[dict[str, Any]]:
    """Records over ``windows`` one-minute windows, in time order; one window of malformed serials."""
    normal = generate.sample("serial", windows * per_window, seed=17)
    drifted = generate.anomalies("serial", "other_format", per_window, set(), seed=5)
    records = []
    for w in range(windows):
        for i in range(per_window):
            sequence = drifted[i] if w == drift_window else normal[w * per_window + i]
            records.append({"sequence": sequence, "timestamp": START_MS + w * WINDOW_MS + i * 1_400,
                            "weight": 1 + i % 3})
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]], fields: tuple[str, ...] = ("timestamp", "sequence",
                                                                                     "weight")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return path


def run(path: Path, scorer: Scorer, options: InputConfig, columns: ReplayColumns = COLUMNS,
        lateness_ms: int = 0) -> ReplayResult:
    return replay(path, scorer, HourlyJudge(WINDOW_MS, lateness_ms, SETTINGS), columns, options)


def test_jsonl_and_an_equivalent_csv_give_identical_reports(tmp_path: Path, scorer: Scorer,
                                                             input_options: InputConfig) -> None:
    records = timeline()
    from_jsonl = run(write_jsonl(tmp_path / "in.jsonl", records), scorer, input_options)
    from_csv = run(write_csv(tmp_path / "in.csv", records), scorer, input_options)
    assert [r.to_dict() for r in from_jsonl.reports] == [r.to_dict() for r in from_csv.reports]
    assert (from_jsonl.rows, from_jsonl.rejected, from_jsonl.late) == (len(records), Counter(), 0)
    assert (from_csv.rows, from_csv.rejected, from_csv.late) == (len(records), Counter(), 0)


def test_one_report_per_window_in_start_order_with_the_drifted_window_flagged(
        tmp_path: Path, scorer: Scorer, input_options: InputConfig) -> None:
    records = timeline()
    result = run(write_jsonl(tmp_path / "in.jsonl", records), scorer, input_options)
    assert [r.start_ms for r in result.reports] == [START_MS + w * WINDOW_MS for w in range(6)]
    assert {r.topic for r in result.reports} == {"replay"}
    assert [r.totals.count for r in result.reports] == [40] * 6
    assert result.reports[0].totals.weight_sum == sum(r["weight"] for r in records[:40])
    assert result.reports[0].model_version == scorer.bundle.version
    assert [r.verdict for r in result.reports[:3]] == ["learning"] * 3
    assert result.reports[5].abnormal
    assert result.reports[5].totals.weighted_mean > 5 * max(r.totals.weighted_mean for r in result.reports[:5])


def test_window_figures_match_scoring_the_records_directly(tmp_path: Path, scorer: Scorer,
                                                           input_options: InputConfig) -> None:
    records = timeline(windows=2, drift_window=None)
    result = run(write_jsonl(tmp_path / "in.jsonl", records), scorer, input_options)
    first = records[:40]
    errors = scorer.errors([r["sequence"] for r in first])
    weights = np.array([r["weight"] for r in first], dtype=float)
    assert result.reports[0].totals.weighted_mean == pytest.approx(float(np.dot(errors, weights) / weights.sum()))


def test_iso_times_give_the_same_reports_as_epoch_milliseconds(tmp_path: Path, scorer: Scorer,
                                                               input_options: InputConfig) -> None:
    records = timeline(windows=3, drift_window=None)
    iso = [{**r, "timestamp": datetime.fromtimestamp(r["timestamp"] / 1000, timezone.utc).isoformat()}
           for r in records]
    from_epoch = run(write_csv(tmp_path / "epoch.csv", records), scorer, input_options)
    from_iso = run(write_csv(tmp_path / "iso.csv", iso), scorer, input_options,
                   ReplayColumns("sequence", "timestamp", "weight", "iso8601"))
    assert [r.to_dict() for r in from_iso.reports] == [r.to_dict() for r in from_epoch.reports]


def test_bad_jsonl_rows_are_counted_by_reason_and_the_rest_is_replayed(tmp_path: Path, scorer: Scorer,
                                                                       input_options: InputConfig) -> None:
    good = timeline(windows=2, drift_window=None)
    path = tmp_path / "in.jsonl"
    bad_lines = [
        json.dumps({"timestamp": START_MS, "weight": 1}),  # no sequence
        json.dumps({"sequence": "AB121E", "timestamp": "yesterday"}),
        json.dumps({"sequence": "AB121E", "timestamp": START_MS, "weight": -2}),
        json.dumps({"sequence": "AB121E", "timestamp": START_MS, "weight": "heavy"}),
        json.dumps({"sequence": "AB121E"}),  # no time at all
        "{broken",
        "",
    ]
    path.write_text("\n".join([*bad_lines[:4], *(json.dumps(r) for r in good), *bad_lines[4:]]) + "\n")
    result = run(path, scorer, input_options)
    assert result.rejected == Counter({"missing_field": 1, "invalid_timestamp": 2, "invalid_weight": 2,
                                       "invalid_json": 1, "empty_value": 1})
    assert result.rows == len(good) + len(bad_lines)
    assert [r.totals.count for r in result.reports] == [40, 40]


def test_bad_csv_rows_are_counted_by_reason_and_the_rest_is_replayed(tmp_path: Path, scorer: Scorer,
                                                                     input_options: InputConfig) -> None:
    good = timeline(windows=2, drift_window=None)
    bad = [{"timestamp": START_MS, "sequence": "", "weight": 1},
           {"timestamp": "yesterday", "sequence": "AB121E", "weight": 1},
           {"timestamp": "", "sequence": "AB121E", "weight": 1},
           {"timestamp": START_MS, "sequence": "AB121E", "weight": -2},
           {"timestamp": START_MS, "sequence": "AB121E", "weight": "heavy"}]
    result = run(write_csv(tmp_path / "in.csv", bad + good), scorer, input_options)
    assert result.rejected == Counter({"empty_value": 1, "invalid_timestamp": 2, "invalid_weight": 2})
    assert result.rows == len(good) + len(bad)
    assert [r.totals.count for r in result.reports] == [40, 40]


def test_an_empty_weight_cell_weighs_1_like_a_missing_json_field(tmp_path: Path, scorer: Scorer,
                                                                 input_options: InputConfig) -> None:
    records = [{"timestamp": START_MS + i, "sequence": s, "weight": ""}
               for i, s in enumerate(generate.sample("serial", 10, seed=2))]
    from_csv = run(write_csv(tmp_path / "in.csv", records), scorer, input_options)
    from_jsonl = run(write_jsonl(tmp_path / "in.jsonl", [{k: v for k, v in r.items() if k != "weight"}
                                                         for r in records]), scorer, input_options)
    assert from_csv.rejected == Counter()
    assert [r.to_dict() for r in from_csv.reports] == [r.to_dict() for r in from_jsonl.reports]
    assert from_csv.reports[0].totals.weight_sum == 10.0


def test_records_behind_a_closed_window_are_counted_late(tmp_path: Path, scorer: Scorer, input_options: InputConfig,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "BATCH_ROWS", 40)  # windows close between batches: one window a batch
    records = timeline(windows=3, drift_window=None)
    records.append({**records[0], "timestamp": START_MS + 5})  # window 0 closed when window 2 began
    result = run(write_jsonl(tmp_path / "in.jsonl", records), scorer, input_options)
    assert result.late == 1 and result.rejected == Counter()
    assert [r.totals.count for r in result.reports] == [40, 40, 40]


def test_a_sequence_of_digits_stays_text(tmp_path: Path, scorer: Scorer, input_options: InputConfig) -> None:
    path = tmp_path / "digits.csv"
    path.write_text(f"serial,time\n00123,{START_MS}\n0042,{START_MS + 1}\n7,{START_MS + 2}\n")
    result = run(path, scorer, input_options, ReplayColumns(sequence="serial", time="time"))
    assert result.rejected == Counter()
    [report] = result.reports
    assert report.totals.count == 3
    assert report.totals.weighted_mean == pytest.approx(float(scorer.errors(["00123", "0042", "7"]).mean()))


def test_a_missing_input_file_raises_input_error(tmp_path: Path, scorer: Scorer,
                                                 input_options: InputConfig) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run(tmp_path / "absent.jsonl", scorer, input_options)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_an_empty_input_file_raises_input_error_saying_so(tmp_path: Path, scorer: Scorer,
                                                          input_options: InputConfig, name: str) -> None:
    (tmp_path / name).write_text("")
    with pytest.raises(InputError, match="is empty"):
        run(tmp_path / name, scorer, input_options)


def test_a_csv_of_blank_lines_raises_input_error_asking_for_a_header(tmp_path: Path, scorer: Scorer,
                                                                     input_options: InputConfig) -> None:
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(InputError, match="header"):
        run(tmp_path / "blank.csv", scorer, input_options)


def test_a_csv_field_over_the_csv_modules_limit_is_rejected_as_oversized(tmp_path: Path, scorer: Scorer,
                                                                         input_options: InputConfig) -> None:
    records = timeline(windows=2, drift_window=None)
    records[3]["sequence"] = "A" * 200_000  # the csv module refuses fields over 131,072 characters
    result = run(write_csv(tmp_path / "in.csv", records), scorer, input_options)
    assert result.rejected == Counter({"oversized_value": 1})
    assert sum(r.totals.count for r in result.reports) == len(records) - 1


def test_a_csv_line_the_csv_module_cannot_read_is_rejected_and_the_rest_replayed(
        tmp_path: Path, scorer: Scorer, input_options: InputConfig) -> None:
    path = write_csv(tmp_path / "in.csv", timeline(windows=2, drift_window=None))
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(f"{START_MS},AB\r121E,1\n")  # a carriage return inside an unquoted cell
    result = run(path, scorer, input_options)
    assert (result.rows, result.rejected) == (81, Counter({"invalid_json": 1}))


def test_write_reports_as_csv_has_the_columns_and_one_row_per_window(tmp_path: Path, scorer: Scorer,
                                                                     input_options: InputConfig) -> None:
    result = run(write_jsonl(tmp_path / "in.jsonl", timeline()), scorer, input_options)
    out = io.StringIO()
    write_reports(result.reports, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == REPORT_COLUMNS
    table = [dict(zip(REPORT_COLUMNS, row)) for row in rows[1:]]
    assert len(table) == len(result.reports) == 6
    assert table[0]["start"] == datetime.fromtimestamp(START_MS / 1000, timezone.utc).isoformat()
    assert table[0]["end"] == "2023-11-14T22:15:00+00:00" and table[0]["start"] == "2023-11-14T22:14:00+00:00"
    assert [row["verdict"] for row in table] == [r.verdict for r in result.reports]
    assert table[0]["robust_z"] == "" and table[0]["count"] == "40"  # no baseline yet: empty, not "nan"
    assert float(table[3]["weighted_mean"]) == pytest.approx(result.reports[3].totals.weighted_mean, rel=1e-5)


def test_write_reports_as_json_writes_one_object_per_window(tmp_path: Path, scorer: Scorer,
                                                            input_options: InputConfig) -> None:
    result = run(write_jsonl(tmp_path / "in.jsonl", timeline(windows=2, drift_window=None)), scorer,
                 input_options)
    out = io.StringIO()
    write_reports(result.reports, out, "json")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows == [{"start": iso_utc(r.start_ms), "end": iso_utc(r.end_ms), **r.to_dict()} for r in result.reports]
    # Every window names its highest-error records, highest first, with their share of the hour's error.
    assert all(row["top_records"] and row["reasons"] == [] or row["verdict"] != "normal" for row in rows)
    top = rows[0]["top_records"]
    assert [t["error"] for t in top] == sorted((t["error"] for t in top), reverse=True)
    assert 0 < sum(t["error_share"] for t in top) <= 1


def test_write_reports_without_windows_writes_only_the_header() -> None:
    out = io.StringIO()
    write_reports([], out)
    assert out.getvalue() == ",".join(REPORT_COLUMNS) + "\n"


def test_the_replay_command_writes_one_row_per_window(tmp_path: Path, bundle_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    source = write_jsonl(tmp_path / "in.jsonl", timeline(windows=4, drift_window=None))
    out = tmp_path / "reports.csv"
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source), "--window-seconds", "60",
                 "--output", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["start"] for r in rows] == [
        datetime.fromtimestamp((START_MS + w * WINDOW_MS) / 1000, timezone.utc).isoformat() for w in range(4)]
    assert [r["count"] for r in rows] == ["40"] * 4
    assert "replayed 160 rows into 4 windows" in capsys.readouterr().err


def test_the_replay_summary_counts_in_words_with_the_reasons_rows_were_rejected(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    records = timeline(windows=1, drift_window=None)
    source = write_jsonl(tmp_path / "in.jsonl", records + [{"timestamp": records[-1]["timestamp"]}])
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source), "--window-seconds", "60",
                 "--output", str(tmp_path / "reports.csv")]) == 0
    assert capsys.readouterr().err.endswith("replayed 41 rows into 1 window (0 warning or critical); "
                                            "1 row rejected (missing field: 1), 0 late\n")


def test_the_replay_command_exits_2_for_a_missing_input(tmp_path: Path, bundle_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    assert main(["replay", "--model", str(bundle_dir), "--input", str(tmp_path / "absent.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_replay_command_exits_2_naming_the_columns_when_they_are_not_the_defaults(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    source = tmp_path / "orders.csv"
    source.write_text("invoice,created\nAB121E,1700000040000\nDN176,1700000041000\n")
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert "'invoice', 'created'" in err and "--sequence-column" in err and "--time-column" in err


def test_the_replay_command_exits_2_when_every_row_is_rejected(tmp_path: Path, bundle_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    source = tmp_path / "iso.jsonl"
    source.write_text('{"sequence": "AB121E", "timestamp": "2024-01-01T00:00:00Z"}\n' * 3)
    keep = tmp_path / "reports.csv"
    keep.write_text("old\n")
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source), "--output", str(keep)]) == 2
    err = capsys.readouterr().err
    assert "3 rows read, none gave a record (invalid timestamp: 3)" in err and "--time-format" in err
    assert keep.read_text() == "old\n"


def test_the_replay_command_names_the_time_bounds_when_every_time_is_implausible(
        tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    source = tmp_path / "seconds.jsonl"  # epoch seconds, read as the default epoch_ms: January 1970
    source.write_text("".join(json.dumps({"sequence": "AB121E", "timestamp": START_MS // 1000 + i}) + "\n"
                              for i in range(3)))
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert "(implausible timestamp: 3)" in err and "--time-format" in err
    assert "input.min_event_time (2000-01-01T00:00:00Z)" in err


def test_what_produce_json_writes_replays_without_flags(tmp_path: Path, bundle_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.devtools.produce import encode_value

    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    source = tmp_path / "produced.jsonl"
    times = [START_MS + i * 1000 for i in range(120)]
    source.write_bytes(b"".join(encode_value(s, t, as_json=True) + b"\n"
                                for s, t in zip(generate.sample("serial", 120, seed=2), times)))
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source), "--window-seconds", "60"]) == 0
    assert "replayed 120 rows into 2 windows" in capsys.readouterr().err


def test_replay_applies_a_model_change_at_the_first_window_boundary_after_its_time(
        tmp_path: Path, bundle_dir: Path, retrained_bundle_dir: Path, serial_bundle: Bundle,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    config = tmp_path / "monitor.yaml"
    config.write_text("compare:\n  min_history: 3\n  previous_windows: 10\n")
    source = write_jsonl(tmp_path / "in.jsonl", timeline(windows=8, drift_window=7))
    change_at = datetime.fromtimestamp((START_MS + 4 * WINDOW_MS - 30_000) / 1000, timezone.utc).isoformat()
    out = tmp_path / "reports.jsonl"
    assert main(["replay", "--model", str(bundle_dir), "--input", str(source), "--window-seconds", "60",
                 "--config", str(config), "--model-change", f"{change_at}={retrained_bundle_dir}",
                 "--output", str(out), "--format", "json"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    retrained = Scorer(replay_module.bundle_lib.load(retrained_bundle_dir)).version
    # A change half a minute before the fifth window: the fourth keeps its model, the fifth is the new one's.
    assert [r["model_version"] for r in rows] == [serial_bundle.version] * 4 + [retrained] * 4
    # The history was re-scored from the samples: no learning after the change, and the drift is caught.
    assert [r["verdict"] for r in rows][3:] == ["normal"] * 4 + ["critical"]
    assert [r["baseline_estimated"] for r in rows][4:7] == [4, 4, 4]


def test_a_model_change_that_is_not_time_equals_dir_exits_2(tmp_path: Path, bundle_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--model", str(bundle_dir), "--input", str(tmp_path / "x.jsonl"),
              "--model-change", "yesterday=models/v2"])
    assert exit_info.value.code == 2
    assert "neither ISO 8601" in capsys.readouterr().err


@pytest.mark.parametrize("new_from", [3, 6])
def test_a_format_new_from_a_given_window_is_named_with_examples_in_that_window(
        tmp_path: Path, bundle_dir: Path, new_from: int) -> None:
    """Serials throughout; from window ``new_from`` on, a fifth of each window is user ids, a format the model
    never saw. The window it starts in names it, in the JSON lines and in the CSV's formats column."""
    serials = generate.sample("serial", 8 * 100, seed=23)
    uids = generate.sample("uid", 8 * 20, seed=23)
    records = []
    for w in range(8):
        window = serials[w * 100:(w + 1) * 100] + (uids[w * 20:(w + 1) * 20] if w >= new_from else [])
        records += [{"sequence": s, "timestamp": START_MS + w * WINDOW_MS + i * 400} for i, s in enumerate(window)]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    assert main(["replay", "--model", str(bundle_dir), "--input", str(path), "--window-seconds", "60",
                 "--output", str(tmp_path / "out.jsonl"), "--format", "json"]) == 0
    reports = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    named = [[s["format"] for s in r["formats"]["new"]] for r in reports]
    assert named[:new_from] == [[]] * new_from and named[new_from] == ["aaa-9{6}-AA"]
    [shift] = reports[new_from]["formats"]["new"]
    assert shift["share"] == pytest.approx(20 / 120) and shift["baseline_share"] == 0.0
    assert shift["training_share"] == 0.0 and len(shift["examples"]) == 3
    assert all(generate.is_valid("uid", e) for e in shift["examples"])
    assert reports[new_from]["verdict"] == "warning"  # learning or normal before: a new format is a warning
    assert main(["replay", "--model", str(bundle_dir), "--input", str(path), "--window-seconds", "60",
                 "--output", str(tmp_path / "out.csv")]) == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert "new format (vs " in table[new_from]["formats"] and "aaa-9{6}-AA" in table[new_from]["formats"]
    assert all(row["formats"] == "" for row in table[:new_from])


def test_absurd_event_times_and_weights_are_rejected_and_every_hour_stays_whole(
        tmp_path: Path, scorer: Scorer, input_options: InputConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of about two hours, so an event time that closed every open window would leave the rest late.
    monkeypatch.setattr(replay_module, "BATCH_ROWS", 25)
    hours, per_hour = 72, 12
    first_hour = START_MS - START_MS % HOUR_MS
    records = [{"sequence": sequence, "timestamp": first_hour + i * (HOUR_MS // per_hour), "weight": 1 + i % 3}
               for i, sequence in enumerate(generate.sample("serial", hours * per_hour, seed=23))]
    absurd = [{"sequence": "AB121E", "timestamp": 0, "weight": 1},  # 1970
              {"sequence": "AB121E", "timestamp": 253_402_214_400_000, "weight": 1},  # 9999-12-31
              {"sequence": "AB121E", "timestamp": first_hour + 10 * HOUR_MS, "weight": 1e308},
              {"sequence": "DN176", "timestamp": first_hour + 10 * HOUR_MS, "weight": 1e308},
              {"sequence": "AB121E", "timestamp": first_hour + 11 * HOUR_MS, "weight": float("nan")}]
    for row in absurd:
        records.insert(10 * per_hour + 1, row)  # mid-stream, among the eleventh hour's records
    result = replay(write_jsonl(tmp_path / "in.jsonl", records), scorer,
                    HourlyJudge(HOUR_MS, 0, SETTINGS), COLUMNS, input_options)
    assert [r.start_ms for r in result.reports] == [first_hour + h * HOUR_MS for h in range(hours)]
    assert [r.totals.count for r in result.reports] == [per_hour] * hours and result.late == 0
    assert result.rejected == Counter({"implausible_timestamp": 2, "invalid_weight": 3})
    assert all(np.isfinite([r.totals.weight_sum, r.totals.weighted_mean]).all() for r in result.reports)
    out = io.StringIO()
    write_reports(result.reports, out, "json")
    assert "Infinity" not in out.getvalue() and "NaN" not in out.getvalue()
