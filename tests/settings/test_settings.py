from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import ConfigError
from monitor.settings import (
    BatchConfig,
    InputConfig,
    KafkaConfig,
    LoggingConfig,
    MonitorConfig,
    RetrainConfig,
    config_from_dict,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "monitor.yaml"


def write(tmp_path: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, environ={} if environ is None else environ)
    return str(caught.value)


# ---- defaults and the example file -------------------------------------------------------------------------


def test_the_example_file_loads_as_exactly_the_defaults() -> None:
    assert load_config(EXAMPLE, environ={}) == MonitorConfig()


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None, environ={}) == MonitorConfig()
    assert config_from_dict({}, environ={}) == MonitorConfig()


def test_the_example_file_names_every_key_of_every_section() -> None:
    text = EXAMPLE.read_text()
    for section, values in MonitorConfig().to_dict().items():
        assert re.search(rf"^{section}:", text, re.MULTILINE), section
        for key in values:
            assert re.search(rf"^  {key}:", text, re.MULTILINE), f"{section}.{key}"


def test_the_commented_sasl_example_is_a_valid_configuration(tmp_path: Path) -> None:
    start = EXAMPLE.read_text().index("    # SASL over TLS")
    block = EXAMPLE.read_text()[start:].split("\n    #\n")[0].splitlines()[1:]
    client = "\n".join(line.replace("# ", "", 1) for line in block)
    path = write(tmp_path, f"kafka:\n  client:\n{client}\n")
    config = load_config(path, environ={"KAFKA_PASSWORD": "s3cret"})
    assert config.kafka.client["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config.kafka.client["sasl_plain_password"] == "s3cret"


def test_the_defaults_round_trip_through_to_dict() -> None:
    defaults = MonitorConfig()
    assert config_from_dict(defaults.to_dict(), environ={}) == defaults
    assert defaults.to_dict()["kafka"]["bootstrap_servers"] == ["127.0.0.1:9092"]


def test_a_changed_configuration_round_trips_through_to_dict() -> None:
    config = config_from_dict({
        "kafka": {"bootstrap_servers": "a:9092,b:9093", "client": {"security_protocol": "SSL", "x": [1, "y"]},
                  "producer": {"acks": "all", "linger_ms": 5}},
        "input": {"topics": ["t1", "t2"], "value_format": "json", "weight_field": "w", "event_time_field": "at.ts",
                  "event_time_format": "iso8601"},
        "output": {"topic": "scored"}, "logging": {"level": "debug"}, "shutdown": {"timeout_seconds": 5},
    }, environ={})
    assert config_from_dict(config.to_dict(), environ={}) == config
    assert config.kafka.client["x"] == (1, "y")
    assert config.shutdown.timeout_seconds == 5.0 and config.logging.level == "DEBUG"


@given(max_records=st.integers(1, 10**9), max_wait_ms=st.integers(0, 10**9), level=st.sampled_from(
    ["debug", "Info", "WARNING", "error"]), password=st.text())
def test_any_valid_values_round_trip_through_to_dict(max_records: int, max_wait_ms: int, level: str,
                                                   password: str) -> None:
    config = config_from_dict({"batch": {"max_records": max_records, "max_wait_ms": max_wait_ms},
                               "logging": {"level": level}, "kafka": {"client": {"ssl_password": password}}},
                              environ={})
    assert config_from_dict(config.to_dict(), environ={}) == config
    assert config.kafka.client["ssl_password"] == password


def test_sections_are_frozen_value_objects() -> None:
    config = MonitorConfig()
    with pytest.raises(AttributeError):
        config.batch.max_records = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.kafka.client["acks"] = "all"  # type: ignore[index]
    assert config.batch == BatchConfig(max_records=5000, max_wait_ms=200)


def test_the_repr_hides_passwords() -> None:
    config = config_from_dict({"kafka": {"client": {"sasl_plain_password": "hunter2", "ssl_password": "x",
                                                    "client_id": "me"}}}, environ={})
    assert "hunter2" not in repr(config) and "'x'" not in repr(config) and "'me'" in repr(config)
    assert config.kafka.client["sasl_plain_password"] == "hunter2"


# ---- validation -------------------------------------------------------------------------------------------


def test_an_unknown_key_suggests_the_closest_known_one() -> None:
    assert problems({"input": {"topic": "x"}}) == "input.topic: unknown key; did you mean 'topics'?"


def test_an_unknown_section_suggests_the_closest_or_lists_the_known_ones() -> None:
    assert problems({"Batch": {}}) == "Batch: unknown key; did you mean 'batch'?"
    assert problems({"zzz": 1}).startswith("zzz: unknown key; known keys: kafka, input, batch")


def test_a_wrong_type_names_the_path_the_expectation_and_the_value() -> None:
    assert problems({"batch": {"max_records": "ten"}}) == "batch.max_records: expected an integer, got 'ten' (str)"


def test_a_boolean_is_not_an_integer() -> None:
    assert problems({"batch": {"max_wait_ms": True}}) == "batch.max_wait_ms: expected an integer, got True (bool)"


def test_out_of_range_values_are_refused() -> None:
    assert problems({"batch": {"max_records": 0}}) == "batch.max_records: expected an integer >= 1, got 0 (int)"
    assert "shutdown.timeout_seconds: expected a finite number > 0, got -1" in problems(
        {"shutdown": {"timeout_seconds": -1}})


def test_a_bad_enum_value_lists_the_allowed_ones() -> None:
    assert problems({"input": {"value_format": "xml"}}) == (
        "input.value_format: expected one of 'text', 'json', got 'xml' (str)")
    assert "'DEBUG', 'INFO', 'WARNING', 'ERROR'" in problems({"logging": {"level": "verbose"}})


def test_the_log_level_is_case_insensitive_and_stored_upper_case() -> None:
    assert config_from_dict({"logging": {"level": "warning"}}, environ={}).logging == LoggingConfig("human", "WARNING")


def test_every_problem_is_reported_together_with_its_path() -> None:
    message = problems({"input": {"topic": "x", "max_value_bytes": -5, "event_time_format": "unix"},
                        "batch": {"max_records": "ten"}, "shutdown": "soon", "extra": {}})
    lines = message.splitlines()
    assert lines[0] == "6 configuration problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "extra", "input.topic", "input.event_time_format", "input.max_value_bytes", "batch.max_records", "shutdown"]
    assert "shutdown: expected a mapping with keys timeout_seconds, got 'soon' (str)" in message


def test_problems_from_a_file_are_prefixed_with_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, "batch:\n  max_records: ten\n  max_wait_ms: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).splitlines()[1:] == [
        f"  {path}: batch.max_records: expected an integer, got 'ten' (str)",
        f"  {path}: batch.max_wait_ms: expected an integer >= 0, got -1 (int)"]


