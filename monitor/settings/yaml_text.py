"""YAML, and the only module of the package that imports it: the strict file loader, and environment
values read as YAML scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitor.errors import ConfigError

_TYPED_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float"))
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def read_yaml(path: Path) -> object:
    """The data in the YAML file ``path``; ``ConfigError`` naming the file (and the line) if it cannot be."""
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


def parse_scalar(text: str) -> object:
    """``text`` read as a YAML scalar: null, true/false and numbers get their type, the rest stays text.

    Not ``yaml.safe_load``: it would drop a password starting with ``#`` as a comment and turn ``[x]`` into
    a list. Quotes force text: ``'"5000"'`` is the string ``5000``.

    >>> parse_scalar("5000"), parse_scalar("null"), parse_scalar("#secret"), parse_scalar('"5000"')
    (5000, None, '#secret', '5000')
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
