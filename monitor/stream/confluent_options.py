"""The ``kafka`` section's options as librdkafka configuration, for the confluent-kafka clients.

The option maps are written in kafka-python's names (``security_protocol``, ``ssl_cafile``, ...). Those with a
librdkafka equivalent are renamed (and their value converted where the two differ); names with a dot are
librdkafka's own and pass as given (librdkafka checks them when the client is made); names the monitor sets
itself, kafka-python options librdkafka cannot do, and unknown names are refused, all in one ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from monitor.errors import ConfigError

_SHARED = {
    "client_id": "client.id",
    # kafka-python: "force a refresh of metadata ... to proactively discover any new brokers or partitions",
    # which is librdkafka's topic.metadata.refresh.interval.ms; its metadata.max.age.ms is only how long the
    # cache is kept, and follows the refresh interval (three times it) when left unset.
    "metadata_max_age_ms": "topic.metadata.refresh.interval.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "allow_auto_create_topics": "allow.auto.create.topics",
    "client_dns_lookup": "client.dns.lookup",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "receive_message_max_bytes": "receive.message.max.bytes",
    "security_protocol": "security.protocol",  # librdkafka reads its enum values in either case
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
}
# kafka-python's request_timeout_ms is how long the client waits for any answer. librdkafka's request.timeout.ms
# is a producer (topic) property only, the acks timeout sent in ProduceRequests (as kafka-python's producer
# sends its request_timeout_ms); the consumer's and admin client's network timeout is socket.timeout.ms.
RENAMED: dict[str, dict[str, str]] = {
    "admin": {**_SHARED, "request_timeout_ms": "socket.timeout.ms"},
    "consumer": {**_SHARED, "request_timeout_ms": "socket.timeout.ms", "session_timeout_ms": "session.timeout.ms",
                 "heartbeat_interval_ms": "heartbeat.interval.ms", "max_poll_interval_ms": "max.poll.interval.ms",
                 "fetch_max_bytes": "fetch.max.bytes", "max_partition_fetch_bytes": "max.partition.fetch.bytes",
                 "fetch_min_bytes": "fetch.min.bytes", "fetch_max_wait_ms": "fetch.wait.max.ms",
                 "check_crcs": "check.crcs", "auto_commit_interval_ms": "auto.commit.interval.ms",
                 "client_rack": "client.rack", "group_instance_id": "group.instance.id"},
    "producer": {**_SHARED, "request_timeout_ms": "request.timeout.ms", "acks": "acks",
                 "compression_type": "compression.type", "linger_ms": "linger.ms", "batch_size": "batch.size",
                 "retries": "retries", "max_request_size": "message.max.bytes",
                 "enable_idempotence": "enable.idempotence", "delivery_timeout_ms": "delivery.timeout.ms",
                 # kafka-python's partitioner is a callable, which a file cannot give: a name is librdkafka's
                 # (murmur2_random places keys as kafka-python does, the default consistent_random does not).
                 "partitioner": "partitioner"},
}
_UNDOTTED = {"debug", "log_level"}  # librdkafka's own names without a dot, passed as given

_WITHOUT_EQUIVALENT = {
    "api_version": "librdkafka asks each broker for its API versions; broker.version.fallback is only for "
                   "brokers older than 0.10",
    "bootstrap_timeout_ms": "librdkafka connects in the background, without waiting when the client is made",
    **dict.fromkeys(("kafka_client", "selector"), "a kafka-python internal"),
    **dict.fromkeys(("metric_reporters", "metrics_enabled", "metrics_num_samples", "metrics_sample_window_ms",
                     "metric_group_prefix"), "kafka-python's own metrics; librdkafka reports statistics every "
                                             "statistics.interval.ms"),
    **dict.fromkeys(("proxy_url", "socks5_proxy"), "librdkafka does not connect through a proxy"),
    "sasl_kerberos_domain_name": "librdkafka takes the Kerberos host name from the broker's address; "
                                 "sasl.kerberos.service.name and sasl.kerberos.principal set the rest",
    "sasl_kerberos_name": "a gssapi object; set sasl.kerberos.service.name and sasl.kerberos.principal",
    "sasl_oauth_token_provider": "a Python object; set the sasl.oauthbearer.* properties",
    "socket_options": "Python socket tuples; set socket.keepalive.enable or socket.nagle.disable",
    "ssl_context": "a Python SSLContext; set the ssl.* properties",
    "consumer_timeout_ms": "it only ends iteration over a kafka-python consumer",
    "default_offset_commit_callback": "a Python callback; the monitor commits offsets itself",
    "enable_incremental_fetch_sessions": "librdkafka has no switch for fetch sessions",
    "exclude_internal_topics": "it only matters to pattern subscriptions, and the monitor names its topics",
    "max_poll_records": "a confluent-kafka consumer is told the count on each consume() call, and the "
                        "monitor asks for batch.max_records",
    "partition_assignment_strategy": "the monitor's rebalance handling assumes eager assignment, which "
                                     "librdkafka's default (range,roundrobin) is",
    "max_block_ms": "confluent-kafka's produce() never blocks: a full queue fails at once with BufferError",
}

_OWNED = {
    **dict.fromkeys(("bootstrap_servers", "bootstrap.servers", "metadata.broker.list"),
                    "set kafka.bootstrap_servers instead"),
    **dict.fromkeys(("group_id", "group.id"), "set input.group_id instead"),
    **dict.fromkeys(("auto_offset_reset", "auto.offset.reset"), "set input.auto_offset_reset instead"),
    **dict.fromkeys(("transaction_timeout_ms", "transaction.timeout.ms"),
                    "set state.transaction_timeout_seconds instead"),
    **dict.fromkeys(("enable_auto_commit", "enable.auto.commit", "enable.auto.offset.store", "isolation_level",
                     "isolation.level", "transactional_id", "transactional.id", "key_deserializer",
                     "value_deserializer", "key_serializer", "value_serializer", "stats_cb", "error_cb",
                     "on_commit", "on_delivery", "logger"), "set by the monitor itself; remove it"),
    "statistics.interval.ms": "set by the monitor itself (each second: librdkafka's statistics say which brokers "
                              "are up); remove it",
}

_KNOWN = {"consumer": set(KafkaConsumer.DEFAULT_CONFIG), "producer": set(KafkaProducer.DEFAULT_CONFIG)}
_KNOWN["admin"] = _KNOWN["consumer"] & _KNOWN["producer"]  # what kafka-python gives every client


def _hostname_check(value: Any) -> str:
    """A boolean (or its text, from an environment variable) as the algorithm that checks the host name."""
    checked = {"true": "https", "false": "none"}.get(str(value).lower())
    if checked is None:
        raise ValueError("expected true or false")
    return checked


def _acks(value: Any) -> str:
    if str(value) in ("all", "-1", "0", "1"):  # True and 1.0 read 'True' and '1.0': refused
        return str(value)
    raise ValueError("expected 'all', -1, 0 or 1")


_CONVERT: dict[str, Callable[[Any], Any]] = {"ssl_check_hostname": _hostname_check, "acks": _acks,
                                             "compression_type": lambda value: "none" if value is None else value}


def _as_given(value: Any) -> Any:
    """librdkafka takes a list as one comma-separated string (``debug``, ``sasl.oauthbearer.extensions``)."""
    return ",".join(str(entry) for entry in value) if isinstance(value, tuple) else value


def librdkafka_options(kafka: Any, role: str) -> dict[str, Any]:
    """librdkafka configuration for role 'consumer', 'producer' or 'admin' from the kafka config section."""
    if role not in RENAMED:
        raise ValueError(f"role must be one of {sorted(RENAMED)}, not {role!r}")
    problems: list[tuple[str, str]] = []
    merged: dict[str, Any] = {}
    for section in ("client",) if role == "admin" else ("client", role):
        for key, value in getattr(kafka, section).items():
            try:
                name, converted = _translate(key, value, role, section)
            except ValueError as exc:
                problems.append((f"kafka.{section}.{key}", str(exc)))
                continue
            if name is not None:
                merged[name] = converted
    if problems:
        raise ConfigError("\n".join(f"{path}: {why}" for path, why in sorted(problems)))
    return {"bootstrap.servers": ",".join(kafka.bootstrap_servers), **merged}


def _translate(key: str, value: Any, role: str, section: str) -> tuple[str | None, Any]:
    """``key``'s librdkafka name and value for ``role`` (name ``None``: left out); ``ValueError``: refused."""
    if key in _OWNED:
        raise ValueError(_OWNED[key])
    if key.endswith("_cb"):
        raise ValueError("a callback, which the configuration cannot give")
    if "." in key or key in _UNDOTTED:  # librdkafka's own name
        return key, _as_given(value)
    if key in RENAMED[role]:
        # A kafka-python option set to None keeps its default (compression_type None is 'none').
        if value is None and key != "compression_type":
            return None, None
        return RENAMED[role][key], _CONVERT.get(key, _as_given)(value)
    if key in _KNOWN[role]:
        why = _WITHOUT_EQUIVALENT.get(key, "no librdkafka property does the same")
        raise ValueError(f"a kafka-python option without a confluent-kafka equivalent ({why})")
    other = next((other for other in ("consumer", "producer") if key in _KNOWN[other]), None)
    if other is not None and section == "client":
        return None, None  # another role's option: that role takes it
    if other is not None:
        raise ValueError(f"a kafka-python {other} option, not a {role} one")
    raise ValueError("neither a kafka-python option nor a librdkafka property (librdkafka's names have dots)")


_PROPERTY = re.compile(r'property:? "([^"]+)"')


def librdkafka_error_path(kafka: Any, message: str, role: str | None = None) -> str | None:
    """Where in the ``kafka`` section the property named in a librdkafka configuration error (``No such
    configuration property: "x.y"``, ``Invalid value "v" for configuration property "x.y"``) was set, as
    ``kafka.client.x.y`` or ``kafka.consumer.<the key as written>``; ``None`` if it was not set there. The
    role's own section is searched before ``client`` (its value won); without a role, both roles'."""
    found = _PROPERTY.search(message)
    if found is None:
        return None
    name = found.group(1)
    roles = ("consumer", "producer") if role is None else (role,) if role != "admin" else ()
    for section in (*roles, "client"):
        for key in getattr(kafka, section):
            if key == name or any(renamed.get(key) == name for renamed in RENAMED.values()):
                return f"kafka.{section}.{key}"
    return None