def test_a_single_string_is_accepted_for_lists_and_split_at_commas() -> None:
    config = config_from_dict({"kafka": {"bootstrap_servers": "h1:9092, h2:9092"}, "input": {"topics": "a"}},
                              environ={})
    assert config.kafka.bootstrap_servers == ("h1:9092", "h2:9092")
    assert config.input.topics == ("a",)


def test_bad_list_items_are_reported_at_their_index() -> None:
    assert problems({"kafka": {"bootstrap_servers": ["h1:9092", "http://h2:9092"]}}) == (
        "kafka.bootstrap_servers[1]: expected 'host:port', got 'http://h2:9092' (str)")
    assert problems({"input": {"topics": []}}).startswith("input.topics: expected a non-empty list of Kafka topic")
    assert problems({"input": {"topics": ["ok", "not ok"]}}).startswith(
        "input.topics[1]: expected a Kafka topic name")


def test_a_pass_through_option_with_a_non_scalar_value_is_refused() -> None:
    assert problems({"kafka": {"consumer": {"fetch": {"max_bytes": 1}}}}) == (
        "kafka.consumer.fetch: expected a string, number, boolean, null or a list of them, "
        "got {'max_bytes': 1} (dict)")
    assert problems({"kafka": {"client": {"x": [1, [2]]}}}).startswith("kafka.client.x[1]: expected a string")
    assert problems({"kafka": {"producer": {1: "a"}}}) == (
        "kafka.producer: expected option names that are strings, got 1 (int)")


