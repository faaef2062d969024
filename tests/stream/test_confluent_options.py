"""The ``kafka`` section as librdkafka configuration (``monitor.stream.confluent_options``): kafka-python's names
renamed, librdkafka's own passed through, the monitor's own and the impossible ones refused with their paths; and
every name the table gives is one librdkafka accepts."""

from __future__ import annotations

from typing import Any

import confluent_kafka  # the test extra installs it: missing, these tests fail, never skip
import pytest
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from monitor.errors import ConfigError
from monitor.settings import KafkaConfig, config_from_dict
from monitor.stream import confluent_options
from monitor.stream.confluent_options import RENAMED, librdkafka_error_path, librdkafka_options


def kafka(environ: dict[str, str] | None = None, **section: Any) -> KafkaConfig:
    """The ``kafka`` section of a configuration holding ``section``, checked as a file's would be."""
    return config_from_dict({"kafka": section}, environ=environ or {}).kafka


def problems(section: KafkaConfig, role: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        librdkafka_options(section, role)
    return str(caught.value).splitlines()


SASL_SSL = {
    "bootstrap_servers": "broker1:9093,broker2:9093",
    "client": {"client_id": "sequence-monitor", "request_timeout_ms": 20000, "security_protocol": "SASL_SSL",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "monitor",
               "sasl_plain_password": "${KAFKA_PASSWORD}", "ssl_cafile": "/etc/monitor/tls/ca.pem",
               "ssl_check_hostname": True, "linger_ms": 5, "session_timeout_ms": 10000},
    "consumer": {"fetch_max_bytes": 52428800, "max_partition_fetch_bytes": 1048576, "fetch_max_wait_ms": 100},
    "producer": {"acks": "all", "compression_type": "gzip", "enable_idempotence": True},
}
CONNECTION = {"client.id": "sequence-monitor", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
              "sasl.username": "monitor", "sasl.password": "s3cret", "ssl.ca.location": "/etc/monitor/tls/ca.pem",
              "ssl.endpoint.identification.algorithm": "https"}


def test_a_sasl_ssl_configuration_becomes_librdkafkas_names_and_values_for_each_role() -> None:
    section = kafka({"KAFKA_PASSWORD": "s3cret"}, **SASL_SSL)
    servers = {"bootstrap.servers": "broker1:9093,broker2:9093"}
    assert librdkafka_options(section, "consumer") == {
        **servers, **CONNECTION, "socket.timeout.ms": 20000, "session.timeout.ms": 10000,
        "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 1048576, "fetch.wait.max.ms": 100}
    assert librdkafka_options(section, "producer") == {
        **servers, **CONNECTION, "request.timeout.ms": 20000, "linger.ms": 5, "acks": "all",
        "compression.type": "gzip", "enable.idempotence": True}
    assert librdkafka_options(section, "admin") == {**servers, **CONNECTION, "socket.timeout.ms": 20000}


def test_the_roles_own_options_win_over_the_shared_ones_and_admin_takes_only_the_shared() -> None:
    section = kafka(client={"linger_ms": 5, "request_timeout_ms": 20000, "api.version.request.timeout.ms": 1000,
                            "client_id": "shared"},
                    consumer={"request_timeout_ms": 10000, "client.id": "reader"},
                    producer={"linger.ms": 50})
    consumer = librdkafka_options(section, "consumer")
    assert (consumer["socket.timeout.ms"], consumer["client.id"], consumer["api.version.request.timeout.ms"]) == \
        (10000, "reader", 1000)
    assert librdkafka_options(section, "producer")["linger.ms"] == 50
    admin = librdkafka_options(section, "admin")
    assert (admin["socket.timeout.ms"], admin["client.id"]) == (20000, "shared") and "linger.ms" not in admin


def test_another_roles_options_under_client_are_left_out_for_this_role_and_checked_for_that_one() -> None:
    section = kafka(client={"linger_ms": 5, "max_block_ms": 1000, "session_timeout_ms": 10000,
                            "max_poll_records": 100})
    assert problems(section, "consumer") == [
        "kafka.client.max_poll_records: a kafka-python option without a confluent-kafka equivalent (a "
        "confluent-kafka consumer is told the count on each consume() call, and the monitor asks for "
        "batch.max_records)"]
    assert problems(section, "producer") == [
        "kafka.client.max_block_ms: a kafka-python option without a confluent-kafka equivalent (confluent-kafka's "
        "produce() never blocks: a full queue fails at once with BufferError)"]
    admin = librdkafka_options(section, "admin")
    assert admin == {"bootstrap.servers": "127.0.0.1:9092"}


def test_librdkafkas_own_names_pass_as_given() -> None:
    section = kafka(client={"api.version.request.timeout.ms": 1000, "ssl.endpoint.identification.algorithm": "none",
                            "socket.keepalive.enable": True, "debug": ["broker", "topic"]},
                    consumer={"enable.partition.eof": False, "queued.max.messages.kbytes": "65536"})
    assert librdkafka_options(section, "consumer") == {
        "bootstrap.servers": "127.0.0.1:9092", "api.version.request.timeout.ms": 1000,
        "ssl.endpoint.identification.algorithm": "none", "socket.keepalive.enable": True,
        "debug": "broker,topic", "enable.partition.eof": False, "queued.max.messages.kbytes": "65536"}


@pytest.mark.parametrize("key, says", [
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    ("metadata.broker.list", "set kafka.bootstrap_servers instead"),
    ("group.id", "set input.group_id instead"),
    ("auto.offset.reset", "set input.auto_offset_reset instead"),
    ("transaction_timeout_ms", "set state.transaction_timeout_seconds instead"),
    ("enable_auto_commit", "set by the monitor itself; remove it"),
    ("enable.auto.commit", "set by the monitor itself; remove it"),
    ("enable.auto.offset.store", "set by the monitor itself; remove it"),
    ("isolation_level", "set by the monitor itself; remove it"),
    ("isolation.level", "set by the monitor itself; remove it"),
    ("transactional.id", "set by the monitor itself; remove it"),
    ("stats_cb", "set by the monitor itself; remove it"),
    ("statistics.interval.ms", "set by the monitor itself (each second: librdkafka's statistics say which brokers "
                               "are up); remove it"),
    ("on_delivery", "set by the monitor itself; remove it"),
    ("logger", "set by the monitor itself; remove it"),
    ("throttle_cb", "a callback, which the configuration cannot give"),
])
def test_names_the_monitor_sets_itself_are_refused(key: str, says: str) -> None:
    assert problems(kafka(client={key: "x"}), "consumer") == [f"kafka.client.{key}: {says}"]


@pytest.mark.parametrize("role, key, value, why", [
    ("consumer", "api_version", [2, 5, 0], "librdkafka asks each broker for its API versions"),
    ("admin", "sasl_kerberos_domain_name", "example.com", "Kerberos host name from the broker's address"),
    ("consumer", "partition_assignment_strategy", "range", "assumes eager assignment"),
    ("consumer", "max_poll_records", 100, "batch.max_records"),
    ("producer", "max_block_ms", 1000, "never blocks"),
    ("producer", "ssl_context", "ctx", "set the ssl.* properties"),
])
def test_kafka_python_options_librdkafka_cannot_do_are_refused_with_their_path_and_why(
        role: str, key: str, value: Any, why: str) -> None:
    section_name = "client" if role == "admin" else role
    [problem] = problems(kafka(**{section_name: {key: value}}), role)
    assert problem.startswith(f"kafka.{section_name}.{key}: a kafka-python option without a confluent-kafka "
                              "equivalent (")
    assert why in problem


def test_unknown_names_and_another_roles_options_in_a_roles_own_map_are_refused() -> None:
    section = kafka(client={"linger": 5}, consumer={"linger_ms": 5})
    assert problems(section, "consumer") == [
        "kafka.client.linger: neither a kafka-python option nor a librdkafka property (librdkafka's names have dots)",
        "kafka.consumer.linger_ms: a kafka-python producer option, not a consumer one"]


def test_every_problem_is_reported_at_once_sorted_by_path() -> None:
    section = kafka(client={"zz_unknown": 1, "ssl_check_hostname": "maybe", "group.id": "g", "api_version": "2.5"},
                    consumer={"isolation.level": "read_committed", "max_poll_records": 10})
    said = problems(section, "consumer")
    assert [line.split(":")[0] for line in said] == [
        "kafka.client.api_version", "kafka.client.group.id", "kafka.client.ssl_check_hostname",
        "kafka.client.zz_unknown", "kafka.consumer.isolation.level", "kafka.consumer.max_poll_records"]
    assert "kafka.client.ssl_check_hostname: expected true or false" in said


@pytest.mark.parametrize("value, algorithm", [(False, "none"), (True, "https"), ("false", "none"), ("True", "https")])
def test_ssl_check_hostname_becomes_the_endpoint_identification_algorithm(value: Any, algorithm: str) -> None:
    options = librdkafka_options(kafka(client={"ssl_check_hostname": value}), "producer")
    assert options["ssl.endpoint.identification.algorithm"] == algorithm


def test_a_false_hostname_check_from_the_environment_is_none() -> None:
    section = kafka({"CHECK": "false"}, client={"ssl_check_hostname": "${CHECK}"})
    assert librdkafka_options(section, "admin")["ssl.endpoint.identification.algorithm"] == "none"


@pytest.mark.parametrize("value, acks", [("all", "all"), (-1, "-1"), (0, "0"), (1, "1"), ("1", "1")])
def test_acks_become_text(value: Any, acks: str) -> None:
    assert librdkafka_options(kafka(producer={"acks": value}), "producer")["acks"] == acks


def test_acks_librdkafka_does_not_share_with_kafka_python_are_refused() -> None:
    assert problems(kafka(producer={"acks": 2}), "producer") == ["kafka.producer.acks: expected 'all', -1, 0 or 1"]


def test_no_compression_is_none_and_other_kafka_python_options_set_to_null_keep_librdkafkas_default() -> None:
    options = librdkafka_options(kafka(producer={"compression_type": None, "client_id": None}), "producer")
    assert options == {"bootstrap.servers": "127.0.0.1:9092", "compression.type": "none"}


def test_an_error_names_where_the_property_was_set() -> None:
    section = kafka(client={"statistcs.interval.ms": 10, "linger_ms": 5},
                    consumer={"request_timeout_ms": 400000, "fetch.wait.max.ms": "soon"})
    assert librdkafka_error_path(section, 'No such configuration property: "statistcs.interval.ms"') == \
        "kafka.client.statistcs.interval.ms"
    assert librdkafka_error_path(section, 'Invalid value "soon" for configuration property "fetch.wait.max.ms"') \
        == "kafka.consumer.fetch.wait.max.ms"
    assert librdkafka_error_path(
        section, 'Configuration property "socket.timeout.ms" value 400000 is outside allowed range 10..300000\n',
        "consumer") == "kafka.consumer.request_timeout_ms"
    assert librdkafka_error_path(section, 'Invalid value "x" for configuration property "linger.ms"',
                                 "producer") == "kafka.client.linger_ms"
    assert librdkafka_error_path(section, 'No such configuration property: "other.thing"') is None
    assert librdkafka_error_path(section, "Failed to create producer: something else") is None


# A value of each kafka-python option the table renames, as a configuration would give it.
SAMPLES: dict[str, Any] = {
    "client_id": "monitor", "metadata_max_age_ms": 300000, "connections_max_idle_ms": 540000,
    "reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 30000, "retry_backoff_ms": 100,
    "max_in_flight_requests_per_connection": 5, "allow_auto_create_topics": False,
    "client_dns_lookup": "use_all_dns_ips", "receive_buffer_bytes": 65536, "send_buffer_bytes": 131072,
    "receive_message_max_bytes": 100_000_000, "security_protocol": "PLAINTEXT", "ssl_cafile": "/tls/ca.pem",
    "ssl_certfile": "/tls/client.pem", "ssl_keyfile": "/tls/client.key", "ssl_password": "secret",
    "ssl_crlfile": "/tls/crl.pem", "ssl_ciphers": "ECDHE-RSA-AES256-GCM-SHA384", "ssl_check_hostname": False,
    "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "monitor", "sasl_plain_password": "secret",
    "sasl_kerberos_service_name": "kafka", "request_timeout_ms": 30000, "session_timeout_ms": 10000,
    "heartbeat_interval_ms": 3000, "max_poll_interval_ms": 300000, "fetch_max_bytes": 52428800,
    "max_partition_fetch_bytes": 1048576, "fetch_min_bytes": 1, "fetch_max_wait_ms": 500, "check_crcs": True,
    "auto_commit_interval_ms": 5000, "client_rack": "rack-1", "group_instance_id": "monitor-1", "acks": "all",
    "compression_type": "lz4", "linger_ms": 5, "batch_size": 16384, "retries": 3, "max_request_size": 1048576,
    "enable_idempotence": True, "delivery_timeout_ms": 120000, "partitioner": "murmur2_random",
}


def test_the_table_renames_only_kafka_python_options_of_its_role_and_has_a_sample_of_each() -> None:
    known = {"consumer": set(KafkaConsumer.DEFAULT_CONFIG), "producer": set(KafkaProducer.DEFAULT_CONFIG)}
    known["admin"] = known["consumer"] & known["producer"]
    for role, renamed in RENAMED.items():
        assert set(renamed) <= known[role], role
    assert set(SAMPLES) == set().union(*RENAMED.values())
    refused = set(confluent_options._WITHOUT_EQUIVALENT)
    assert refused <= known["consumer"] | known["producer"] and not refused & set(SAMPLES)


def test_librdkafka_accepts_every_name_and_value_the_table_gives() -> None:
    quiet = {"socket.connection.setup.timeout.ms": 1000, "log_level": 0}
    for role, renamed in RENAMED.items():
        for key in renamed:
            section = kafka(bootstrap_servers="127.0.0.1:1", **{"client" if role == "admin" else role:
                                                                 {key: SAMPLES[key]}})
            options = {**librdkafka_options(section, role), **quiet}
            try:
                if role == "consumer":
                    confluent_kafka.Consumer({**options, "group.id": "probe"}).close()
                else:  # a producer or an admin client has no close(): dropped, it is destroyed
                    client = (confluent_kafka.Producer if role == "producer" else AdminClient)(options)
                    del client
            except confluent_kafka.KafkaException as exc:
                pytest.fail(f"{role} {key} -> {options}: {exc}")


def test_librdkafkas_own_error_names_where_the_property_was_set() -> None:
    section = kafka(bootstrap_servers="127.0.0.1:1", client={"linger_ms": 5},
                    producer={"statistcs.interval.ms": 10})
    with pytest.raises(confluent_kafka.KafkaException) as caught:
        confluent_kafka.Producer(librdkafka_options(section, "producer"))
    assert librdkafka_error_path(section, str(caught.value), "producer") == "kafka.producer.statistcs.interval.ms"
    section = kafka(bootstrap_servers="127.0.0.1:1", consumer={"request_timeout_ms": 400000})
    with pytest.raises(confluent_kafka.KafkaException) as caught:
        confluent_kafka.Consumer({**librdkafka_options(section, "consumer"), "group.id": "probe"})
    assert librdkafka_error_path(section, str(caught.value), "consumer") == "kafka.consumer.request_timeout_ms"
