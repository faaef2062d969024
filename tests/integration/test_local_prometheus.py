"""A real Prometheus from monitor.devtools.prometheus_server scrapes its target and answers the query API."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from monitor.devtools.local_process import free_loopback_port
from monitor.devtools.prometheus_server import (
    PrometheusServer,
    prometheus_scrape_config,
)
from monitor.errors import LocalServiceError

pytestmark = pytest.mark.integration

SCRAPE_TIMEOUT_S = 30.0


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through the HTTP API, parsed as JSON."""
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with no_proxy.open(address, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _wait_for_samples(url: str, expr: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while time.monotonic() < deadline:
        result = _query(url, expr)
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{expr} gave no sample within {SCRAPE_TIMEOUT_S:.0f}s")


def test_prometheus_scraping_itself_reports_its_target_up_in_the_query_api(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    port = free_loopback_port()
    address = f"127.0.0.1:{port}"
    server = prometheus_factory(prometheus_scrape_config(address, job="self"), port=port)
    assert server.url == f"http://{address}"

    [sample] = _wait_for_samples(server.url, 'up{job="self"}')

    assert sample["metric"] == {"__name__": "up", "job": "self", "instance": address}
    assert sample["value"][1] == "1"
    assert server.query('up{job="self"}')[0]["metric"]["instance"] == address


def test_a_missing_prometheus_binary_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    server = PrometheusServer(prometheus_scrape_config("127.0.0.1:9"))
    with pytest.raises(LocalServiceError, match="apt-get install prometheus"):
        server.start()
    server.close()
