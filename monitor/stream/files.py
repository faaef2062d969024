"""File inputs: text (one sequence per line), CSV or JSONL with a named column; and the output stream.

Every physical line becomes exactly one ``InputRow``, in order, so an output can keep one row per input
line. A line that cannot give a sequence (invalid UTF-8, empty, broken JSON, missing field) becomes a row
with ``problem`` set instead of being dropped.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import InputError

FORMATS = ("auto", "text", "csv", "jsonl")
EMPTY_LINE = "empty line"
# Whether an input is text is judged on its start: a NUL byte there, or more than this share of characters that
# no text has (bytes that are not UTF-8, control characters), and it is refused whole rather than line by line.
TEXT_SAMPLE_BYTES = 65_536
MAX_NOT_TEXT_SHARE = 0.3
_NOT_TEXT = re.compile("[\ufffd\x01-\x08\x0e-\x1f\x7f]")
# A CSV line is read whole before it is parsed, as a text or JSONL line is, so the csv module's own field limit
# (128 KiB) bounds nothing: lifted, a long field is what a long line is in the other formats.
CSV_FIELD_LIMIT = 2**31 - 1


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
    """One row per line of ``path`` (after the header for CSV). The file and arguments are checked now, before
    the first row is asked for, so nothing is written for an input that cannot be read."""
    path = Path(path)
    check_input_file(path)
    fmt = detect_format(path, fmt)
    if fmt not in FORMATS:
        raise InputError(f"input format must be one of {FORMATS}, got {fmt!r}")
    if fmt in ("csv", "jsonl") and not column:
        raise InputError(f"{path} is {fmt}: name the column that holds the sequences with --column")
    if fmt == "text" and column:
        raise InputError(f"--column {column!r} needs a CSV or JSONL input; {path} is read as plain text")
    return _rows(path, fmt, column)


def _rows(path: Path, fmt: str, column: str | None) -> Iterator[InputRow]:
    with path.open("rb") as handle:
        lines = (raw.rstrip(b"\r\n") for raw in handle)
        if fmt == "csv":
            yield from _csv_rows(lines, column or "", path)
        elif fmt == "jsonl":
            yield from (_jsonl_row(i, raw, column or "") for i, raw in enumerate(lines, start=1))
        else:
            yield from (_text_row(i, raw) for i, raw in enumerate(lines, start=1))


def check_input_file(path: Path) -> None:
    """Raise ``InputError`` unless ``path`` is a readable file of text, saying what it is instead."""
    if path.is_dir():
        raise InputError(f"input {path} is a folder; name a file in it")
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise InputError(f"input file {path} cannot be read (permissions)")
    if not path.is_file():
        return  # a pipe (``<(command)``) can be read once only, and has no size: it is taken as it comes
    if path.stat().st_size == 0:
        raise InputError(f"input file {path} is empty (0 bytes)")
    with path.open("rb") as handle:
        problem = not_text(handle.read(TEXT_SAMPLE_BYTES))
    if problem:
        raise InputError(f"input file {path} is not text: {problem}; give UTF-8 text, one sequence per line, CSV "
                         "or JSONL (convert another encoding with iconv -t UTF-8)")


def not_text(sample: bytes) -> str:
    """Why ``sample`` is not text, or ``""`` when it is.

    >>> not_text(b"AB121E\\nDN176\\n"), not_text(b"\\x7fELF\\x02\\x01\\x01\\x00")
    ('', 'a NUL byte at byte 7 (a binary file, or UTF-16)')
    """
    nul = sample.find(b"\0")
    if nul >= 0:
        return f"a NUL byte at byte {nul} (a binary file, or UTF-16)"
    text = sample.decode("utf-8", "replace")
    odd = len(_NOT_TEXT.findall(text))
    if odd > MAX_NOT_TEXT_SHARE * len(text):
        return (f"{odd / len(text):.0%} of its first {len(text):,} characters are not UTF-8 or are control "
                "characters")
    return ""


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


def check_skipped_share(path: Path, sequences: int, rejected: Sequence[InputRow], largest_share: float) -> None:
    """Raise ``InputError`` when no line gave a sequence, or more than ``largest_share`` of the lines that are
    not blank gave none: the wrong column or format, or not the data meant. Blank lines are not counted."""
    if not sequences:
        raise InputError(f"{path} has no usable sequence: {len(rejected)} lines skipped "
                         f"({skipped_summary(rejected)})")
    failed = [row for row in rejected if row.problem != EMPTY_LINE]
    if len(failed) > largest_share * (sequences + len(failed)):
        raise InputError(f"{path}: {len(failed)} of {sequences + len(failed)} lines that are not blank give no "
                         f"sequence ({skipped_summary(failed)}), more than the share of {largest_share:g} accepted; "
                         f"check --input-format and --column, or pass --allow-skipped to use the {sequences} that do")


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
        return InputRow(line, None, EMPTY_LINE)
    return InputRow(line, text)


def _jsonl_row(line: int, raw: bytes, column: str) -> InputRow:
    text, problem = _decode(raw)
    if text is None:
        return InputRow(line, None, problem)
    if not text.strip():
        return InputRow(line, None, EMPTY_LINE)
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
    try:
        header = csv_cells(header_text)
    except csv.Error as exc:
        raise InputError(f"{path}: the header line is {_csv_problem(exc)}") from exc
    if column not in header:
        raise InputError(f"{path} has no column {column!r}; its columns are {', '.join(map(repr, header))}")
    index = header.index(column)
    for number, raw in enumerate(lines, start=2):
        text, problem = _decode(raw)
        if text is None:
            yield InputRow(number, None, problem)
            continue
        try:
            cells = csv_cells(text)
        except csv.Error as exc:
            yield InputRow(number, None, _csv_problem(exc))
            continue
        if not cells:
            yield InputRow(number, None, EMPTY_LINE)
        elif index >= len(cells):
            yield InputRow(number, None, f"only {len(cells)} cells; column {column!r} is cell {index + 1}")
        else:
            yield _field_row(number, cells[index], column, True)


def csv_cells(line: str) -> list[str]:
    """The cells of one CSV line, parsed alone (``[]`` for a blank one): a quote left open ends with its line.
    Raises ``csv.Error`` when the csv module cannot read it (a carriage return inside an unquoted cell)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)  # a process-wide setting: made sure of where it matters
    return next(csv.reader((line,)), [])


def _csv_problem(exc: csv.Error) -> str:
    return f"not CSV: {str(exc).split(' - ')[0]}"  # without the module's advice about universal-newline mode


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
