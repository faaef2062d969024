from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from monitor import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_format_writes_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    logging.getLogger("monitor.test").warning("window %s closed", "12:00")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("monitor.test").exception("failed")
    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING" and first["logger"] == "monitor.test"
    assert first["message"] == "window 12:00 closed" and first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]


def test_human_format_is_the_default_and_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("WARNING")
    logging.getLogger("monitor.test").info("hidden")
    logging.getLogger("monitor.test").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err and "WARNING monitor.test: shown" in err


def test_kafka_client_chatter_is_quieted() -> None:
    logs.configure("DEBUG")
    assert logging.getLogger("kafka").getEffectiveLevel() == logging.CRITICAL
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
