"""Every command fed what a new user may give it by mistake: a missing, empty or binary file, a CSV field over
the csv module's limit, flag values out of range, a configuration that is wrong. None may end in a traceback.

The commands run as ``python -m monitor`` runs them (``runpy`` on the package's ``__main__``, in a subprocess),
all in one interpreter: the cases that get as far as loading a model import TensorFlow, seconds per new
interpreter, which some forty cases would multiply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs each argument list in turn as ``python -m monitor`` would, with its own standard output and error, and
# prints [exit code, stdout, stderr] per case as one JSON list. What escapes is printed as the interpreter would.
DRIVER = """
import io, json, logging, runpy, sys, traceback

cases, results, real_stdout = json.load(sys.stdin), [], sys.stdout
for argv in cases:
    sys.argv = ["monitor", *argv]
    sys.stdout, sys.stderr = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))
    logging.root.handlers.clear()  # the CLI's logging writes to this case's standard error
    try:
        runpy.run_module("monitor", run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    texts = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8", "replace"))
    results.append([code, *texts])
sys.stdout = real_stdout
print(json.dumps(results))
"""


def run_monitor(cases: list[list[str]]) -> list[tuple[int, str, str]]:
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return [tuple(result) for result in json.loads(done.stdout.splitlines()[-1])]  # type: ignore[misc]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-inputs")
    made = {
        "empty": b"",
        "binary": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8,  # the start of a program
        "latin1": "".join(f"caf\xe9 {i}\n" for i in range(40)).encode("latin-1"),  # text, none of it UTF-8
        "big.csv": _csv_with_a_big_field(),
        "config.yaml": b"window:\n  length_seconds: soon\n",
        "not-yaml.yaml": b"window: [unclosed\n",
    }
    paths = {name: folder / name for name in made}
    for name, data in made.items():
        paths[name].write_bytes(data)
    paths["missing"] = folder / "missing.txt"
    return paths


def _csv_with_a_big_field() -> bytes:
    rows = [f"AB{i:03d}E,{1_767_225_600_000 + i * 1_000}" for i in range(40)]
    rows[7] = f"{'A' * 200_000},1767225607000"  # over the csv module's 131,072-character field limit
    return ("sequence,timestamp\n" + "\n".join(rows) + "\n").encode()


def refused_cases(f: dict[str, Path], model: Path) -> list[list[str]]:
    """Argument lists that must each end with a nonzero exit code and a one-line error."""
    m, cfg, not_yaml = str(model), str(f["config.yaml"]), str(f["not-yaml.yaml"])
    inputs = [str(f[name]) for name in ("missing", "empty", "binary")]
    return [
        *(["train", "--input", path, "--model", str(f["missing"].parent / "m")] for path in inputs),
        ["train", "--input", str(f["latin1"]), "--model", str(f["missing"].parent / "m")],  # all lines skipped
        ["train", "--input", str(f["big.csv"]), "--column", "sequence", "--model", "x", "--allow-skipped", "2"],
        ["train", "--input", str(f["big.csv"]), "--column", "sequence", "--model", "x", "--epochs", "many"],
        *(["score", "--model", m, "--input", path] for path in inputs),
        ["score", "--model", m, "--input", str(f["big.csv"]), "--column", "sequence", "--explain", "some"],
        ["score", "--model", str(f["binary"]), "--input", str(f["big.csv"]), "--column", "sequence"],
        *(["evaluate", "--model", m, "--normal", path] for path in inputs),
        *(["replay", "--model", m, "--input", path] for path in inputs),
        ["replay", "--model", m, "--input", str(f["big.csv"]), "--config", cfg],
        ["replay", "--model", m, "--input", str(f["big.csv"]), "--config", not_yaml],
        ["replay", "--model", m, "--input", str(f["big.csv"]), "--model-change", "yesterday"],
        ["rank", "--model", m, "--top", "three", "AB121E"],
        ["rank", "--model", str(f["missing"]), "AB121E"],
        ["formats", "--model", str(f["empty"])],
        ["candidate", "--model", m, "--candidate", m, "--config", cfg],
        ["candidate", "--model", m, "--candidate", m, "--state", str(f["binary"])],
        ["accept", "--file", str(f["binary"]), "--state", str(f["missing"])],
        ["accept", "--window", "soon", "--config", not_yaml],
        *(["produce", "--input", path, "--bootstrap-servers", "127.0.0.1:9"] for path in inputs),
        ["produce", "--config", cfg],
        ["run", "--config", cfg],
        ["run", "--config", str(f["missing"])],
        ["state", "show", "--config", not_yaml],
        ["generate", "-n", "-5"],
        ["generate", "--format", "nonsense"],
        ["demo", "--rows", "lots"],
    ]


def test_no_command_ends_in_a_traceback_and_bad_input_exits_nonzero(files: dict[str, Path], bundle_dir: Path,
                                                                    tmp_path: Path) -> None:
    refused = refused_cases(files, bundle_dir)
    big = str(files["big.csv"])
    handled = [  # the big field is data: read as a long line is (score, train), or rejected as oversized (replay)
        ["score", "--model", str(bundle_dir), "--input", big, "--column", "sequence", "--output",
         str(tmp_path / "scores.csv")],
        ["train", "--input", big, "--column", "sequence", "--model", str(tmp_path / "m"), "--epochs", "1"],
        ["replay", "--model", str(bundle_dir), "--input", big, "--output", str(tmp_path / "report.csv")],
    ]
    results = run_monitor(refused + handled)
    for argv, (code, out, err) in zip(refused + handled, results):
        assert "Traceback" not in out + err, f"{argv}: {err}"
    for argv, (code, out, err) in zip(refused, results):
        assert code != 0 and err.strip(), f"{argv} exited {code}: {err}"
    score, train, replay = results[len(refused):]
    assert score[0] == 0 and "scored 40 of 40 lines" in score[2]
    assert train[0] == 0 and "trained on 40 sequences" in train[1]
    assert replay[0] == 0 and "1 row rejected (oversized value: 1)" in replay[2]

