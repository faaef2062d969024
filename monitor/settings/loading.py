"""Reading the configuration: a YAML file or a mapping, then the environment, then one validation pass
that reports every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError
from monitor.settings.checks import Problem, build, error, got
from monitor.settings.environment import apply_overrides, interpolate
from monitor.settings.sections import MonitorConfig
from monitor.settings.yaml_text import read_yaml


def load_config(path: Path | str | None, environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The configuration in the YAML file ``path`` (``None``: no file, the defaults), after the environment.

    ``environ`` (default ``os.environ``) feeds ``${VAR}`` references and ``MONITOR__SECTION__KEY``
    overrides; the overrides apply with or without a file. Raises ``ConfigError`` naming the file.
    """
    if path is None:
        return _parse({}, environ, source="")
    path = Path(path)
    return _parse(read_yaml(path), environ, source=str(path))


def config_from_dict(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The configuration in ``data`` (as a YAML file would give it), after the environment as in ``load_config``."""
    return _parse(data, environ, source="")


def _parse(data: object, environ: Mapping[str, str] | None, source: str) -> MonitorConfig:
    environ = os.environ if environ is None else environ
    if data is None:  # an empty file, or one whose every line is a comment
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(f.name for f in fields(MonitorConfig))
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}expected a mapping of sections ({names}), {got(data)}")
    tree = _copy_tree(data)
    problems: list[Problem] = []
    origins = apply_overrides(tree, environ, problems)
    tree = interpolate(tree, "", environ, origins.keys(), problems)
    config = build(MonitorConfig, tree, "", problems)
    if problems:
        raise error(problems, origins, source)
    return config


def _copy_tree(value: object) -> Any:
    """Plain dicts and lists throughout, so overrides can change the copy and never the caller's data."""
    if isinstance(value, Mapping):
        return {key: _copy_tree(entry) for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_tree(entry) for entry in value]
    return value
