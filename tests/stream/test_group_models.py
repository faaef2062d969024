"""The group's model schedule on one member, following the models topic (on the in-memory cluster): it scores
as the published schedule says, publishes what it scores with, takes accepted formats in in the topic's order,
skips what it cannot read, and prunes the models no window needs any more."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from monitor.devtools.memory_kafka import MemoryFollower, MemoryKafka, MemoryProducer
from monitor.errors import BundleError
from monitor.hourly.judge import HourlyJudge
from monitor.settings import CompareConfig, config_from_dict
from monitor.stream.group_models import GroupSchedule
from monitor.stream.group_state import ACCEPTED_PREFIX, SCHEDULE_KEY, encode
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.sources import MemorySink
from monitor.stream.state import Accepted

MINUTE = 60_000
TOPIC = "g.models"
DECODING = config_from_dict({}, environ={}).input


class Model:
    """A bundle version as the schedule knows it (nothing is scored here)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def __repr__(self) -> str:
        return f"Model({self.version!r})"


class Bundles:
    """``load_model``: the versions published at ``model.path``, and which were loaded."""

    def __init__(self, *versions: str) -> None:
        self.versions = set(versions)
        self.loaded: list[str] = []

    def __call__(self, version: str) -> Model:
        if version not in self.versions:
            raise BundleError(f"no bundle {version}")
        self.loaded.append(version)
        return Model(version)


class Member:
    def __init__(self, kafka: MemoryKafka | None, bundles: Bundles | None = None, own: str = "v0",
                 checkpoint_interval_s: float = 2.0) -> None:
        self.judge = HourlyJudge(MINUTE, 0, CompareConfig(), sample_size=20)
        self.pipeline = RecordPipeline(Model(own), self.judge, DECODING, MemorySink())  # type: ignore[arg-type]
        self.bundles = bundles if bundles is not None else Bundles("v1", "v2", "v3")
        self.unreadable = 0
        self.schedule = GroupSchedule(self.pipeline, self.judge,
                                      None if kafka is None else MemoryFollower(kafka, TOPIC),  # type: ignore[arg-type]
                                      self.bundles, checkpoint_interval_s, self._unreadable)

    def _unreadable(self) -> None:
        self.unreadable += 1

    def takeovers(self) -> list[tuple[int | None, str]]:
        return [(t.from_ms, t.scorer.version) for t in self.pipeline.models.takeovers]

    def judged_before(self, topic: str, ms: int) -> None:
        """Topic ``topic`` judged here, every window before ``ms`` judged."""
        self.judge.judge_topic(topic, None)
        self.judge.own_partition((topic, 0), None)
        self.judge.add((topic, 0), np.array([0.01]), np.ones(1), np.array([ms]), np.zeros(1, bool), sequences=["A"])
        self.judge.close_due("v1")
        assert self.judge.assemblers[topic].judged_before_ms == ms


def publish(kafka: MemoryKafka, key: str, value: bytes) -> None:
    MemoryProducer(kafka, None).send(TOPIC, key, value)


def schedule(*takeovers: tuple[int | None, str]) -> bytes:
    return encode({"takeovers": [list(t) for t in takeovers]})


def accepted(kind: str, value: str, topic: str | None = None, sequences: list[str] = ()) -> bytes:  # type: ignore[assignment]
    return encode({"at_ms": 1_000, "kind": kind, "value": value, "topic": topic, "sequences": list(sequences)})


def test_a_member_scores_as_the_published_schedule_says_with_the_models_it_names() -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v2")))
    member = Member(kafka)
    assert not member.schedule.known
    member.schedule.read_to_end()
    assert member.takeovers() == [(None, "v1"), (2 * MINUTE, "v2")]
    assert member.bundles.loaded == ["v1", "v2"] and member.schedule.known


