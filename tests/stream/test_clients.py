"""Where the service's clients come from (``monitor.stream.clients``): ``KafkaClients`` builds each
kafka-python client for the ``kafka`` section with the arguments it is asked for, and the in-memory cluster's
clients take the same calls, so the builder can be handed either."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from monitor.devtools.memory_kafka import MemoryClients
from monitor.settings import config_from_dict
from monitor.stream import clients as clients_module
from monitor.errors import ConfigError
from monitor.stream.clients import Clients, ConfluentClients, KafkaClients, check_options, clients_for
from monitor.stream.kafka_state import InternalTopic

METHODS = ("ensure_topics", "source", "sink", "state_producer", "changelog", "follower", "publish")


class Built:
    """Stands in for a kafka-python client class (its constructor would reach for a broker): records how
    it was built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def kafka_section() -> Any:
    return config_from_dict({"input": {"topics": ["events"]}, "model": {"path": "model"},
                             "kafka": {"bootstrap_servers": "broker:9092"}}, environ={}).kafka


@pytest.mark.parametrize("name", METHODS)
def test_both_kinds_of_clients_take_every_call_of_the_protocol_with_its_parameters(name: str) -> None:
    expected = inspect.signature(getattr(Clients, name)).parameters
    for kind in (KafkaClients, ConfluentClients, MemoryClients):
        got = inspect.signature(getattr(kind, name)).parameters
        assert [(p.name, p.kind, p.default) for p in got.values()] == \
            [(p.name, p.kind, p.default) for p in expected.values()], f"{kind.__name__}.{name}"


def test_a_source_is_a_group_member_built_with_every_argument_and_callback(
        monkeypatch: pytest.MonkeyPatch, kafka_section: Any) -> None:
    monkeypatch.setattr(clients_module, "KafkaSource", Built)

    def revoked(partitions: set[Any]) -> None: ...

    def assigned(partitions: set[Any]) -> None: ...

    def lost(partitions: set[Any]) -> None: ...

    source = KafkaClients(kafka_section).source(["events"], "g", "latest", {("events", 0): 5}, read_committed=True,
                                               on_revoked=revoked, on_assigned=assigned, on_lost=lost)
    assert source.args == (kafka_section, ["events"], "g", "latest", {("events", 0): 5})
    assert source.kwargs == {"read_committed": True, "on_revoked": revoked, "on_assigned": assigned,
                             "on_lost": lost}


def test_the_producers_and_readers_are_built_for_the_kafka_section(monkeypatch: pytest.MonkeyPatch,
                                                                   kafka_section: Any) -> None:
    for name in ("KafkaSink", "StateProducer", "ChangelogReader", "TopicFollower"):
        monkeypatch.setattr(clients_module, name, Built)
    clients = KafkaClients(kafka_section)
    assert clients.sink().args == (kafka_section,)
    assert clients.state_producer("g-member-1", 30_000).args == (kafka_section, "g-member-1", 30_000)
    assert clients.state_producer(None, 30_000).args == (kafka_section, None, 30_000)
    assert clients.changelog("g.changelog").args == (kafka_section, "g.changelog")
    assert clients.follower("g.models").args == (kafka_section, "g.models")


def test_missing_topics_are_created_through_the_kafka_section(monkeypatch: pytest.MonkeyPatch,
                                                              kafka_section: Any) -> None:
    asked: list[tuple[Any, ...]] = []
    monkeypatch.setattr(clients_module, "ensure_topics",
                        lambda kafka, topics, factor: asked.append((kafka, list(topics), factor)) or {"g.models": 1})
    topics = [InternalTopic("g.models", 1, {}, compacted=True)]
    assert KafkaClients(kafka_section).ensure_topics(topics, 3) == {"g.models": 1}
    assert asked == [(kafka_section, topics, 3)]


def _kafka(**section: Any) -> Any:
    return config_from_dict({"input": {"topics": ["events"]}, "model": {"path": "model"},
                             "kafka": {"bootstrap_servers": "broker:9092", **section}}, environ={}).kafka


def test_the_library_the_kafka_section_names_makes_the_clients() -> None:
    assert type(clients_for(_kafka())) is KafkaClients
    assert type(clients_for(_kafka(library="confluent-kafka"))) is ConfluentClients


@pytest.mark.parametrize(("library", "option", "refused"), [
    ("kafka-python", {"client": {"security.protocol": "SSL"}}, "kafka.client.security.protocol: not a kafka-python"),
    ("confluent-kafka", {"producer": {"max_block_ms": 1000}}, "kafka.producer.max_block_ms: a kafka-python option "
                                                              "without a confluent-kafka equivalent"),
    ("confluent-kafka", {"consumer": {"group.id": "g"}}, "kafka.consumer.group.id"),
])
def test_options_the_chosen_library_would_refuse_are_found_before_anything_connects(
        library: str, option: dict[str, Any], refused: str) -> None:
    with pytest.raises(ConfigError, match=refused.replace(".", r"\.")):
        check_options(_kafka(library=library, **option))
    check_options(_kafka(library=library, client={"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}))


def test_a_library_named_where_the_shared_options_go_is_refused_with_where_it_belongs() -> None:
    with pytest.raises(ConfigError, match="kafka.library: confluent-kafka"):
        _kafka(client="confluent-kafka")
