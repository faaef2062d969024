"""The service configuration: one frozen dataclass per section, read from YAML and the environment.

``load_config`` reads a file and ``config_from_dict`` a mapping. Both substitute ``${VAR}`` references,
apply ``MONITOR__SECTION__KEY`` overrides, then validate everything in one pass and raise one
``ConfigError`` that lists every problem with its dotted path. ``config/monitor.yaml`` documents each key.

>>> config = config_from_dict({"batch": {"max_records": 100}}, environ={})
>>> config.batch
BatchConfig(max_records=100, max_wait_ms=200)
>>> config_from_dict({"batch": {"max_record": 100}}, environ={})
Traceback (most recent call last):
...
monitor.errors.ConfigError: batch.max_record: unknown key; did you mean 'max_records'?
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

import yaml

from monitor.errors import ConfigError

ENV_PREFIX = "MONITOR__"

Scalar = str | int | float | bool | None
OptionValue = Scalar | tuple[Scalar, ...]
Options = Mapping[str, OptionValue]
Check = Callable[[Any], Any]
S = TypeVar("S", bound="_Section")

# Kafka options that the pass-through dicts must not set: another key owns them, and two sources for one
# setting is how a consumer ends up in the wrong group.
_OWNED_ELSEWHERE = {"bootstrap_servers": "kafka.bootstrap_servers", "group_id": "input.group_id",
                    "auto_offset_reset": "input.auto_offset_reset"}
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)
_TYPED_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float"))
_MERGE_TAG = "tag:yaml.org,2002:merge"
# `$${` is the escape for a literal `${`; a `${` without its closing brace is an error, not text.
_REFERENCE = re.compile(r"\$(?P<escape>\$)?\{(?P<body>[^}]*)(?P<close>\}?)")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


# ---- checks: each takes a raw value and returns the value to store, or raises _Invalid ----------------


class _Invalid(Exception):
    """A value a check refuses: what was expected, the value, and where below the field (``[2]``)."""

    def __init__(self, expected: str, value: object, where: str = "") -> None:
        super().__init__(expected)
        self.expected, self.value, self.where = expected, value, where

    def message(self) -> str:
        return f"expected {self.expected}, {_got(self.value)}"


class _Interpolated(str):
    """A string that came out of ``${VAR}`` substitution: numeric fields may read it as a YAML scalar."""


def _got(value: object) -> str:
    kind = "str" if isinstance(value, str) else type(value).__name__
    shown = repr(str(value) if isinstance(value, str) else value)
    return f"got {shown if len(shown) <= 60 else shown[:56] + '...'} ({kind})"


def _typed(value: object) -> object:
    # An environment variable is always text; `max_records: ${MAX_RECORDS:-5000}` should still be a number.
    return _parse_scalar(value) if isinstance(value, _Interpolated) else value


def _integer(minimum: int) -> Check:
    def check(value: Any) -> int:
        value = _typed(value)
        # bool is an int in Python, but `max_records: true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("an integer", value)
        if value < minimum:
            raise _Invalid(f"an integer >= {minimum}", value)
        return value
    return check


def _positive_number(value: Any) -> float:
    value = _typed(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("a number", value)
    if not (math.isfinite(value) and value > 0):
        raise _Invalid("a finite number > 0", value)
    return float(value)


def _number(minimum: float) -> Check:
    def check(value: Any) -> float:
        value = _typed(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid("a number", value)
        if not (math.isfinite(value) and value >= minimum):
            raise _Invalid(f"a finite number >= {minimum:g}", value)
        return float(value)
    return check


def _boolean(value: Any) -> bool:
    value = _typed(value)
    if not isinstance(value, bool):
        raise _Invalid("true or false", value)
    return value


def _matching(pattern: str, what: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise _Invalid(what, value)
        return str(value)  # a plain str, not the _Interpolated marker
    return check


_text = _matching(r".+", "a non-empty string")
_topic = _matching(r"(?!\.\.?$)[A-Za-z0-9._-]{1,249}", "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
_server = _matching(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?", "'host:port'")
_field_path = _matching(r"[^.]+(\.[^.]+)*", "a dotted field path such as 'payload.serial'")


def _choice(*allowed: str, fold: Callable[[str], str] | None = None) -> Check:
    def check(value: Any) -> str:
        key = fold(value) if fold is not None and isinstance(value, str) else value
        if not isinstance(key, str) or key not in allowed:
            raise _Invalid("one of " + ", ".join(map(repr, allowed)), value)
        return str(key)
    return check


def _optional(check: Check) -> Check:
    def optional(value: Any) -> Any:
        value = _typed(value)  # so `${OUTPUT_TOPIC:-null}` can switch a feature off
        if value is None:
            return None
        try:
            return check(value)
        except _Invalid as exc:
            raise _Invalid(f"null or {exc.expected}", exc.value, exc.where) from None
    return optional


def _string_list(item: Check, what: str) -> Check:
    """A non-empty list whose items pass ``item``; one string is split at commas (no Kafka name has one)."""
    def check(value: Any) -> tuple[str, ...]:
        items = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise _Invalid(f"a non-empty list of {what} or one comma-separated string", value)
        checked = []
        for index, entry in enumerate(items):
            try:
                checked.append(item(entry))
            except _Invalid as exc:
                raise _Invalid(exc.expected, exc.value, f"[{index}]") from None
        return tuple(checked)
    return check


def _options(value: Any) -> Options:
    """Kafka client options, passed through untouched: only their shape is checked here, names later."""
    if value is None:  # a `client:` whose every line is commented out
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise _Invalid("a mapping of option names to values", value)
    options: dict[str, OptionValue] = {}
    for key, option in value.items():
        if not isinstance(key, str):
            raise _Invalid("option names that are strings", key)
        if isinstance(option, (list, tuple)):
            options[key] = tuple(_scalar(entry, f".{key}[{i}]") for i, entry in enumerate(option))
        else:
            options[key] = _scalar(option, f".{key}")
    return MappingProxyType(options)


def _scalar(value: object, where: str) -> Scalar:
    if isinstance(value, str):
        return str(value)  # interpolated secrets stay text, even when they look like numbers
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise _Invalid("a string, number, boolean, null or a list of them", value, where)


def _setting(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


def _options_setting() -> Any:
    return field(default_factory=lambda: MappingProxyType({}), metadata={"check": _options})


def _section(cls: type[S]) -> S:
    result: S = field(default_factory=cls, metadata={"section": cls})
    return result


# ---- sections ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """Base of every section: ``to_dict`` and a hook for checks that need several fields at once."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars that ``config_from_dict`` turns back into an equal object."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def _cross_check(self) -> Iterable[tuple[str, str]]:
        """(field path relative to this section, problem) for each broken combination of valid fields."""
        return ()


