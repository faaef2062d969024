from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from monitor.app import _connect, _dump_stacks_on_sigusr1
from monitor.devtools.local_process import free_loopback_port


class NoBrokersAvailable(Exception):
    """Named as kafka-python's versions name it when no broker answers (``_connect`` goes by the name)."""


def test_a_stop_while_the_cluster_is_unreachable_is_logged_as_the_last_word(
        caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()

    def unreachable() -> None:
        stop.set()  # SIGINT arrives while the client waits for the cluster
        raise NoBrokersAvailable()

    with caplog.at_level(logging.INFO, logger="monitor.app"):
        assert _connect(unreachable, stop, "consumer") is None
    assert [r.getMessage() for r in caplog.records] == [
        "stopped before the Kafka cluster was reached: the consumer never connected, nothing was read"]


def test_sigusr1_writes_every_threads_stack_and_the_service_carries_on(bundle_dir: Path, tmp_path: Path) -> None:
    # A service that seems stuck must say where: the stacks come while it starts (its state opened, a cluster
    # that never answers waited for), and the service still stops cleanly on SIGTERM afterwards.
    config = {"kafka": {"bootstrap_servers": [f"127.0.0.1:{free_loopback_port()}"]},
              "input": {"topics": ["serials"]}, "model": {"path": str(bundle_dir)},
              "metrics": {"enabled": False}, "state": {"path": str(tmp_path / "state.sqlite")}}
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = tmp_path / "monitor.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                                   stderr=handle, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_until(lambda: "model bundle" in log.read_text(errors="replace"), 120), \
            log.read_text(errors="replace")
        process.send_signal(signal.SIGUSR1)
        # Wherever the main thread is (the state being opened, the cluster being reached), its frames say so.
        assert wait_until(lambda: "in run_service" in log.read_text(errors="replace"), 30), \
            log.read_text(errors="replace")
        assert process.poll() is None, "SIGUSR1 ended the service"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    text = log.read_text(errors="replace")
    assert "Current thread" in text and "stopped before the Kafka cluster was reached" in text


def test_without_a_file_descriptor_for_stderr_the_service_runs_without_stack_dumps_and_says_so(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # as an embedding that captures stderr leaves it
    with caplog.at_level(logging.INFO, logger="monitor.app"):
        assert _dump_stacks_on_sigusr1() is False
    assert any("SIGUSR1 will not write the threads' stacks" in r.getMessage() for r in caplog.records)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
