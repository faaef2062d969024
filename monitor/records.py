"""Values that cross the service's stages: a raw message, a poll's worth of them, a decoded record, a
rejection, a message to send.

Messages and records are NamedTuples: immutable like frozen dataclasses, but built several times faster.
On the hot path neither is built per record: the Kafka source hands on the client's own records and a
batch is decoded into columns (``monitor.stream.decode.Decoded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import NamedTuple

Position = tuple[str, int]  # (topic, partition)
Header = tuple[str, bytes]
OutgoingMessage = tuple[bytes | None, bytes, list[Header]]
"""A message to produce: key, value, headers (dead letters, scored events)."""


class RawMessage(NamedTuple):
    """A message as the source delivered it: the original bytes and where they came from.

    ``timestamp`` is in epoch milliseconds; ``None`` or negative means the record has none. kafka-python's
    ``ConsumerRecord`` has these attributes too (and more), so the Kafka source hands its records on as they
    are: anything with these attributes is a message.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class Polled(NamedTuple):
    """One poll's messages, in order within each partition, and where each partition resumes after them."""

    messages: Sequence[RawMessage]  # a list, or a client's batch (``monitor.stream.confluent.ConfluentBatch``)
    next_offsets: dict[Position, int]


class Record(NamedTuple):
    """A usable sequence with its weight and event time, and the message it came from."""

    sequence: str
    weight: float
    event_time_ms: int
    message: RawMessage


@dataclass(frozen=True)
class Rejected:
    """A message that gave no usable sequence. ``reason`` is one of ``REJECTION_REASONS``; ``detail``
    is a sentence for a person."""

    reason: str
    detail: str
    message: RawMessage


REJECTION_REASONS = (
    "empty_value",
    "oversized_value",
    "invalid_utf8",
    "invalid_json",
    "missing_field",
    "invalid_sequence",
    "invalid_weight",
    "invalid_timestamp",
    "implausible_timestamp",  # before input.min_event_time, or too far ahead of the clock (input.max_future_seconds)
    "undecodable",  # decoding raised an error nobody foresaw: the message is kept, the loop goes on
    "unscorable",  # scoring raised an error on this sequence alone
)