@dataclass(frozen=True, repr=False)
class KafkaConfig(_Section):
    """Brokers, and kafka-python options passed as-is: ``client`` to every client, the others to one kind."""

    bootstrap_servers: tuple[str, ...] = _setting(("127.0.0.1:9092",), _string_list(_server, "'host:port'"))
    client: Options = _options_setting()
    consumer: Options = _options_setting()
    producer: Options = _options_setting()

    def __repr__(self) -> str:
        # The config gets logged at start-up; SASL and SSL passwords must not be.
        options = ", ".join(f"{name}={_redacted(getattr(self, name))!r}" for name in ("client", "consumer", "producer"))
        return f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r}, {options})"

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        for name in ("client", "consumer", "producer"):
            for key in getattr(self, name):
                if key in _OWNED_ELSEWHERE:
                    yield f"{name}.{key}", f"set {_OWNED_ELSEWHERE[key]} instead"


@dataclass(frozen=True)
class InputConfig(_Section):
    """Which topics to read and how a record's value becomes a sequence, a weight and an event time."""

    topics: tuple[str, ...] = _setting(("sequences",), _string_list(_topic, "Kafka topic names"))
    group_id: str = _setting("sequence-monitor", _text)
    value_format: str = _setting("text", _choice("text", "json"))
    sequence_field: str = _setting("sequence", _field_path)
    weight_field: str | None = _setting(None, _optional(_field_path))
    event_time_field: str | None = _setting(None, _optional(_field_path))
    event_time_format: str = _setting("epoch_ms", _choice("epoch_ms", "epoch_s", "iso8601"))
    max_value_bytes: int = _setting(65536, _integer(1))
    max_sequence_chars: int = _setting(4096, _integer(1))
    auto_offset_reset: str = _setting("earliest", _choice("earliest", "latest"))

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.value_format == "text":
            for name in ("weight_field", "event_time_field"):
                if getattr(self, name) is not None:
                    yield name, "needs value_format 'json': a text record has no fields"


