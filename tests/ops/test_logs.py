from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from monitor.ops import logs


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


def test_kafka_client_chatter_is_quieted_but_its_errors_show(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("DEBUG")
    assert logging.getLogger("kafka").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
    logging.getLogger("kafka.net.manager").warning("No partition metadata for topic %s", "t")
    logging.getLogger("kafka.net.manager").error("Connection failed: %s", "SSL handshake failed")
    err = capsys.readouterr().err
    assert "No partition metadata" not in err and "Connection failed: SSL handshake failed" in err


def test_a_library_message_repeats_at_most_once_per_interval() -> None:
    now = [0.0]
    only_once = logs.OncePerInterval("kafka", 60.0, clock=lambda: now[0])

    def passes(name: str, msg: str, *args: object) -> bool:
        return only_once.filter(logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None))

    assert passes("kafka.net.manager", "Connection failed: %s", "refused from port 50001")
    assert not passes("kafka.net.manager", "Connection failed: %s", "refused from port 50002")  # same template
    assert passes("kafka.cluster", "Metadata refresh: failed %s", "refused")  # another message
    assert all(passes("monitor.stream.loop", "broker unavailable") for _ in range(3))  # ours are never held back
    assert passes("kafkaesque", "not the client") and passes("kafkaesque", "not the client")
    now[0] = 61.0
    assert passes("kafka.net.manager", "Connection failed: %s", "refused from port 50003")


class UnstableOffsetCommitError(Exception):  # kafka-python's, matched by name: only stream.kafka imports kafka
    def __str__(self) -> str:
        return "[Error 88] UnstableOffsetCommitError"


def kafka_record(level: int, msg: str, *args: object, name: str = "kafka.coordinator.consumer") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_an_unstable_offset_commit_error_is_demoted_to_an_expected_info_line() -> None:
    record = kafka_record(logging.ERROR, "Unknown error fetching offsets for %s: %s", "TopicPartition(in, 0)",
                          UnstableOffsetCommitError())
    assert logs.ExpectedDuringHandOver(logging.INFO).filter(record)
    assert record.levelno == logging.INFO and record.levelname == "INFO"
    message = record.getMessage()
    assert "TopicPartition(in, 0)" in message and "UnstableOffsetCommitError" in message
    assert "expected during a hand-over" in message


def test_the_demoted_line_is_dropped_below_the_configured_level() -> None:
    record = kafka_record(logging.ERROR, "Unknown error fetching offsets: %s", UnstableOffsetCommitError())
    assert not logs.ExpectedDuringHandOver(logging.WARNING).filter(record)


@pytest.mark.parametrize("record", [
    kafka_record(logging.ERROR, "Unknown error fetching offsets for %s: %s", "tp", ValueError("other")),
    kafka_record(logging.ERROR, "Connection failed: %s", "refused"),
    kafka_record(logging.ERROR, "%s", UnstableOffsetCommitError(), name="monitor.stream.group"),
], ids=["another-error", "no-error-argument", "not-kafka-python"])
def test_other_errors_pass_untouched(record: logging.LogRecord) -> None:
    message = record.getMessage()
    assert logs.ExpectedDuringHandOver(logging.WARNING).filter(record)
    assert record.levelno == logging.ERROR and record.getMessage() == message


def test_configure_demotes_it_on_the_way_out(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    logging.getLogger("kafka.coordinator.consumer").error("Unknown error fetching offsets for %s: %s", "tp",
                                                          UnstableOffsetCommitError())
    err = capsys.readouterr().err
    assert "INFO kafka.coordinator.consumer: Unknown error fetching offsets for tp" in err
    assert "expected during a hand-over" in err and " ERROR " not in err
