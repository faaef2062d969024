"""Generic value checks, the ``Section`` base that applies them, and the one-pass problem report.

A check takes a raw value and returns the value to store, or raises ``_Invalid``; nothing here knows YAML.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple, TypeVar

from monitor.errors import ConfigError

Scalar = str | int | float | bool | None
OptionValue = Scalar | tuple[Scalar, ...]
Options = Mapping[str, OptionValue]
Check = Callable[[Any], Any]
S = TypeVar("S", bound="Section")


class _Invalid(Exception):
    """A value a check refuses: what was expected, the value, and where below the field (``[2]``)."""

    def __init__(self, expected: str, value: object, where: str = "") -> None:
        super().__init__(expected)
        self.expected, self.value, self.where = expected, value, where

    def message(self) -> str:
        return f"expected {self.expected}, {got(self.value)}"


class Interpolated(str):
    """A string that came out of ``${VAR}`` substitution, with ``scalar``: the text read as a YAML scalar.

    Numeric fields read the scalar (``max_records: ${MAX:-5000}`` is a number); text fields keep the text.
    """

    scalar: object

    def __new__(cls, text: str, scalar: object) -> Interpolated:
        self = super().__new__(cls, text)
        self.scalar = scalar
        return self


def got(value: object) -> str:
    """``value`` as shown in a problem: ``got 'ten' (str)``, long values cut."""
    kind = "str" if isinstance(value, str) else type(value).__name__
    shown = repr(str(value) if isinstance(value, str) else value)
    return f"got {shown if len(shown) <= 60 else shown[:56] + '...'} ({kind})"


def _typed(value: object) -> object:
    # An environment variable is always text; `max_records: ${MAX_RECORDS:-5000}` should still be a number.
    return value.scalar if isinstance(value, Interpolated) else value


# ---- checks ------------------------------------------------------------------------------------------


def integer(minimum: int) -> Check:
    """An integer >= ``minimum`` (not a bool)."""
    def check(value: Any) -> int:
        value = _typed(value)
        # bool is an int in Python, but `max_records: true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("an integer", value)
        if value < minimum:
            raise _Invalid(f"an integer >= {minimum}", value)
        return value
    return check


def positive_number(value: Any) -> float:
    """A finite number > 0, stored as a float."""
    value = _typed(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("a number", value)
    if not (math.isfinite(value) and value > 0):
        raise _Invalid("a finite number > 0", value)
    return float(value)


def number(minimum: float) -> Check:
    """A finite number >= ``minimum``, stored as a float."""
    def check(value: Any) -> float:
        value = _typed(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid("a number", value)
        if not (math.isfinite(value) and value >= minimum):
            raise _Invalid(f"a finite number >= {minimum:g}", value)
        return float(value)
    return check


def positive_number_up_to(maximum: float) -> Check:
    """A number > 0 and at most ``maximum``, stored as a float."""
    def check(value: Any) -> float:
        checked = positive_number(value)
        if checked > maximum:
            raise _Invalid(f"a number > 0 and at most {maximum:g}", value)
        return checked
    return check


def share(value: Any) -> float:
    """A number from 0 to 1 (both included), stored as a float."""
    value = _typed(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("a number", value)
    if not 0 <= value <= 1:
        raise _Invalid("a number from 0 to 1", value)
    return float(value)


def fraction(value: Any) -> float:
    """A number strictly between 0 and 1, stored as a float."""
    value = _typed(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("a number", value)
    if not 0 < value < 1:
        raise _Invalid("a number between 0 and 1 (exclusive)", value)
    return float(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MOMENT = "an ISO 8601 time from 1970 to 9999 (e.g. 2000-01-01T00:00:00Z) or epoch milliseconds >= 0"


def moment(value: Any) -> str:
    """A moment in ISO 8601 (UTC when no offset is given) or epoch milliseconds, stored as ISO 8601 in UTC
    to the millisecond (``epoch_ms`` reads it back). YAML reads an unquoted time or date as one: taken too.

    >>> moment("2000-01-01"), moment(946_684_800_500), moment("2000-01-01T01:00:00+01:00")
    ('2000-01-01T00:00:00Z', '2000-01-01T00:00:00.500Z', '2000-01-01T00:00:00Z')
    """
    value = _typed(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    when = _utc_datetime(value)
    if when is None or when < _EPOCH:
        raise _Invalid(_MOMENT, value)
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    return when.isoformat(timespec="milliseconds" if when.microsecond else "seconds").replace("+00:00", "Z")


def _utc_datetime(value: object) -> datetime | None:
    """``value`` (epoch ms, ISO 8601 text, a datetime or a date) as a datetime in UTC; ``None`` if it is none."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
        if isinstance(value, str):
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):  # a date alone: its midnight
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return None