@dataclass(frozen=True)
class BatchConfig(_Section):
    """How many records one poll hands to the scorer, and how long it waits to fill a batch."""

    max_records: int = _setting(5000, _integer(1))
    max_wait_ms: int = _setting(200, _integer(0))


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Where the model bundle lives."""

    path: str = _setting("models/default", _text)


@dataclass(frozen=True)
class DeadLetterConfig(_Section):
    """Where records that cannot be decoded go, with their original bytes (up to ``max_value_bytes``)."""

    topic: str = _setting("sequences.dead-letter", _topic)
    max_value_bytes: int = _setting(900_000, _integer(1))


@dataclass(frozen=True)
class OutputConfig(_Section):
    """Where scored events go; ``None`` produces none."""

    topic: str | None = _setting(None, _optional(_topic))


@dataclass(frozen=True)
class LoggingConfig(_Section):
    """Log lines for people (``human``) or one JSON object per line (``json``), from ``level`` up."""

    format: str = _setting("human", _choice("human", "json"))
    level: str = _setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", fold=str.upper))


@dataclass(frozen=True)
class ShutdownConfig(_Section):
    """How long a graceful stop may take before the service gives up waiting."""

    timeout_seconds: float = _setting(30.0, _positive_number)


@dataclass(frozen=True)
class WindowConfig(_Section):
    """Event-time windows: their length, how long one waits for late records, how often the clock closes."""

    length_seconds: float = _setting(3600.0, _positive_number)
    allowed_lateness_seconds: float = _setting(300.0, _number(0))
    close_check_seconds: float = _setting(5.0, _positive_number)
    quiet_seconds: float = _setting(30.0, _number(0))

    @property
    def length_ms(self) -> int:
        return int(self.length_seconds * 1000)

    @property
    def allowed_lateness_ms(self) -> int:
        return int(self.allowed_lateness_seconds * 1000)


@dataclass(frozen=True)
class CompareConfig(_Section):
    """How a closed window is judged against history (see ``monitor.compare.CompareSettings``)."""

    baseline: str = _setting("previous", _choice("previous", "same_hour"))
    previous_windows: int = _setting(168, _integer(1))
    same_hour_days: int = _setting(7, _integer(1))
    min_history: int = _setting(24, _integer(1))
    min_count: int = _setting(1, _integer(1))
    warning_z: float = _setting(3.0, _positive_number)
    critical_z: float = _setting(6.0, _positive_number)
    warning_share_ratio: float = _setting(3.0, _positive_number)
    critical_share_ratio: float = _setting(10.0, _positive_number)
    share_floor: float = _setting(0.01, _positive_number)
    min_relative_spread: float = _setting(0.05, _number(0))
    exclude_abnormal: bool = _setting(True, _boolean)
    same_model_only: bool = _setting(True, _boolean)


@dataclass(frozen=True)
class StateConfig(_Section):
    """Where window state and the offsets it is exact at are checkpointed, and how often."""

    path: str = _setting("state/monitor.sqlite", _text)
    checkpoint_interval_seconds: float = _setting(5.0, _positive_number)


@dataclass(frozen=True)
class ReloadConfig(_Section):
    """How often the model bundle directory is checked for a newly published bundle (0: never)."""

    check_interval_seconds: float = _setting(30.0, _number(0))


@dataclass(frozen=True)
class RetrainConfig(_Section):
    """Optional scheduled retraining on recent records that scored normal."""

    enabled: bool = _setting(False, _boolean)
    interval_hours: float = _setting(24.0, _positive_number)
    min_records: int = _setting(10_000, _integer(20))
    max_records: int = _setting(200_000, _integer(20))
    output_path: str | None = _setting(None, _optional(_text))

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        if self.min_records > self.max_records:
            yield "min_records", f"{self.min_records} is more than max_records ({self.max_records})"


@dataclass(frozen=True)
class MetricsConfig(_Section):
    """The Prometheus endpoint (/metrics) with /healthz and /readyz."""

    enabled: bool = _setting(True, _boolean)
    host: str = _setting("0.0.0.0", _text)
    port: int = _setting(9108, _integer(0))


@dataclass(frozen=True)
class MonitorConfig(_Section):
    """The whole configuration. Its fields are the table of sections: a new section is one line here."""

    kafka: KafkaConfig = _section(KafkaConfig)
    input: InputConfig = _section(InputConfig)
    batch: BatchConfig = _section(BatchConfig)
    model: ModelConfig = _section(ModelConfig)
    dead_letter: DeadLetterConfig = _section(DeadLetterConfig)
    output: OutputConfig = _section(OutputConfig)
    logging: LoggingConfig = _section(LoggingConfig)
    shutdown: ShutdownConfig = _section(ShutdownConfig)
    window: WindowConfig = _section(WindowConfig)
    compare: CompareConfig = _section(CompareConfig)
    state: StateConfig = _section(StateConfig)
    reload: ReloadConfig = _section(ReloadConfig)
    retrain: RetrainConfig = _section(RetrainConfig)
    metrics: MetricsConfig = _section(MetricsConfig)

    def _cross_check(self) -> Iterator[tuple[str, str]]:
        # Writing to a topic the monitor reads would score its own output again, forever.
        for name, topic in (("dead_letter.topic", self.dead_letter.topic), ("output.topic", self.output.topic)):
            if topic in self.input.topics:
                yield name, f"{topic!r} is also in input.topics; the monitor would read its own output"
        if self.output.topic == self.dead_letter.topic:
            yield "output.topic", "is the same topic as dead_letter.topic; scored events and dead letters must not mix"


def _plain(value: object) -> Any:
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(option) for key, option in value.items()}
    if isinstance(value, tuple):
        return [_plain(entry) for entry in value]
    if isinstance(value, str):
        return value.replace("${", "$${")  # so loading the dict again gives the same text back
    return value


def _redacted(options: Options) -> dict[str, OptionValue]:
    return {key: "***" if _SECRET_KEY.search(key) else value for key, value in options.items()}


# ---- loading ------------------------------------------------------------------------------------------


def load_config(path: Path | str | None, environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The configuration in the YAML file ``path`` (``None``: no file, the defaults), after the environment.

    ``environ`` (default ``os.environ``) feeds ``${VAR}`` references and ``MONITOR__SECTION__KEY``
    overrides; the overrides apply with or without a file. Raises ``ConfigError`` naming the file.
    """
    if path is None:
        return _parse({}, environ, source="")
    path = Path(path)
    return _parse(_read_yaml(path), environ, source=str(path))


