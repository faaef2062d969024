"""SQLite checkpoint: open windows, closed-window history and the offsets they are exact at, stored together.

One ``save`` is one transaction, so after a crash the file holds a checkpoint whose window sums match its
offsets exactly: the service seeks to those offsets and nothing is counted twice or lost. A file of another
schema version, or one that is not a readable state file, is refused with ``StateError`` and left untouched
(a file of version 1 gains version 2's tables).

Beside the checkpoint: each history window's sample (written once, when the window closes), each decision
on a candidate model, and the formats operators accepted (``python -m monitor accept`` writes them here; the
service applies each once).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import StateError
from monitor.records import Position

SCHEMA_VERSION = 2
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


class StateStore:
    """The state file at ``path`` (created with its folder when missing, readable by its owner only).

    ``identity``: what the state belongs to (consumer group, topics, window length and alignment). A new
    file records it; an existing one that records another is refused with ``StateError`` naming the
    difference, so windows of one length are never continued as another's, nor offsets applied to another
    group."""

    def __init__(self, path: Path | str, identity: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        if not existed:
            # Window samples and reports hold sequences from the stream: owner only. SQLite gives its
            # journal files the database file's permissions.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            # Opened by the starting thread, then used only by the service loop: one user at a time.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path} cannot be opened as a state file ({exc})") from exc
        try:
            # The version is checked before anything writes: switching to WAL rewrites the file header, and
            # a refused file must stay byte for byte as it was.
            if existed:
                self._check_version()
                self._check_identity(identity)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if not existed:
                self._create()
            elif self._version() == 1:
                self._migrate()
            if identity is not None:
                self._record_identity(identity)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateError(f"{self.path} is not a readable state file ({exc}); move it aside to start "
                             "afresh, or point state.path elsewhere") from exc
        except StateError:
            self._db.close()
            raise

    def _create(self) -> None:
        with self._transaction():
            for statement in filter(str.strip, (_SCHEMA + ";" + _SCHEMA_2).split(";")):
                self._db.execute(statement)
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _migrate(self) -> None:
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA_2.split(";")):
                self._db.execute(statement)
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

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
        recorded = json.loads(row[0])
        differences = [f"{key}: the file has {recorded.get(key)!r}, the configuration {value!r}"
                       for key, value in _plain(identity).items() if recorded.get(key) != value]
        if differences:
            raise StateError(f"{self.path} belongs to another stream or window setting (" + "; ".join(differences)
                             + "). It was left untouched: to start afresh, move it aside or point state.path "
                             "at a new file; to continue with it, restore the settings it was written with")

    def _record_identity(self, identity: Mapping[str, Any]) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)", (json.dumps(_plain(identity)),))

    def _transaction(self) -> _Commit:
        self._db.execute("BEGIN IMMEDIATE")
        return _Commit(self._db)

    def load(self) -> Checkpoint | None:
        """The last checkpoint, or ``None`` for a new file."""
        row = self._db.execute("SELECT saved_at_ms, model_version, offsets, windows, history, models, "
                               "accepted_applied FROM checkpoint").fetchone()
        if row is None:
            return None
        try:
            offsets = {(topic, int(p)): int(o) for topic, p, o in json.loads(row[2])}
            return Checkpoint(offsets, json.loads(row[3]), json.loads(row[4]), row[1], int(row[0]),
                              json.loads(row[5]), int(row[6]))
        except (ValueError, TypeError) as exc:
            raise StateError(f"{self.path}: the checkpoint is corrupt ({exc}); it was left untouched") from exc

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
        """Each topic's stored window samples by start."""
        stored: dict[str, dict[int, dict[str, Any]]] = {}
        for topic, start, sample in self._db.execute("SELECT topic, start_ms, sample FROM window_samples"):
            stored.setdefault(topic, {})[int(start)] = json.loads(sample)
        return stored

    def record_decision(self, candidate: str, outcome: str, from_ms: int | None, report: dict[str, Any]) -> None:
        """Keep a decision on a candidate model (promoted or refused, with its comparison)."""
        with self._transaction():
            self._db.execute("INSERT INTO model_decisions (at_ms, candidate, outcome, from_ms, report) "
                             "VALUES (?, ?, ?, ?, ?)", (int(time.time() * 1000), candidate, outcome, from_ms,
                                                        json.dumps(report)))

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision on a candidate, oldest first: at_ms, candidate, outcome, from_ms, report."""
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


class _Commit:
    """``with`` block that commits a ``BEGIN``-ed transaction, or rolls it back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
