"""The live loop (``StreamLoop``) on a store that records what it is asked: one batch per step, the other
threads' requests done between batches on the loop's thread, errors of the cluster recovered from and waited
out with a backoff that doubles up to its cap, bugs raised, a stop that commits last.

The store and the pipeline are stand-ins (a real pipeline needs a trained model); the configuration, the
source, the judge and the model's report are the real ones."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from monitor.errors import BrokerUnavailable, ShutdownTimeout
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.shadow import ShadowReport
from monitor.hourly.window import Progress
from monitor.records import Polled, Position, RawMessage
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream import loop as loop_module
from monitor.stream.batch import Counts
from monitor.stream.hooks import NoHooks, Snapshot
from monitor.stream.loop import BACKOFF_MAX_S, TICK_INTERVAL_S, StreamLoop
from monitor.stream.sources import MemorySource

MAX_RECORDS, MAX_WAIT_MS, SHUTDOWN_S, QUIET_S = 7, 3, 9.0, 45.0


def settings() -> MonitorConfig:
    return config_from_dict({
        "input": {"topics": ["events"]}, "model": {"path": "model"}, "metrics": {"enabled": False},
        "batch": {"max_records": MAX_RECORDS, "max_wait_ms": MAX_WAIT_MS},
        "shutdown": {"timeout_seconds": SHUTDOWN_S}, "window": {"quiet_seconds": QUIET_S}}, environ={})


def batches(count: int) -> list[list[RawMessage]]:
    return [[RawMessage("events", 0, i, 0, None, b"AB121E")] for i in range(count)]


class WatchedSource(MemorySource):
    """A memory source that remembers what each poll asked for and what progress was asked with."""

    def __init__(self, count: int = 10) -> None:
        super().__init__(batches(count))
        self.polls: list[tuple[int, int]] = []
        self.idle_after: list[float] = []
        self.unreachable: frozenset[Position] = frozenset()

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        self.polls.append((max_records, timeout_ms))
        return super().next_batch(max_records, timeout_ms)

    def progress(self, idle_after_s: float) -> Progress:
        self.idle_after.append(idle_after_s)
        return Progress(unreachable=self.unreachable)


class RecordingStore:
    """Records each call as (name, argument, thread); ``fail``: what ``take`` raises (once each);
    ``recovers``: what ``recover`` answers; ``decides``: what ``decide`` answers."""

    def __init__(self, source: WatchedSource | None = None) -> None:
        self.source = source or WatchedSource()
        self.calls: list[tuple[str, Any, int]] = []
        self.fail: list[BaseException] = []
        self.recovers = True
        self.decides = True
        self.on_take: Callable[[int], None] = lambda taken: None
        self.commit_raises: BaseException | None = None
        self.taken = 0

    def _record(self, name: str, argument: Any = None) -> None:
        self.calls.append((name, argument, threading.get_ident()))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def describe(self) -> str:
        return "reading events into a recording store"

    def take(self, polled: Polled) -> None:
        self._record("take", len(polled.messages))
        if self.fail:
            raise self.fail.pop(0)
        self.taken += 1
        self.on_take(self.taken)

    def close_by_clock(self) -> None:
        self._record("close_by_clock")

    def commit(self) -> None:
        self._record("commit")
        if self.commit_raises is not None:
            raise self.commit_raises

    def decide(self, report: Any, scorer: Any) -> bool:
        self._record("decide", (report.candidate, scorer))
        return self.decides

    def between_batches(self, committed: bool) -> None:
        self._record("between_batches", committed)

    def mend(self) -> None:
        self._record("mend")

    def recover(self, exc: BaseException) -> bool:
        self._record("recover", exc)
        return self.recovers

    def stopping(self, deadline: float) -> None:
        self._record("stopping", deadline)

    def lag_and_assigned(self) -> tuple[Mapping[Position, int], bool]:
        self._record("lag_and_assigned")
        return {("events", 0): 12}, True

    def stats(self) -> str:
        return "; 3 transactions"

    def close(self) -> None:
        self._record("close")


class StubScorer:
    """What the loop reads of the scorer: the model's description (``Bundle.info``)."""

    bundle = SimpleNamespace(info=lambda: {"version": "v1"})


