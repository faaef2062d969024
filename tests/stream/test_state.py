"""SQLite checkpoints: schema, exact round trips, atomic saves, refusing files of another version or kind, and
refusing (untouched) a file that is empty, unreadable or whose checkpoint is not of the shape saves write."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import StateError
from monitor.stream import state as state_module
from monitor.stream.state import SCHEMA_VERSION, Checkpoint, StateStore

WINDOWS = {"serials": {"format": 1, "length_ms": 60_000, "watermark_ms": 125_000, "late": [[0, 2]],
                       "open": [{"start_ms": 120_000, "accumulator": {"count": 3, "weight_sum": 2.5}}]}}
HISTORY = {"serials": {"entries": [{"start_ms": 60_000, "weighted_mean": 0.0123, "verdict": "normal"}],
                       "streak": 0}}


def report(topic: str, start_ms: int, verdict: str = "normal", **extra: Any) -> dict[str, Any]:
    return {"topic": topic, "start_ms": start_ms, "end_ms": start_ms + 60_000, "verdict": verdict,
            "model_version": "v1", "weighted_mean": 0.01, **extra}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with closing(StateStore(tmp_path / "state" / "monitor.sqlite")) as opened:
        yield opened


def write_other_version(path: Path, version: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
        db.commit()


def test_a_new_file_is_created_with_its_folder_the_schema_and_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "monitor.sqlite"
    with closing(StateStore(path)) as store:
        assert store.load() is None
        assert store.closed_windows() == []
    with closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert tables == {"meta", "checkpoint", "closed_windows", "window_samples", "model_decisions", "accepted"}
    assert version == (str(SCHEMA_VERSION),)
    assert [p.name for p in path.parent.iterdir()] == ["monitor.sqlite"]  # built aside, renamed into place


@pytest.mark.parametrize("identity", [None, {"group_id": "monitor"}], ids=["no-identity", "identity"])
def test_an_empty_file_is_refused_not_taken_for_a_new_one_and_left_untouched(tmp_path: Path,
                                                                           identity: dict[str, Any] | None) -> None:
    path = tmp_path / "monitor.sqlite"
    path.touch()  # as after `: > monitor.sqlite`: offsets, windows and history gone
    with pytest.raises(StateError, match="is empty") as refused:
        StateStore(path, identity)
    assert str(path) in str(refused.value) and refused.value.exit_code == 4
    assert "move it aside to start afresh" in str(refused.value)
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.sqlite"]


def test_a_folder_where_the_file_should_be_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    path.mkdir()
    with pytest.raises(StateError, match="cannot be read"):
        StateStore(path)
    assert path.is_dir() and list(path.iterdir()) == []


def test_save_then_load_gives_back_offsets_by_topic_and_partition_windows_and_history(store: StateStore) -> None:
    saved = Checkpoint({("serials", 0): 120, ("serials", 1): 7, ("uids", 0): 0}, WINDOWS, HISTORY,
                       model_version="20240101T000000Z-abcdef12", saved_at_ms=1_700_000_000_000)
    store.save(saved)
    loaded = store.load()
    assert loaded == saved
    assert loaded is not None and all(isinstance(p, tuple) for p in loaded.offsets)


def test_a_later_save_replaces_the_checkpoint(store: StateStore) -> None:
    store.save(Checkpoint({("serials", 0): 10}, saved_at_ms=1))
    store.save(Checkpoint({("serials", 0): 25, ("serials", 1): 3}, WINDOWS, HISTORY, "v2", saved_at_ms=2))
    assert store.load() == Checkpoint({("serials", 0): 25, ("serials", 1): 3}, WINDOWS, HISTORY, "v2", 2)


def test_a_checkpoint_without_a_time_is_stamped_with_the_clock(store: StateStore) -> None:
    store.save(Checkpoint({("serials", 0): 1}))
    loaded = store.load()
    assert loaded is not None and loaded.saved_at_ms > 1_600_000_000_000


@settings(deadline=None, max_examples=40)
@given(offsets=st.dictionaries(st.tuples(st.text(min_size=1, max_size=20), st.integers(0, 1000)),
                               st.integers(0, 2**62), max_size=8),
       floats=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8))
def test_offsets_and_floats_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory,
                                               offsets: dict[tuple[str, int], int], floats: list[float]) -> None:
    path = tmp_path_factory.mktemp("state") / "monitor.sqlite"
    with closing(StateStore(path)) as store:
        saved = Checkpoint(offsets, {"t": {"sums": floats}}, {"t": {"entries": floats}}, "v", 5)
        store.save(saved)
        assert store.load() == saved


def test_closed_windows_are_kept_oldest_first_and_can_be_read_per_topic(store: StateStore) -> None:
    store.save(Checkpoint({("a", 0): 1}), [report("b", 60_000), report("a", 120_000), report("a", 0)])
    assert [(r["topic"], r["start_ms"]) for r in store.closed_windows()] == [("a", 0), ("b", 60_000),
                                                                              ("a", 120_000)]
    assert [r["start_ms"] for r in store.closed_windows("a")] == [0, 120_000]
    assert store.closed_windows("b") == [report("b", 60_000)]
    assert store.closed_windows("none") == []


def test_a_closed_window_saved_again_replaces_the_one_of_the_same_topic_and_start(store: StateStore) -> None:
    store.save(Checkpoint({("a", 0): 1}), [report("a", 0, "learning"), report("b", 0, "normal")])
    store.save(Checkpoint({("a", 0): 2}), [report("a", 0, "critical", weighted_mean=0.5)])
    assert store.closed_windows() == [report("a", 0, "critical", weighted_mean=0.5), report("b", 0, "normal")]


def test_a_report_without_a_model_version_is_stored(store: StateStore) -> None:
    bare = {"topic": "a", "start_ms": 0, "end_ms": 60_000, "verdict": "learning"}
    store.save(Checkpoint({("a", 0): 1}), [bare])
    assert store.closed_windows() == [bare]


@pytest.mark.parametrize("bad", [
    pytest.param(report("a", 60_000, extra=object()), id="not-json-encodable"),
    pytest.param({**report("a", 60_000), "verdict": None}, id="null-verdict"),
    pytest.param({k: v for k, v in report("a", 60_000).items() if k != "topic"}, id="no-topic"),
])
def test_a_failed_save_changes_nothing(store: StateStore, bad: dict[str, Any]) -> None:
    first = Checkpoint({("a", 0): 10}, WINDOWS, HISTORY, "v1", saved_at_ms=1)
    store.save(first, [report("a", 0)])
    with pytest.raises((TypeError, KeyError, sqlite3.IntegrityError)):
        store.save(Checkpoint({("a", 0): 99}, {}, {}, "v2", saved_at_ms=2), [report("b", 0), bad])
    assert store.load() == first
    assert store.closed_windows() == [report("a", 0)]
    store.save(Checkpoint({("a", 0): 11}, saved_at_ms=3))  # the store is still usable: no transaction left open
    assert store.load() == Checkpoint({("a", 0): 11}, saved_at_ms=3)


def test_a_failed_save_leaves_the_file_with_the_previous_checkpoint_for_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    first = Checkpoint({("a", 0): 10}, WINDOWS, HISTORY, "v1", saved_at_ms=1)
    with closing(StateStore(path)) as store:
        store.save(first)
        with pytest.raises(TypeError):
            store.save(Checkpoint({("a", 0): 99}, {"a": {1, 2}}, saved_at_ms=2))
    with closing(StateStore(path)) as reopened:
        assert reopened.load() == first


def test_reopening_a_file_loads_its_last_checkpoint_and_history(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    last = Checkpoint({("a", 0): 30, ("a", 1): 4}, WINDOWS, HISTORY, "v1", saved_at_ms=3)
    with closing(StateStore(path)) as store:
        store.save(Checkpoint({("a", 0): 20}, saved_at_ms=2), [report("a", 0)])
        store.save(last, [report("a", 60_000)])
    with closing(StateStore(path)) as reopened:
        assert reopened.load() == last
        assert [r["start_ms"] for r in reopened.closed_windows()] == [0, 60_000]


def test_a_store_that_was_never_closed_still_leaves_its_last_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    crashed = StateStore(path)  # as after kill -9: no close, the last transaction in the write-ahead log
    try:
        crashed.save(Checkpoint({("a", 0): 42}, WINDOWS, HISTORY, "v1", saved_at_ms=9), [report("a", 0)])
        with closing(StateStore(path)) as reopened:
            assert reopened.load() == Checkpoint({("a", 0): 42}, WINDOWS, HISTORY, "v1", saved_at_ms=9)
            assert reopened.closed_windows() == [report("a", 0)]
    finally:
        crashed.close()


@pytest.mark.parametrize("found", ["3", "0"])
def test_a_file_of_another_schema_version_is_refused_naming_both_versions_and_left_untouched(
        tmp_path: Path, found: str) -> None:
    path = tmp_path / "monitor.sqlite"
    write_other_version(path, found)
    before = path.read_bytes()
    with pytest.raises(StateError, match=rf"schema version {found}; this monitor uses {SCHEMA_VERSION}") as info:
        StateStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.sqlite"]


def test_a_version_1_file_is_read_as_it_is_and_gains_the_new_tables_at_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    with closing(sqlite3.connect(path)) as db:  # the version 1 schema, as that monitor wrote it
        db.executescript(state_module._SCHEMA)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("INSERT INTO checkpoint VALUES (1, 9, 'v1', ?, ?, ?)",
                   (json.dumps([["a", 0, 42]]), json.dumps(WINDOWS), json.dumps(HISTORY)))
        db.commit()
    before = path.read_bytes()
    with closing(StateStore(path)) as store:
        assert store.load() == Checkpoint({("a", 0): 42}, WINDOWS, HISTORY, "v1", saved_at_ms=9)
        assert store.samples() == {} and store.decisions() == [] and store.accepted() == []
    assert path.read_bytes() == before
    with closing(StateStore(path)) as store:
        store.save(Checkpoint({("a", 0): 43}, WINDOWS, HISTORY, "v1", saved_at_ms=10, accepted_applied=1))
        assert store.load() == Checkpoint({("a", 0): 43}, WINDOWS, HISTORY, "v1", saved_at_ms=10, accepted_applied=1)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)


def test_samples_decisions_and_accepted_formats_are_kept(store: StateStore) -> None:
    sample = {"size": 2, "sequences": ["A1"], "weights": [1.0], "priorities": [3.5]}
    store.save(Checkpoint({("a", 0): 1}, models=[[None, "v1"], [3_600_000, "v2"]], accepted_applied=1),
               samples=[("a", 0, sample), ("a", 60_000, sample)])
    store.save(Checkpoint({("a", 0): 2}), kept={"a": [60_000]})
    assert store.samples() == {"a": {60_000: sample}}
    assert store.load().models == [] and store.load().offsets == {("a", 0): 2}  # type: ignore[union-attr]
    store.record_decision("v3", "refused", None, {"reasons": ["x"]})
    assert [(d["candidate"], d["outcome"], d["report"]) for d in store.decisions()] == [("v3", "refused",
                                                                                        {"reasons": ["x"]})]
    first = store.add_accepted("pattern", "^ZZ", None, ["ZZ1"])
    store.add_accepted("window", "0", "a", ["A1"])
    assert [(a.kind, a.sequences) for a in store.accepted(after_id=first)] == [("window", ["A1"])]


def test_a_sqlite_file_that_is_not_a_state_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(StateError, match="not a monitor state file"):
        StateStore(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [
    pytest.param(b"offsets: 12\nwindows: none\n", id="text"),
    pytest.param(bytes(range(256)) * 40, id="binary"),
    pytest.param(b"SQLite format 3\x00" + b"\xff" * 200, id="damaged-header"),
    pytest.param(random.Random(7).randbytes(8192), id="random"),
])
def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "monitor.sqlite"
    path.write_bytes(content)
    with pytest.raises(StateError, match="monitor.sqlite"):
        StateStore(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.sqlite"]


IDENTITY = {"group_id": "monitor", "topics": ["events"], "window_length_ms": 3_600_000,
            "window_alignment": "UTC epoch"}


def saved_then_changed(path: Path, column: str, value: Any) -> bytes:
    """A state file of ``IDENTITY`` whose checkpoint's ``column`` is then set to ``value``; its bytes."""
    with closing(StateStore(path, IDENTITY)) as store:
        store.save(Checkpoint({("a", 0): 1}, WINDOWS, HISTORY, "v1", saved_at_ms=1))
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"UPDATE checkpoint SET {column} = ?", (value,))
        db.commit()
    return path.read_bytes()


