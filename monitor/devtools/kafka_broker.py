"""A real single-node Kafka broker (KRaft combined mode, no ZooKeeper) on free loopback ports, and
:class:`ExternalKafka` for a cluster run elsewhere; the only kafka-python user among the local services."""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from kafka import KafkaAdminClient

from monitor.devtools.kafka_jars import kafka_classpath
from monitor.devtools.local_process import (
    LOG_TAIL_LINES,
    LOOPBACK,
    LocalProcess,
    free_loopback_ports,
    strip_ansi,
    tail_text,
)
from monitor.errors import LocalServiceError

# Tests use this cluster instead of starting a broker when it is set.
BOOTSTRAP_ENV_VAR = "MONITOR_KAFKA_BOOTSTRAP"
DEFAULT_STARTUP_TIMEOUT_S = 90.0
DEFAULT_HEAP = "512m"

# INFO keeps the startup story readable in broker.log; the config dumps that
# Kafka prints for every internal client are noise, hence WARN for them.
_LOG4J_CONFIG = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


@dataclass(frozen=True)
class ExternalKafka:
    """A Kafka cluster run by someone else (see ``BOOTSTRAP_ENV_VAR``).

    It offers the same ``bootstrap_servers`` as :class:`KafkaBroker`, so code
    that only needs an address accepts either; it cannot be restarted.
    """

    bootstrap_servers: str


class KafkaBroker(LocalProcess):
    """One Kafka JVM in KRaft combined mode on free loopback ports.

    Free ports only, so several brokers, for instance from parallel test
    sessions, never collide.  ``stop()`` keeps the data, so ``restart()`` (or
    a later ``start()``) brings the same broker back on the same ports: tests
    use it to simulate an outage.  ``close()`` (and leaving a ``with`` block)
    also deletes the work directory if this object created it.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        num_partitions: int = 1,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        heap: str = DEFAULT_HEAP,
    ) -> None:
        super().__init__(work_dir, "monitor-kafka-", startup_timeout_s)
        self._cache_dir = cache_dir
        self._num_partitions = num_partitions
        self._heap = heap
        self._ports: tuple[int, int] | None = None

    # -- public API ---------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"`` for clients; fixed once the broker first started."""
        if self._ports is None:
            raise LocalServiceError("the Kafka broker has not been started yet")
        return f"{LOOPBACK}:{self._ports[0]}"

    @property
    def log_path(self) -> Path:
        return self._work_dir / "broker.log"

    def start(self) -> KafkaBroker:
        """Start (or restart) the broker and wait until it accepts clients."""
        if self.is_running():
            return self
        self.stop()  # reaps a broker that crashed and closes its log file
        classpath = kafka_classpath(self._cache_dir)
        java = _java_executable()
        if self._is_formatted():
            self._ports = self._ports or self._ports_from_config()
        else:
            self._write_config()
            self._format_storage(java, classpath)
        self._launch(java, classpath)
        self._wait_until_ready("accept clients")
        return self

    def restart(self) -> KafkaBroker:
        """Stop and start again on the same ports with the same data."""
        self.stop()
        return self.start()

    # -- steps of start() ---------------------------------------------------

    @property
    def _data_dir(self) -> Path:
        return self._work_dir / "data"

    @property
    def _config_path(self) -> Path:
        return self._work_dir / "server.properties"

    @property
    def _log4j_path(self) -> Path:
        return self._work_dir / "log4j2.properties"

    def _is_formatted(self) -> bool:
        # StorageTool writes meta.properties; its presence means "restart".
        return (self._data_dir / "meta.properties").is_file() and self._config_path.is_file()

    def _ports_from_config(self) -> tuple[int, int]:
        # A work_dir reused by a new KafkaBroker object keeps its old ports.
        for line in self._config_path.read_text().splitlines():
            if line.startswith("listeners="):
                broker, controller = (int(part.rsplit(":", 1)[1]) for part in line.split(",", 1))
                return broker, controller
        raise LocalServiceError(f"no listeners= line in {self._config_path}")

    def _write_config(self) -> None:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._ports is None:
            broker_port, controller_port = free_loopback_ports(2)
            self._ports = (broker_port, controller_port)
        text = _server_properties(self._data_dir, *self._ports, self._num_partitions)
        self._config_path.write_text(text)
        self._log4j_path.write_text(_LOG4J_CONFIG)

    def _java_base_command(self, java: str, classpath: Sequence[Path]) -> list[str]:
        return [
            java,
            f"-Xmx{self._heap}",
            "-Djava.awt.headless=true",
            # log4j would stop its appenders in its own shutdown hook, racing
            # Kafka's and losing the end of a SIGTERM shutdown from the log.
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dlog4j2.configurationFile={self._log4j_path}",
            "-cp",
            _classpath_arg(classpath),
        ]

    def _format_storage(self, java: str, classpath: Sequence[Path]) -> None:
        command = self._java_base_command(java, classpath) + [
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _new_cluster_id(),
            "--config",
            str(self._config_path),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise LocalServiceError(
                f"formatting Kafka storage failed (exit {result.returncode}): "
                f"{shlex.join(command)}\n{tail_text(result.stdout + result.stderr)}"
            )

    def _launch(self, java: str, classpath: Sequence[Path]) -> None:
        command = self._java_base_command(java, classpath) + ["kafka.Kafka", str(self._config_path)]
        self._spawn(command, self._work_dir)

    def _is_ready(self, timeout_s: float) -> bool:
        return _broker_is_ready(self.bootstrap_servers, timeout_s)

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        raise LocalServiceError(
            f"Kafka broker {reason}; log {self.log_path}:\n{_log_excerpt(self.log_path)}"
        )


# --------------------------------------------------------------------------
# Java command line and broker configuration
# --------------------------------------------------------------------------


def _java_executable() -> str:
    # JAVA_HOME wins, as in Kafka's own scripts, so a user can pick a JDK.
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise LocalServiceError("Java ('java') is not on PATH; Kafka needs Java 17 or newer.")
    return java


def _classpath_arg(jars: Sequence[Path]) -> str:
    """``lib/*`` (Java expands it) when all jars share a folder, which keeps commands and errors readable.

    >>> _classpath_arg([Path("/c/lib/a.jar"), Path("/c/lib/b.jar")])
    '/c/lib/*'
    """
    parents = {jar.parent for jar in jars}
    if len(parents) == 1:
        return str(parents.pop() / "*")
    return os.pathsep.join(str(jar) for jar in jars)


def _new_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in unpadded URL-safe base64; it
    # refuses none, but an id starting with '-' reads like a CLI flag.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _server_properties(
    data_dir: Path, broker_port: int, controller_port: int, num_partitions: int
) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static voter set: one node, no dynamic-quorum bookkeeping needed.
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(num_partitions),
        "auto.create.topics.enable": "true",
        # One node: every internal topic must accept a replication factor of 1.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers of a fresh group start at once instead of after 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # Demos and tests replay simulated hours from the past: time-based retention would delete them
        # (by their record timestamps) in the middle of a run.
        "log.retention.ms": "-1",
        # Let tests shorten consumer session timeouts, so a killed consumer's partitions move on quickly.
        "group.min.session.timeout.ms": "1000",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


