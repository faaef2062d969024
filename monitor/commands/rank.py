"""The ``rank`` command: a few sequences given on the command line, each with its score, percentile rank,
verdict, error and format, and for the abnormal ones why (the same explanations as ``score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monitor.commands.score import explanations, with_threshold
from monitor.core.bundle import load
from monitor.core.score import Scorer
from monitor.errors import InputError


def run_rank(model_dir: Path, sequences: Sequence[str], parts: int, sort: bool, method: str,
             threshold_quantile: float | None) -> int:
    """``python -m monitor rank``: one line per sequence on standard output, in the order given or, with
    ``sort``, most abnormal first; ``parts``: how many parts each explanation names."""
    sequences = list(sequences)
    empty = [i for i, s in enumerate(sequences) if not s]
    if empty:
        raise InputError(f"argument {empty[0] + 1} is an empty sequence; there is nothing to score")
    scorer = Scorer(with_threshold(load(model_dir), threshold_quantile))
    scores = scorer.score(sequences)
    values, ranks, flags = scores.by(method)
    formats = scores.formats.of_each()
    order = sorted(range(len(sequences)), key=lambda i: -values[i]) if sort else range(len(sequences))
    reasons = explanations(scorer, sequences, formats, [i for i in order if flags[i]], parts)
    for i in order:
        verdict = "ABNORMAL" if flags[i] else "normal"
        print(f"{sequences[i]!r}: {method} score {values[i]:.6g}, percentile rank {ranks[i]:.2f}, {verdict}; "
              f"error {scores.errors[i]:.6g}, format {formats[i]} ({scores.format_shares[i]:.2%} of training)")
        if i in reasons:
            print(f"    why: {reasons[i]}")
    return 0