@pytest.mark.parametrize(("column", "value", "fault"), [
    pytest.param("offsets", '[["a", "zero", 1]]', "the partition of a is 'zero'", id="text-partition"),
    pytest.param("offsets", '[["a", 0, -5]]', "the offset of a[0] is -5", id="negative-offset"),
    pytest.param("offsets", '[["a", 0]]', "offsets holds ['a', 0]", id="offset-missing"),
    pytest.param("offsets", '{"a": 1}', "offsets is an object, not an array", id="offsets-an-object"),
    pytest.param("offsets", "[[", "offsets is not JSON", id="offsets-not-json"),
    pytest.param("windows", "[]", "windows is an array, not an object", id="windows-an-array"),
    pytest.param("windows", '{"serials": [1, 2]}', "windows of 'serials' is an array", id="a-window-an-array"),
    pytest.param("history", "null", "history is null, not an object", id="history-null"),
    pytest.param("models", '[["v1"]]', "models holds ['v1']", id="model-without-start"),
    pytest.param("saved_at_ms", "yesterday", "saved_at_ms is 'yesterday'", id="time-a-text"),
    pytest.param("accepted_applied", -1, "accepted_applied is -1", id="negative-accepted"),
])
def test_a_checkpoint_of_the_wrong_shape_is_refused_naming_the_file_and_fault_and_left_untouched(
        tmp_path: Path, column: str, value: Any, fault: str) -> None:
    path = tmp_path / "monitor.sqlite"
    before = saved_then_changed(path, column, value)
    with closing(StateStore(path, IDENTITY)) as reopened, pytest.raises(StateError) as refused:
        reopened.load()
    message = str(refused.value)
    assert message.startswith(f"{path}: the checkpoint is corrupt") and fault in message, message
    assert "left untouched" in message and refused.value.exit_code == 4
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.sqlite"]


