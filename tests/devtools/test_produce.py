from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import yaml

from monitor.devtools.produce import NewTopicNotice


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("kafka.cluster", logging.ERROR, __file__, 1, message, args, None)


def test_only_the_new_topics_missing_metadata_error_is_held_back() -> None:
    notice = NewTopicNotice("sequences")
    assert not notice.filter(record("Topic %s not found in cluster metadata", "sequences"))
    assert notice.filter(record("Topic %s not found in cluster metadata", "other"))
    assert notice.filter(record("Topic %s is not authorized for this client", "sequences"))


def test_a_cluster_that_does_not_answer_ends_produce_with_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": ["127.0.0.1:1"],
                                                "client": {"bootstrap_timeout_ms": 1000}}}))
    done = subprocess.run([sys.executable, "-m", "monitor", "produce", "--config", str(config), "-n", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: the Kafka cluster at 127.0.0.1:1 did not answer" in done.stderr
