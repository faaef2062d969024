"""Runs the README's worked example and writes what it gives back into the README: the session's output, the
evaluation, the figures in the text beside them, and the chart ``docs/images/error-distributions.png``.

``make docs`` runs it. Each generated part of README.md sits between ``<!-- worked-example NAME -->`` and
``<!-- /worked-example NAME -->``; the text around them is not touched. The claims the prose makes about the
results (which lines are flagged) are checked: the script stops, writing nothing, when a run contradicts them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
IMAGE = ROOT / "docs" / "images" / "error-distributions.png"
TODAY = ["AB121E", "KQ4411", "MV12", "DN176", "RT5521X",  # well-formed: not flagged
         "ab121e", "AB-121E", "AB121E99", "PHE-SER-CYS", "12AB1E"]  # broken: flagged
WELL_FORMED = 5
ANOMALY_KINDS = ("other_format", "extra_char", "case_change", "swapped_tokens")
PER_KIND = 50
SEED = 7
WIDTH = 110  # the README's line length


class Session:
    """Runs ``python -m monitor`` commands in ``folder`` and keeps a transcript as a user would see it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lines: list[str] = []

    def run(self, *args: str, shown: bool = True, stderr_line: str = "") -> str:
        """Standard output of the command; with ``stderr_line``, the last standard-error line starting with it
        is shown too (what a user sees of a summary written there)."""
        # This checkout's monitor, whatever else is installed: the README documents this code.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        done = subprocess.run([sys.executable, "-m", "monitor", *args], cwd=self.folder, capture_output=True,
                              text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"`monitor {shlex.join(args)}` failed ({done.returncode}):\n{done.stderr}")
        if shown:
            self.lines.append(f"$ python -m monitor {shlex.join(args)}")
            self.lines += done.stdout.splitlines()
            if stderr_line:
                self.lines += [line for line in done.stderr.splitlines() if line.startswith(stderr_line)][-1:]
        return done.stdout

    def cat(self, name: str) -> str:
        text = (self.folder / name).read_text(encoding="utf-8")
        self.lines += [f"$ cat {name}", *text.splitlines()]
        return text


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="worked-example-") as scratch:
        folder = Path(scratch)
        parts = _session(Session(folder), folder)
        _replace_parts(README, parts)
        IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "report" / "error-distributions.png", IMAGE)
    print(f"wrote {', '.join(parts)} in {README.name} and {IMAGE.relative_to(ROOT)}")
    return 0


def _session(session: Session, folder: Path) -> dict[str, str]:
    session.run("generate", "--format", "serial", "-n", "5000", "--output", "serials.txt")
    session.run("train", "--input", "serials.txt", "--model", "serials-model")
    (folder / "today.txt").write_text("\n".join(TODAY) + "\n", encoding="utf-8")
    session.cat("today.txt")
    session.run("score", "--model", "serials-model", "--input", "today.txt", "--output", "scores.csv",
                stderr_line="scored ")
    _check_flags(session.cat("scores.csv"))
    session.run("formats", "--model", "serials-model")
    parts = {"session": _code(session.lines)}

    _labelled_files(session)
    evaluation = Session(folder)
    evaluation.run("evaluate", "--model", "serials-model", "--normal", "normal.txt", "--anomalies", "bad.txt",
                   "--report", "report")
    parts["evaluate"] = _code(line for line in evaluation.lines if not line.startswith("chart: "))
    fused = json.loads(session.run("evaluate", "--model", "serials-model", "--normal", "normal.txt", "--anomalies",
                                   "bad.txt", "--json", shown=False))
    error = json.loads(session.run("evaluate", "--model", "serials-model", "--normal", "normal.txt", "--anomalies",
                                   "bad.txt", "--json", "--method", "autoencoder", shown=False))
    parts["autoencoder"] = _autoencoder_sentence(error)
    parts["choosing"] = _choosing_paragraph(fused)
    return parts


def _labelled_files(session: Session) -> None:
    """2,000 fresh serials and 50 broken ones of each kind, as the README says."""
    session.run("generate", "--format", "serial", "-n", "2000", "--seed", str(SEED), "--output", "normal.txt",
                shown=False)
    broken = [session.run("generate", "--format", "serial", "--anomalies", kind, "-n", str(PER_KIND), "--seed",
                          str(SEED), shown=False) for kind in ANOMALY_KINDS]
    (session.folder / "bad.txt").write_text("".join(broken), encoding="utf-8")


def _check_flags(scores_csv: str) -> None:
    """The prose says the well-formed lines pass and every broken one is flagged."""
    flags = [row["abnormal"] for row in csv.DictReader(io.StringIO(scores_csv))]
    expected = ["false"] * WELL_FORMED + ["true"] * (len(TODAY) - WELL_FORMED)
    if flags != expected:
        raise SystemExit(f"this run flags {flags} where the README's text says {expected}: the model changed "
                         "enough that the text beside the example needs rewriting; README.md left as it was")


def _code(lines: object) -> str:
    return "```\n" + "\n".join(lines) + "\n```"  # type: ignore[call-overload]


def _point(result: Mapping[str, object], quantile: float) -> Mapping[str, float]:
    return next(p for p in result["points"] if p["quantile"] == quantile)  # type: ignore[attr-defined,index]


def _autoencoder_sentence(error: Mapping[str, object]) -> str:
    at = _point(error, 0.99)
    return _wrapped(f"With `--method autoencoder` (the error alone) the same files give AUROC {error['auroc']:.4f}, "
                    f"average precision {error['average_precision']:.4f}, precision@{error['anomalies']} "
                    f"{error['precision_at_k']:.4f}, and {at['normal_flag_rate']:.2%} of the normal serials flagged "
                    "at q 0.99.")


def _choosing_paragraph(fused: Mapping[str, object]) -> str:
    normal, anomalies = fused["normal"], fused["anomalies"]

    def at(q: float) -> str:
        p = _point(fused, q)
        return (f"q {q:g} flags {p['false_positives']:,} of the {normal:,} good serials and "
                f"{p['true_positives']:,} of the {anomalies:,} broken ones")

    return _wrapped("**Choosing `--threshold-quantile`.** The threshold is a quantile of the scores the model "
                    "gives its own training data, so on data like it about `1 - q` of the sequences are flagged: 0.99 "
                    "(the default) flags about 1 in 100, 0.999 about 1 in 1,000. Lower it when missing a bad sequence "
                    "costs more than looking at a good one, raise it when alerts are expensive. Read the choice off "
                    f"`evaluate`: here {at(0.99)}; {at(0.995)}; {at(0.999)}. Without known anomalies, `evaluate "
                    "--normal` alone shows the flag rate each quantile gives on your own normal data. The bundle keeps "
                    "its training scores, so `score` and `rank` take `--threshold-quantile` to try another value "
                    "without retraining, and the service takes `model.threshold_quantile`.")


def _wrapped(text: str) -> str:
    """A paragraph at the README's width; never broken inside a `code span`."""
    words = re.findall(r"`[^`]*`\S*|\S+", text)
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= WIDTH:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _replace_parts(path: Path, parts: Mapping[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for name, body in parts.items():
        block = re.compile(rf"(<!-- worked-example {name} -->\n).*?(\n<!-- /worked-example {name} -->)", re.DOTALL)
        if len(block.findall(text)) != 1:
            raise SystemExit(f"{path.name} needs exactly one <!-- worked-example {name} --> ... "
                             f"<!-- /worked-example {name} --> block")
        text = block.sub(lambda m: m.group(1) + body + m.group(2), text)  # a function: body taken as it is
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