def test_pass_through_options_keep_any_name_but_not_the_ones_set_elsewhere() -> None:
    config = config_from_dict({"kafka": {"client": {"not_checked_here": 1}}}, environ={})
    assert dict(config.kafka.client) == {"not_checked_here": 1}
    assert problems({"kafka": {"consumer": {"group_id": "g"}}}) == "kafka.consumer.group_id: set input.group_id instead"


def test_fields_of_a_text_value_are_refused() -> None:
    assert problems({"input": {"weight_field": "w"}}) == (
        "input.weight_field: needs value_format 'json': a text record has no fields")


def test_state_in_kafka_derives_its_topics_from_the_group_and_refuses_what_cannot_work() -> None:
    config = config_from_dict({"state": {"store": "kafka"}, "input": {"group_id": "fraud"}}, environ={})
    assert (config.changelog_topic, config.windows_topic, config.models_topic, config.reports_topic) == (
        "fraud.changelog", "fraud.windows", "fraud.models", "fraud.reports")
    assert problems({"state": {"store": "kafka", "changelog_topic": "sequences"}}) == (
        "state.changelog_topic: 'sequences' is also an input or output topic; internal topics must be apart")
    assert problems({"state": {"store": "kafka"}, "retrain": {"enabled": True}}).startswith(
        "retrain.enabled: needs state.store: sqlite")
    assert problems({"state": {"store": "kafka", "transaction_timeout_seconds": 5}}).startswith(
        "state.transaction_timeout_seconds: 5.0 must exceed twice checkpoint_interval_seconds")
    config_from_dict({"state": {"transaction_timeout_seconds": 5}}, environ={})  # SQLite: no transactions


def test_output_topics_must_not_be_read_back() -> None:
    assert problems({"output": {"topic": "sequences"}}) == (
        "output.topic: 'sequences' is also in input.topics; the monitor would read its own output")
    assert problems({"output": {"topic": "sequences.dead-letter"}}).startswith(
        "output.topic: is the same topic as dead_letter.topic")


def test_empty_sections_and_an_empty_file_mean_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n"), environ={}) == MonitorConfig()
    assert load_config(write(tmp_path, "kafka:\n  client:\nbatch:\n", "b.yaml"), environ={}) == MonitorConfig()


# ---- files -----------------------------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "batch:\n  max_records: [1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not valid YAML: line 3"):
        load_config(path, environ={})


def test_a_file_that_is_not_a_mapping_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "- kafka\n- input\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: expected a mapping of sections"):
        load_config(path, environ={})


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "batch:\n  max_records: 1\n  max_records: 2\n")
    with pytest.raises(ConfigError, match="line 3, column 3: key 'max_records' appears twice"):
        load_config(path, environ={})


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file .*nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})


# ---- the environment -----------------------------------------------------------------------------------------


def test_variables_are_substituted_in_strings_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  client:\n    sasl_plain_password: ${KAFKA_PASSWORD}\n"
                           "    sasl_plain_username: ${KAFKA_USER:-monitor}\n"
                           "input:\n  group_id: group-${ENV}-$${literal}\n")
    config = load_config(path, environ={"KAFKA_PASSWORD": "12345", "ENV": "prod"})
    assert dict(config.kafka.client) == {"sasl_plain_password": "12345", "sasl_plain_username": "monitor"}
    assert config.input.group_id == "group-prod-${literal}"