def pipeline() -> Any:
    """What the loop reads of a pipeline: its totals, its judge, its scorer."""
    config = settings()
    return SimpleNamespace(counts=Counts(consumed=5, scored=4, rejected=Counter(empty_value=1)),
                           judge=HourlyJudge.from_config(config), scorer=StubScorer())


class Decisions(NoHooks):
    def __init__(self) -> None:
        self.summaries: list[Mapping[str, Any]] = []
        self.snapshots: list[Snapshot] = []

    def on_model_decision(self, summary: Mapping[str, Any]) -> None:
        self.summaries.append(summary)

    def on_tick(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)


def report(candidate: str = "v2") -> ShadowReport:
    return ShadowReport("v1", candidate, (), float("nan"), 0.01, float("nan"), (), False)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Callable[[StreamLoop], list[float]]:
    """The backoff waits of a loop, recorded instead of slept."""
    def watch(loop: StreamLoop) -> list[float]:
        waited: list[float] = []
        monkeypatch.setattr(loop._stop, "wait", lambda seconds: waited.append(seconds) or False)
        return waited
    return watch


def test_a_step_mends_then_hands_the_store_one_batch_of_the_configured_size() -> None:
    store = RecordingStore()
    StreamLoop(settings(), pipeline(), store).step()
    assert store.names() == ["mend", "take", "between_batches"]
    assert store.source.polls == [(MAX_RECORDS, MAX_WAIT_MS)]
    assert store.calls[1][1] == 1 and store.calls[2][1] is False  # the batch taken; no commit was made


def test_an_error_of_the_cluster_is_recovered_by_the_store_and_waited_out_doubling_up_to_the_cap(
        waits: Callable[[StreamLoop], list[float]]) -> None:
    store = RecordingStore()
    outage = BrokerUnavailable("down")
    store.fail = [outage] * 7
    loop = StreamLoop(settings(), pipeline(), store)
    waited = waits(loop)
    for _ in range(7):
        loop.step()
    assert waited == [1.0, 2.0, 4.0, 8.0, BACKOFF_MAX_S, BACKOFF_MAX_S, BACKOFF_MAX_S]
    assert [argument for name, argument, _ in store.calls if name == "recover"] == [outage] * 7
    assert "between_batches" not in store.names()  # the failed batch's requests wait for a good one


def test_a_batch_that_goes_through_starts_the_backoff_over(waits: Callable[[StreamLoop], list[float]]) -> None:
    store = RecordingStore()
    store.fail = [BrokerUnavailable("down")] * 3
    loop = StreamLoop(settings(), pipeline(), store)
    waited = waits(loop)
    for _ in range(4):
        loop.step()
    store.fail = [BrokerUnavailable("down again")]
    loop.step()
    assert waited == [1.0, 2.0, 4.0, 1.0]


def test_an_error_the_store_does_not_recover_from_is_a_bug_raised_without_waiting(
        waits: Callable[[StreamLoop], list[float]]) -> None:
    store = RecordingStore()
    store.fail, store.recovers = [KeyError("a bug")], False
    loop = StreamLoop(settings(), pipeline(), store)
    waited = waits(loop)
    with pytest.raises(KeyError, match="a bug"):
        loop.step()
    assert waited == []
    assert store.names() == ["mend", "take", "recover"]


def test_requests_from_other_threads_are_done_between_batches_on_the_loop_thread() -> None:
    store = RecordingStore()
    loop = StreamLoop(settings(), pipeline(), store)
    other = threading.Thread(target=lambda: (loop.request_checkpoint(), loop.request_close_check(),
                                             loop.offer_decision(report(), "scorer v2")))
    other.start()
    other.join()
    assert store.calls == []  # asking does nothing but ask
    loop.step()
    assert store.names() == ["mend", "take", "decide", "close_by_clock", "commit", "between_batches"]
    assert {thread for _, _, thread in store.calls} == {threading.get_ident()}
    assert store.calls[2][1] == ("v2", "scorer v2")
    assert store.calls[-1][1] is True  # between_batches is told a commit was just made


def test_each_request_is_done_once() -> None:
    store = RecordingStore()
    loop = StreamLoop(settings(), pipeline(), store)
    loop.request_checkpoint()
    loop.request_close_check()
    loop.offer_decision(report(), None)
    loop.step()
    store.calls.clear()
    loop.step()
    assert store.names() == ["mend", "take", "between_batches"]
    assert store.calls[-1][1] is False


