"""SQLite checkpoint: open windows, closed-window history and the offsets they are exact at, stored together.

One ``save`` is one transaction, so after a crash the file holds a checkpoint whose window sums match its
offsets exactly: the service seeks to those offsets and nothing is counted twice or lost. Only a missing file
starts afresh (created whole under another name, then renamed into place). An existing file that is empty,
unreadable, not SQLite, of another schema version, or whose checkpoint is not of the shape ``save`` writes is
refused with ``StateError`` and left untouched: opening and loading write nothing, the first write does what
an existing file needs (WAL, version 2's tables for a file of version 1, the identity).

Beside the checkpoint: each history window's sample (written once, when the window closes), each decision
on a candidate model, and the formats operators accepted (``python -m monitor accept`` writes them here; the
service applies each once).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import StateError
from monitor.hourly.timeline import iso_utc
from monitor.records import Position

SCHEMA_VERSION = 2
SQLITE_HEADER = b"SQLite format 3\x00"  # how every SQLite database file begins
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), saved_at_ms INTEGER NOT NULL,
                         model_version TEXT NOT NULL, offsets TEXT NOT NULL, windows TEXT NOT NULL,
                         history TEXT NOT NULL);
CREATE TABLE closed_windows (topic TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
                             verdict TEXT NOT NULL, model_version TEXT NOT NULL, report TEXT NOT NULL,
                             PRIMARY KEY (topic, start_ms));
"""
# Version 2: samples, the models in use, decisions on candidates, accepted formats.
_SCHEMA_2 = """
ALTER TABLE checkpoint ADD COLUMN models TEXT NOT NULL DEFAULT '[]';
ALTER TABLE checkpoint ADD COLUMN accepted_applied INTEGER NOT NULL DEFAULT 0;
CREATE TABLE window_samples (topic TEXT NOT NULL, start_ms INTEGER NOT NULL, sample TEXT NOT NULL,
                             PRIMARY KEY (topic, start_ms));
CREATE TABLE model_decisions (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, candidate TEXT NOT NULL,
                              outcome TEXT NOT NULL, from_ms INTEGER, report TEXT NOT NULL);
CREATE TABLE accepted (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
                       topic TEXT, sequences TEXT NOT NULL)
"""

@dataclass(frozen=True)
class Checkpoint:
    """Everything the service needs to resume exactly: per-topic window snapshots and histories, and per
    partition the offset of the next record to read."""

    offsets: dict[Position, int]
    windows: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    model_version: str = ""
    saved_at_ms: int = 0
    models: list[list[Any]] = field(default_factory=list)  # [from_ms, version] per model in use
    accepted_applied: int = 0  # the last accepted format the history took in


@dataclass(frozen=True)
class Accepted:
    """An operator's declaration that a format is legitimate (``python -m monitor accept``): a window
    (``kind`` "window", ``value`` its start in ms, on ``topic`` or every topic), a file of sequences, or a
    pattern; ``sequences`` join the retraining corpus."""

    id: int
    at_ms: int
    kind: str
    value: str
    topic: str | None
    sequences: list[str]

    @property
    def described(self) -> str:
        """``window 2026-12-06T14:00:00+00:00``, as ``accept`` printed it; a file or pattern as given."""
        return f"{self.kind} {iso_utc(int(self.value)) if self.kind == 'window' else self.value}"


def private_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents readable by their owner only (0700): the state, the copies
    of bundles and the decisions hold sequences from the stream. Folders that exist keep their mode."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    for new in reversed(missing):  # outermost first: mkdir(parents=True) would not give the parents this mode
        new.mkdir(mode=0o700, exist_ok=True)


