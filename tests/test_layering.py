"""Imports follow the module ranks: heavy dependencies stay in the one module that owns them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"
# Third-party imports allowed only in the named modules (everything else: stdlib, numpy, monitor.*).
OWNERS = {"tensorflow": {"model"}, "keras": {"model"}, "kafka": {"kafka_io", "local_services"},
          "prometheus_client": {"export"}, "apscheduler": {"schedule"}, "sqlite3": {"state"},
          "matplotlib": {"chart"}}
PURE = {"errors", "prepare", "generate", "source", "score", "bundle", "train"}  # no Keras without model.py


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.stem)
def test_heavy_dependencies_are_imported_only_by_their_owner(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        if top in OWNERS:
            assert path.stem in OWNERS[top], f"{path.name} imports {name}; only {OWNERS[top]} may"


@pytest.mark.parametrize("stem", sorted(PURE))
def test_pure_modules_do_not_import_keras_or_tensorflow(stem: str) -> None:
    assert not {n.split(".")[0] for n in imports_of(PACKAGE / f"{stem}.py")} & {"keras", "tensorflow"}
