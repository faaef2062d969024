"""How long the CLI takes to answer when it needs no model: ``--help``, ``--version`` and an input file that
does not exist, next to the interpreter importing numpy (the least any command pays) in the same run.

    python bench/cli_start.py [--repeats 7]

Each command runs ``--repeats`` times as a fresh process, the commands taking turns so that a busy moment of
the machine spreads over all of them; prints the median wall time of each and its ratio to the reference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "import numpy"


def commands(scratch: Path) -> dict[str, tuple[list[str], int]]:
    """Name -> (arguments after the interpreter, the exit code that shows the command did what is meant)."""
    missing = ["-m", "monitor", "train", "--input", str(scratch / "missing.txt"), "--model", str(scratch / "m")]
    return {"python -c pass": (["-c", "pass"], 0),
            f"python -c '{REFERENCE}'": (["-c", REFERENCE], 0),
            "monitor --help": (["-m", "monitor", "--help"], 0),
            "monitor --version": (["-m", "monitor", "--version"], 0),
            "monitor train, missing input": (missing, 2)}


def wall_time(arguments: list[str], expected_code: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != expected_code:
        raise SystemExit(f"{' '.join(arguments)} exited {done.returncode}, not {expected_code}: {done.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        runs = commands(Path(scratch))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (arguments, code) in runs.items():
                times[name].append(wall_time(arguments, code))
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    reference = medians[f"python -c '{REFERENCE}'"]
    print(f"{'command':30} {'median s':>9} {'ratio to ' + REFERENCE:>20}   ({args.repeats} runs each)")
    for name, median in medians.items():
        print(f"{name:30} {median:9.2f} {median / reference:20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