def epoch_ms(text: str) -> int:
    """A moment as ``moment`` stores it, in epoch milliseconds.

    >>> epoch_ms("2000-01-01T00:00:00Z"), epoch_ms("1970-01-01T00:00:01.250Z")
    (946684800000, 1250)
    """
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH) // timedelta(milliseconds=1)


def boolean(value: Any) -> bool:
    """true or false."""
    value = _typed(value)
    if not isinstance(value, bool):
        raise _Invalid("true or false", value)
    return value


def matching(pattern: str, what: str) -> Check:
    """A string that ``pattern`` matches in full; ``what`` describes it in a problem."""
    compiled = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise _Invalid(what, value)
        return str(value)  # a plain str, not the Interpolated marker
    return check


def choice(*allowed: str, fold: Callable[[str], str] | None = None) -> Check:
    """One of ``allowed``, after ``fold`` (e.g. ``str.upper``) if given."""
    def check(value: Any) -> str:
        key = fold(value) if fold is not None and isinstance(value, str) else value
        if not isinstance(key, str) or key not in allowed:
            raise _Invalid("one of " + ", ".join(map(repr, allowed)), value)
        return str(key)
    return check


def optional(check: Check) -> Check:
    """``None``, or what ``check`` accepts."""
    def optional(value: Any) -> Any:
        value = _typed(value)  # so `${OUTPUT_TOPIC:-null}` can switch a feature off
        if value is None:
            return None
        try:
            return check(value)
        except _Invalid as exc:
            raise _Invalid(f"null or {exc.expected}", exc.value, exc.where) from None
    return optional


def string_list(item: Check, what: str) -> Check:
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
    if value in ("kafka-python", "confluent-kafka"):
        raise _Invalid(f"a mapping of option names to values (to choose the client, set kafka.library: {value})",
                       value)
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


# ---- fields ------------------------------------------------------------------------------------------


def setting(default: Any, check: Check) -> Any:
    """A section field: its default and the check every value (the default too) must pass."""
    return field(default=default, metadata={"check": check})


def options_setting() -> Any:
    """A section field of pass-through options (a read-only mapping), empty by default."""
    return field(default_factory=lambda: MappingProxyType({}), metadata={"check": _options})


def section(cls: type[S]) -> S:
    """A field of ``MonitorConfig`` holding the section ``cls``, its defaults by default."""
    result: S = field(default_factory=cls, metadata={"section": cls})
    return result


