"""The built-in first run: train on generated formats, score a mix of normal and broken sequences, explain."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import numpy as np

from monitor import bundle as bundle_lib
from monitor import generate
from monitor.score import Scorer, group_score
from monitor.train import train

TEST_NORMAL_ROWS = 2_000
ANOMALIES_PER_KIND = 5


def run_demo(formats: list[str], rows: int, output_dir: Path | None, seed: int, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="monitor-demo-") as scratch:
        target = output_dir or Path(scratch)
        for fmt in formats:
            _demo_format(fmt, rows, target / f"demo-{fmt}", seed, out)
    return 0


def _demo_format(fmt: str, rows: int, directory: Path, seed: int, out: TextIO) -> None:
    corpus = generate.sample(fmt, rows, seed=seed)
    print(f"\n== {fmt}: training on {rows} generated sequences such as {', '.join(corpus[:3])}", file=out)
    bundle_lib.save(train(corpus, verbose=0), directory)
    bundle = bundle_lib.load(directory)  # score with what was saved, as the service will
    meta = bundle.metadata
    print(f"   bundle {bundle.version}: {meta['preparation']['mode']} tokens, length "
          f"{meta['preparation']['length']}, {meta['history']['epochs']} epochs in {meta['training_seconds']}s",
          file=out)
    normal = generate.sample(fmt, TEST_NORMAL_ROWS, seed=seed + 1)
    broken = [(kind, s) for kind in generate.ANOMALY_KINDS
              for s in generate.anomalies(fmt, kind, ANOMALIES_PER_KIND, set(corpus), seed=seed)]
    sequences = normal + [s for _, s in broken]
    labels = ["normal"] * len(normal) + [kind for kind, _ in broken]
    scorer = Scorer(bundle)
    scores = scorer.score(sequences)
    order = np.argsort(-scores.errors, kind="stable")
    _print_rows("most abnormal", order[:8], sequences, labels, scores, scorer, out)
    _print_rows("least abnormal", order[-3:], sequences, labels, scores, None, out)
    flagged_broken = int(scores.flags[len(normal):].sum())
    flagged_normal = int(scores.flags[: len(normal)].sum())
    print(f"   flagged {flagged_broken} of {len(broken)} broken sequences and {flagged_normal} of {len(normal)} "
          f"normal ones (threshold: quantile {bundle.threshold_quantile:g} of training errors)", file=out)
    print(f"   group score (weighted mean error): normal batch {group_score(scores.errors[: len(normal)]):.5f}, "
          f"with the broken ones mixed in {group_score(scores.errors):.5f}", file=out)


def _print_rows(title: str, indices: np.ndarray, sequences: list[str], labels: list[str], scores: object,
                scorer: Scorer | None, out: TextIO) -> None:
    """One line per row; with a ``scorer``, followed by the parts that carry most of its error."""
    print(f"   {title}:", file=out)
    explanations = scorer.explain([sequences[i] for i in indices]) if scorer else [[] for _ in indices]
    for i, reasons in zip(indices, explanations):
        why = "; ".join(f"{part} ({share:.0%})" for part, share in reasons)
        print(f"     {sequences[i]!r:24} {labels[i]:24} error {scores.errors[i]:.5f}  "
              f"pct {scores.percentiles[i]:6.2f}  {why}", file=out)
