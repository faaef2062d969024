from __future__ import annotations

import http.client
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.bundle import Bundle
from monitor.core.signature import FormatReader
from monitor.hourly.compare import Comparison
from monitor.hourly.format_change import LISTED, FormatChange, FormatShift
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport, WindowTotals
from monitor.hourly.reasons import SIGNAL_TEXT, Reason
from monitor.hourly.timeline import HOUR_MS
from monitor.ops.export import Endpoint
from monitor.ops.buckets import error_buckets
from monitor.ops.metrics import Metrics
from monitor.records import RawMessage, Record, Rejected
from monitor.settings import CompareConfig, FormatConfig
from monitor.stream.decode import Decoded
from monitor.stream.batch import BatchResult

from ..hourly.figures import QUIET_LEVELS, quiet_history, tiny_hour
from ..test_deploy import EXPORTED_METRICS


def message(topic: str = "serials", offset: int = 0) -> RawMessage:
    return RawMessage(topic, 0, offset, 1_700_000_000_000, b"secret-key", b"AB121E")


def batch() -> BatchResult:
    records = [Record("AB121E", 1.0, 1_700_000_000_000, message(offset=i)) for i in range(3)]
    rejected = [Rejected("invalid_utf8", "bad", message(offset=3))]
    return BatchResult(Decoded.of(records, rejected), {("serials", 0): 4}, errors=np.array([1e-4, 2e-3, 0.5]),
                       flags=np.array([False, False, True]), late=Counter({"serials": 2}),
                       by_partition={("serials", 0): np.arange(3)})


CHANGE = FormatChange(new=(FormatShift("aaa-9{6}-AA", 0.2, 0.0, 0.0, ("usr-104512-DE",)),),
                      vanished=(FormatShift("AA99", 0.0, 0.08, 0.08, ("MV12",)),), distance=0.41,
                      against="baseline", top=(("AA999A", 0.5), ("aaa-9{6}-AA", 0.2)))


def report(verdict: str = "critical", formats: FormatChange = CHANGE, p_value: float = float("nan"),
           reasons: tuple[Reason, ...] = ()) -> WindowReport:
    signal = next((r.signal for r in reasons if r.level == verdict), "")
    return WindowReport("serials", 0, 3_600_000, WindowTotals(3, 3.0, 0.5021, 0.1674, 1 / 3, 2e-3, 0.4),
                        Comparison(verdict, 7.5, 100.0, 33.0, 0.4, 0.01, 0.002, 24, p_value=p_value, signal=signal,
                                   reasons=reasons), "v1", formats)


# A critical window: records far above normal (critical), records above the threshold and a new format
# (warnings), its top record set aside (outliers, info).
REASONS = (Reason("far_records", "critical", "12 records at or above error 0.3 this hour, 0.02 expected; p 3e-09",
                  12, 0.02, 3e-9, records=("usr-104512-DE",)),
           Reason("flagged_records", "warning", "20 records at or above error 0.01", 20, 3.1, 2e-4),
           Reason("new_format", "warning", "new format aaa-9{6}-AA", formats=("aaa-9{6}-AA",)),
           Reason("outliers", "info", "the hour departs only by its top record", p_value=1e-6,
                  records=("ORD-2024-11-05-0042",)))


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
    m.on_window_closed(report(p_value=3e-9, reasons=REASONS), 1)
    text = generate_latest(registry).decode()
    assert "AB121E" not in text and "secret-key" not in text
    assert "usr-104512-DE" not in text and "ORD-2024" not in text  # the reasons' records stay in the reports


def test_every_metric_the_rules_and_dashboard_read_is_exported(metrics: Any) -> None:
    m, registry = metrics
    m.on_batch(batch(), 0.02)
    m.on_window_closed(report(p_value=3e-9, reasons=REASONS), 1)
    m.on_checkpoint(0.0)
    m.lag = {("serials", 0): 5}
    m.latest_event_ms = {"serials": 1_700_000_000_000}
    m.topics["serials"].open_figures = [(0, _Acc())]
    m.on_model_decision({"outcome": "refused", "normal": 30, "normal_kept": 29, "flagged": 2, "flagged_kept": 0,
                         "flag_rate": 0.012, "expected_flag_rate": 0.01})
    m.on_assignment([("serials", 0), ("serials", 1)], ["serials"], 0.4)
    m.on_transaction_abort("CommitFailedError")
    m.on_unreadable_state("g.changelog", "older value used")
    m.on_stopped([("serials", 1)])
    assert set(samples(registry)) == EXPORTED_METRICS