# ---- the section base --------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One thing wrong with the configuration: dotted path, message, and where it came from if known."""

    path: str
    message: str
    source: str = ""


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top."""
    return f"{path}.{key}" if path else key


class SectionError(ConfigError):
    """A section refused on construction: ``problems`` (paths relative to the section) and whether they are
    only ``combination`` problems (``_cross_check``), which are looked for once every field is valid."""

    def __init__(self, key: str, problems: list[Problem], combination: bool) -> None:
        super().__init__(report([Problem(join(key, p.path), p.message) for p in problems], {}, ""))
        self.problems, self.combination = problems, combination


@dataclass(frozen=True)
class Section:
    """Base of every section: checks every field on construction, then ``_cross_check``; ``to_dict``.

    ``key`` (a class keyword: ``class BatchConfig(Section, key="batch")``) is the section's path in problems.
    A refused construction raises one ``SectionError`` (a ``ConfigError``) listing every problem.
    """

    key: ClassVar[str] = ""

    def __init_subclass__(cls, key: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.key = key

    def __post_init__(self) -> None:
        problems = self._check_fields()
        if problems:
            raise SectionError(self.key, problems, combination=False)
        combinations = [Problem(path, message) for path, message in self._cross_check()]
        if combinations:
            raise SectionError(self.key, combinations, combination=True)

    def _check_fields(self) -> list[Problem]:
        """Stores each field's checked value (``${MAX:-20}`` becomes 20); returns the refused ones."""
        problems: list[Problem] = []
        for spec in fields(self):
            if "check" not in spec.metadata:  # a section: it checked itself
                continue
            try:
                object.__setattr__(self, spec.name, spec.metadata["check"](getattr(self, spec.name)))
            except _Invalid as exc:
                problems.append(Problem(spec.name + exc.where, exc.message()))
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars that ``config_from_dict`` turns back into an equal object."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def _cross_check(self) -> Iterable[tuple[str, str]]:
        """(field path relative to this section, problem) for each broken combination of valid fields."""
        return ()


def _plain(value: object) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(option) for key, option in value.items()}
    if isinstance(value, tuple):
        return [_plain(entry) for entry in value]
    if isinstance(value, str):
        return value.replace("${", "$${")  # so loading the dict again gives the same text back
    return value


# ---- building from a tree ----------------------------------------------------------------------------


def build(cls: type[S], data: object, path: str, problems: list[Problem]) -> S:
    """An instance of ``cls`` from ``data``, appending a problem for everything wrong on the way.

    A refused section is replaced by its defaults so the walk can go on and report the rest.
    """
    if data is None:  # a section whose every key is commented out
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(f.name for f in fields(cls))
        problems.append(Problem(path, _Invalid(f"a mapping with keys {names}", data).message()))
        return cls()
    before = len(problems)
    problems.extend(_unknown_keys(cls, data, path))
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if spec.name in data:
            inner = spec.metadata.get("section")
            raw = data[spec.name]
            values[spec.name] = raw if inner is None else build(inner, raw, join(path, spec.name), problems)
    try:
        return cls(**values)
    except SectionError as exc:
        # Combinations are only worth judging when every part is valid.
        if not exc.combination or len(problems) == before:
            problems.extend(Problem(join(path, p.path), p.message) for p in exc.problems)
        return cls()


def _unknown_keys(cls: type[Section], data: Mapping[Any, Any], path: str) -> Iterator[Problem]:
    known = [spec.name for spec in fields(cls)]
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key).lower(), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
        yield Problem(join(path, str(key)), f"unknown key; {hint}")


# ---- the report --------------------------------------------------------------------------------------


def error(problems: list[Problem], origins: Mapping[str, str], source: str) -> ConfigError:
    """One ``ConfigError`` for every problem (see ``report``)."""
    return ConfigError(report(problems, origins, source))


def report(problems: list[Problem], origins: Mapping[str, str], source: str) -> str:
    """Each problem once on its own line, blamed on its override variable (``origins``: path -> name) or
    on ``source`` (the file)."""
    lines = [_line(problem, origins, source) for problem in _distinct(problems)]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} configuration problems:\n" + "\n".join(f"  {line}" for line in lines)


def _distinct(problems: list[Problem]) -> Iterator[Problem]:
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


def _line(problem: Problem, origins: Mapping[str, str], source: str) -> str:
    # A value set by an override is blamed on its variable, not on the file that never held it.
    blamed = [name for path, name in origins.items() if problem.path and _related(problem.path, path)]
    where = problem.source or (blamed[0] if blamed else source)
    text = f"{problem.path}: {problem.message}" if problem.path else problem.message
    return f"{where}: {text}" if where else text
