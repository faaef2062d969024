from __future__ import annotations

import logging
import threading

import pytest

from monitor.app import _connect


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