def test_what_a_member_publishes_with_a_promotion_is_what_another_member_follows() -> None:
    kafka = MemoryKafka()
    lead = Member(kafka)
    lead.pipeline.promote(Model("v1"), None)  # type: ignore[arg-type]
    lead.pipeline.promote(Model("v2"), 2 * MINUTE)  # type: ignore[arg-type]
    published = lead.schedule.publication((5 * MINUTE, "v3"))
    assert json.loads(published) == {"takeovers": [[None, "v1"], [2 * MINUTE, "v2"], [5 * MINUTE, "v3"]]}
    assert json.loads(lead.schedule.publication()) == {"takeovers": [[None, "v1"], [2 * MINUTE, "v2"]]}
    publish(kafka, SCHEDULE_KEY, published)
    other = Member(kafka)
    other.schedule.read_to_end()
    assert other.takeovers() == [(None, "v1"), (2 * MINUTE, "v2"), (5 * MINUTE, "v3")]


def test_a_later_promotion_is_followed_with_the_models_already_loaded() -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v2")))
    member = Member(kafka)
    member.schedule.read_to_end()
    member.schedule.poll()
    assert member.bundles.loaded == ["v1", "v2"], "nothing new: nothing loaded again"
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v2"), (4 * MINUTE, "v3")))
    member.schedule.poll()
    assert member.takeovers() == [(None, "v1"), (2 * MINUTE, "v2"), (4 * MINUTE, "v3")]
    assert member.bundles.loaded == ["v1", "v2", "v3"]


def test_the_latest_schedule_of_what_arrived_is_the_one_followed() -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1")))
    publish(kafka, SCHEDULE_KEY, schedule((None, "v2")))
    member = Member(kafka)
    member.schedule.read_to_end()
    assert member.takeovers() == [(None, "v2")] and member.schedule.value == {"takeovers": [[None, "v2"]]}


def test_accepted_formats_are_taken_in_in_the_topics_order_with_their_offsets_as_ids() -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1")))
    publish(kafka, ACCEPTED_PREFIX + "a", accepted("window", str(3 * MINUTE), topic="t"))
    member = Member(kafka)
    member.schedule.read_to_end()
    publish(kafka, ACCEPTED_PREFIX + "b", accepted("file", "new.txt", sequences=["AB1", "AB2"]))
    member.schedule.poll()
    assert member.schedule.accepted == [Accepted(1, 1_000, "window", str(3 * MINUTE), "t", []),
                                        Accepted(2, 1_000, "file", "new.txt", None, ["AB1", "AB2"])]


@pytest.mark.parametrize("key, value", [
    (SCHEDULE_KEY, b"\xff not json"),
    (SCHEDULE_KEY, encode({"takeovers": []})),
    (SCHEDULE_KEY, encode({"takeovers": [[None]]})),
    (SCHEDULE_KEY, encode({"takeovers": [[None, 3]]})),
    (SCHEDULE_KEY, encode({"takeovers": [[str(2 * MINUTE), "v2"]]})),
    (SCHEDULE_KEY, encode({"models": ["v2"]})),
    (ACCEPTED_PREFIX + "x", encode({"kind": "window", "value": "0", "sequences": []})),
    (ACCEPTED_PREFIX + "x", encode({"at_ms": "noon", "kind": "window", "value": "0", "sequences": []})),
    (ACCEPTED_PREFIX + "x", b"[1, 2]"),
], ids=["not-json", "no-takeover", "no-version", "version-not-text", "from-not-a-number", "no-takeovers",
        "accepted-without-time", "accepted-time-not-a-number", "accepted-not-an-object"])
def test_an_unreadable_record_is_skipped_and_counted_and_what_was_followed_before_stays(
        key: str, value: bytes, caplog: pytest.LogCaptureFixture) -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1")))
    member = Member(kafka)
    member.schedule.read_to_end()
    publish(kafka, key, value)
    publish(kafka, ACCEPTED_PREFIX + "y", accepted("pattern", "^AB"))  # what follows is still read
    member.schedule.poll()
    assert member.unreadable == 1
    assert member.takeovers() == [(None, "v1")] and member.schedule.value == {"takeovers": [[None, "v1"]]}
    assert [a.id for a in member.schedule.accepted] == [2]
    assert f"unreadable record on the models topic {TOPIC}[0] at offset 1 (key {key!r}), skipped" in caplog.text


def test_a_model_the_member_cannot_load_leaves_the_one_it_has_scoring(caplog: pytest.LogCaptureFixture) -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v9")))
    member = Member(kafka)
    member.schedule.read_to_end()
    assert member.takeovers() == [(None, "v1")]
    assert "names model v9, which this member cannot load" in caplog.text


