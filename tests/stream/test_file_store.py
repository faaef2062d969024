"""The lone instance's store (``FileStore``, state in a SQLite file) in the service loop without a broker:
built by the application builder on an in-memory source and sink, it checkpoints and commits what it
finished, resumes exactly from its state file (and refuses, untouched, one it cannot resume from), rides out
a sink outage, swaps models between batches and hands its observers a snapshot."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.app import build
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate
from monitor.errors import BrokerUnavailable, StateError
from monitor.hourly.shadow import ShadowReport
from monitor.ops.lifecycle import ModelStore
from monitor.records import OutgoingMessage, RawMessage
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream.hooks import NoHooks, Snapshot
from monitor.stream.batch import BatchResult
from monitor.stream.loop import StreamLoop
from monitor.stream.sources import MemorySink, MemorySource
from monitor.stream.state import StateStore
from tests.tolerances import SUM_REL

MINUTE_MS = 60_000
START_MS = 1_700_000_040_000


def config(tmp_path: Path, bundle_dir: Path) -> MonitorConfig:
    return config_from_dict({
        "input": {"topics": ["events"]}, "model": {"path": str(bundle_dir)},
        "output": {"topic": "scored"}, "window": {"length_seconds": 60, "allowed_lateness_seconds": 0},
        "compare": {"min_history": 2, "previous_windows": 10}, "metrics": {"enabled": False},
        "state": {"path": str(tmp_path / "state.sqlite")}}, environ={})


def stream(count: int = 900, minutes: int = 9) -> list[RawMessage]:
    values = generate.sample("serial", count, seed=5)
    step = minutes * MINUTE_MS // count
    return [RawMessage("events", i % 2, i // 2, START_MS + i * step, None, v.encode()) for i, v in enumerate(values)]


class StopAfter(NoHooks):
    """Asks the service to stop once it has consumed ``count`` messages; keeps every snapshot."""

    def __init__(self, count: int) -> None:
        self.count, self.service, self.snapshots = count, None, []  # type: ignore[var-annotated]

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        assert self.service is not None
        if self.service.counts.consumed >= self.count:
            self.service.request_stop()

    def on_tick(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)


def run(cfg: MonitorConfig, bundle: Bundle, messages: list[RawMessage], sink: Any = None,
        batch: int = 100) -> tuple[StreamLoop, MemorySource, StopAfter]:
    source = MemorySource.of_messages(messages, batch)
    stopper = StopAfter(len(messages))
    app = build(cfg, scorer=Scorer(bundle), source=source, sink=sink or MemorySink(), hooks=[stopper])
    assert app is not None
    stopper.service = app.service
    app.service.run()
    return app.service, source, stopper


def closed_windows(path: Path) -> list[dict[str, Any]]:
    state = StateStore(path)
    try:
        return state.closed_windows()
    finally:
        state.close()


def test_a_stopped_service_has_checkpointed_and_committed_everything_it_read(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    messages = stream()
    service, source, _ = run(config(tmp_path, bundle_dir), serial_bundle, messages)
    assert source.committed == {("events", 0): 450, ("events", 1): 450}
    assert service.counts.consumed == service.counts.scored == len(messages)
    state = StateStore(tmp_path / "state.sqlite")
    try:
        checkpoint = state.load()
        assert checkpoint is not None and checkpoint.offsets == source.committed
    finally:
        state.close()
    assert len(closed_windows(tmp_path / "state.sqlite")) == 8  # the ninth minute is still open


def test_the_service_logs_where_scored_events_go_and_counts_in_words(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, bundle_dir)
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, topic=None))
    messages = stream(count=200, minutes=2) + [RawMessage("events", 0, 100, START_MS + 2 * MINUTE_MS, None, b"")]
    with caplog.at_level(logging.INFO, logger="monitor.stream.loop"):
        run(cfg, serial_bundle, messages)
    logged = [r.getMessage() for r in caplog.records if r.name == "monitor.stream.loop"]
    assert logged[0].endswith("; no scored events (output.topic is not set)"), logged[0]
    assert logged[-1].endswith("dead-lettered 1 (empty value: 1); 1 window closed"), logged[-1]


def test_a_restarted_service_resumes_from_its_state_with_the_same_figures(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    messages = stream()
    once, _, _ = run(config(tmp_path / "once", bundle_dir), serial_bundle, messages)
    halves = config(tmp_path / "halves", bundle_dir)
    first, _, _ = run(halves, serial_bundle, messages[:400])
    second, source, _ = run(halves, serial_bundle, messages[400:])
    assert second.store.positions == once.store.positions
    reports = [closed_windows(tmp_path / name / "state.sqlite") for name in ("once", "halves")]
    assert [r["count"] for r in reports[0]] == [r["count"] for r in reports[1]]
    for a, b in zip(*reports, strict=True):
        assert b["weighted_mean"] == pytest.approx(a["weighted_mean"], rel=SUM_REL)
        assert a["verdict"] == b["verdict"]


@pytest.mark.parametrize(("damage", "fault"), [
    pytest.param("UPDATE checkpoint SET offsets = json_set(offsets, '$[0][2]', -1)",
                 "the checkpoint is corrupt (the offset of events[0] is -1", id="negative-offset"),
    pytest.param("UPDATE checkpoint SET windows = json_array()",
                 "the checkpoint is corrupt (windows is an array, not an object)", id="windows-an-array"),
    pytest.param("UPDATE checkpoint SET windows = json_remove(windows, '$.events.partitions[0].windows.open')",
                 "the saved windows of 'events' cannot be restored (missing 'open')", id="window-snapshot-cut"),
    pytest.param("UPDATE checkpoint SET history = json_set(history, '$.events.entries[0].count', 'many')",
                 "the saved history of 'events' cannot be restored (ValueError", id="history-entry-a-text"),
    pytest.param("UPDATE window_samples SET sample = json_remove(sample, '$.sequences')",
                 "the saved samples of the history cannot be restored (missing 'sequences')", id="sample-cut"),
])
def test_a_state_file_that_cannot_be_restored_is_refused_naming_it_and_left_untouched(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, damage: str, fault: str) -> None:
    cfg = config(tmp_path, bundle_dir)
    run(cfg, serial_bundle, stream()[:400])
    path = tmp_path / "state.sqlite"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute(damage).rowcount >= 1
        db.commit()
    before = path.read_bytes()
    with pytest.raises(StateError) as refused:
        build(cfg, scorer=Scorer(serial_bundle), source=MemorySource([]), sink=MemorySink())
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and fault in message and "left untouched" in message, message
    assert refused.value.exit_code == 4
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 8], ids=["empty", "not-sqlite"])
def test_an_empty_or_foreign_state_file_is_refused_at_start_and_left_untouched(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, content: bytes) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(content)
    with pytest.raises(StateError, match="is empty" if not content else "not an SQLite database"):
        build(config(tmp_path, bundle_dir), scorer=Scorer(serial_bundle), source=MemorySource([]), sink=MemorySink())
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite"]


def test_format_counts_and_the_formats_history_survive_a_restart(tmp_path: Path, bundle_dir: Path,
                                                                 serial_bundle: Bundle) -> None:
    """From minute 5 on, user ids join the serials: each abnormal minute stays out of later baselines, so
    every minute from 5 names them as new. A restart inside minute 5 changes none of it: the open windows'
    format counts and the history's are in the state file."""
    serials, uids = generate.sample("serial", 900, seed=5), generate.sample("uid", 400, seed=5)
    values = [(START_MS + i * 600, s) for i, s in enumerate(serials)] + \
        [(START_MS + 5 * MINUTE_MS + i * 600, u) for i, u in enumerate(uids[:400])]
    values.sort()
    messages = [RawMessage("events", i % 2, i // 2, t, None, v.encode()) for i, (t, v) in enumerate(values)]
    run(config(tmp_path / "once", bundle_dir), serial_bundle, messages)
    halves = config(tmp_path / "halves", bundle_dir)
    run(halves, serial_bundle, messages[:610])  # stops inside minute 5
    run(halves, serial_bundle, messages[610:])
    once, resumed = (closed_windows(tmp_path / name / "state.sqlite") for name in ("once", "halves"))
    assert [r["formats"] for r in resumed] == [r["formats"] for r in once]
    named = [[s["format"] for s in r["formats"]["new"]] for r in once]
    assert named[:5] == [[]] * 5 and all(n == ["aaa-9{6}-AA"] for n in named[5:])
    assert all(r["verdict"] in ("warning", "critical") for r in once[5:])


class FlakySink(MemorySink):
    """Refuses the first ``failures`` sends as a broker outage would: a fault a real broker cannot be
    made to produce for exactly one call."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def send_all(self, topic: str, messages: Any, timeout_s: float = 0.0) -> int:
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("simulated outage")
        return super().send_all(topic, messages, timeout_s)


def test_a_sink_outage_is_retried_logged_once_and_loses_nothing(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.stream.retry.BACKOFF_INITIAL_S", 0.001)
    sink = FlakySink(failures=3)
    messages = stream(count=300, minutes=3)
    with caplog.at_level(logging.WARNING, logger="monitor.stream.retry"):
        run(config(tmp_path, bundle_dir), serial_bundle, messages, sink=sink)
    scored: list[OutgoingMessage] = sink.sent["scored"]
    assert len(scored) == len(messages)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2, logged  # once when it starts, once when it ends
    assert logged[0].startswith("broker unavailable (send to scored)")
    assert logged[1].startswith("broker reachable again")


def test_observers_get_a_snapshot_not_the_service(tmp_path: Path, bundle_dir: Path,
                                                  serial_bundle: Bundle) -> None:
    _, _, stopper = run(config(tmp_path, bundle_dir), serial_bundle, stream(count=200, minutes=2))
    snapshot = stopper.snapshots[0]
    assert snapshot.model == serial_bundle.info() and snapshot.assigned
    assert set(snapshot.open_windows) == {"events"}


class PromoteAfterFirstBatch(NoHooks):
    def __init__(self, replacement: Scorer) -> None:
        self.service: StreamLoop | None = None
        self.replacement, self.batches = replacement, 0

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        assert self.service is not None
        self.batches += 1
        if self.batches == 1:
            current = self.service.scorer.version
            report = ShadowReport(current, self.replacement.version, (), float("nan"), 0.01, float("nan"), (), False)
            self.service.offer_decision(report, self.replacement)


def run_promoting_after_the_first_batch(tmp_path: Path, bundle_dir: Path,
                                        serial_bundle: Bundle) -> tuple[Scorer, Scorer]:
    """Three one-minute batches; after the first, a copy of the model named ``v-next`` is promoted."""
    original = Scorer(serial_bundle)
    replacement = Scorer(dataclasses.replace(serial_bundle, metadata={**serial_bundle.metadata, "version": "v-next"}))
    messages = stream(count=300, minutes=3)  # batches of 100 are one minute each
    stopper, promoter = StopAfter(len(messages)), PromoteAfterFirstBatch(replacement)
    app = build(config(tmp_path, bundle_dir), scorer=original, source=MemorySource.of_messages(messages, 100),
                sink=MemorySink(), hooks=[stopper, promoter])
    assert app is not None
    stopper.service = promoter.service = app.service
    app.service.run()
    return original, replacement


def test_a_promoted_model_scores_the_windows_after_the_one_open_at_promotion(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    original, _ = run_promoting_after_the_first_batch(tmp_path, bundle_dir, serial_bundle)
    with closing(StateStore(tmp_path / "state.sqlite")) as state:
        versions = [w["model_version"] for w in state.closed_windows()]
        decisions = state.decisions()
        checkpoint = state.load()
    assert versions == [original.version, "v-next"]  # the third minute is still open
    assert [(d["candidate"], d["outcome"], d["from_ms"]) for d in decisions] == [
        ("v-next", "promoted_unshadowed", START_MS + MINUTE_MS)]
    # Once the window it scored closed, the original model was let go.
    assert checkpoint is not None and checkpoint.models == [[START_MS + MINUTE_MS, "v-next"]]


def test_a_restart_scores_with_the_model_the_state_names_kept_beside_it(
        tmp_path: Path, bundle_dir: Path, serial_bundle: Bundle) -> None:
    """The state names a model other than the one at model.path: a restart loads it from the state's copies
    (and with no copy, the configured model scores every window, with a warning)."""
    original, replacement = run_promoting_after_the_first_batch(tmp_path, bundle_dir, serial_bundle)
    ModelStore(tmp_path / "models", None).keep(replacement.bundle)  # as the promoter keeps what it promotes
    again = build(config(tmp_path, bundle_dir), scorer=original, source=MemorySource([]), sink=MemorySink())
    assert again is not None and again.service.scorer.version == "v-next"
    again.service.store.state.close()


def test_a_configured_threshold_quantile_replaces_the_bundles_and_is_shown(tmp_path: Path, bundle_dir: Path,
                                                                        serial_bundle: Bundle) -> None:
    cfg = config_from_dict({**config(tmp_path, bundle_dir).to_dict(), "model": {
        "path": str(bundle_dir), "threshold_quantile": 0.5}}, environ={})
    app = build(cfg, source=MemorySource([]), sink=MemorySink())
    assert app is not None
    bundle = app.service.scorer.bundle
    assert bundle.threshold_quantile == 0.5
    assert bundle.threshold == pytest.approx(float(np.quantile(serial_bundle.training_errors, 0.5)))
    assert bundle.info()["threshold_quantile"] == "0.5"
    app.service.store.state.close()
