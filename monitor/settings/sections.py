"""The configuration's sections: one frozen dataclass each, its keys with defaults and checks, and
``MonitorConfig``, the whole configuration, whose fields are the table of sections."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from monitor.settings.checks import (
    Options,
    OptionValue,
    Section,
    boolean,
    choice,
    epoch_ms,
    fraction,
    integer,
    matching,
    moment,
    number,
    optional,
    options_setting,
    positive_number,
    positive_number_up_to,
    section,
    setting,
    share,
    string_list,
)

# Kafka options that the pass-through dicts must not set: another key owns them, and two sources for one
# setting is how a consumer ends up in the wrong group.
_OWNED_ELSEWHERE = {"bootstrap_servers": "kafka.bootstrap_servers", "group_id": "input.group_id",
                    "auto_offset_reset": "input.auto_offset_reset"}
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)

_text = matching(r".+", "a non-empty string")
_topic = matching(r"(?!\.\.?$)[A-Za-z0-9._-]{1,249}", "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
_server = matching(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?", "'host:port'")
_field_path = matching(r"[^.]+(\.[^.]+)*", "a dotted field path such as 'payload.serial'")
# The largest input.max_weight allowed. Below it a window's weight sums, and its sample's priorities (a
# weight over a uniform draw down to 2**-53), stay far from overflowing, and a weight of 1 still counts
# beside the heaviest record (float64 adds 1 exactly up to 2**53).
_WEIGHT_CEILING = 1e15


@dataclass(frozen=True, repr=False)
class KafkaConfig(Section, key="kafka"):
    """Brokers, the client library, and its options: ``client`` to every client, the others to one kind
    (kafka-python's names; with confluent-kafka they are mapped to librdkafka's, whose own dotted names
    are taken too)."""

    bootstrap_servers: tuple[str, ...] = setting(("127.0.0.1:9092",), string_list(_server, "'host:port'"))
    client: Options = options_setting()
    consumer: Options = options_setting()
    producer: Options = options_setting()
    reconnect_after_seconds: float = setting(60.0, positive_number)
    library: str = setting("kafka-python", choice("kafka-python", "confluent-kafka"))

    def __repr__(self) -> str:
        # The config gets logged at start-up; SASL and SSL passwords must not be.
        options = ", ".join(f"{name}={_redacted(getattr(self, name))!r}" for name in ("client", "consumer", "producer"))
        return (f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r}, library={self.library!r}, {options}, "
                f"reconnect_after_seconds={self.reconnect_after_seconds!r})")

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        for name in ("client", "consumer", "producer"):
            for key in getattr(self, name):
                if key in _OWNED_ELSEWHERE:
                    yield f"{name}.{key}", f"set {_OWNED_ELSEWHERE[key]} instead"


def _redacted(options: Options) -> dict[str, OptionValue]:
    return {key: "***" if _SECRET_KEY.search(key) else value for key, value in options.items()}


@dataclass(frozen=True)
class InputConfig(Section, key="input"):
    """Which topics to read and how a record's value becomes a sequence, a weight and an event time.

    Event times before ``min_event_time`` or more than ``max_future_seconds`` ahead of the wall clock at
    decoding, and weights above ``max_weight``, are rejected: one such record would otherwise close every
    open window at once, open a window of 1970 that enters the baselines, or make a window's sums infinite.
    """

    topics: tuple[str, ...] = setting(("sequences",), string_list(_topic, "Kafka topic names"))
    group_id: str = setting("sequence-monitor", _text)
    value_format: str = setting("text", choice("text", "json"))
    sequence_field: str = setting("sequence", _field_path)
    weight_field: str | None = setting(None, optional(_field_path))
    event_time_field: str | None = setting(None, optional(_field_path))
    event_time_format: str = setting("epoch_ms", choice("epoch_ms", "epoch_s", "iso8601"))
    max_value_bytes: int = setting(65536, integer(1))
    max_sequence_chars: int = setting(4096, integer(1))
    min_event_time: str = setting("2000-01-01T00:00:00Z", moment)
    max_future_seconds: float = setting(86400.0, number(0))
    max_weight: float = setting(1e6, positive_number_up_to(_WEIGHT_CEILING))
    auto_offset_reset: str = setting("earliest", choice("earliest", "latest"))

    @property
    def min_event_time_ms(self) -> int:
        return epoch_ms(self.min_event_time)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.value_format == "text":
            for name in ("weight_field", "event_time_field"):
                if getattr(self, name) is not None:
                    yield name, "needs value_format 'json': a text record has no fields"


@dataclass(frozen=True)
class BatchConfig(Section, key="batch"):
    """How many records one poll hands to the scorer, and how long it waits to fill a batch."""

    max_records: int = setting(5000, integer(1))
    max_wait_ms: int = setting(200, integer(0))


@dataclass(frozen=True)
class ModelConfig(Section, key="model"):
    """Where the model bundle lives, and optionally another threshold than the bundle's own."""

    path: str = setting("models/default", _text)
    threshold_quantile: float | None = setting(None, optional(fraction))