def test_requests_made_during_a_failed_batch_are_done_after_the_next_good_one(
        waits: Callable[[StreamLoop], list[float]]) -> None:
    store = RecordingStore()
    store.fail = [BrokerUnavailable("down")]
    loop = StreamLoop(settings(), pipeline(), store)
    waits(loop)
    loop.request_checkpoint()
    loop.step()
    assert "commit" not in store.names()
    loop.step()
    assert store.names()[-2:] == ["commit", "between_batches"]


def test_only_a_decision_the_store_takes_is_told_to_the_observers() -> None:
    store, observer = RecordingStore(), Decisions()
    loop = StreamLoop(settings(), pipeline(), store, hooks=[observer])
    loop.offer_decision(report("v2"), "scorer v2")
    loop.step()
    store.decides = False  # a member that no longer decides model changes
    loop.offer_decision(report("v3"), None)
    loop.step()
    assert [s["candidate"] for s in observer.summaries] == ["v2"]
    assert [a for name, a, _ in store.calls if name == "decide"] == [("v2", "scorer v2"), ("v3", None)]


def test_a_stop_finishes_the_batch_in_hand_then_commits_last_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    store = RecordingStore()
    loop = StreamLoop(settings(), pipeline(), store)
    store.on_take = lambda taken: loop.request_stop() if taken == 2 else None
    loop.run()
    assert store.names() == ["mend", "take", "between_batches", "mend", "take", "stopping", "between_batches",
                             "commit", "close"]
    assert store.calls[5][1] == 1000.0 + SHUTDOWN_S  # the store waits for the cluster until the deadline


def test_a_stop_asked_for_twice_tells_the_store_once() -> None:
    store = RecordingStore()
    loop = StreamLoop(settings(), pipeline(), store)
    loop.request_stop()
    loop.request_stop()
    assert store.names() == ["stopping"]


def test_a_stop_with_the_broker_unreachable_still_closes_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    store.commit_raises = ShutdownTimeout("deadline passed")
    loop = StreamLoop(settings(), pipeline(), store)
    loop.request_stop()
    with caplog.at_level(logging.WARNING, logger="monitor.stream.loop"):
        loop.run()  # does not raise
    assert store.names()[-2:] == ["commit", "close"]
    assert any("broker unreachable" in r.getMessage() for r in caplog.records)


def test_a_bug_leaves_run_raised_with_the_store_closed(waits: Callable[[StreamLoop], list[float]]) -> None:
    store = RecordingStore()
    store.fail, store.recovers = [ValueError("a bug")], False
    with pytest.raises(ValueError):
        StreamLoop(settings(), pipeline(), store).run()
    assert store.names()[-1] == "close" and "commit" not in store.names()


def test_run_logs_what_the_store_describes_first_and_the_totals_with_the_stores_statistics_last(
        caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    loop = StreamLoop(settings(), pipeline(), store)
    loop.request_stop()
    with caplog.at_level(logging.INFO, logger="monitor.stream.loop"):
        loop.run()
    logged = [r.getMessage() for r in caplog.records if r.name == "monitor.stream.loop"]
    assert logged[0] == "reading events into a recording store"
    assert logged[-1] == ("consumed 5: scored 4 (0 abnormal, 0 late), dead-lettered 1 (empty value: 1); "
                          "0 windows closed; 3 transactions")


def test_observers_get_a_snapshot_at_most_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    store, observer = RecordingStore(), Decisions()
    store.source.unreachable = frozenset({("events", 1)})
    loop = StreamLoop(settings(), pipeline(), store, hooks=[observer])
    loop.step()
    now[0] += TICK_INTERVAL_S / 2
    loop.step()
    assert len(observer.snapshots) == 1
    now[0] += TICK_INTERVAL_S
    loop.step()
    assert len(observer.snapshots) == 2
    snapshot = observer.snapshots[0]
    assert snapshot.lag == {("events", 0): 12} and snapshot.assigned
    assert snapshot.model == {"version": "v1"}
    assert snapshot.unreachable == frozenset({("events", 1)})
    assert store.source.idle_after == [QUIET_S, QUIET_S]  # the quiet time of the configuration


def test_without_observers_no_snapshot_is_made() -> None:
    store = RecordingStore()
    StreamLoop(settings(), pipeline(), store).step()
    assert "lag_and_assigned" not in store.names() and store.source.idle_after == []