def test_a_substituted_number_or_null_is_read_as_one_outside_the_kafka_options() -> None:
    config = config_from_dict({"batch": {"max_records": "${MAX:-100}"}, "output": {"topic": "${OUT:-null}"}},
                              environ={})
    assert config.batch.max_records == 100 and config.output.topic is None


def test_a_missing_variable_names_the_path_and_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  client:\n    sasl_plain_password: ${KAFKA_PASSWORD}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (f"{path}: kafka.client.sasl_plain_password: environment variable KAFKA_PASSWORD "
                                 "is not set; give a default with ${KAFKA_PASSWORD:-default}")


def test_a_failed_substitution_is_reported_once() -> None:
    assert problems({"batch": {"max_records": "${MAX}"}, "input": {"topics": ["${T"]}}).splitlines()[1:] == [
        "  batch.max_records: environment variable MAX is not set; give a default with ${MAX:-default}",
        "  input.topics[0]: '${' without a closing '}'; write '$${' for a literal '${'"]


def test_overrides_set_typed_values_and_nested_kafka_options(tmp_path: Path) -> None:
    environ = {"MONITOR__KAFKA__BOOTSTRAP_SERVERS": "host1:9092,host2:9092",
               "MONITOR__INPUT__VALUE_FORMAT": "json",
               "monitor__batch__max_records": "100",
               "MONITOR__KAFKA__CLIENT__SASL_PLAIN_PASSWORD": "#not-a-comment",
               "MONITOR__KAFKA__PRODUCER__ENABLE_IDEMPOTENCE": "true",
               "MONITOR__OUTPUT__TOPIC": "scored",
               "OTHER": "ignored"}
    config = load_config(write(tmp_path, "batch:\n  max_records: 7\n"), environ=environ)
    assert config.kafka == KafkaConfig(("host1:9092", "host2:9092"), {"sasl_plain_password": "#not-a-comment"},
                                       {}, {"enable_idempotence": True})
    assert config.input.value_format == "json" and config.batch.max_records == 100
    assert config.output.topic == "scored"


def test_an_override_wins_over_a_file_variable_that_is_not_set(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  client:\n    sasl_plain_password: ${KAFKA_PASSWORD}\n")
    environ = {"MONITOR__KAFKA__CLIENT__SASL_PLAIN_PASSWORD": "${kept}"}
    assert load_config(path, environ=environ).kafka.client["sasl_plain_password"] == "${kept}"


def test_quotes_keep_an_override_text_and_null_clears_it() -> None:
    config = config_from_dict({"output": {"topic": "scored"}, "kafka": {"client": {"ssl_password": "x"}}},
                              environ={"MONITOR__KAFKA__CLIENT__SSL_PASSWORD": '"12345"',
                                       "MONITOR__OUTPUT__TOPIC": "null"})
    assert config.kafka.client["ssl_password"] == "12345" and config.output.topic is None


def test_bad_overrides_are_validated_like_file_values_and_blamed_on_their_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "input:\n  topic: x\n")
    environ = {"MONITOR__BATCH__MAX_RECORDS": "ten", "MONITOR__INPTU__GROUP_ID": "g", "MONITOR__BATCH__": "1"}
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    assert str(caught.value).splitlines()[1:] == [
        "  MONITOR__BATCH__: expected MONITOR__SECTION__KEY, names separated by '__'",
        "  MONITOR__INPTU__GROUP_ID: inptu: unknown key; did you mean 'input'?",
        f"  {path}: input.topic: unknown key; did you mean 'topics'?",
        "  MONITOR__BATCH__MAX_RECORDS: batch.max_records: expected an integer, got 'ten' (str)"]


def test_config_from_dict_leaves_its_argument_alone() -> None:
    data: dict[str, Any] = {"batch": {"max_records": 1}}
    config_from_dict(data, environ={"MONITOR__BATCH__MAX_RECORDS": "2"})
    assert data == {"batch": {"max_records": 1}}