# --------------------------------------------------------------------------
# Readiness and failure reports
# --------------------------------------------------------------------------


def _port_is_open(port: int) -> bool:
    # A refused TCP connect costs microseconds; a client bootstrap against a
    # closed port waits its whole timeout, so this check goes first.
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1.0):
        return True
    return False


def _broker_is_ready(bootstrap_servers: str, timeout_s: float) -> bool:
    """True when the broker answers a client and lists itself as unfenced."""
    if not _port_is_open(int(bootstrap_servers.rsplit(":", 1)[1])):
        return False
    timeout_ms = max(int(timeout_s * 1000), 500)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except Exception:  # noqa: BLE001 - any failure here just means "not yet"
        return False
    try:
        brokers = admin.describe_cluster().get("brokers", [])
        return any(not broker.get("is_fenced", False) for broker in brokers)
    except Exception:  # noqa: BLE001 - the broker may still be electing itself
        return False
    finally:
        admin.close()


def _log_excerpt(path: Path) -> str:
    """The log's ERROR lines (with the message under each) and its tail.

    A failed start ends in dozens of shutdown lines, so the tail alone
    rarely shows why; the ERROR lines do ("failed to bind ...").
    """
    if not path.is_file():
        return f"(no log at {path})"
    lines = strip_ansi(path.read_text(errors="replace")).splitlines()
    errors = _error_lines(lines)
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    if not errors:
        return tail
    return "ERROR lines:\n" + "\n".join(errors) + "\n...\nlast lines:\n" + tail


def _error_lines(lines: Sequence[str], limit: int = 20) -> list[str]:
    """ERROR and FATAL lines, each with the unprefixed exception message Kafka logs under it.

    >>> _error_lines(["[t] INFO up (k)", "[t] ERROR bind failed (k)", "Address already in use", "[t] INFO down"])
    ['[t] ERROR bind failed (k)', 'Address already in use']
    """
    found: list[str] = []
    for index, line in enumerate(lines):
        if " ERROR " not in line and " FATAL " not in line:
            continue
        found.append(line)
        following = lines[index + 1] if index + 1 < len(lines) else "["
        if not following.startswith(("[", "\t")):
            found.append(following)
        if len(found) >= limit:
            break
    return found[:limit]
