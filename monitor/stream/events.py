"""The messages the monitor produces: dead letters (a rejected message, with why) and scored events (a
scored sequence, with its error, rank, flag and explanation), each keyed and headed like its source."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from monitor.core.score import Scorer, Scores
from monitor.records import Header, OutgoingMessage, RawMessage, Record, Rejected
from monitor.stream.decode import Decoded


def dead_letters(rejected: Sequence[Rejected], max_value_bytes: int | None = None) -> list[OutgoingMessage]:
    """A dead letter for each rejection, in order."""
    return [dead_letter(r, max_value_bytes) for r in rejected]


def dead_letter(rejected: Rejected, max_value_bytes: int | None = None) -> OutgoingMessage:
    """The original key and bytes (cut to ``max_value_bytes``), the original headers, and where it came from
    and why, as headers."""
    m = rejected.message
    value = m.value or b""
    ours = [("monitor.reason", rejected.reason), ("monitor.detail", rejected.detail),
            ("monitor.source.topic", m.topic), ("monitor.source.partition", str(m.partition)),
            ("monitor.source.offset", str(m.offset)),
            ("monitor.source.timestamp_ms", "" if m.timestamp is None or m.timestamp < 0 else str(m.timestamp))]
    if max_value_bytes is not None and len(value) > max_value_bytes:
        ours.append(("monitor.value_cut_from_bytes", str(len(value))))
        value = value[:max_value_bytes]
    headers = source_headers(m) + [(k, v.encode("utf-8")) for k, v in ours]
    return m.key, value, headers


def scored_events(decoded: Decoded, scores: Scores, scorer: Scorer) -> list[OutgoingMessage]:
    """A scored event for each decoded record; flagged ones carry ``scorer``'s explanation."""
    sequences = decoded.sequences
    flagged = [i for i, flag in enumerate(scores.flags) if flag]
    reasons = dict(zip(flagged, scorer.explain([sequences[i] for i in flagged]))) if flagged else {}
    errors, percentiles, flags = scores.errors, scores.percentiles, scores.flags
    formats = scores.formats.of_each() if scores.formats is not None else [""] * len(errors)
    shares = scores.format_shares if scores.formats is not None else np.zeros(len(errors))
    return [scored_event(r, float(errors[i]), float(percentiles[i]), bool(flags[i]), reasons.get(i, []),
                         formats[i], float(shares[i]))
            for i, r in enumerate(decoded.records())]


def scored_event(record: Record, error: float, percentile: float, abnormal: bool,
                 reasons: list[tuple[str, float]], format_name: str = "", format_share: float = 0.0) -> OutgoingMessage:
    """A JSON scored event keyed and headed like its source message."""
    m = record.message
    body = {
        "sequence": record.sequence, "error": error, "percentile": round(percentile, 4), "abnormal": abnormal,
        "format": format_name, "format_share": format_share,
        "explanation": [{"part": part, "share": share} for part, share in reasons],
        "weight": record.weight, "event_time_ms": record.event_time_ms,
        "source": {"topic": m.topic, "partition": m.partition, "offset": m.offset},
    }
    return m.key, json.dumps(body, separators=(",", ":")).encode("utf-8"), source_headers(m)


def source_headers(message: RawMessage) -> list[Header]:
    """The message's headers to send on; a header without a value gets an empty one."""
    return [(k, v or b"") for k, v in message.headers] if message.headers else []
