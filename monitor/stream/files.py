"""File inputs: text (one sequence per line), CSV or JSONL with a named column; and the output stream.

Every physical line becomes exactly one ``InputRow``, in order, so an output can keep one row per input
line. A line that cannot give a sequence (invalid UTF-8, empty, broken JSON, missing field) becomes a row
with ``problem`` set instead of being dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import InputError

FORMATS = ("auto", "text", "csv", "jsonl")


@dataclass(frozen=True)
class InputRow:
    """One input line: its 1-based number, the sequence (``None`` when unusable) and why not."""

    line: int
    sequence: str | None
    problem: str = ""


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "text")


def read_rows(path: Path, fmt: str = "auto", column: str | None = None) -> Iterator[InputRow]:
    """Yield one row per line of ``path`` (after the header for CSV)."""
    path = Path(path)
    check_input_file(path)
    fmt = detect_format(path, fmt)
    if fmt not in FORMATS:
        raise InputError(f"input format must be one of {FORMATS}, got {fmt!r}")
    if fmt in ("csv", "jsonl") and not column:
        raise InputError(f"{path} is {fmt}: name the column that holds the sequences with --column")
    if fmt == "text" and column:
        raise InputError(f"--column {column!r} needs a CSV or JSONL input; {path} is read as plain text")
    with path.open("rb") as handle:
        lines = (raw.rstrip(b"\r\n") for raw in handle)
        if fmt == "csv":
            yield from _csv_rows(lines, column or "", path)
        elif fmt == "jsonl":
            yield from (_jsonl_row(i, raw, column or "") for i, raw in enumerate(lines, start=1))
        else:
            yield from (_text_row(i, raw) for i, raw in enumerate(lines, start=1))


def check_input_file(path: Path) -> None:
    """Raise ``InputError`` unless ``path`` is a readable file, saying what it is instead."""
    if path.is_dir():
        raise InputError(f"input {path} is a folder; name a file in it")
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise InputError(f"input file {path} cannot be read (permissions)")


def read_sequences(path: Path, fmt: str = "auto", column: str | None = None) -> tuple[list[str], list[InputRow]]:
    """The usable sequences of ``path`` and the rows that were not usable (for training input)."""
    sequences: list[str] = []
    rejected: list[InputRow] = []
    for row in read_rows(path, fmt, column):
        if row.sequence is None:
            rejected.append(row)
        else:
            sequences.append(row.sequence)
    return sequences, rejected


def skipped_summary(rejected: Sequence[InputRow]) -> str:
    """Why lines gave no sequence, most common first: ``71 invalid UTF-8, 2 empty line`` (positions dropped).

    >>> skipped_summary([InputRow(1, None, "invalid UTF-8 at byte 0"), InputRow(2, None, "empty line")])
    '1 invalid UTF-8, 1 empty line'
    """
    kinds = Counter(row.problem.split(" at ")[0] for row in rejected)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def _decode(raw: bytes) -> tuple[str | None, str]:
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"


def _text_row(line: int, raw: bytes) -> InputRow:
    text, problem = _decode(raw)
    if text is None:
        return InputRow(line, None, problem)
    if not text.strip():
        return InputRow(line, None, "empty line")
    return InputRow(line, text)


def _jsonl_row(line: int, raw: bytes, column: str) -> InputRow:
    text, problem = _decode(raw)
    if text is None:
        return InputRow(line, None, problem)
    if not text.strip():
        return InputRow(line, None, "empty line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return InputRow(line, None, f"not JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return InputRow(line, None, f"not a JSON object but {type(obj).__name__}")
    return _field_row(line, obj.get(column), column, column in obj)


def _field_row(line: int, value: object, column: str, present: bool) -> InputRow:
    if not present:
        return InputRow(line, None, f"no field {column!r}")
    if not isinstance(value, str):
        return InputRow(line, None, f"field {column!r} is {type(value).__name__}, not a string")
    if not value.strip():
        return InputRow(line, None, f"field {column!r} is empty")
    return InputRow(line, value)


def _csv_rows(lines: Iterator[bytes], column: str, path: Path) -> Iterator[InputRow]:
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path} is empty: a CSV input needs a header line")
    header_text, problem = _decode(first)
    if header_text is None:
        raise InputError(f"{path}: the header line has {problem}")
    header = next(csv.reader([header_text]))
    if column not in header:
        raise InputError(f"{path} has no column {column!r}; its columns are {', '.join(map(repr, header))}")
    index = header.index(column)
    for number, raw in enumerate(lines, start=2):
        text, problem = _decode(raw)
        if text is None:
            yield InputRow(number, None, problem)
            continue
        cells = next(csv.reader(io.StringIO(text)), [])
        if not cells:
            yield InputRow(number, None, "empty line")
        elif index >= len(cells):
            yield InputRow(number, None, f"only {len(cells)} cells; column {column!r} is cell {index + 1}")
        else:
            yield _field_row(number, cells[index], column, True)


class open_output:
    """Standard output for ``-``; else a temporary file beside ``target``, renamed over it only when the
    ``with`` block ends without an error, so a failed or interrupted run leaves an existing file as it was.

    ``inputs``: files the command reads; writing over one of them is refused before anything is written.
    """

    def __init__(self, target: str | Path, inputs: Sequence[Path | str] = (), binary: bool = False) -> None:
        self.target = str(target)
        self.binary = binary
        self.handle: Any = None
        self.temporary: Path | None = None
        if self.target != "-":
            destination = Path(self.target)
            for source in inputs:
                if Path(source).exists() and destination.exists() and destination.samefile(source):
                    raise InputError(f"--output {self.target} is also the input; write to another file")
            if destination.is_dir():
                raise InputError(f"--output {self.target} is a folder; name a file")
            if not destination.parent.is_dir():
                raise InputError(f"cannot write {self.target}: folder {destination.parent} does not exist")

    def __enter__(self) -> Any:
        if self.target == "-":
            return sys.stdout.buffer if self.binary else sys.stdout
        destination = Path(self.target)
        try:
            descriptor, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial",
                                                dir=destination.parent)
        except OSError as exc:
            raise InputError(f"cannot write {self.target}: {exc.strerror}") from exc
        self.temporary = Path(name)
        self.handle = open(descriptor, "wb") if self.binary else open(descriptor, "w", encoding="utf-8", newline="")
        return self.handle

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.handle is None or self.temporary is None:
            return
        self.handle.close()
        if exc_type is not None:
            self.temporary.unlink(missing_ok=True)
            return
        self.temporary.chmod(0o666 & ~_umask())
        os.replace(self.temporary, self.target)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