@dataclass(frozen=True)
class DeadLetterConfig(Section, key="dead_letter"):
    """Where records that cannot be decoded go, with their original bytes (up to ``max_value_bytes``)."""

    topic: str = setting("sequences.dead-letter", _topic)
    max_value_bytes: int = setting(900_000, integer(1))


@dataclass(frozen=True)
class OutputConfig(Section, key="output"):
    """Where scored events go; ``None`` produces none."""

    topic: str | None = setting(None, optional(_topic))


@dataclass(frozen=True)
class LoggingConfig(Section, key="logging"):
    """Log lines for people (``human``) or one JSON object per line (``json``), from ``level`` up."""

    format: str = setting("human", choice("human", "json"))
    level: str = setting("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR", fold=str.upper))


@dataclass(frozen=True)
class ShutdownConfig(Section, key="shutdown"):
    """How long a graceful stop may take before the service gives up waiting."""

    timeout_seconds: float = setting(30.0, positive_number)


@dataclass(frozen=True)
class WindowConfig(Section, key="window"):
    """Event-time windows: their length, how long one waits for late records, when a partition is idle."""

    length_seconds: float = setting(3600.0, positive_number)
    allowed_lateness_seconds: float = setting(300.0, number(0))
    close_check_seconds: float = setting(5.0, positive_number)
    quiet_seconds: float = setting(30.0, number(0))
    # Sequences sampled per window (weighted, mergeable): history is re-scored from them when the model
    # changes, and retraining learns from them. 0 keeps none (a model change then starts learning afresh).
    sample_size: int = setting(1000, integer(0))

    @property
    def length_ms(self) -> int:
        return int(self.length_seconds * 1000)

    @property
    def allowed_lateness_ms(self) -> int:
        return int(self.allowed_lateness_seconds * 1000)


