"""Where batches come from and where produced messages go: the ``Source`` and ``Sink`` protocols the service
drives, and the file and in-memory sources and the in-memory sink that replay, the simulation and tests use.

Every source hands out ``Polled`` batches, so a file, a list in memory and a Kafka topic go through the
same record pipeline (``monitor.stream.pipeline``). The Kafka ones are in ``monitor.stream.kafka``.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

from monitor.errors import InputError
from monitor.hourly.window import Progress
from monitor.records import OutgoingMessage, Polled, Position, RawMessage
from monitor.stream.files import check_input_file, csv_cells


class Source(Protocol):
    """Batches of messages in order within each partition; commits only the positions it is given."""

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        """Up to ``max_records`` messages, waiting at most ``timeout_ms`` for the first; never more."""

    def processed(self, next_offsets: Mapping[Position, int]) -> None:
        """The caller's state has read up to ``next_offsets``: resume there if a partition is handed back."""

    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = ...) -> None:
        """Make ``next_offsets`` the group's resume positions (after they were checkpointed)."""

    def lag(self) -> dict[Position, int]:
        """Records between each assigned partition's position and its end, where known."""

    def assignment(self) -> set[Position]:
        """The partitions this source reads now."""

    def progress(self, idle_after_s: float) -> Progress:
        """Which partitions are behind their end, and which are caught up and quiet for ``idle_after_s``."""

    def close(self) -> None: ...


class GroupSource(Source, Protocol):
    """A source that is one member of a consumer group whose state lives in Kafka (``monitor.stream.group``)."""

    consumer: Any  # the client the transactional producer commits the consumed offsets through

    def seek(self, partition: Position, offset: int) -> None: ...

    def rewind(self, partitions: Iterable[Position], timeout_s: float) -> dict[Position, int | None]:
        """Seek each partition to the group's committed offset, and return those offsets; raises
        ``CommittedOffsetsPending`` when they are not stable (or not answered) within ``timeout_s``."""

    def partitions_of(self, topic: str) -> set[int]: ...

    def pause(self, partitions: set[Position]) -> None:
        """Fetch nothing from ``partitions``, and again from every other assigned one."""

    def still_at(self, offsets: Mapping[Position, int]) -> set[Position] | None:
        """Which partitions still end at the given offsets; ``None`` when the cluster does not answer."""


class Sink(Protocol):
    """Sends produced messages; ``send_all`` returns once every one is acknowledged, or raises."""

    def send_all(self, topic: str, messages: Sequence[OutgoingMessage], timeout_s: float = ...) -> int: ...

    def close(self, timeout_s: float = ...) -> None: ...


class TransactionalSink(Sink, Protocol):
    """The group's producer: outputs and state sent since the last commit become visible with the consumed
    offsets (exactly once), or are sent at once and the offsets committed after them (at least once)."""

    in_transaction: bool

    def send(self, topic: str, key: str, value: bytes | None, partition: int | None = None) -> None: ...

    def commit(self, offsets: Mapping[Position, int], consumer: Any, through_consumer: bool = True) -> None: ...

    def abort(self) -> None: ...

    def discard(self) -> None:
        """Close without waiting: given up on (fenced, timed out)."""


def progress_of(offsets: Mapping[Position, tuple[int | None, int | None]], heard_at: dict[Position, float],
                idle_after_s: float, answering: Callable[[Position], bool],
                known: frozenset[Position] | None) -> Progress:
    """A Kafka source's ``progress`` from each assigned partition's (position, end offset), when each last
    gave a record (``heard_at``, wall-clock monotonic; a partition not heard yet counts from now), and
    whether its leader answers: behind its end (or not known to be caught up), idle (caught up, quiet for
    ``idle_after_s``, its leader answering), or unreachable (quiet, but its leader is away: an outage, and the
    end the client knows may be stale)."""
    now = time.monotonic()
    behind, idle, unreachable = set(), set(), set()
    idle_at: dict[Position, int] = {}
    for p, (position, end) in offsets.items():
        if end is None or position is None or position < end:
            behind.add(p)
        elif now - heard_at.setdefault(p, now) >= idle_after_s:
            if answering(p):
                idle.add(p)
                idle_at[p] = position
            else:
                unreachable.add(p)
    return Progress(frozenset(offsets), frozenset(behind), frozenset(idle), frozenset(unreachable), known, idle_at)


