"""The HTTP endpoint Prometheus scrapes: ``/metrics`` (the service's metrics, ``monitor.ops.metrics``),
``/healthz`` (the process is alive, from the start of ``run``) and ``/readyz`` (model loaded, state restored,
partitions assigned), served by ``monitor.ops.http_server`` within its limits. With ``monitor.ops.metrics``,
the only prometheus_client user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app

from monitor.core.bundle import Bundle
from monitor.ops.http_server import BoundedServer, Limits
from monitor.ops.buckets import error_buckets
from monitor.ops.metrics import Metrics

ALLOWED_METHODS = ("GET", "HEAD")
# Passed in a new list each time: wsgiref adds Content-Length to the list it is given.
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


class Endpoint:
    """The HTTP endpoint, up before anything else is: ``/healthz`` answers 200 from the start (the process is
    alive, even while the Kafka cluster is unreachable); ``/readyz`` answers 503 until ``add_metrics`` and
    then as long as the service is not ready (partitions assigned and their state restored); ``/metrics``
    is empty until ``add_metrics``. Other paths answer 404, methods other than GET and HEAD 405."""

    def __init__(self, host: str, port: int, limits: Limits = Limits()) -> None:
        self.registry = CollectorRegistry()
        self.metrics: Metrics | None = None
        self.server = BoundedServer(host, port, probe_app(make_wsgi_app(self.registry), self.ready), limits)
        self.server.start()

    @property
    def port(self) -> int:
        return self.server.port

    def ready(self) -> bool:
        return self.metrics is not None and self.metrics.ready

    def add_metrics(self, bundle: Bundle) -> Metrics:
        """The service's metrics, for ``bundle``'s error range, on this endpoint's registry."""
        self.metrics = Metrics(self.registry, error_buckets(bundle.training_errors), bundle.info())
        return self.metrics

    def close(self) -> None:
        self.server.close()


def probe_app(metrics_app: Any, ready: Callable[[], bool]) -> Any:
    """The WSGI application behind ``Endpoint``: ``metrics_app`` at ``/metrics`` (``prometheus_client``'s
    serves any path and any method's 405 names OPTIONS, so the routes and methods are checked first)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "HEAD":
            return _headers_only(route, {**environ, "REQUEST_METHOD": "GET"}, start_response)
        return route(environ, start_response)

    def route(environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if method not in ALLOWED_METHODS:
            start_response("405 Method Not Allowed", [_TEXT, ("Allow", ", ".join(ALLOWED_METHODS))])
            return [f"{method} not allowed; use GET or HEAD\n".encode()]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [_TEXT])
            return [b"ok\n"]
        if path == "/readyz":
            is_ready = ready()
            start_response("200 OK" if is_ready else "503 Service Unavailable", [_TEXT])
            return [b"ready\n" if is_ready else b"not ready\n"]
        start_response("404 Not Found", [_TEXT])
        return [b"not found: /metrics, /healthz or /readyz\n"]

    return app


def _headers_only(app: Any, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """HEAD: the GET answer's status and headers, its length in Content-Length, no body."""
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answered.append((status, headers))))
    status, headers = answered[0]
    start_response(status, [*[(k, v) for k, v in headers if k.lower() != "content-length"],
                            ("Content-Length", str(len(body)))])
    return []