@dataclass(frozen=True)
class CompareConfig(Section, key="compare"):
    """How a closed window is judged against its baseline (``monitor.hourly.compare``).

    The verdict, in this order:

    ``insufficient_data``
        the window has fewer than ``min_count`` records, or no weight (no weighted mean). Never alarms.
    ``learning``
        fewer than ``min_history`` usable windows in the baseline.
    ``critical`` / ``warning`` (``method: calibrated``, the default)
        the hour's tail probability (``monitor.hourly.evidence``: records far above normal, records above
        the threshold, the capped mean, each over the last 1..``evidence_hours`` hours, with the hour's
        ``outlier_records`` highest-error records set aside) is at most what ``false_critical_per_30_days``
        (``false_warning_per_30_days``) allows per window. A window that departs only with its top records
        is normal with an ``outliers`` reason (a warning with ``outliers_verdict: warning``).
    ``critical`` / ``warning`` (``method: mean_z``, the rule before: one odd record can make an hour critical)
        robust z of the weighted mean >= ``critical_z`` (``warning_z``), or share ratio >=
        ``critical_share_ratio`` (``warning_share_ratio``).
    ``normal``
        otherwise. Only *higher* errors alarm: a window better reconstructed than usual is normal.

    The robust z is ``(mean - baseline median) / spread``, the spread being the baseline's MAD times 1.4826
    but never below ``min_relative_spread`` times the baseline median: a perfectly steady history then
    needs a relative rise (by default 3 x 5 % = 15 % for a warning) instead of dividing by zero. The share
    ratio is the window's share of weight above the abnormal threshold over the baseline's median share,
    the latter taken as at least ``share_floor`` so that a few flagged records in a quiet hour do not alarm.
    The two signals catch different faults: the mean a few very bad records or a general drift, the share
    many moderately bad ones.

    ``baseline``: ``"previous"`` (the last ``previous_windows`` windows), ``"same_hour"`` (the same time of
    day over the last ``same_hour_days`` days) or ``"same_hour_of_week"`` (the same hour of the same weekday
    over the last ``same_hour_weeks`` weeks; windows of every verdict serve in it, so a weekly pattern
    judged abnormal its first week is the baseline of the next). ``exclude_abnormal`` keeps warning and critical windows out
    of later baselines, so a long incident stays critical instead of becoming the new normal (only a new
    model ends it); ``same_model_only`` compares only windows scored by the same model version, since errors
    of different models are on different scales (after a model change the verdict is learning again).

    >>> CompareConfig(warning_z=7.0)
    Traceback (most recent call last):
    ...
    monitor.settings.checks.SectionError: compare.warning_z: 7.0 must not exceed compare.critical_z (6.0)
    """

    baseline: str = setting("previous", choice("previous", "same_hour", "same_hour_of_week"))
    previous_windows: int = setting(168, integer(1))
    same_hour_days: int = setting(7, integer(1))
    same_hour_weeks: int = setting(4, integer(1))
    method: str = setting("calibrated", choice("calibrated", "mean_z"))
    false_critical_per_30_days: float = setting(0.1, positive_number)
    false_warning_per_30_days: float = setting(3.0, positive_number)
    evidence_hours: int = setting(6, integer(1))
    outlier_records: int = setting(1, integer(0))
    outliers_verdict: str = setting("normal", choice("normal", "warning"))
    min_history: int = setting(24, integer(1))
    min_count: int = setting(1, integer(1))
    warning_z: float = setting(3.0, positive_number)
    critical_z: float = setting(6.0, positive_number)
    warning_share_ratio: float = setting(3.0, positive_number)
    critical_share_ratio: float = setting(10.0, positive_number)
    share_floor: float = setting(0.01, positive_number)
    min_relative_spread: float = setting(0.05, positive_number)
    exclude_abnormal: bool = setting(True, boolean)
    same_model_only: bool = setting(True, boolean)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        capacity = {"same_hour": "same_hour_days", "same_hour_of_week": "same_hour_weeks"}.get(self.baseline,
                                                                                              "previous_windows")
        for low, high in (("warning_z", "critical_z"), ("warning_share_ratio", "critical_share_ratio"),
                          ("min_history", capacity), ("false_critical_per_30_days", "false_warning_per_30_days")):
            if getattr(self, low) > getattr(self, high):
                yield low, f"{getattr(self, low)} must not exceed compare.{high} ({getattr(self, high)})"


@dataclass(frozen=True)
class FormatConfig(Section, key="formats"):
    """What each window counts of its sequences' formats (``monitor.core.signature``) and when a change of
    formats joins the verdict (``monitor.hourly.format_change``).

    Each window keeps a count per format in ``slots`` counters (exact while an hour has at most that many
    formats; beyond, the common ones stay exact to within total/slots) with ``examples`` example sequences each.
    A closed window's formats are compared with its baseline's (the same windows its error is compared with;
    training's while it has none): a format of at least ``new_share`` of the window that no baseline window
    had is *new* once it has ``new_min_records`` records (one broken record is not a format); one of at least
    ``vanished_share`` of the baseline absent from a window expected to hold ten or more of it has *vanished*; ``moved_distance`` bounds the Jensen-Shannon distance between the
    window's format shares and the baseline's. Any of the three makes a normal window a warning (and a
    learning one, for a format training never had). ``metrics_top``: formats per topic exported as gauges.
    """

    slots: int = setting(64, integer(1))
    examples: int = setting(3, integer(0))
    new_share: float = setting(0.01, share)
    new_min_records: int = setting(5, integer(1))
    vanished_share: float = setting(0.05, share)
    moved_distance: float = setting(0.3, share)
    metrics_top: int = setting(10, integer(1))