def test_input_section_defaults() -> None:
    assert InputConfig() == config_from_dict({"input": None}, environ={}).input


def test_the_earliest_event_time_is_read_as_iso_8601_or_epoch_milliseconds(tmp_path: Path) -> None:
    assert InputConfig().min_event_time_ms == 946_684_800_000  # 2000-01-01T00:00:00Z
    # Unquoted in YAML, a time or a date is read as a datetime or a date: taken as written.
    from_file = load_config(write(tmp_path, "input:\n  min_event_time: 1990-06-01 12:00:00+02:00\n"), environ={})
    assert from_file.input.min_event_time == "1990-06-01T10:00:00Z"
    for value in ("1990-06-01T10:00:00Z", "1990-06-01T12:00:00+02:00", 644_234_400_000):
        assert InputConfig(min_event_time=value).min_event_time == "1990-06-01T10:00:00Z"
    assert load_config(write(tmp_path, "input:\n  min_event_time: 1990-06-01\n"), environ={}).input.min_event_time \
        == "1990-06-01T00:00:00Z"
    overridden = config_from_dict({}, environ={"MONITOR__INPUT__MIN_EVENT_TIME": "644234400500"}).input
    assert (overridden.min_event_time, overridden.min_event_time_ms) == ("1990-06-01T10:00:00.500Z", 644_234_400_500)


def test_absurd_bounds_for_event_times_and_weights_are_refused() -> None:
    assert problems({"input": {"min_event_time": "last year"}}) == (
        "input.min_event_time: expected an ISO 8601 time from 1970 to 9999 (e.g. 2000-01-01T00:00:00Z) or epoch "
        "milliseconds >= 0, got 'last year' (str)")
    assert problems({"input": {"min_event_time": "1969-12-31T00:00:00Z"}}).startswith(
        "input.min_event_time: expected an ISO 8601 time from 1970")
    assert problems({"input": {"max_future_seconds": -1}}) == (
        "input.max_future_seconds: expected a finite number >= 0, got -1 (int)")
    assert problems({"input": {"max_weight": 1e308}}) == (
        "input.max_weight: expected a number > 0 and at most 1e+15, got 1e+308 (float)")
    assert problems({"input": {"max_weight": 0}}) == "input.max_weight: expected a finite number > 0, got 0 (int)"


# ---- sections built in code -----------------------------------------------------------------------------


def test_a_section_built_in_code_is_checked_like_a_file_and_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"^batch\.max_records: expected an integer >= 1, got 0 \(int\)$"):
        BatchConfig(max_records=0)
    with pytest.raises(ConfigError, match=r"^retrain\.min_records: 300 is more than max_records \(200\)$"):
        RetrainConfig(min_records=300, max_records=200)
    assert LoggingConfig(level="debug") == LoggingConfig(level="DEBUG")  # stored as the file would give it


def test_every_section_key_is_its_field_name_in_monitor_config() -> None:
    config = MonitorConfig()
    assert [type(getattr(config, f.name)).key for f in fields(MonitorConfig)] == [f.name for f in fields(config)]


def test_compare_combinations_are_reported_with_the_other_problems_of_a_file() -> None:
    message = problems({"compare": {"warning_z": 7, "critical_share_ratio": 2}, "batch": {"max_records": 0}})
    assert message.splitlines()[1:] == [
        "  batch.max_records: expected an integer >= 1, got 0 (int)",
        "  compare.warning_z: 7.0 must not exceed compare.critical_z (6.0)",
        "  compare.warning_share_ratio: 3.0 must not exceed compare.critical_share_ratio (2.0)"]
    assert problems({"compare": {"baseline": "same_hour"}}) == (
        "compare.min_history: 24 must not exceed compare.same_hour_days (7)")


def test_combinations_are_not_judged_while_a_field_of_the_section_is_refused() -> None:
    assert problems({"compare": {"warning_z": 7, "min_count": 0}}) == (
        "compare.min_count: expected an integer >= 1, got 0 (int)")