def test_a_schedule_whose_older_models_were_let_go_here_is_kept_and_a_rebuild_brings_them_back() -> None:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v2")))
    member = Member(kafka)
    member.schedule.read_to_end()
    member.pipeline.models.retire(2 * MINUTE)  # every window v1 scored has closed here
    assert member.takeovers() == [(2 * MINUTE, "v2")]
    publish(kafka, SCHEDULE_KEY, schedule((None, "v1"), (2 * MINUTE, "v2")))  # the lead writes it again
    member.schedule.poll()
    assert member.takeovers() == [(2 * MINUTE, "v2")] and member.bundles.loaded == ["v1", "v2"]
    member.schedule.rebuild()  # partitions taken over may still have windows v1 scores
    assert member.takeovers() == [(None, "v1"), (2 * MINUTE, "v2")]
    assert member.bundles.loaded == ["v1", "v2", "v1"]


def test_a_member_without_the_models_topic_keeps_its_own_model() -> None:
    member = Member(None)
    member.schedule.read_to_end()
    member.schedule.poll()
    member.schedule.rebuild()
    assert member.takeovers() == [(None, "v0")] and not member.schedule.known
    assert member.schedule.pruned() is None


@pytest.mark.parametrize("now_ms, latest_ms, interval_s, boundary", [
    (100_000, 450_000, 2.0, 8 * MINUTE),     # the latest event, 10 s on: the next boundary
    (100_000, 450_000, 20.0, 9 * MINUTE),    # two checkpoint intervals (40 s) on
    (1_000_000, 450_000, 2.0, 17 * MINUTE),  # the clock ahead of the events
    (1_000_000, None, 2.0, 17 * MINUTE),     # no event yet
])
def test_a_promotion_starts_at_a_window_boundary_every_member_can_read_the_schedule_before(
        now_ms: int, latest_ms: int | None, interval_s: float, boundary: int) -> None:
    member = Member(MemoryKafka(), checkpoint_interval_s=interval_s)
    if latest_ms is not None:
        member.judge.add(("t", 0), np.array([0.01]), np.ones(1), np.array([latest_ms]), np.zeros(1, bool))
    assert member.schedule.boundary_for_promotion(now_ms) == boundary


def followed(takeovers: list[tuple[int | None, str]]) -> Member:
    kafka = MemoryKafka()
    publish(kafka, SCHEDULE_KEY, schedule(*takeovers))
    member = Member(kafka)
    member.schedule.read_to_end()
    return member


THREE = [(None, "v1"), (2 * MINUTE, "v2"), (5 * MINUTE, "v3")]


@pytest.mark.parametrize("judged_before, kept", [
    (MINUTE, None),                                              # v1 still scores windows to judge
    (2 * MINUTE, [[None, "v2"], [5 * MINUTE, "v3"]]),
    (4 * MINUTE, [[None, "v2"], [5 * MINUTE, "v3"]]),
    (6 * MINUTE, [[None, "v3"]]),
])
def test_the_schedule_is_pruned_of_the_models_whose_windows_are_all_judged(
        judged_before: int, kept: list[list[Any]] | None) -> None:
    member = followed(THREE)
    member.judged_before("t", judged_before)
    pruned = member.schedule.pruned()
    assert (None if pruned is None else json.loads(pruned)) == (None if kept is None else {"takeovers": kept})


def test_the_topic_judged_least_far_decides_what_is_pruned() -> None:
    member = followed(THREE)
    member.judged_before("t", 6 * MINUTE)
    member.judged_before("u", 3 * MINUTE)
    assert json.loads(member.schedule.pruned() or b"null") == {"takeovers": [[None, "v2"], [5 * MINUTE, "v3"]]}


def test_nothing_is_pruned_while_a_judged_topic_has_judged_nothing_or_one_model_is_left() -> None:
    member = followed(THREE)
    member.judged_before("t", 6 * MINUTE)
    member.judge.judge_topic("u", None)
    assert member.schedule.pruned() is None
    alone = followed([(None, "v1")])
    alone.judged_before("t", 6 * MINUTE)
    assert alone.schedule.pruned() is None
