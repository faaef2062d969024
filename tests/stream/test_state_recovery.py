"""An unreadable changelog value: named, an older readable value used, or the key's partition stopped."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from monitor.errors import IncompatibleState, StateError
from monitor.stream.state_recovery import restore

KEY = "partition/t/0"


class Changelog:
    """A changelog's versions of one key, as ``ChangelogReader`` gives them."""

    topic = "g.changelog"
    removed: set[str] = set()

    def __init__(self, values: list[bytes | None]) -> None:
        self.values = values  # oldest first, at offsets 0, 1, ...
        latest = max(i for i, v in enumerate(values) if v is not None)
        self.locations = {KEY: (0, latest)}

    def versions(self, key: str) -> list[tuple[tuple[int, int], bytes | None]]:
        return [((0, i), v) for i, v in enumerate(self.values)][::-1] if key == KEY else []

    def state(self) -> dict[str, bytes]:
        value = self.values[-1]
        return {} if value is None else {KEY: value}


def offset_of(stored: dict[str, Any] | None) -> int | None:
    """What a partition's take-over does: the shape checked, the offset returned."""
    return None if stored is None else int(stored["offset"])


def good(offset: int) -> bytes:
    return json.dumps({"windows": {}, "offset": offset}).encode()


def test_a_readable_latest_value_is_used_as_it_is() -> None:
    changelog = Changelog([good(5), good(9)])
    restored = restore(changelog, changelog.state(), KEY, "p0", offset_of)
    assert (restored.result, restored.fallback, restored.stopped, restored.unreadable) == (9, None, False, ())


def test_a_truncated_latest_value_is_named_and_the_newest_readable_older_one_used(
        caplog: pytest.LogCaptureFixture) -> None:
    changelog = Changelog([good(5), good(9), good(12)[:20], b'{"windows": {}}'])
    with caplog.at_level(logging.WARNING):
        restored = restore(changelog, changelog.state(), KEY, "p0", offset_of)
    assert (restored.result, restored.fallback, restored.stopped) == (9, 1, False)
    assert list(restored.unreadable) == [3, 2]
    assert "g.changelog[0] at offset 3 (key 'partition/t/0')" in caplog.text
    assert "older value at offset 2" in caplog.text and "restored from the older value at offset 1" in caplog.text


@pytest.mark.parametrize("values", [[b"\x00garbage"], [good(5), None, b"[1, 2"]], ids=["alone", "after-removal"])
def test_no_readable_value_since_the_key_was_last_removed_stops_it(values: list[bytes | None]) -> None:
    changelog = Changelog(values)
    restored = restore(changelog, changelog.state(), KEY, "p0", offset_of)
    assert restored.stopped and restored.result is None and len(restored.unreadable) == 1


def test_a_key_without_a_value_is_a_fresh_start() -> None:
    changelog = Changelog([good(5), None])
    assert restore(changelog, {}, KEY, "p0", offset_of).result is None


def test_a_bug_in_the_take_over_is_not_taken_for_damage() -> None:
    changelog = Changelog([good(5)])

    def broken(stored: Any) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        restore(changelog, changelog.state(), KEY, "p0", broken)


def test_values_the_take_over_refuses_for_their_shape_are_unreadable() -> None:
    changelog = Changelog([good(5), good(6)])

    def refuse(stored: Any) -> None:
        raise StateError("of another window length")

    restored = restore(changelog, changelog.state(), KEY, "p0", refuse)
    assert restored.stopped and list(restored.unreadable) == [1, 0]


def test_state_of_another_window_length_is_not_damage_and_stops_the_member() -> None:
    changelog = Changelog([good(5), good(6)])

    def other_length(stored: Any) -> None:
        raise IncompatibleState("the saved windows are 60 s long; window.length_seconds is 3600")

    with pytest.raises(IncompatibleState):
        restore(changelog, changelog.state(), KEY, "p0", other_length)
