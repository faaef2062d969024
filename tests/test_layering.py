"""Imports follow the layers of the package, also transitively: a module imports only from its own layer or
a lower one, and each heavy dependency stays in the one module that owns it.

    rank 0  errors, records, percentiles,   exceptions and exit codes; values crossing stages; ranks;
            counted                         counts in words
    rank 1  settings                        the configuration schema, checked once (PyYAML)
    rank 2  core | hourly                   strings -> errors (Keras) | errors -> judged windows (pure)
    rank 3  stream                          decode, sources, the record pipeline, the service (Kafka, SQLite)
    rank 4  ops | charts                    metrics export, schedules, model lifecycle (Prometheus, APScheduler) |
                                            every picture (matplotlib)
    rank 5  app | commands | devtools       the builder | the offline commands, one module each |
                                            local servers, generated data, simulation, demo
    rank 6  cli                             argparse, exit codes
    rank 7  __main__                        ``python -m monitor``

Two layers of one rank do not import each other: the hourly judgement never loads Keras. No import loads Keras
or TensorFlow (seconds): ``core.model`` imports them when a model is built or loaded, so ``--help``,
``--version`` and argument, settings and file errors answer at once.

No module is over ``MAX_LINES`` lines, and no module imports itself back through others, not even for types
only (``TYPE_CHECKING``) or inside a function: dependencies point one way.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "monitor"
RANKS = {"errors": 0, "records": 0, "percentiles": 0, "counted": 0, "__init__": 0, "settings": 1, "core": 2,
         "hourly": 2, "stream": 3, "ops": 4, "charts": 4, "app": 5, "commands": 5, "devtools": 5, "cli": 6, "__main__": 7}
# Third-party imports allowed only in the named modules (everything else: stdlib, numpy, monitor.*).
OWNERS = {"tensorflow": {"core.model"}, "keras": {"core.model"},
          "kafka": {"stream.kafka", "stream.kafka_state", "stream.confluent_options", "devtools.kafka_broker",
                    "devtools.memory_kafka"},
          "confluent_kafka": {"stream.confluent", "stream.confluent_state"},
          "prometheus_client": {"ops.export", "ops.metrics"},
          "apscheduler": {"ops.schedule"}, "sqlite3": {"stream.state"}, "matplotlib": {"charts"},
          "yaml": {"settings.yaml_text", "devtools.prometheus_server"}}
HEAVY = set(OWNERS) - {"yaml"}
ON_FIRST_USE = {"tensorflow", "keras"}  # imported inside the functions that need them, by no module's import
# What importing a module of each layer may load, through everything it imports at module level.
MAY_LOAD = {0: set(), 1: set(), 2: set(), 3: {"kafka", "confluent_kafka", "sqlite3"}, 4: HEAVY - ON_FIRST_USE - {"matplotlib"},
            5: HEAVY - ON_FIRST_USE, 6: HEAVY - ON_FIRST_USE, 7: HEAVY - ON_FIRST_USE}
PURE_LAYERS = ("errors", "records", "percentiles", "counted", "settings", "hourly")
MAX_LINES = 450
# Modules over MAX_LINES until they are split, each with a comment saying why: none left. An entry fails the test
# once its module is under the limit, so the list always says what is left.
OVER_450_UNTIL_SPLIT: set[str] = set()
# Import circles left until they are broken, each with a comment saying why: none left.
CIRCLES_UNTIL_SPLIT: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    """``core.model`` for ``monitor/core/model.py``; a package's ``__init__`` is the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    return name.split(".")[0]


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@cache
def imports_of(name: str, module_level_only: bool, type_checking: bool = False) -> frozenset[str]:
    """Absolute names ``name`` imports (``monitor.`` dropped from its own), skipping ``TYPE_CHECKING``
    blocks unless ``type_checking``; with ``module_level_only``, not those inside functions either (they load
    later, if ever). ``from monitor.a import b`` of a module ``b`` imports ``a.b``, not ``a`` itself (a
    package's ``__init__`` runs before any of its modules either way)."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child) and not type_checking:
                continue
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                named = {f"{child.module}.{alias.name}" for alias in child.names}
                found.update(named)
                if not all(n.removeprefix("monitor.") in MODULES for n in named):
                    found.add(child.module)
            visit(child)

    visit(tree)
    own = {n.removeprefix("monitor.") for n in found if n.startswith("monitor.")}
    return frozenset({n for n in own if n in MODULES} | {n for n in found if not n.startswith("monitor")})


def loaded_by(name: str) -> set[str]:
    """Top-level third-party names importing ``name`` loads, following its module-level imports."""
    seen, todo, third_party = set(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imports_of(current, module_level_only=True):
            if imported in MODULES:
                todo.append(imported)
            else:
                third_party.add(imported.split(".")[0])
    return third_party


def test_every_module_belongs_to_a_ranked_layer() -> None:
    assert {layer(name) for name in MODULES} <= set(RANKS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_or_lower_ones(name: str) -> None:
    for imported in imports_of(name, module_level_only=False):
        if imported in MODULES and layer(imported) != layer(name):
            assert RANKS[layer(imported)] < RANKS[layer(name)], \
                f"monitor.{name} (rank {RANKS[layer(name)]}) imports monitor.{imported} (rank {RANKS[layer(imported)]})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_heavy_dependencies_are_imported_only_by_their_owner(name: str) -> None:
    for imported in imports_of(name, module_level_only=False):
        top = imported.split(".")[0]
        if top in OWNERS:
            assert name in OWNERS[top], f"monitor.{name} imports {imported}; only {OWNERS[top]} may"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_importing_a_module_loads_only_what_its_layer_may(name: str) -> None:
    extra = (loaded_by(name) & HEAVY) - MAY_LOAD[RANKS[layer(name)]]
    assert not extra, f"importing monitor.{name} loads {sorted(extra)}"


def lines_of(name: str) -> int:
    return len(MODULES[name].read_text().splitlines())


@pytest.mark.parametrize("name", sorted(set(MODULES) - OVER_450_UNTIL_SPLIT))
def test_no_module_is_over_the_line_limit(name: str) -> None:
    assert lines_of(name) <= MAX_LINES, f"monitor.{name} has {lines_of(name)} lines, over {MAX_LINES}: split it"


def test_the_modules_left_to_split_are_still_over_the_limit() -> None:
    split = {name for name in OVER_450_UNTIL_SPLIT if name not in MODULES or lines_of(name) <= MAX_LINES}
    assert not split, f"split now (or gone): take {sorted(split)} out of OVER_450_UNTIL_SPLIT"


def import_circles() -> set[frozenset[str]]:
    """Each set of modules that import one another, directly or through others, counting imports inside
    functions and under ``TYPE_CHECKING``."""
    graph = {name: {m for m in imports_of(name, module_level_only=False, type_checking=True)
                    if m in MODULES and m != name} for name in MODULES}
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])
        reach[start] = seen
    return {frozenset({name} | {other for other in reach[name] if name in reach[other]})
            for name in graph if name in reach[name]}


def test_no_import_circles() -> None:
    circles = import_circles()
    assert circles - CIRCLES_UNTIL_SPLIT == set(), "import circles (break them so dependencies point one way)"
    assert CIRCLES_UNTIL_SPLIT - circles == set(), "circles broken now: take them out of CIRCLES_UNTIL_SPLIT"


def test_the_pure_layers_load_no_heavy_dependency_when_really_imported() -> None:
    # The static walk above, checked once against the interpreter: import every pure module and look.
    names = [f"monitor.{n}" for n in MODULES if layer(n) in PURE_LAYERS]
    probe = f"import sys\nimport {', '.join(names)}\nprint(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert not set(ast.literal_eval(loaded.stdout)) & HEAVY, loaded.stdout


# Runs the CLI in a fresh interpreter, then names which of ON_FIRST_USE it imported.
CLI_PROBE = f"""import sys
from monitor.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(ON_FIRST_USE)!r}))"""


def run_cli_probe(arguments: list[str], cwd: Path) -> tuple[str, list[str]]:
    """``monitor ARGUMENTS`` in a fresh interpreter: what it said (standard output and error), and which of
    ``ON_FIRST_USE`` it imported."""
    done = subprocess.run([sys.executable, "-c", CLI_PROBE, *arguments], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    *output, loaded = done.stdout.splitlines() or [done.stderr]
    return "\n".join(output) + done.stderr, ast.literal_eval(loaded) if loaded.startswith("[") else [loaded]


@pytest.mark.parametrize("arguments, says", [
    (["--help"], "usage: monitor"),
    (["--version"], "monitor "),
    (["train", "--input", "missing.txt", "--model", "new-bundle"], "missing.txt does not exist"),
    (["score", "--model", "no-bundle", "--input", "missing.txt"], "missing.txt does not exist"),
    (["rank", "--model", "no-bundle", "AB121E"], "no model bundle at no-bundle"),
    (["run", "--config", "missing.yaml"], "missing.yaml does not exist"),
    (["rank", "--parts", "many", "AB121E"], "invalid int value"),
])
def test_answers_that_need_no_model_do_not_import_keras(arguments: list[str], says: str, tmp_path: Path) -> None:
    said, loaded = run_cli_probe(arguments, tmp_path)
    assert says in said, said
    assert loaded == [], f"monitor {' '.join(arguments)} imported {loaded}"