class StateStore:
    """The state file at ``path`` (created with its folder when missing, readable by its owner only).

    ``identity``: what the state belongs to (consumer group, topics, window length and alignment). A new
    file records it; an existing one that records another is refused with ``StateError`` naming the
    difference, so windows of one length are never continued as another's, nor offsets applied to another
    group."""

    def __init__(self, path: Path | str, identity: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._identity = identity
        private_folder(self.path.parent)
        existed = self.path.exists()
        if existed:
            self._check_file()
        else:
            self._create(identity)
        # Nothing more to do before the first write to a file just created; an existing one is prepared then.
        self._prepared = not existed
        try:
            # Opened by the starting thread, then used only by the service loop: one user at a time.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} cannot be opened as a state file ({exc})") from exc
        try:
            with self._reading():
                self._db.execute("PRAGMA synchronous=FULL")
                if existed:
                    self._check_version()
                    self._check_identity(identity)
        except StateError:
            self._db.close()
            raise

    def _check_file(self) -> None:
        """Refuse (``StateError``) an existing file that cannot be read, is empty or is not SQLite at all."""
        try:
            with self.path.open("rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StateError(f"{self.path} cannot be read ({exc}); it was left untouched: make it a file the "
                             "service can read and write, or point state.path elsewhere") from exc
        if not header:
            # A state file is never empty (it is created whole): this one was truncated or half copied, and its
            # offsets, windows and history are lost. Starting afresh over it would hide that.
            raise StateError(f"{self.path} is empty (0 bytes), not a state file: its offsets, open windows and "
                             "history are gone. It was left untouched: restore it from a backup, or move it "
                             "aside to start afresh (from the consumer group's committed offsets, with empty "
                             "windows and no history)")
        if header != SQLITE_HEADER:
            raise StateError(f"{self.path} is not a monitor state file (not an SQLite database); it was left "
                             "untouched: move it aside to start afresh, or point state.path elsewhere")

    def _create(self, identity: Mapping[str, Any] | None) -> None:
        """A new file with the schema and ``identity``, built under another name and renamed into place: a
        crash while creating it leaves no empty or half-made file at ``path`` (one would be refused)."""
        # Window samples and reports hold sequences from the stream: owner only (mkstemp's mode). SQLite gives
        # its journal files the database file's permissions.
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent)
        os.close(handle)
        try:
            with closing(sqlite3.connect(name, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                with _Commit.begin(db):
                    for statement in filter(str.strip, (_SCHEMA + ";" + _SCHEMA_2).split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    if identity is not None:
                        db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(_plain(identity)),))
            os.replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def _prepare(self) -> None:
        """Make an existing file ready for its first write: WAL, version 2's tables, the identity. Done at the
        first write rather than on opening, so that a file refused while it is loaded and restored (a
        checkpoint or snapshot of the wrong shape) stays byte for byte as it was."""
        self._db.execute("PRAGMA journal_mode=WAL")  # rewrites the file header of a file in another mode
        with _Commit.begin(self._db):
            if self._version() == 1:  # read inside the transaction: another process may have migrated it
                for statement in filter(str.strip, _SCHEMA_2.split(";")):
                    self._db.execute(statement)
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            if self._identity is not None:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)",
                                 (json.dumps(_plain(self._identity)),))
        self._prepared = True

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turns SQLite's refusal of a damaged file into ``StateError`` naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} is not a readable state file ({exc}); it was left untouched: move it "
                             "aside to start afresh, or point state.path elsewhere") from exc

    def _version(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def _check_version(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} is not a monitor state file ({exc}); it was left untouched") from exc
        if row is None or row[0] not in ("1", str(SCHEMA_VERSION)):
            found = row[0] if row else "none"
            raise StateError(f"{self.path} has state schema version {found}; this monitor uses "
                             f"{SCHEMA_VERSION}. Replay or move the file aside; it was left untouched")

    def _check_identity(self, identity: Mapping[str, Any] | None) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if identity is None or row is None:
            return  # a file from before identities were recorded: checked by its window snapshot instead
        try:
            recorded = _json(row[0], "the recorded identity", dict)
        except ValueError as exc:
            raise StateError(f"{self.path}: {exc}; it was left untouched: move it aside to start afresh, or "
                             "point state.path elsewhere") from exc
        differences = [f"{key}: the file has {recorded.get(key)!r}, the configuration {value!r}"
                       for key, value in _plain(identity).items() if recorded.get(key) != value]
        if differences:
            raise StateError(f"{self.path} belongs to another stream or window setting (" + "; ".join(differences)
                             + "). It was left untouched: to start afresh, move it aside or point state.path "
                             "at a new file; to continue with it, restore the settings it was written with")

    def _transaction(self) -> _Commit:
        if not self._prepared:
            self._prepare()
        return _Commit.begin(self._db)

    def load(self) -> Checkpoint | None:
        """The last checkpoint, or ``None`` for a new file. A checkpoint not of the shape ``save`` writes is
        refused with ``StateError`` naming the file and the fault (nothing has been written to it yet)."""
        with self._reading():
            # A file of version 1 has neither column until its first write adds them.
            added = "models, accepted_applied" if self._version() > 1 else "'[]', 0"
            row = self._db.execute("SELECT saved_at_ms, model_version, offsets, windows, history, "
                                   f"{added} FROM checkpoint").fetchone()
        if row is None:
            return None
        try:
            return _checkpoint(row)
        except ValueError as exc:
            raise StateError(f"{self.path}: the checkpoint is corrupt ({exc}). The file was left untouched: "
                             "restore it from a backup, or move it aside to start afresh") from exc

    def save(self, checkpoint: Checkpoint, closed: Sequence[dict[str, Any]] = (),
             samples: Sequence[tuple[str, int, dict[str, Any]]] = (),
             kept: Mapping[str, Sequence[int]] | None = None) -> None:
        """Store ``checkpoint``, the windows closed since the last one and their ``samples`` ((topic, start,
        sample) each), atomically; with ``kept`` (each topic's history window starts) drop other samples."""
        offsets = [[t, p, o] for (t, p), o in sorted(checkpoint.offsets.items())]
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoint VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (checkpoint.saved_at_ms or int(time.time() * 1000), checkpoint.model_version, json.dumps(offsets),
                 json.dumps(checkpoint.windows), json.dumps(checkpoint.history), json.dumps(checkpoint.models),
                 checkpoint.accepted_applied))
            self._db.executemany(
                "INSERT OR REPLACE INTO closed_windows VALUES (?, ?, ?, ?, ?, ?)",
                [(r["topic"], r["start_ms"], r["end_ms"], r["verdict"], r.get("model_version", ""),
                  json.dumps(r)) for r in closed])
            self._db.executemany("INSERT OR REPLACE INTO window_samples VALUES (?, ?, ?)",
                                 [(topic, start, json.dumps(sample)) for topic, start, sample in samples])
            for topic, starts in (kept or {}).items():
                self._db.execute("DELETE FROM window_samples WHERE topic = ? AND start_ms NOT IN "
                                 "(SELECT value FROM json_each(?))", (topic, json.dumps(list(starts))))

    def samples(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Each topic's stored window samples by start (``StateError`` for one that is not a JSON object)."""
        with self._reading():
            rows = [] if self._version() == 1 else (  # version 1 kept no samples
                self._db.execute("SELECT topic, start_ms, sample FROM window_samples").fetchall())
        stored: dict[str, dict[int, dict[str, Any]]] = {}
        for topic, start, sample in rows:
            try:
                stored.setdefault(str(topic), {})[int(start)] = _json(sample, "sample", dict)
            except ValueError as exc:
                raise StateError(f"{self.path}: the sample of the {topic} window at {start} is corrupt ({exc}). "
                                 "The file was left untouched: restore it from a backup, or move it aside to "
                                 "start afresh") from exc
        return stored

    def record_decision(self, candidate: str, outcome: str, from_ms: int | None, report: dict[str, Any]) -> None:
        """Keep a decision on a candidate model (promoted or refused, with its comparison)."""
        with self._transaction():
            self._db.execute("INSERT INTO model_decisions (at_ms, candidate, outcome, from_ms, report) "
                             "VALUES (?, ?, ?, ?, ?)", (int(time.time() * 1000), candidate, outcome, from_ms,
                                                        json.dumps(report)))

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision on a candidate, oldest first: at_ms, candidate, outcome, from_ms, report."""
        if self._version() == 1:
            return []  # version 1 kept no decisions
        rows = self._db.execute("SELECT at_ms, candidate, outcome, from_ms, report FROM model_decisions ORDER BY id")
        return [{"at_ms": a, "candidate": c, "outcome": o, "from_ms": f, "report": json.loads(r)}
                for a, c, o, f, r in rows]

    def add_accepted(self, kind: str, value: str, topic: str | None, sequences: Sequence[str]) -> int:
        """Record an accepted format; returns its id (the service applies it at its next checkpoint)."""
        with self._transaction():
            cursor = self._db.execute("INSERT INTO accepted (at_ms, kind, value, topic, sequences) "
                                      "VALUES (?, ?, ?, ?, ?)", (int(time.time() * 1000), kind, value, topic,
                                                                 json.dumps(list(sequences))))
        return int(cursor.lastrowid or 0)

    def accepted(self, after_id: int = 0) -> list[Accepted]:
        """The accepted formats recorded after ``after_id``, oldest first."""
        if self._version() == 1:
            return []  # version 1 knew no accepted formats
        rows = self._db.execute("SELECT id, at_ms, kind, value, topic, sequences FROM accepted WHERE id > ? "
                                "ORDER BY id", (after_id,))
        return [Accepted(int(i), int(a), k, v, t, json.loads(s)) for i, a, k, v, t, s in rows]

    def closed_windows(self, topic: str | None = None) -> list[dict[str, Any]]:
        """Every closed window's report, oldest first (optionally of one topic)."""
        query = "SELECT report FROM closed_windows" + (" WHERE topic = ?" if topic else "") + \
            " ORDER BY start_ms, topic"
        return [json.loads(r[0]) for r in self._db.execute(query, (topic,) if topic else ())]

    def close(self) -> None:
        self._db.close()


def _plain(identity: Mapping[str, Any]) -> dict[str, Any]:
    """As JSON gives it back: tuples become lists."""
    return dict(json.loads(json.dumps(dict(identity))))


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    """The checkpoint of a ``checkpoint`` row, or ``ValueError`` naming the first field that is not of the
    shape ``save`` writes."""
    saved_at_ms, model_version, offsets, windows, history, models, accepted_applied = row
    return Checkpoint(_offsets(_json(offsets, "offsets", list)), _by_topic(_json(windows, "windows", dict), "windows"),
                      _by_topic(_json(history, "history", dict), "history"), str(model_version),
                      _count(saved_at_ms, "saved_at_ms"), _models(_json(models, "models", list)),
                      _count(accepted_applied, "accepted_applied"))


def _json(text: Any, field: str, kind: type) -> Any:
    """``text`` parsed, if it is JSON of ``kind`` (``list`` or ``dict``)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} is not JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise ValueError(f"{field} is {_json_kind(value)}, not {_json_kind(kind())}")
    return value


def _json_kind(value: Any) -> str:
    """What JSON calls ``value``'s type."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _count(value: Any, field: str) -> int:
    """``value`` if it is a whole number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} is {value!r}, not a whole number of at least 0")
    return value


def _offsets(items: list[Any]) -> dict[Position, int]:
    """Each partition's next offset from ``[topic, partition, offset]`` triples."""
    offsets: dict[Position, int] = {}
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise ValueError(f"offsets holds {item!r}, not [topic, partition, offset]")
        topic, partition, offset = item
        where = (topic, _count(partition, f"the partition of {topic}"))
        offsets[where] = _count(offset, f"the offset of {topic}[{partition}]")
    return offsets


def _by_topic(snapshots: dict[str, Any], field: str) -> dict[str, Any]:
    """``snapshots`` if each is an object (what is inside is checked where it is restored)."""
    for topic, snapshot in snapshots.items():
        if not isinstance(snapshot, dict):
            raise ValueError(f"{field} of {topic!r} is {_json_kind(snapshot)}, not an object")
    return snapshots


def _models(items: list[Any]) -> list[list[Any]]:
    """The models in use, ``[from_ms or None, version]`` each."""
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)
                and (item[0] is None or (isinstance(item[0], int) and not isinstance(item[0], bool)))):
            raise ValueError(f"models holds {item!r}, not [from_ms or null, version]")
    return items


class _Commit:
    """``with`` block that commits a ``BEGIN``-ed transaction, or rolls it back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def begin(cls, db: sqlite3.Connection) -> _Commit:
        """A write transaction begun now (it waits for no other writer to start first)."""
        db.execute("BEGIN IMMEDIATE")
        return cls(db)

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