@dataclass(frozen=True)
class PromotionConfig(Section, key="promotion"):
    """When a candidate model (retrained, or newly published at ``model.path``) may take over.

    It is first scored beside the current model on the recent windows' samples, each window judged against
    the others judged normal (``monitor.hourly.shadow``). It is promoted only if it keeps at least
    ``min_normal_kept`` of the windows judged normal normal, still flags at least ``min_flagged_kept`` of those
    judged warning or critical (accepted ones aside), and flags at most ``max_flag_rate_ratio`` times the share
    of the normal windows' weight the current model flags of the same records (or, when that is more, of what
    the candidate's threshold quantile expects: a floor, so a current model flagging nothing lets a candidate
    flagging about its quantile's share through). ``shadow: false``
    promotes every valid candidate unseen (the behaviour before shadowing existed).
    """

    shadow: bool = setting(True, boolean)
    windows: int = setting(168, integer(1))
    min_normal_kept: float = setting(0.95, share)
    min_flagged_kept: float = setting(1.0, share)
    max_flag_rate_ratio: float = setting(3.0, positive_number)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.max_flag_rate_ratio < 1:
            yield "max_flag_rate_ratio", (f"{self.max_flag_rate_ratio} is below 1: a candidate flagging what the "
                                          "current model flags would be refused")


@dataclass(frozen=True)
class StateConfig(Section, key="state"):
    """Where window state and the offsets it is exact at are kept, and how often they are committed.

    ``store: sqlite`` keeps them in the file at ``path`` (one instance per consumer group); ``store: kafka``
    in compacted topics of the cluster, committed with the input offsets in one transaction, so instances of
    one group divide the partitions (``monitor.stream.group``). Internal topic names default to the group id
    with a suffix; ``instance_id`` names the instance's transactional producer (a stable name lets a
    restarted instance abort its own unfinished transaction at once)."""

    store: str = setting("sqlite", choice("sqlite", "kafka"))
    path: str = setting("state/monitor.sqlite", _text)
    checkpoint_interval_seconds: float = setting(5.0, positive_number)
    changelog_topic: str | None = setting(None, optional(_topic))
    windows_topic: str | None = setting(None, optional(_topic))
    models_topic: str | None = setting(None, optional(_topic))
    windows_partitions: int = setting(1, integer(1))
    replication_factor: int | None = setting(None, optional(integer(1)))
    delivery: str = setting("exactly_once", choice("exactly_once", "at_least_once"))
    transaction_timeout_seconds: float = setting(30.0, positive_number)
    instance_id: str | None = setting(None, optional(_text))
    restore_warning_seconds: float = setting(60.0, positive_number)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.store == "kafka" and self.transaction_timeout_seconds <= 2 * self.checkpoint_interval_seconds:
            yield "transaction_timeout_seconds", (f"{self.transaction_timeout_seconds} must exceed twice "
                                                  f"checkpoint_interval_seconds ({self.checkpoint_interval_seconds}):"
                                                  " a transaction stays open from one commit to the next")


@dataclass(frozen=True)
class ReportsConfig(Section, key="reports"):
    """Where every judged window goes as one JSON object (replay's JSON-lines fields), with
    ``state.store: kafka``; ``None``: the group id followed by ``.reports``."""

    topic: str | None = setting(None, optional(_topic))