def test_a_backfill_shows_as_event_time_lag_and_an_outage_as_unreachable_partitions(metrics: Any) -> None:
    from monitor.stream.hooks import Snapshot

    m, registry = metrics
    m.on_tick(Snapshot({("serials", 0): 0, ("serials", 1): 0}, {}, True, {}, {"serials": 0},
                       frozenset({("serials", 1)})))
    found = samples(registry)
    [lag] = found["sequence_monitor_event_time_lag_seconds"]
    assert lag.labels == {"topic": "serials"} and lag.value > 50 * 365 * 86400  # event times of 1970
    assert by_topic(found, "sequence_monitor_partitions_unreachable") == {"serials": 1}


def test_format_gauges_name_the_formats_of_the_last_window(metrics: Any) -> None:
    m, registry = metrics
    m.on_window_closed(report(), 1)
    found = samples(registry)
    assert {s.labels["format"]: s.value for s in found["sequence_monitor_format_share"]} == {
        "AA999A": 0.5, "aaa-9{6}-AA": 0.2}
    [new] = found["sequence_monitor_new_format_share"]
    assert new.labels == {"topic": "serials", "format": "aaa-9{6}-AA"} and new.value == pytest.approx(0.2)
    assert found["sequence_monitor_vanished_format_baseline_share"][0].labels["format"] == "AA99"
    assert found["sequence_monitor_format_distance"][0].value == pytest.approx(0.41)
    m.on_window_closed(report("normal", FormatChange(top=(("AA999A", 1.0),))), 0)  # the next window: no change
    found = samples(registry)
    assert "sequence_monitor_new_format_share" not in found
    assert [s.labels["format"] for s in found["sequence_monitor_format_share"]] == ["AA999A"]


def signals(found: dict[str, list[Any]]) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["signal"]): s.value for s in found.get("sequence_monitor_window_signal", [])}


def test_the_signal_gauge_names_each_signal_behind_the_verdict_with_its_level(metrics: Any) -> None:
    m, registry = metrics
    m.on_window_closed(report("critical", p_value=3e-9, reasons=REASONS), 1)
    found = samples(registry)
    # 2 critical, 1 warning; the info-level outliers reason is no signal behind the verdict.
    assert signals(found) == {("serials", "far_records"): 2, ("serials", "flagged_records"): 1,
                              ("serials", "new_format"): 1}
    assert by_topic(found, "sequence_monitor_window_p_value") == {"serials": pytest.approx(3e-9)}
    assert by_topic(found, "sequence_monitor_window_outliers") == {"serials": 1}
    assert by_topic(found, "sequence_monitor_window_verdict") == {"serials": 2}


def test_the_next_window_replaces_the_signals_and_a_normal_one_has_none(metrics: Any) -> None:
    m, registry = metrics
    m.on_window_closed(report("critical", p_value=3e-9, reasons=REASONS), 1)
    m.on_window_closed(report("warning", p_value=1e-4, reasons=REASONS[1:2]), 2)
    found = samples(registry)
    assert signals(found) == {("serials", "flagged_records"): 1}  # far_records and new_format are gone
    assert by_topic(found, "sequence_monitor_window_outliers") == {"serials": 0}
    m.on_window_closed(report("normal", p_value=0.4), 0)
    found = samples(registry)
    assert "sequence_monitor_window_signal" not in found
    assert by_topic(found, "sequence_monitor_window_p_value") == {"serials": pytest.approx(0.4)}


def test_a_window_not_judged_the_calibrated_way_has_no_p_value(metrics: Any) -> None:
    m, registry = metrics
    m.on_window_closed(report("critical"), 1)  # e.g. compare.method mean_z: nan, and no reasons
    found = samples(registry)
    assert "sequence_monitor_window_p_value" not in found and "sequence_monitor_window_signal" not in found
    assert by_topic(found, "sequence_monitor_window_verdict") == {"serials": 2}


