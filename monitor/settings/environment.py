"""The environment's part of the configuration: ``${VAR}`` / ``${VAR:-default}`` substitution in strings,
and ``MONITOR__SECTION__KEY=value`` overrides of single keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from monitor.settings.checks import Interpolated, Problem, join
from monitor.settings.yaml_text import parse_scalar

ENV_PREFIX = "MONITOR__"

# `$${` is the escape for a literal `${`; a `${` without its closing brace is an error, not text.
_REFERENCE = re.compile(r"\$(?P<escape>\$)?\{(?P<body>[^}]*)(?P<close>\}?)")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def apply_overrides(tree: dict[Any, Any], environ: Mapping[str, str], problems: list[Problem]) -> dict[str, str]:
    """Set every ``MONITOR__A__B=value`` as ``a.b`` in ``tree``; returns dotted path -> variable name."""
    origins: dict[str, str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        if not all(keys):
            problems.append(Problem("", f"expected {ENV_PREFIX}SECTION__KEY, names separated by '__'", name))
            continue
        _set(tree, keys, parse_scalar(environ[name]))
        origins[".".join(keys)] = name
    return origins


def _set(tree: dict[Any, Any], keys: list[str], value: object) -> None:
    node = tree
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}  # a null (or otherwise not a mapping) parent gives way to the override
        node = node[key]
    node[keys[-1]] = value


def interpolate(value: Any, path: str, environ: Mapping[str, str], skip: Iterable[str],
                problems: list[Problem]) -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` replaced in every string not under ``skip``.

    A replaced string is an ``Interpolated``, which carries the text read as a YAML scalar as well.
    """
    if path in skip:  # set by an override: its text is the value, even if it holds `${`
        return value
    if isinstance(value, dict):
        return {key: interpolate(entry, join(path, str(key)), environ, skip, problems)
                for key, entry in value.items()}
    if isinstance(value, list):
        return [interpolate(entry, f"{path}[{i}]", environ, skip, problems) for i, entry in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            text = _REFERENCE.sub(lambda match: _resolve(match, environ), value)
        except ValueError as exc:
            problems.append(Problem(path, str(exc)))
        else:
            return Interpolated(text, parse_scalar(text))
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
