from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.bundle import Bundle
from monitor.hourly.compare import Comparison
from monitor.hourly.judge import WindowReport, WindowTotals
from monitor.ops.export import Metrics, error_buckets, serve
from monitor.records import RawMessage, Record, Rejected
from monitor.stream.decode import Decoded
from monitor.stream.pipeline import BatchResult

from ..test_deploy import EXPORTED_METRICS


def message(topic: str = "serials", offset: int = 0) -> RawMessage:
    return RawMessage(topic, 0, offset, 1_700_000_000_000, b"secret-key", b"AB121E")


def batch() -> BatchResult:
    records = [Record("AB121E", 1.0, 1_700_000_000_000, message(offset=i)) for i in range(3)]
    rejected = [Rejected("invalid_utf8", "bad", message(offset=3))]
    return BatchResult(Decoded.of(records, rejected), {("serials", 0): 4}, errors=np.array([1e-4, 2e-3, 0.5]),
                       flags=np.array([False, False, True]), late=Counter({"serials": 2}),
                       by_partition={("serials", 0): np.arange(3)})


def report(verdict: str = "critical") -> WindowReport:
    return WindowReport("serials", 0, 3_600_000, WindowTotals(3, 3.0, 0.5021, 0.1674, 1 / 3, 2e-3, 0.4),
                        Comparison(verdict, 7.5, 100.0, 33.0, 0.4, 0.01, 0.002, 24), "v1")


def samples(registry: CollectorRegistry) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


@pytest.fixture
def metrics(serial_bundle: Bundle) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, error_buckets(serial_bundle.training_errors), serial_bundle.info()), registry


def test_records_are_counted_by_outcome_and_dead_letters_by_reason(metrics: Any) -> None:
    m, registry = metrics
    m.on_batch(batch(), 0.02)
    found = samples(registry)
    outcomes = {s.labels["outcome"]: s.value for s in found["sequence_monitor_records_total"]}
    assert outcomes == {"scored": 3, "dead_lettered": 1, "late": 2}
    [dead] = found["sequence_monitor_dead_letters_total"]
    assert dead.labels == {"topic": "serials", "reason": "invalid_utf8"} and dead.value == 1
    assert found["sequence_monitor_abnormal_records_total"][0].value == 1


def test_the_error_histogram_counts_every_record_in_model_fitting_buckets(metrics: Any,
                                                                           serial_bundle: Bundle) -> None:
    m, registry = metrics
    m.on_batch(batch(), 0.02)
    found = samples(registry)
    assert found["sequence_monitor_reconstruction_error_count"][0].value == 3
    assert found["sequence_monitor_reconstruction_error_sum"][0].value == pytest.approx(0.5021)
    bounds = [float(s.labels["le"]) for s in found["sequence_monitor_reconstruction_error_bucket"]]
    assert bounds[0] < np.median(serial_bundle.training_errors) < bounds[-2]  # the range fits the model
    counts = [s.value for s in found["sequence_monitor_reconstruction_error_bucket"]]
    assert counts == sorted(counts) and counts[-1] == 3


def test_a_closed_window_sets_its_figures_and_verdict_level(metrics: Any) -> None:
    m, registry = metrics
    m.on_window_closed(report("critical"), streak=2)
    found = samples(registry)
    assert found["sequence_monitor_window_verdict"][0].value == 2
    assert found["sequence_monitor_window_abnormal_streak"][0].value == 2
    assert found["sequence_monitor_window_weighted_mean_error"][0].value == pytest.approx(0.1674)
    assert found["sequence_monitor_baseline_windows"][0].value == 24
    assert found["sequence_monitor_windows_closed_total"][0].labels["verdict"] == "critical"


def test_labels_never_carry_sequences_or_keys(metrics: Any) -> None:
    m, registry = metrics
    m.on_batch(batch(), 0.02)
    m.on_window_closed(report(), 1)
    text = generate_latest(registry).decode()
    assert "AB121E" not in text and "secret-key" not in text


def test_every_metric_the_rules_and_dashboard_read_is_exported(metrics: Any) -> None:
    m, registry = metrics
    m.on_batch(batch(), 0.02)
    m.on_window_closed(report(), 1)
    m.on_checkpoint(0.0)
    m.lag = {("serials", 0): 5}
    m.topics["serials"].open_figures = [(0, _Acc())]
    m.on_model_decision({"outcome": "refused", "normal": 30, "normal_kept": 29, "flagged": 2, "flagged_kept": 0,
                         "flag_rate": 0.012, "expected_flag_rate": 0.01})
    assert set(samples(registry)) == EXPORTED_METRICS


def test_decisions_on_candidates_are_counted_by_outcome_with_the_last_candidates_figures(metrics: Any) -> None:
    m, registry = metrics
    for outcome in ("promoted", "refused", "refused"):
        m.on_model_decision({"outcome": outcome, "normal": 40, "normal_kept": 38, "flagged": 4, "flagged_kept": 1,
                             "flag_rate": 0.05, "expected_flag_rate": 0.01})
    found = samples(registry)
    assert {s.labels["outcome"]: s.value for s in found["sequence_monitor_model_decisions_total"]} == {
        "promoted": 1, "promoted_unshadowed": 0, "refused": 2}
    assert found["sequence_monitor_candidate_normal_kept_ratio"][0].value == pytest.approx(0.95)
    assert found["sequence_monitor_candidate_flagged_kept_ratio"][0].value == pytest.approx(0.25)
    assert found["sequence_monitor_candidate_flag_rate"][0].value == pytest.approx(0.05)


class _Acc:
    weighted_mean, weight_sum, weighted_error_sum, count = 0.01, 10.0, 0.1, 10


def test_health_and_readiness_endpoints(metrics: Any) -> None:
    m, registry = metrics
    server = serve(m, registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz")
        assert not_ready.value.code == 503
        not_ready.value.close()
        m.ready = True
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        assert b"sequence_monitor_ready 1.0" in urllib.request.urlopen(f"{base}/metrics").read()
    finally:
        server.shutdown()
        server.server_close()