def test_signal_series_are_bounded_by_the_known_signals(metrics: Any) -> None:
    m, registry = metrics
    # Every signal, each named twice (at warning, then critical): one series per signal, at its strongest level.
    reasons = tuple(Reason(name, level, name) for level in ("warning", "critical") for name in SIGNAL_TEXT)
    m.on_window_closed(report("critical", p_value=1e-12, reasons=reasons), 1)
    found = signals(samples(registry))
    assert set(found) == {("serials", name) for name in SIGNAL_TEXT} and set(found.values()) == {2}


def test_an_outliers_only_window_is_normal_with_the_outliers_gauge_and_no_signal(metrics: Any) -> None:
    # Judged for real from figures: 29 quiet hours, then one whose single record far above normal is the departure.
    history = quiet_history()
    totals = WindowTotals(3, 3.0, 0.3, 0.1, 1 / 3, 1e-5, 1.0)
    m, registry = metrics
    m.on_window_closed(WindowReport("serials", 29 * HOUR_MS, 30 * HOUR_MS, totals,
                                    history.compare(tiny_hour(29, 1), QUIET_LEVELS), "v1"), 0)
    found = samples(registry)
    assert by_topic(found, "sequence_monitor_window_verdict") == {"serials": 0}
    assert by_topic(found, "sequence_monitor_window_outliers") == {"serials": 1}
    assert "sequence_monitor_window_signal" not in found
    assert 0 < by_topic(found, "sequence_monitor_window_p_value")["serials"] <= 1


def test_format_series_stay_at_top_k_however_many_formats_a_stream_has(metrics: Any) -> None:
    m, registry = metrics
    judge = HourlyJudge(HOUR_MS, 0, CompareConfig(min_history=2), formats=FormatConfig(metrics_top=10))
    reader = FormatReader()
    for hour in range(4):  # each hour: 300 formats never seen before, five records each, and one common new one
        sequences = [f"{'A' * (1 + i % 30)}-{'9' * (1 + i // 30)}-{hour}" for i in range(300)] * 5
        sequences += [f"{'Q' * (hour + 1)}#{i}" for i in range(400)]
        formats = reader.read(sequences)
        n = len(sequences)
        judge.add(("serials", 0), np.full(n, 0.01), np.ones(n), np.full(n, hour * HOUR_MS + 1), np.zeros(n, bool),
                  sequences=sequences, format_ids=formats.ids, format_names=formats.names)
        for closed in judge.flush("v1"):
            m.on_window_closed(closed, 0)
        found = samples(registry)
        assert len(found["sequence_monitor_format_share"]) == 10
        assert len(found.get("sequence_monitor_new_format_share", [])) <= LISTED
    assert closed.formats.new[0].format == "AAA#999"  # named, with its share, however many formats there are


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


def ask(endpoint: Endpoint, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    served = Endpoint("127.0.0.1", 0)
    yield served
    served.close()


def test_liveness_answers_before_the_metrics_exist_and_readiness_waits_for_them(endpoint: Endpoint,
                                                                                serial_bundle: Bundle) -> None:
    assert ask(endpoint, "GET", "/healthz")[::2] == (200, b"ok\n")
    assert ask(endpoint, "GET", "/readyz")[0] == 503
    metrics = endpoint.add_metrics(serial_bundle)
    assert ask(endpoint, "GET", "/readyz")[0] == 503  # metrics, but no partitions yet
    metrics.ready = True
    assert ask(endpoint, "GET", "/readyz")[0] == 200
    status, _, body = ask(endpoint, "GET", "/metrics")
    assert status == 200 and b"sequence_monitor_ready 1.0" in body


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "POST", "PUT", "OPTIONS"])
@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/elsewhere"])
def test_methods_other_than_get_and_head_answer_405_with_allow(endpoint: Endpoint, method: str, path: str) -> None:
    status, headers, body = ask(endpoint, method, path)
    assert status == 405 and headers["Allow"] == "GET, HEAD" and b"sequence_monitor" not in body