def test_a_state_file_with_damaged_pages_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    saved_then_changed(path, "model_version", "v1")
    page = 4096
    damaged = path.read_bytes()[:page] + b"\xff" * (path.stat().st_size - page)  # every page after the first
    path.write_bytes(damaged)
    with pytest.raises(StateError, match="monitor.sqlite is not a"):
        with closing(StateStore(path, IDENTITY)) as store:
            store.load()
    assert path.read_bytes() == damaged


def test_opening_and_loading_an_existing_file_write_nothing_its_first_save_does(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    with closing(StateStore(path)) as store:  # recorded no identity: the next opening records it
        store.save(Checkpoint({("a", 0): 1}, WINDOWS, HISTORY, "v1", saved_at_ms=1))
    before = path.read_bytes()
    with closing(StateStore(path, IDENTITY)) as reopened:
        assert reopened.load() == Checkpoint({("a", 0): 1}, WINDOWS, HISTORY, "v1", saved_at_ms=1)
        assert reopened.samples() == {} and reopened.accepted() == []
    assert path.read_bytes() == before
    with closing(StateStore(path, IDENTITY)) as reopened:
        reopened.save(Checkpoint({("a", 0): 2}, saved_at_ms=2))
    with pytest.raises(StateError, match="group_id: the file has 'monitor', the configuration 'other'"):
        StateStore(path, {**IDENTITY, "group_id": "other"})


def test_a_sample_that_is_not_a_json_object_is_refused_naming_the_file_and_window(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite"
    with closing(StateStore(path)) as store:
        store.save(Checkpoint({("a", 0): 1}), samples=[("a", 60_000, {"size": 1})])
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE window_samples SET sample = '[1, 2]'")
        db.commit()
    with closing(StateStore(path)) as reopened, pytest.raises(StateError) as refused:
        reopened.samples()
    assert str(refused.value).startswith(f"{path}: the sample of the a window at 60000 is corrupt")


def test_a_recorded_identity_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, IDENTITY).close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE meta SET value = '[1]' WHERE key = 'identity'")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(StateError, match="the recorded identity is an array, not an object"):
        StateStore(path, IDENTITY)
    assert path.read_bytes() == before


def test_state_files_and_their_new_folders_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "instance" / "state.sqlite"
    StateStore(path, IDENTITY).close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.parent.parent.stat().st_mode & 0o777 == 0o700


def test_a_file_of_another_group_or_window_length_is_refused_naming_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, IDENTITY).close()
    before = path.read_bytes()
    other = {**IDENTITY, "window_length_ms": 600_000, "group_id": "other"}
    with pytest.raises(StateError) as refused:
        StateStore(path, other)
    message = str(refused.value)
    assert "window_length_ms: the file has 3600000, the configuration 600000" in message
    assert "group_id: the file has 'monitor', the configuration 'other'" in message
    assert "move it aside" in message and refused.value.exit_code == 4
    assert path.read_bytes() == before
    StateStore(path, IDENTITY).close()  # the settings it was written with still open it
