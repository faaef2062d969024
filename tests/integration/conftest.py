"""Fixtures for integration tests that need a real Kafka broker or Prometheus server.

``kafka_broker`` starts one single-node KRaft broker for the whole session
(see ``monitor.devtools.kafka_broker``), or uses an existing cluster when
``MONITOR_KAFKA_BOOTSTRAP`` is set.  A broker that cannot be obtained makes
the tests fail with ``LocalServiceError``'s message, never skip: a skipped
integration suite would look green while testing nothing.  The same holds
for ``prometheus_factory``, which starts Prometheus servers on demand.

A test marked ``both_clients`` runs once per Kafka client library (``kafka.library``): the configurations
``kafka_tools.service_config`` makes name the one of the run. Every other test runs on kafka-python.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.devtools.kafka_broker import BOOTSTRAP_ENV_VAR, ExternalKafka, KafkaBroker
from monitor.devtools.prometheus_server import PrometheusServer
from tests.integration import kafka_tools

LIBRARIES = ("kafka-python", "confluent-kafka")


LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test that ran services (``kafka_tools.start_service`` logs to ``*.log`` under ``tmp_path``)
    shows the end of each service's log in its report: on a CI machine the log is what says why a member
    did not get there in time."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and report.when == "call" and isinstance(tmp_path, Path):
        for log in sorted(tmp_path.glob("**/*.log")):
            lines = log.read_text(errors="replace").splitlines()
            report.sections.append((f"service log {log.relative_to(tmp_path)} (last {LOG_TAIL_LINES} lines)",
                                    "\n".join(lines[-LOG_TAIL_LINES:])))
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_clients"):
        metafunc.parametrize("kafka_library", LIBRARIES, indirect=True)


@pytest.fixture(autouse=True)
def kafka_library(request: pytest.FixtureRequest) -> Iterator[str]:
    """The client library of this run (kafka-python unless the test is marked ``both_clients``)."""
    library = getattr(request, "param", "kafka-python")
    kafka_tools.LIBRARY = library
    yield library
    kafka_tools.LIBRARY = "kafka-python"


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker | ExternalKafka]:
    """A running Kafka for the session; tests use its ``bootstrap_servers``."""
    external = os.environ.get(BOOTSTRAP_ENV_VAR)
    if external:
        yield ExternalKafka(external)
        return
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture
def restartable_kafka_broker() -> Iterator[KafkaBroker]:
    """A broker of the test's own, to stop or restart (simulated outages).

    Always local, even with ``MONITOR_KAFKA_BOOTSTRAP`` set: an outage can
    only be staged on a broker we run, and the shared one must stay up.
    """
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """Start Prometheus servers: ``prometheus_factory(config_text, port=None)`` or
    ``prometheus_factory(config_path=...)`` returns a running, ready server.

    Every server started through it is stopped, and its temporary TSDB
    deleted, when the session ends.
    """
    servers: list[PrometheusServer] = []

    def start(
        config_text: str | None = None, *, config_path: Path | None = None, port: int | None = None
    ) -> PrometheusServer:
        server = PrometheusServer(config_text, config_path=config_path, port=port)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()
