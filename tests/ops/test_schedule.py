"""The scheduled jobs: which exist for a configuration, that they run repeatedly, and that shutdown stops them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.ops.schedule import start_jobs
from monitor.settings import MonitorConfig, config_from_dict

INTERVAL_S = 0.2
WAIT_S = 5.0  # generous: an overloaded machine may run the jobs late, never much earlier


def config(reload_seconds: float = INTERVAL_S, retrain: bool = False) -> MonitorConfig:
    return config_from_dict({
        "window": {"close_check_seconds": INTERVAL_S},
        "state": {"checkpoint_interval_seconds": INTERVAL_S},
        "reload": {"check_interval_seconds": reload_seconds},
        "retrain": {"enabled": retrain, "interval_hours": 1},
    }, environ={})


class Calls:
    """A job callable that counts its calls and sets an event once it has been called ``times`` times."""

    def __init__(self, times: int = 3) -> None:
        self.times = times
        self.count = 0
        self.reached = threading.Event()
        self.called = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
            self.called.set()
            if self.count >= self.times:
                self.reached.set()


@pytest.fixture
def schedulers() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for scheduler in started:
        if scheduler.running:
            scheduler.shutdown(wait=True)


def test_close_check_checkpoint_and_reload_run_repeatedly(schedulers: list[Any]) -> None:
    close_check, checkpoint, reload = Calls(), Calls(), Calls()
    schedulers.append(start_jobs(config(), close_check, checkpoint, reload))
    for calls in (close_check, checkpoint, reload):
        assert calls.reached.wait(WAIT_S), f"called {calls.count} times within {WAIT_S}s"


def test_the_jobs_have_their_ids_and_intervals(schedulers: list[Any]) -> None:
    scheduler = start_jobs(config(reload_seconds=0.5, retrain=True), Calls(), Calls(), Calls(), Calls())
    schedulers.append(scheduler)
    seconds = {job.id: job.trigger.interval.total_seconds() for job in scheduler.get_jobs()}
    assert seconds == {"close-windows": INTERVAL_S, "checkpoint": INTERVAL_S, "reload-model": 0.5,
                       "retrain": 3600.0}


def test_the_retrain_job_exists_only_when_retraining_is_enabled(schedulers: list[Any]) -> None:
    enabled = start_jobs(config(retrain=True), Calls(), Calls(), Calls(), Calls())
    disabled = start_jobs(config(retrain=False), Calls(), Calls(), Calls(), Calls())
    no_callable = start_jobs(config(retrain=True), Calls(), Calls(), Calls(), None)
    schedulers.extend([enabled, disabled, no_callable])
    retrain_job = enabled.get_job("retrain")
    assert retrain_job is not None and retrain_job.trigger.interval.total_seconds() == 3600
    assert disabled.get_job("retrain") is None
    assert no_callable.get_job("retrain") is None


def test_the_reload_job_is_absent_when_its_interval_is_0_or_there_is_no_watcher(schedulers: list[Any]) -> None:
    never = start_jobs(config(reload_seconds=0), Calls(), Calls(), Calls())
    no_watcher = start_jobs(config(), Calls(), Calls(), None)
    schedulers.extend([never, no_watcher])
    assert never.get_job("reload-model") is None and no_watcher.get_job("reload-model") is None
    assert sorted(job.id for job in never.get_jobs()) == ["checkpoint", "close-windows"]


def test_a_failing_job_keeps_being_scheduled(schedulers: list[Any]) -> None:
    calls = Calls()

    def failing() -> None:
        calls()
        raise RuntimeError("broker gone")

    schedulers.append(start_jobs(config(), failing, Calls()))
    assert calls.reached.wait(WAIT_S)


def test_shutdown_stops_the_calls(schedulers: list[Any]) -> None:
    close_check, checkpoint, reload = Calls(times=2), Calls(times=2), Calls(times=2)
    scheduler = start_jobs(config(), close_check, checkpoint, reload)
    schedulers.append(scheduler)
    assert close_check.reached.wait(WAIT_S) and checkpoint.reached.wait(WAIT_S) and reload.reached.wait(WAIT_S)
    scheduler.shutdown(wait=True)  # also waits for a job already handed to the worker threads
    assert not scheduler.running
    for calls in (close_check, checkpoint, reload):
        calls.called.clear()
    # Five intervals without a call: a running scheduler would have called each job about five times.
    assert not close_check.called.wait(5 * INTERVAL_S)
    assert not checkpoint.called.is_set() and not reload.called.is_set()


def test_shutdown_without_waiting_returns_at_once_and_stops_the_calls(schedulers: list[Any]) -> None:
    close_check = Calls(times=1)
    scheduler = start_jobs(config(), close_check, Calls())
    schedulers.append(scheduler)
    assert close_check.reached.wait(WAIT_S)
    scheduler.shutdown(wait=False)
    assert not scheduler.running
    close_check.called.clear()
    if close_check.called.wait(INTERVAL_S):  # at most a call already handed to a worker before the shutdown
        close_check.called.clear()
    assert not close_check.called.wait(5 * INTERVAL_S)
