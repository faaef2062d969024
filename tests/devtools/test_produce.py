from __future__ import annotations

import logging

from monitor.devtools.produce import NewTopicNotice


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("kafka.cluster", logging.ERROR, __file__, 1, message, args, None)


def test_only_the_new_topics_missing_metadata_error_is_held_back() -> None:
    notice = NewTopicNotice("sequences")
    assert not notice.filter(record("Topic %s not found in cluster metadata", "sequences"))
    assert notice.filter(record("Topic %s not found in cluster metadata", "other"))
    assert notice.filter(record("Topic %s is not authorized for this client", "sequences"))