@dataclass(frozen=True)
class ReloadConfig(Section, key="reload"):
    """How often the model bundle directory is checked for a newly published bundle (0: never)."""

    check_interval_seconds: float = setting(30.0, number(0))


@dataclass(frozen=True)
class RetrainConfig(Section, key="retrain"):
    """Optional scheduled retraining on the samples of recent windows judged normal, and accepted formats;
    ``max_records`` caps the corpus (newest windows first)."""

    enabled: bool = setting(False, boolean)
    interval_hours: float = setting(24.0, positive_number)
    min_records: int = setting(10_000, integer(20))
    max_records: int = setting(200_000, integer(20))
    output_path: str | None = setting(None, optional(_text))

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.min_records > self.max_records:
            yield "min_records", f"{self.min_records} is more than max_records ({self.max_records})"


@dataclass(frozen=True)
class MetricsConfig(Section, key="metrics"):
    """The Prometheus endpoint (/metrics) with /healthz and /readyz."""

    enabled: bool = setting(True, boolean)
    host: str = setting("0.0.0.0", _text)
    port: int = setting(9108, integer(0))


@dataclass(frozen=True)
class MonitorConfig(Section):
    """The whole configuration. Its fields are the table of sections: a new section is one line here
    (with the same name as the section's ``key``)."""

    kafka: KafkaConfig = section(KafkaConfig)
    input: InputConfig = section(InputConfig)
    batch: BatchConfig = section(BatchConfig)
    model: ModelConfig = section(ModelConfig)
    dead_letter: DeadLetterConfig = section(DeadLetterConfig)
    output: OutputConfig = section(OutputConfig)
    logging: LoggingConfig = section(LoggingConfig)
    shutdown: ShutdownConfig = section(ShutdownConfig)
    window: WindowConfig = section(WindowConfig)
    compare: CompareConfig = section(CompareConfig)
    formats: FormatConfig = section(FormatConfig)
    promotion: PromotionConfig = section(PromotionConfig)
    state: StateConfig = section(StateConfig)
    reports: ReportsConfig = section(ReportsConfig)
    reload: ReloadConfig = section(ReloadConfig)
    retrain: RetrainConfig = section(RetrainConfig)
    metrics: MetricsConfig = section(MetricsConfig)

    @property
    def changelog_topic(self) -> str:
        """The compacted topic holding each partition's windows and each topic's judged history."""
        return self.state.changelog_topic or f"{self.input.group_id}.changelog"

    @property
    def windows_topic(self) -> str:
        """The topic carrying closed partition windows to the member that judges their input topic."""
        return self.state.windows_topic or f"{self.input.group_id}.windows"

    @property
    def models_topic(self) -> str:
        """The compacted topic holding the group's model schedule: which model scores which windows."""
        return self.state.models_topic or f"{self.input.group_id}.models"

    @property
    def reports_topic(self) -> str:
        """The topic every judged window is written to, as one JSON object."""
        return self.reports.topic or f"{self.input.group_id}.reports"

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        # Writing to a topic the monitor reads would score its own output again, forever.
        for name, topic in (("dead_letter.topic", self.dead_letter.topic), ("output.topic", self.output.topic)):
            if topic in self.input.topics:
                yield name, f"{topic!r} is also in input.topics; the monitor would read its own output"
        if self.state.store == "kafka":
            if self.retrain.enabled:
                yield "retrain.enabled", ("needs state.store: sqlite: a retrained bundle is written on one "
                                          "instance's disk; with several, publish bundles at a model.path they "
                                          "share")
            for name, topic in (("state.changelog_topic", self.changelog_topic), ("state.windows_topic",
                                                                                   self.windows_topic),
                                ("state.models_topic", self.models_topic),
                                ("reports.topic", self.reports_topic)):
                if topic in self.input.topics or topic in (self.output.topic, self.dead_letter.topic):
                    yield name, f"{topic!r} is also an input or output topic; internal topics must be apart"
        if self.output.topic == self.dead_letter.topic:
            yield "output.topic", "is the same topic as dead_letter.topic; scored events and dead letters must not mix"

