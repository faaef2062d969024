"""Message bytes become a ``Record`` or a ``Rejected`` with a reason; decoding never raises on data.

Plain values are UTF-8 strings; JSON values are objects with configurable dotted field paths for the
sequence, an optional weight and an optional event time (else the Kafka record timestamp is used).
``decode`` takes one message; ``decode_batch`` a poll's worth, as columns the scorer and windows use.
Every event time, the record timestamp too, must be plausible (``PlausibleTimes``) and every weight at most
``max_weight``: one absurd value must not close every window, open one in 1970 or make a sum infinite.
"""

from __future__ import annotations

import json
import math
import operator
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

import numpy as np

from monitor.hourly.timeline import iso_utc
from monitor.records import RawMessage, Record, Rejected


class DecodeOptions(Protocol):
    """The input settings decoding reads (``monitor.settings``'s input section has them)."""

    value_format: str
    sequence_field: str
    weight_field: str | None
    event_time_field: str | None
    event_time_format: str
    max_value_bytes: int
    max_sequence_chars: int
    max_future_seconds: float
    max_weight: float

    @property
    def min_event_time_ms(self) -> int: ...


_MISSING = object()
# The first moment a date cannot show (year 10000): a later time is out of range in any format.
_YEAR_10000_MS = 253_402_300_800_000
# Arrays and objects nested deeper than this are refused before parsing: the parser recurses per level.
MAX_JSON_DEPTH = 64


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether JSON ``text`` opens more than ``limit`` arrays or objects inside each other (brackets in
    strings do not count). Only text with more than ``limit`` brackets is scanned.

    >>> nested_deeper_than('{"a": [[1]], "b": "[[[["}', 3), nested_deeper_than("[" * 5 + "]" * 5, 4)
    (False, True)
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class PlausibleTimes(NamedTuple):
    """The event times decoding accepts, both ends included: from ``earliest_ms`` (``input.min_event_time``)
    to ``latest_ms``, ``input.max_future_seconds`` past ``now_ms``, the wall clock at decoding."""

    earliest_ms: int
    latest_ms: int
    now_ms: int

    @classmethod
    def of(cls, options: DecodeOptions, now_ms: int | None = None) -> PlausibleTimes:
        """The bounds ``options`` set at ``now_ms`` (``None``: the wall clock now)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        # A negative time is no time at all (invalid_timestamp), whatever the floor.
        return cls(max(options.min_event_time_ms, 0), now_ms + round(options.max_future_seconds * 1000), now_ms)

    def problem(self, event_time_ms: int) -> str | None:
        """Why ``event_time_ms`` is implausible; ``None`` when it is not."""
        if event_time_ms < self.earliest_ms:
            return f"event time {_moment(event_time_ms)} is before input.min_event_time ({_moment(self.earliest_ms)})"
        if event_time_ms > self.latest_ms:
            return (f"event time {_moment(event_time_ms)} is more than input.max_future_seconds "
                    f"({(self.latest_ms - self.now_ms) / 1000:g}) ahead of the clock ({_moment(self.now_ms)})")
        return None


def _moment(ms: int) -> str:
    """``ms`` as ISO 8601 in UTC, or as epoch milliseconds where no date can show it."""
    return iso_utc(ms) if 0 <= ms < _YEAR_10000_MS else f"{ms} ms since 1970"


@dataclass
class Decoded:
    """A batch after decoding: the usable sequences with their weights, event times and source messages
    (aligned, in batch order), and the rejections."""

    sequences: list[str]
    weights: np.ndarray  # float64
    event_times_ms: np.ndarray  # int64
    messages: Sequence[RawMessage]  # a list, or a client's batch (``monitor.stream.confluent.ConfluentBatch``)
    rejected: list[Rejected]
    # CRC-32 of each sequence's UTF-8 (``monitor.hourly.sample.text_hashes``), when decoding had the bytes at
    # hand anyway: the windows' samples need it, and hashing the bytes saves encoding the strings again.
    text_hashes: np.ndarray | None = None

    @classmethod
    def of(cls, records: Sequence[Record], rejected: list[Rejected]) -> Decoded:
        return cls([r.sequence for r in records],
                   np.fromiter((r.weight for r in records), dtype=np.float64, count=len(records)),
                   np.fromiter((r.event_time_ms for r in records), dtype=np.int64, count=len(records)),
                   [r.message for r in records], rejected)

    def __len__(self) -> int:
        return len(self.sequences)

    def without(self, rows: dict[int, Rejected]) -> Decoded:
        """This batch with the records at ``rows`` moved to the rejections, as the rejections given."""
        keep = [i for i in range(len(self)) if i not in rows]
        return Decoded([self.sequences[i] for i in keep], self.weights[keep], self.event_times_ms[keep],
                       [self.messages[i] for i in keep], self.rejected + list(rows.values()),
                       None if self.text_hashes is None else self.text_hashes[keep])

    def records(self) -> list[Record]:
        return [Record(s, float(w), int(t), m)
                for s, w, t, m in zip(self.sequences, self.weights, self.event_times_ms, self.messages)]


def decode_batch(messages: Sequence[RawMessage], options: DecodeOptions, now_ms: int | None = None) -> Decoded:
    """Decode a batch: what ``decode`` gives for each message at ``now_ms``, as columns."""
    plausible = PlausibleTimes.of(options, now_ms)
    if options.value_format == "text":
        try:
            plain = _plain_batch(messages, options, plausible)
        except Exception:  # noqa: BLE001 - some message is odd: the per-message path says which and why
            plain = None
        if plain is not None:
            return plain
    records: list[Record] = []
    rejected: list[Rejected] = []
    for message in messages:
        decoded = decode_safely(message, options, plausible)
        (records if type(decoded) is Record else rejected).append(decoded)  # type: ignore[arg-type]
    return Decoded.of(records, rejected)


def decode_safely(message: RawMessage, options: DecodeOptions, plausible: PlausibleTimes) -> Record | Rejected:
    """``decode``, with any exception it was not written to expect turned into a rejection: one message
    must never stop the loop (and, re-read after every restart, stop it for ever)."""
    try:
        return _decode(message, options, plausible)
    except Exception as exc:  # noqa: BLE001 - whatever it is, it belongs to this message
        return Rejected("undecodable", f"decoding raised {type(exc).__name__}: {str(exc)[:200]}", message)


def _plain_batch(messages: Sequence[RawMessage], options: DecodeOptions,
                 plausible: PlausibleTimes) -> Decoded | None:
    """A plain-text batch in a few list-wide passes, or ``None`` as soon as one message needs a closer
    look (the per-message path then says what is wrong with it)."""
    columns = getattr(messages, "columns", None)  # a client's batch that reads its values in one pass
    values, stamps = columns() if columns is not None else (list(map(_VALUE, messages)), map(_TIMESTAMP, messages))
    if not values or not all(values):
        return None
    longest = max(map(len, values))  # type: ignore[arg-type]
    if longest > options.max_value_bytes:
        return None
    try:
        texts = list(map(bytes.decode, values))  # UTF-8, strict
    except (UnicodeDecodeError, TypeError):
        return None
    # A text has at most as many characters as its UTF-8 has bytes: the longest value bounds them all.
    if longest > options.max_sequence_chars and max(map(len, texts)) > options.max_sequence_chars:
        return None
    # Values are non-empty here, so ``isspace`` is exactly "blank after strip".
    if any(map(str.isspace, texts)):
        return None
    try:
        times = np.fromiter(stamps, dtype=np.int64, count=len(values))
    except (TypeError, OverflowError):  # a record without a timestamp
        return None
    if times.min() < plausible.earliest_ms or times.max() > plausible.latest_ms:
        return None
    # The values are the sequences' UTF-8 exactly: their CRC is the samples' text hash, without encoding again.
    hashes = np.fromiter(map(zlib.crc32, values), dtype=np.uint64, count=len(values))  # type: ignore[arg-type]
    return Decoded(texts, np.ones(len(texts)), times, messages, [], hashes)  # type: ignore[arg-type]


_VALUE = operator.attrgetter("value")
_TIMESTAMP = operator.attrgetter("timestamp")


def decode(message: RawMessage, options: DecodeOptions, now_ms: int | None = None) -> Record | Rejected:
    """Decode one message; the result says what was wrong instead of raising. ``now_ms``: the wall clock
    that event times may not run too far ahead of (``None``: the clock now)."""
    return _decode(message, options, PlausibleTimes.of(options, now_ms))


def _decode(message: RawMessage, options: DecodeOptions, plausible: PlausibleTimes) -> Record | Rejected:
    value = message.value
    if not value:
        return Rejected("empty_value", "the message has no value", message)
    if len(value) > options.max_value_bytes:
        return Rejected("oversized_value", f"{len(value)} bytes; the limit is {options.max_value_bytes}", message)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected("invalid_utf8", f"invalid UTF-8 at byte {exc.start}", message)
    if options.value_format == "json":
        return _decode_json(text, message, options, plausible)
    return _record(text, 1.0, message.timestamp, message, options, plausible)


def _decode_json(text: str, message: RawMessage, options: DecodeOptions,
                 plausible: PlausibleTimes) -> Record | Rejected:
    if nested_deeper_than(text, MAX_JSON_DEPTH):
        return Rejected("invalid_json", f"nested deeper than {MAX_JSON_DEPTH} levels", message)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejected("invalid_json", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", message)
    if not isinstance(obj, dict):
        return Rejected("invalid_json", f"a JSON {type(obj).__name__}, not an object", message)
    sequence = field(obj, options.sequence_field)
    if sequence is _MISSING:
        return Rejected("missing_field", f"no field {options.sequence_field!r}", message)
    if not isinstance(sequence, str):
        return Rejected("invalid_sequence", f"field {options.sequence_field!r} is {_kind(sequence)}, not a string",
                        message)
    weight = _weight(obj, options.weight_field, options.max_weight)
    if isinstance(weight, str):
        return Rejected("invalid_weight", weight, message)
    event_time = _event_time(obj, options, message.timestamp)
    if isinstance(event_time, str):
        return Rejected("invalid_timestamp", event_time, message)
    return _record(sequence, weight, event_time, message, options, plausible)


def _record(sequence: str, weight: float, event_time_ms: int | None, message: RawMessage,
            options: DecodeOptions, plausible: PlausibleTimes) -> Record | Rejected:
    if not sequence.strip():
        return Rejected("empty_value", "the sequence is empty or blank", message)
    if len(sequence) > options.max_sequence_chars:
        return Rejected("oversized_value", f"the sequence has {len(sequence)} characters; the limit is "
                        f"{options.max_sequence_chars}", message)
    if event_time_ms is None or event_time_ms < 0:
        return Rejected("invalid_timestamp", f"the record has no usable timestamp ({event_time_ms})", message)
    implausible = plausible.problem(event_time_ms)
    if implausible is not None:
        return Rejected("implausible_timestamp", implausible, message)
    return Record(sequence, weight, event_time_ms, message)


def field(obj: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``payload.serial``) or the module's missing marker."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _weight(obj: dict[str, Any], path: str | None, limit: float) -> float | str:
    """The weight, 1.0 when no field is configured or it is absent; a string says what is wrong."""
    if path is None:
        return 1.0
    value = field(obj, path)
    if value is _MISSING or value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"weight {path!r} is {_kind(value)}, not a number"
    # False for NaN too; and exact for an integer too large for a float.
    if not 0 <= value <= limit:
        return f"weight {path!r} is {_number(value)}; it must be from 0 to input.max_weight ({limit:g})"
    return float(value)


def _event_time(obj: dict[str, Any], options: DecodeOptions, fallback_ms: int | None) -> int | None | str:
    """Event time in epoch milliseconds; a string says what is wrong."""
    path = options.event_time_field
    if path is None:
        return fallback_ms
    value = field(obj, path)
    if value is _MISSING or value is None:
        return fallback_ms
    fmt = options.event_time_format
    if fmt == "iso8601":
        return _parse_iso(value, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"time {path!r} is {_kind(value)} {value!r}, not {fmt} epoch number"
    millis = value * 1000 if fmt == "epoch_s" else value
    if not 0 <= millis < _YEAR_10000_MS:
        return f"time {path!r} = {value!r} is out of range for {fmt}"
    return int(millis)


def _parse_iso(value: Any, path: str) -> int | str:
    if not isinstance(value, str):
        return f"time {path!r} is {_kind(value)}, not an ISO 8601 string"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"time {path!r} = {value!r} is not ISO 8601"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # a time without an offset is taken as UTC
    millis = int(moment.timestamp() * 1000)
    return millis if millis >= 0 else f"time {path!r} = {value!r} is before 1970"


def _number(value: float) -> str:
    """A number as a detail shows it (``1e+308``, ``nan``), an integer of many digits cut short."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