def config_from_dict(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The configuration in ``data`` (as a YAML file would give it), after the environment as in ``load_config``."""
    return _parse(data, environ, source="")


class _Problem(NamedTuple):
    """One thing wrong with the configuration: dotted path, message, and where it came from if known."""

    path: str
    message: str
    source: str = ""


def _parse(data: object, environ: Mapping[str, str] | None, source: str) -> MonitorConfig:
    environ = os.environ if environ is None else environ
    if data is None:  # an empty file, or one whose every line is a comment
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(f.name for f in fields(MonitorConfig))
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}expected a mapping of sections ({names}), {_got(data)}")
    tree = _copy_tree(data)
    problems: list[_Problem] = []
    origins = _apply_overrides(tree, environ, problems)
    tree = _interpolate(tree, "", environ, origins.keys(), problems)
    config = _build(MonitorConfig, tree, "", problems)
    if problems:
        raise _error(problems, origins, source)
    return config


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping: PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} appears twice", key_node.start_mark)
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)  # _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or exc.context}"
    return str(exc)


def _copy_tree(value: object) -> Any:
    """Plain dicts and lists throughout, so overrides can change the copy and never the caller's data."""
    if isinstance(value, Mapping):
        return {key: _copy_tree(entry) for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_tree(entry) for entry in value]
    return value


# ---- the environment ----------------------------------------------------------------------------------


def _apply_overrides(tree: dict[Any, Any], environ: Mapping[str, str], problems: list[_Problem]) -> dict[str, str]:
    """Set every ``MONITOR__A__B=value`` as ``a.b`` in ``tree``; returns dotted path -> variable name."""
    origins: dict[str, str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        if not all(keys):
            problems.append(_Problem("", f"expected {ENV_PREFIX}SECTION__KEY, names separated by '__'", name))
            continue
        node = tree
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}  # a null (or otherwise not a mapping) parent gives way to the override
            node = node[key]
        node[keys[-1]] = _parse_scalar(environ[name])
        origins[".".join(keys)] = name
    return origins


def _parse_scalar(text: str) -> object:
    """``text`` read as a YAML scalar: null, true/false and numbers get their type, the rest stays text.

    Not ``yaml.safe_load``: it would drop a password starting with ``#`` as a comment and turn ``[x]`` into
    a list. Quotes force text: ``'"5000"'`` is the string ``5000``.
    """
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            quoted = yaml.safe_load(text)
        except yaml.YAMLError:
            return str(text)
        return quoted if isinstance(quoted, str) else str(text)
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        if tag not in _TYPED_TAGS:
            return str(text)
        return loader.construct_object(yaml.ScalarNode(tag, text))
    finally:
        loader.dispose()


def _interpolate(value: Any, path: str, environ: Mapping[str, str], skip: Iterable[str],
                 problems: list[_Problem]) -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` replaced in every string not under ``skip``."""
    if path in skip:  # set by an override: its text is the value, even if it holds `${`
        return value
    if isinstance(value, dict):
        return {key: _interpolate(entry, _join(path, str(key)), environ, skip, problems)
                for key, entry in value.items()}
    if isinstance(value, list):
        return [_interpolate(entry, f"{path}[{i}]", environ, skip, problems) for i, entry in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            return _Interpolated(_REFERENCE.sub(lambda match: _resolve(match, environ), value))
        except ValueError as exc:
            problems.append(_Problem(path, str(exc)))
    return value


def _resolve(match: re.Match[str], environ: Mapping[str, str]) -> str:
    if match["escape"]:
        return match[0][1:]
    if not match["close"]:
        raise ValueError("'${' without a closing '}'; write '$${' for a literal '${'")
    body = _REFERENCE_BODY.fullmatch(match["body"])
    if body is None:
        raise ValueError(f"{match[0]!r} is not a reference: expected ${{NAME}} or ${{NAME:-default}}")
    name, default = body["name"], body["default"]
    # As in the shell, `:-` also replaces a variable that is set but empty.
    if environ.get(name) or (name in environ and default is None):
        return environ[name]
    if default is not None:
        return default
    raise ValueError(f"environment variable {name} is not set; give a default with ${{{name}:-default}}")


# ---- validation ---------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(cls: type[S], data: object, path: str, problems: list[_Problem]) -> S:
    """An instance of ``cls`` from ``data``, appending a problem for everything wrong on the way.

    A refused value leaves its field at the default so the walk can go on and report the rest.
    """
    if data is None:  # a section whose every key is commented out
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(f.name for f in fields(cls))
        problems.append(_Problem(path, _Invalid(f"a mapping with keys {names}", data).message()))
        return cls()
    before = len(problems)
    problems.extend(_unknown_keys(cls, data, path))
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if spec.name not in data:
            continue
        where = _join(path, spec.name)
        if "section" in spec.metadata:
            values[spec.name] = _build(spec.metadata["section"], data[spec.name], where, problems)
            continue
        try:
            values[spec.name] = spec.metadata["check"](data[spec.name])
        except _Invalid as exc:
            problems.append(_Problem(where + exc.where, exc.message()))
    section = cls(**values)
    if len(problems) == before:  # combinations are only worth judging when every part is valid
        problems.extend(_Problem(_join(path, name), message) for name, message in section._cross_check())
    return section


def _unknown_keys(cls: type[_Section], data: Mapping[Any, Any], path: str) -> Iterator[_Problem]:
    known = [spec.name for spec in fields(cls)]
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key).lower(), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
        yield _Problem(_join(path, str(key)), f"unknown key; {hint}")


def _error(problems: list[_Problem], origins: Mapping[str, str], source: str) -> ConfigError:
    lines = [_line(problem, origins, source) for problem in _distinct(problems)]
    if len(lines) == 1:
        return ConfigError(lines[0])
    return ConfigError(f"{len(lines)} configuration problems:\n" + "\n".join(f"  {line}" for line in lines))


def _distinct(problems: list[_Problem]) -> Iterator[_Problem]:
    """Each problem once per value: a failed ``${VAR}`` would otherwise also fail its type check."""
    seen: list[str] = []
    for problem in problems:
        if problem.path and any(_related(problem.path, other) for other in seen):
            continue
        seen.append(problem.path)
        yield problem


def _related(path: str, other: str) -> bool:
    return path == other or _below(path, other) or _below(other, path)


def _below(path: str, ancestor: str) -> bool:
    return path.startswith(f"{ancestor}.") or path.startswith(f"{ancestor}[")


def _line(problem: _Problem, origins: Mapping[str, str], source: str) -> str:
    # A value set by an override is blamed on its variable, not on the file that never held it.
    blamed = [name for path, name in origins.items() if problem.path and _related(problem.path, path)]
    where = problem.source or (blamed[0] if blamed else source)
    text = f"{problem.path}: {problem.message}" if problem.path else problem.message
    return f"{where}: {text}" if where else text
