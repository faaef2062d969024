"""A real Prometheus server (the ``prometheus`` binary from PATH; Debian: ``apt-get install prometheus``) on a
free loopback port with its own temporary TSDB, and :func:`prometheus_scrape_config` for the tests' config."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from monitor.devtools.local_process import (
    LOG_TAIL_LINES,
    LOOPBACK,
    LocalProcess,
    free_loopback_port,
)
from monitor.errors import LocalServiceError

PROMETHEUS_STARTUP_TIMEOUT_S = 30.0
PROMETHEUS_HTTP_TIMEOUT_S = 5.0
# Loopback requests must not go through an http_proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prometheus_scrape_config(
    target: str, *, job: str = "sequence-monitor", rule_files: Sequence[Path] = ()
) -> str:
    """Prometheus configuration text: scrape ``target`` (``host:port``) and evaluate rules every second.

    Rule files are written as absolute paths: Prometheus resolves relative
    ones against the configuration file's folder, which is a temporary one
    when the text is handed to :class:`PrometheusServer`.

    >>> print(prometheus_scrape_config("127.0.0.1:9100", rule_files=[Path("/rules/a.yml")]), end="")
    global:
      scrape_interval: 1s
      scrape_timeout: 1s
      evaluation_interval: 1s
    rule_files:
    - /rules/a.yml
    scrape_configs:
    - job_name: sequence-monitor
      static_configs:
      - targets:
        - 127.0.0.1:9100
    """
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
    }
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


class PrometheusServer(LocalProcess):
    """One Prometheus server on a free loopback port with its own temporary TSDB.

    Give the configuration as ``config_text`` (written to the work directory)
    or as ``config_path`` (used in place, so its relative ``rule_files``
    resolve as in production).  ``port`` is chosen free unless given: a
    server that scrapes itself needs it first (:func:`free_loopback_port`).
    The lifecycle API is on, so :meth:`reload` re-reads the configuration.
    ``stop()`` keeps the work directory (log, TSDB); ``close()``, and leaving
    a ``with`` block, also deletes it if this object created it.
    """

    def __init__(
        self,
        config_text: str | None = None,
        *,
        config_path: Path | None = None,
        port: int | None = None,
        work_dir: Path | None = None,
        startup_timeout_s: float = PROMETHEUS_STARTUP_TIMEOUT_S,
    ) -> None:
        if (config_text is None) == (config_path is None):
            raise ValueError("give exactly one of config_text and config_path")
        self._config_text = config_text
        self._given_config_path = config_path
        self._port = port
        super().__init__(work_dir, "monitor-prometheus-", startup_timeout_s)

    # -- public API ---------------------------------------------------------

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:PORT"``; fixed once the server first started."""
        if self._port is None:
            raise LocalServiceError("the Prometheus server has not been started yet")
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def log_path(self) -> Path:
        return self._work_dir / "prometheus.log"

    @property
    def config_path(self) -> Path:
        return self._given_config_path or self._work_dir / "prometheus.yml"

    def start(self) -> PrometheusServer:
        """Start the server and wait until ``/-/ready`` answers."""
        if self.is_running():
            return self
        self.stop()  # reaps a server that crashed and closes its log file
        prometheus = _prometheus_executable()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._config_text is not None:
            self.config_path.write_text(self._config_text)
        if self._port is None:
            self._port = free_loopback_port()
        self._launch(prometheus)
        self._wait_until_ready("answer /-/ready")
        return self

    def reload(self) -> None:
        """Ask the running server to re-read its configuration and rule files."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with _DIRECT.open(request, timeout=PROMETHEUS_HTTP_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise LocalServiceError(
                f"Prometheus at {self.url} refused to reload: {exc}; log {self.log_path}:\n"
                f"{_log_excerpt(self.log_path)}"
            ) from exc

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result list of an instant query: ``[{"metric": {...}, "value": [time, "text"]}, ...]``."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            status, body = _http_get(url)
            answer = json.loads(body)
        except (OSError, ValueError) as exc:
            raise LocalServiceError(f"querying {expr!r} at {self.url} failed: {exc}") from exc
        if status != 200 or answer.get("status") != "success":
            raise LocalServiceError(f"Prometheus refused {expr!r} (HTTP {status}): {answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    # -- steps of start() ---------------------------------------------------

    def _launch(self, prometheus: str) -> None:
        command = [
            prometheus,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self._work_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self._port}",
            "--web.enable-lifecycle",
        ]
        self._spawn(command, self._work_dir)

    def _is_ready(self, timeout_s: float) -> bool:
        try:
            status, _ = _http_get(f"{self.url}/-/ready", timeout_s)
        except OSError:  # refused or reset while it binds: not yet
            return False
        return status == 200

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        raise LocalServiceError(
            f"Prometheus {reason}; log {self.log_path}:\n{_log_excerpt(self.log_path)}"
        )


def _prometheus_executable() -> str:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise LocalServiceError(
            "Prometheus ('prometheus') is not on PATH (Debian: apt-get install prometheus)."
        )
    return prometheus


def _http_get(url: str, timeout_s: float = PROMETHEUS_HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """Status and body of a GET; an HTTP error status is returned, not raised."""
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:  # closes the response it carries
            return exc.code, exc.read()


def _log_excerpt(path: Path) -> str:
    """The log's ``level=error`` lines (Prometheus logs logfmt) and its tail, which shows how it ended."""
    if not path.is_file():
        return f"(no log at {path})"
    lines = path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "level=error" in line][:20]
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    return ("error lines:\n" + "\n".join(errors) + "\n...\nlast lines:\n" + tail) if errors else tail