@pytest.mark.parametrize("path", ["/../", "/", "/metrics/../healthz", "/healthz/../metrics", "/metricsx",
                                  "/favicon.ico"])
def test_unknown_paths_answer_404(endpoint: Endpoint, serial_bundle: Bundle, path: str) -> None:
    endpoint.add_metrics(serial_bundle)
    status, _, body = ask(endpoint, "GET", path)
    assert status == 404 and b"sequence_monitor" not in body


def test_head_answers_the_get_headers_without_a_body(endpoint: Endpoint, serial_bundle: Bundle) -> None:
    endpoint.add_metrics(serial_bundle)
    status, headers, body = ask(endpoint, "HEAD", "/metrics")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000
    assert headers["Content-Type"] == ask(endpoint, "GET", "/metrics")[1]["Content-Type"]
    assert ask(endpoint, "HEAD", "/readyz")[::2] == (503, b"")


# -- the consumer group (state.store: kafka) ------------------------------------------------------------------


class _Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked(serial_bundle: Bundle) -> tuple[Metrics, CollectorRegistry, _Clock]:
    registry, clock = CollectorRegistry(), _Clock()
    return Metrics(registry, error_buckets(serial_bundle.training_errors), serial_bundle.info(), clock=clock), \
        registry, clock


def by_topic(found: dict[str, list[Any]], name: str) -> dict[str, float]:
    return {s.labels["topic"]: s.value for s in found.get(name, [])}


def test_without_a_consumer_group_there_is_no_group_gauge_and_the_group_counters_stay_zero(clocked: Any) -> None:
    m, registry, _ = clocked
    m.on_batch(batch(), 0.02)
    found = samples(registry)
    for absent in ("partitions_owned", "judge_role", "last_restore_seconds", "transaction_aborts_total",
                   "window_judged_timestamp_seconds"):
        assert f"sequence_monitor_{absent}" not in found, absent
    assert found["sequence_monitor_rebalances_total"][0].value == 0
    assert found["sequence_monitor_restores_total"][0].value == 0
    assert found["sequence_monitor_restore_seconds_count"][0].value == 0


def test_a_judged_window_sets_its_judged_time_with_either_store(clocked: Any) -> None:
    m, registry, clock = clocked
    m.on_window_closed(report(), 0)
    assert by_topic(samples(registry), "sequence_monitor_window_judged_timestamp_seconds") == {"serials": clock.now}
    clock.now += 3600
    m.on_window_closed(report("normal"), 0)
    assert by_topic(samples(registry), "sequence_monitor_window_judged_timestamp_seconds") == {"serials": clock.now}


def test_assignments_show_the_partitions_owned_and_the_judge_role_that_leaves_with_the_topic(clocked: Any) -> None:
    m, registry, clock = clocked
    m.on_assignment([("serials", 0), ("serials", 1), ("sequences", 2)], ["serials", "sequences"], 0.25)
    m.on_window_closed(report(p_value=3e-9, reasons=REASONS), 1)  # a window of serials, judged here
    assert signals(samples(registry))
    found = samples(registry)
    assert by_topic(found, "sequence_monitor_partitions_owned") == {"serials": 2, "sequences": 1}
    assert by_topic(found, "sequence_monitor_judge_role") == {"serials": 1, "sequences": 1}
    assert by_topic(found, "sequence_monitor_window_judged_timestamp_seconds") == {"serials": clock.now}
    assert found["sequence_monitor_rebalances_total"][0].value == 1

    # A rebalance: serials is judged by another instance now, and its partitions went elsewhere.
    m.on_assignment([("sequences", 2), ("sequences", 3)], ["sequences"], 3.5)
    found = samples(registry)
    assert by_topic(found, "sequence_monitor_judge_role") == {"sequences": 1}
    assert by_topic(found, "sequence_monitor_partitions_owned") == {"serials": 0, "sequences": 2}
    assert "sequence_monitor_window_judged_timestamp_seconds" not in found  # only the judge reports its time
    assert "serials" not in by_topic(found, "sequence_monitor_window_verdict")  # nor its last verdict
    assert not signals(found) and "serials" not in by_topic(found, "sequence_monitor_window_p_value")  # nor why
    assert found["sequence_monitor_rebalances_total"][0].value == 2

    # Nothing left here: no judge role at all, every topic ever owned at 0.
    m.on_assignment([], [], 0.001)
    found = samples(registry)
    assert "sequence_monitor_judge_role" not in found
    assert by_topic(found, "sequence_monitor_partitions_owned") == {"serials": 0, "sequences": 0}