class MemorySource:
    """Hands out prepared batches in order, then empty ones; commits are remembered in ``committed``.

    >>> source = MemorySource.of_messages([RawMessage("t", 0, o, 0, None, b"AB1") for o in range(5)], 2)
    >>> [len(source.next_batch(10, 0).messages) for _ in range(4)]
    [2, 2, 1, 0]
    """

    def __init__(self, batches: Iterable[Sequence[RawMessage]]) -> None:
        self._batches = iter(batches)
        self.committed: dict[Position, int] = {}
        self.positions: dict[Position, int] = {}
        self.exhausted = False

    @classmethod
    def of_messages(cls, messages: Iterable[RawMessage], batch_size: int) -> MemorySource:
        """Messages cut into batches of ``batch_size``."""
        iterator = iter(messages)
        return cls(iter(lambda: list(itertools.islice(iterator, batch_size)), []))

    def next_batch(self, max_records: int, timeout_ms: int) -> Polled:
        messages = list(next(self._batches, []))
        self.exhausted = not messages
        return Polled(messages, next_offsets(messages))

    def processed(self, next_offsets: Mapping[Position, int]) -> None:
        self.positions.update(next_offsets)

    def commit(self, next_offsets: Mapping[Position, int], timeout_ms: int = 0) -> None:
        self.committed.update(next_offsets)

    def lag(self) -> dict[Position, int]:
        return {}

    def assignment(self) -> set[Position]:
        return set(self.positions)

    def progress(self, idle_after_s: float) -> Progress:
        """Every partition seen is behind until the batches run out, then caught up and idle."""
        seen = frozenset(self.positions)
        return Progress(seen, frozenset() if self.exhausted else seen, seen if self.exhausted else frozenset())

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps what it is sent, per topic, in order."""

    def __init__(self) -> None:
        self.sent: dict[str, list[OutgoingMessage]] = defaultdict(list)

    def send_all(self, topic: str, messages: Sequence[OutgoingMessage], timeout_s: float = 0.0) -> int:
        self.sent[topic].extend(messages)
        return len(messages)

    def close(self, timeout_s: float = 0.0) -> None:
        pass


def next_offsets(messages: Sequence[RawMessage]) -> dict[Position, int]:
    """Where each partition resumes after ``messages`` (the offset after its last one)."""
    positions: dict[Position, int] = {}
    for m in messages:
        positions[(m.topic, m.partition)] = m.offset + 1
    return positions


def file_source(path: Path, topic: str, sequence_column: str, batch_rows: int) -> MemorySource:
    """The data lines of a CSV or JSONL file as JSON-object messages of partition 0 of ``topic``, offsets
    counting data lines from 0, in batches of ``batch_rows``. A CSV row becomes a JSON object whose
    numeric-looking cells (other than the sequence column) are numbers."""
    check_input_file(Path(path))
    return MemorySource.of_messages(_file_messages(Path(path), topic, sequence_column), batch_rows)


def file_columns(path: Path) -> list[str]:
    """The columns of a CSV file's header, or the fields of a JSONL file's first object (``[]`` if none)."""
    check_input_file(Path(path))
    with closing(_file_messages(Path(path), "", "")) as messages:  # closing the file after one line
        first = next(messages, None)
    try:
        row = json.loads(first.value) if first is not None and first.value else {}
    except ValueError:
        return []
    return [str(key) for key in row] if isinstance(row, dict) else []


def _file_messages(path: Path, topic: str, sequence_column: str) -> Iterator[RawMessage]:
    with path.open("rb") as handle:
        if path.suffix.lower() == ".csv":
            yield from _csv_messages(handle, path, topic, sequence_column)
        else:
            for offset, line in enumerate(handle):
                yield RawMessage(topic, 0, offset, None, None, line.rstrip(b"\r\n"))


def _csv_messages(handle: Any, path: Path, topic: str, sequence_column: str) -> Iterator[RawMessage]:
    """One message per CSV line that is not blank (as ``csv.DictReader`` gave them), each line parsed alone."""
    lines = (line.decode("utf-8", "replace").rstrip("\r\n") for line in handle)
    try:
        header = csv_cells(next(lines, ""))
    except csv.Error as exc:
        raise InputError(f"{path}: the header line is not CSV ({exc})") from exc
    if not header:
        raise InputError(f"{path} is empty: a CSV input needs a header line")
    offset = 0
    for line in lines:
        value = _csv_value(header, line, sequence_column)
        if value is not None:
            yield RawMessage(topic, 0, offset, None, None, value)
            offset += 1


def _csv_value(header: list[str], line: str, sequence_column: str) -> bytes | None:
    """A CSV line as a JSON object (``None`` when blank). A line the csv module cannot read is passed on as it
    is, for the decoder to name what is wrong with it."""
    try:
        cells = csv_cells(line)
    except csv.Error:
        return line.encode("utf-8")
    if not cells:
        return None
    return json.dumps(_typed(_named_cells(header, cells), sequence_column)).encode("utf-8")


def _named_cells(header: list[str], cells: list[str]) -> dict[Any, Any]:
    """A row as ``csv.DictReader`` makes it: missing cells are ``None``, extra ones a list under ``None``."""
    row: dict[Any, Any] = dict(zip(header, cells))
    if len(cells) > len(header):
        row[None] = cells[len(header):]
    for name in header[len(cells):]:
        row[name] = None
    return row


def _typed(row: dict[str, Any], keep_text: str) -> dict[str, Any]:
    """CSV cells are text; other columns that read as numbers become numbers, as weights and epoch times
    are in JSON (the sequence column stays text: ``00123`` is a sequence, not a number). An empty cell of
    another column is CSV's null, as an absent JSON field: an empty weight weighs 1."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or key == keep_text or value in (None, ""):
            out[str(key)] = None if value == "" and key != keep_text else value
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out
