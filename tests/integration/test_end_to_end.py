"""The whole path: a real broker, the monitor process (state in Kafka), a real Prometheus with the project's
rules.

A stream of short windows is produced in two parts: normal windows first (the format-drift alert must stay
silent), then a drift (the alert must fire), then a new model bundle (shadowed: a decision). Every dashboard query
and every recording rule must return data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.core import bundle as bundle_lib
from monitor.devtools import generate
from monitor.devtools.local_process import free_loopback_port
from monitor.devtools.prometheus_server import (
    PrometheusServer,
    prometheus_scrape_config,
)

from .kafka_tools import new_topic, produce, service_config, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "sequence-monitor.json"
WINDOW_S = 2
PER_WINDOW = 150
START_MS = 1_700_000_000_000 // (WINDOW_S * 1000) * (WINDOW_S * 1000)
DRIFT_ALERT = 'ALERTS{alertname="SequenceMonitorFormatDrift"}'
DRIFT_FIRING = 'ALERTS{alertname="SequenceMonitorFormatDrift", alertstate="firing"}'


def windows(first: int, count: int, drift: bool) -> tuple[list[bytes], list[int]]:
    values, times = [], []
    for w in range(first, first + count):
        normal = generate.sample("serial", PER_WINDOW, seed=w)
        broken = generate.anomalies("serial", "other_format", PER_WINDOW // 2, set(), seed=w) if drift else []
        batch = broken + normal[len(broken):]
        values += [s.encode() for s in batch]
        times += [START_MS + w * WINDOW_S * 1000 + i * (WINDOW_S * 1000 // PER_WINDOW) for i in range(len(batch))]
    return values, times


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", []) if t.get("expr")]
    # Grafana fills these in; here they select everything, over ranges the test's run covers.
    substitutions = {"$topic": ".*", "$instance": ".*", "$__rate_interval": "2m", "$__range": "10m"}
    return [re.sub(r"\$\w+", lambda m: substitutions[m.group(0)], e) for e in exprs]


def recorded_names() -> list[str]:
    return [rule["record"] for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "record" in rule]


@pytest.fixture
def monitor_process(kafka_broker: Any, bundle_dir: Path, tmp_path: Path) -> Any:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic(bootstrap, "e2e")
    port = free_loopback_port()
    published = Path(shutil.copytree(bundle_dir, tmp_path / "model"))  # where a new bundle will be published
    # State in Kafka, as the shipped deployments run it: the group's panels (partitions, judge role, restores)
    # have data too.
    config = service_config(bootstrap, topic, published, **{
        "state": {"store": "kafka", "checkpoint_interval_seconds": 0.5},
        "window": {"length_seconds": WINDOW_S, "allowed_lateness_seconds": 0, "quiet_seconds": 3600},
        "compare": {"min_history": 3}, "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "reload": {"check_interval_seconds": 1}})
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    with (tmp_path / "monitor.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                                   stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield bootstrap, topic, port, published
    finally:
        process.terminate()
        process.wait(60)
        print((tmp_path / "monitor.log").read_text()[-3000:])


def test_drift_fires_the_alert_and_every_panel_and_rule_has_data(
        monitor_process: Any, prometheus_factory: Callable[..., PrometheusServer], retrained_bundle_dir: Path) -> None:
    bootstrap, topic, port, published = monitor_process
    prometheus = prometheus_factory(prometheus_scrape_config(f"127.0.0.1:{port}", rule_files=RULES))
    normal, normal_times = windows(0, 8, drift=False)
    produce(bootstrap, topic, normal + [b"", b"\xff\xfe"], normal_times + normal_times[-1:] * 2)
    wait_for(lambda: bool(prometheus.query('sequence_monitor_window_verdict == 0')), 90,
             "normal windows judged and scraped")
    wait_for(lambda: bool(prometheus.query("topic:sequence_monitor_window_weighted_mean_error:ratio")), 30,
             "the recording rules evaluated")
    assert prometheus.query(DRIFT_ALERT) == [], "the drift alert is pending or firing before any drift"

    drifted, drift_times = windows(8, 5, drift=True)
    produce(bootstrap, topic, drifted, drift_times)
    wait_for(lambda: bool(prometheus.query("sequence_monitor_window_abnormal_streak >= 2")), 60,
             "two abnormal windows in a row")
    wait_for(lambda: bool(prometheus.query(DRIFT_FIRING)), 150,
             "the format-drift alert firing")
    [alert] = prometheus.query(DRIFT_FIRING)
    assert alert["metric"]["topic"] == topic and alert["metric"]["severity"] == "critical"

    # A retrained bundle is published: shadowed on the windows so far (promoted or refused, either way a
    # decision the model panels show).
    bundle_lib.save(bundle_lib.load(retrained_bundle_dir), published)
    wait_for(lambda: bool(prometheus.query("sequence_monitor_candidate_flag_rate")), 90,
             "the candidate's comparison scraped")

    empty = [q for q in dashboard_queries() if not prometheus.query(q)]
    assert not empty, f"dashboard queries without data: {empty}"
    unrecorded = [name for name in recorded_names() if not prometheus.query(name)]
    assert not unrecorded, f"recording rules without values: {unrecorded}"