def test_a_judge_role_kept_across_a_rebalance_keeps_its_judged_time(clocked: Any) -> None:
    m, registry, clock = clocked
    m.on_assignment([("serials", 0)], ["serials"], 0.1)
    m.on_window_closed(report(), 1)
    judged = clock.now
    clock.now += 60
    m.on_assignment([("serials", 0), ("serials", 1)], ["serials"], 0.1)
    assert by_topic(samples(registry), "sequence_monitor_window_judged_timestamp_seconds") == {"serials": judged}


def test_restores_are_timed_in_a_histogram_and_the_last_one_is_a_gauge(clocked: Any) -> None:
    m, registry, _ = clocked
    m.on_assignment([("serials", 0)], ["serials"], 0.02)
    m.on_assignment([("serials", 0), ("serials", 1)], [], 90.0)
    m.on_assignment([], [], 0.003)  # a rebalance that left nothing here: nothing restored
    found = samples(registry)
    assert found["sequence_monitor_rebalances_total"][0].value == 3
    assert found["sequence_monitor_restores_total"][0].value == 2
    assert found["sequence_monitor_restore_seconds_count"][0].value == 2
    assert found["sequence_monitor_restore_seconds_sum"][0].value == pytest.approx(90.02)
    assert found["sequence_monitor_last_restore_seconds"][0].value == pytest.approx(90.0)
    buckets = {float(s.labels["le"]): s.value for s in found["sequence_monitor_restore_seconds_bucket"]}
    assert min(buckets) <= 0.01 and max(b for b in buckets if b != float("inf")) >= 600  # 10 ms .. 10 min
    assert buckets[0.01] == 0 and buckets[0.05] == 1 and buckets[60.0] == 1 and buckets[120.0] == 2
    assert buckets[float("inf")] == 2


def test_aborted_transactions_are_counted_by_reason(clocked: Any) -> None:
    m, registry, _ = clocked
    for reason in ("CommitFailedError", "KafkaTimeoutError", "CommitFailedError"):
        m.on_transaction_abort(reason)
    found = samples(registry)
    assert {s.labels["reason"]: s.value for s in found["sequence_monitor_transaction_aborts_total"]} == {
        "CommitFailedError": 2, "KafkaTimeoutError": 1}


def test_unreadable_internal_records_are_counted_and_stopped_partitions_shown_until_taken_up(clocked: Any) -> None:
    m, registry, _ = clocked
    for topic, outcome in (("g.changelog", "older value used"), ("g.windows", "skipped"), ("g.windows", "skipped")):
        m.on_unreadable_state(topic, outcome)
    m.on_stopped([("serials", 0), ("g.windows", 3)])
    found = samples(registry)
    assert {(s.labels["topic"], s.labels["outcome"]): s.value
            for s in found["sequence_monitor_state_unreadable_records_total"]} == {
        ("g.changelog", "older value used"): 1, ("g.windows", "skipped"): 2}
    assert {(s.labels["topic"], s.labels["partition"]) for s in found["sequence_monitor_state_stopped_partitions"]} \
        == {("serials", "0"), ("g.windows", "3")}
    m.on_stopped([])
    assert "sequence_monitor_state_stopped_partitions" not in samples(registry)


def test_the_wait_for_committed_offsets_a_transaction_holds_is_shown_until_it_ends(clocked: Any) -> None:
    m, registry, _ = clocked
    assert samples(registry)["sequence_monitor_committed_offsets_wait_seconds"][0].value == 0
    m.on_offsets_pending(950.0)
    assert samples(registry)["sequence_monitor_committed_offsets_wait_seconds"][0].value == 950
    m.on_offsets_pending(0.0)
    assert samples(registry)["sequence_monitor_committed_offsets_wait_seconds"][0].value == 0
