"""``candidate`` and ``accept`` on a real state file written by the service (built on an in-memory source)."""

from __future__ import annotations

import json
import logging
from contextlib import closing
from pathlib import Path

import pytest

from monitor.app import build
from monitor.cli import main
from monitor.core import bundle as bundle_lib
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.hourly.timeline import iso_utc
from monitor.records import RawMessage
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream.sources import MemorySink, MemorySource
from monitor.stream.state import StateStore

MINUTE_MS = 60_000
START_MS = 1_700_000_040_000  # a minute boundary
MINUTES, PER_MINUTE, DRIFT_FROM = 14, 60, 11


def config(folder: Path, bundle_dir: Path) -> MonitorConfig:
    return config_from_dict({
        "input": {"topics": ["events"]}, "model": {"path": str(bundle_dir)}, "metrics": {"enabled": False},
        "window": {"length_seconds": 60, "allowed_lateness_seconds": 0},
        "compare": {"min_history": 4, "previous_windows": 20}, "state": {"path": str(folder / "state.sqlite")}},
        environ={})


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Path:
    """A state file after 14 one-minute windows, the last three drifted to another format (critical)."""
    folder = tmp_path_factory.mktemp("service")
    normal = generate.sample("serial", MINUTES * PER_MINUTE, seed=9)
    drifted = generate.anomalies("serial", "other_format", PER_MINUTE, set(), seed=2)
    messages = [RawMessage("events", 0, i, START_MS + i * 1000,
                           None, (drifted[i % PER_MINUTE] if i // PER_MINUTE >= DRIFT_FROM else normal[i]).encode())
                for i in range(MINUTES * PER_MINUTE)]
    app = build(config(folder, bundle_dir), source=MemorySource.of_messages(messages, PER_MINUTE), sink=MemorySink())
    assert app is not None
    store = app.service.store
    while store.take(store.source.next_batch(PER_MINUTE, 0)) is not None:
        pass
    store.keep(app.service.pipeline.flush())  # as the loop keeps what it closes, for the checkpoint
    store.commit()
    store.state.close()
    path = folder / "state.sqlite"
    (folder / "monitor.yaml").write_text(json.dumps(config(folder, bundle_dir).to_dict()))
    return path


def test_the_state_holds_the_drifted_windows_flagged(state_file: Path) -> None:
    with closing(StateStore(state_file)) as state:
        verdicts = [w["verdict"] for w in state.closed_windows()]
    assert verdicts[4:DRIFT_FROM] == ["normal"] * (DRIFT_FROM - 4)
    assert set(verdicts[DRIFT_FROM:DRIFT_FROM + 2]) <= {"warning", "critical"}


def test_candidate_prints_the_comparison_and_exits_by_its_decision(
        state_file: Path, bundle_dir: Path, retrained_bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(state_file.parent / "monitor.yaml")
    code = main(["candidate", "--model", str(bundle_dir), "--candidate", str(retrained_bundle_dir),
                 "--state", str(state_file), "--config", cfg])
    out = capsys.readouterr().out
    assert code in (0, 5)
    assert ("PROMOTED" in out) == (code == 0) and ("REFUSED" in out) == (code == 5)
    assert "hours judged normal kept normal" in out and "still flagged" in out
    assert main(["candidate", "--model", str(bundle_dir), "--candidate", str(retrained_bundle_dir),
                 "--state", str(state_file), "--config", cfg, "--json"]) == code
    report = json.loads(capsys.readouterr().out)
    assert report["flagged"] >= 2 and len(report["per_window"]) == report["windows"]


def test_candidate_after_an_offline_accept_takes_it_in_without_writing_the_file(
        state_file: Path, bundle_dir: Path, retrained_bundle_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No service runs between `accept` and `candidate`: the acceptance is applied all the same."""
    copy = tmp_path / "state.sqlite"
    copy.write_bytes(state_file.read_bytes())
    compare = ["candidate", "--model", str(bundle_dir), "--candidate", str(retrained_bundle_dir), "--state",
               str(copy), "--config", str(state_file.parent / "monitor.yaml")]
    main([*compare, "--json"])
    before = json.loads(capsys.readouterr().out)
    assert before["accepted"] == 0 and before["accepted_not_yet_applied_by_the_service"] == 0
    drifted = START_MS + DRIFT_FROM * MINUTE_MS
    assert main(["accept", "--state", str(copy), "--window", str(drifted)]) == 0
    assert "`candidate` on this state file takes it in already" in capsys.readouterr().out
    written = copy.read_bytes()
    main([*compare, "--json"])
    after = json.loads(capsys.readouterr().out)
    assert after["accepted"] == 1 and after["accepted_not_yet_applied_by_the_service"] == 1
    assert after["flagged"] == before["flagged"] - 1
    assert [w["accepted"] for w in after["per_window"] if w["start_ms"] == drifted] == [True]
    main(compare)
    out = capsys.readouterr().out
    assert ", 1 accepted" in out and f"taken in here: accepted #1 in {copy}" in out
    assert copy.read_bytes() == written  # candidate only reads the file


def test_accept_by_pattern_records_the_matching_samples_and_the_service_applies_it(
        state_file: Path, bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "state.sqlite"
    copy.write_bytes(state_file.read_bytes())
    pattern = r"[-\s]"  # the other formats: residues and user ids have dashes, spaced serials spaces
    assert main(["accept", "--state", str(copy), f"--pattern={pattern}"]) == 0
    assert "join the retraining corpus" in capsys.readouterr().out
    with closing(StateStore(copy)) as state:
        [accepted] = state.accepted()
    assert accepted.kind == "pattern" and len(accepted.sequences) >= PER_MINUTE // 2
    assert all("-" in s or " " in s for s in accepted.sequences)
    app = build(config(tmp_path, bundle_dir), source=MemorySource([]), sink=MemorySink())
    assert app is not None
    requested: list[int] = []
    app.service.store.on_accepted = lambda new: requested.extend(a.id for a in new)
    app.service.store.apply_accepted()
    entries = app.service.pipeline.judge.histories["events"].entries
    assert [e.accepted for e in entries if e.verdict in ("warning", "critical")] and \
        all(e.accepted for e in entries if e.verdict in ("warning", "critical"))
    assert requested == [accepted.id] and app.service.store.accepted_applied == accepted.id
    app.service.store.state.close()


def test_accept_refuses_a_window_not_in_history_and_a_bad_pattern(state_file: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accept", "--state", str(state_file), "--window", "2001-01-01T00:00:00Z"]) == 2
    assert "no window starting 2001-01-01T00:00:00+00:00" in capsys.readouterr().err
    assert main(["accept", "--state", str(state_file), "--pattern", "(["]) == 2
    assert "is not a regular expression" in capsys.readouterr().err


def test_the_service_logs_an_accepted_window_by_its_iso_time_as_accept_printed_it(
        state_file: Path, bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / "state.sqlite"
    copy.write_bytes(state_file.read_bytes())
    start = iso_utc(START_MS + DRIFT_FROM * MINUTE_MS)
    assert main(["accept", "--state", str(copy), "--window", start, "--config",
                 str(state_file.parent / "monitor.yaml")]) == 0
    assert f"(window {start})" in capsys.readouterr().out
    app = build(config(tmp_path, bundle_dir), source=MemorySource([]), sink=MemorySink())
    assert app is not None
    with caplog.at_level(logging.WARNING, logger="monitor.stream.file_store"):
        app.service.store.apply_accepted()
    app.service.store.state.close()
    assert [f"format accepted (window {start}): the retraining corpus takes in {PER_MINUTE} sequences, "
            "baselines take in 1 window again"] == [r.getMessage() for r in caplog.records
                                                    if r.getMessage().startswith("format accepted")]


def test_the_promoter_shadows_a_candidate_reports_it_and_the_service_records_the_decision(
        state_file: Path, bundle_dir: Path, retrained_bundle_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").write_bytes(state_file.read_bytes())
    app = build(config(tmp_path, bundle_dir), source=MemorySource([]), sink=MemorySink())
    assert app is not None
    candidate = Scorer(bundle_lib.load(retrained_bundle_dir))
    report = app.promoter.consider(candidate)
    assert report.shadowed and len(report.windows) == MINUTES
    [written] = (tmp_path / "decisions").iterdir()
    assert written.name.endswith(f"-{candidate.version}-{report.outcome}.txt")
    assert written.read_text().startswith(f"candidate {candidate.version} beside current")
    app.service._do_requests()  # noqa: SLF001 - what the loop does between two batches
    [decision] = app.service.store.state.decisions()
    assert (decision["candidate"], decision["outcome"]) == (candidate.version, report.outcome)
    promoted = report.promote
    assert (app.service.scorer.version == candidate.version) == promoted
    assert (tmp_path / "models" / candidate.version / "bundle.json").exists() == promoted
    app.service.store.state.close()
