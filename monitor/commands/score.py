"""The ``score`` command: every line of a file scored, one CSV row per input line (``SCORE_COLUMNS``), in
chunks so that a file of any size fits in memory; and what ``rank`` shares with it: a bundle at another
threshold, and the explanations of the rows it flags.
"""

from __future__ import annotations

import csv
import itertools
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from monitor.core.bundle import Bundle, load
from monitor.core.score import Scorer
from monitor.stream.files import InputRow, check_input_file, open_output, read_rows

log = logging.getLogger("monitor")  # the command line's logger: its lines read "monitor: ..."

SCORE_CHUNK_ROWS = 20_000  # rows scored per batch: bounded memory on files of any size
SCORE_COLUMNS = ("line", "sequence", "score", "percentile", "abnormal", "error", "format", "format_share",
                 "explanation", "problem")


def run_score(model_dir: Path, input_path: Path, input_format: str, column: str | None, output: str,
              explain: str, method: str, threshold_quantile: float | None) -> int:
    """``python -m monitor score``: the rows to ``output`` (a file written whole or not at all, or ``-``), a
    summary line to standard error. ``explain``: which rows get an explanation (abnormal, all or none)."""
    check_input_file(input_path)  # before the bundle: loading its model takes seconds
    scorer = Scorer(with_threshold(load(model_dir), threshold_quantile))
    rows = read_rows(input_path, input_format, column)
    with open_output(output, inputs=[input_path]) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SCORE_COLUMNS)
        counts = {"rows": 0, "abnormal": 0, "problems": 0}
        while chunk := list(itertools.islice(rows, SCORE_CHUNK_ROWS)):
            _score_chunk(scorer, chunk, explain, method, writer, counts)
    print(f"scored {counts['rows'] - counts['problems']} of {counts['rows']} lines: {counts['abnormal']} "
          f"abnormal, {counts['problems']} unusable (see the problem column)", file=sys.stderr)
    return 0


def _score_chunk(scorer: Scorer, chunk: list[InputRow], explain: str, method: str, writer: csv.writer,
                 counts: dict[str, int]) -> None:
    usable = [row for row in chunk if row.sequence is not None]
    sequences = [row.sequence for row in usable]
    scores = scorer.score(sequences)
    values, ranks, flags = scores.by(method)
    formats = scores.formats.of_each()
    wanted = [i for i, flag in enumerate(flags) if explain == "all" or (explain == "abnormal" and flag)]
    reasons = explanations(scorer, sequences, formats, wanted)
    position = {id(row): i for i, row in enumerate(usable)}
    for row in chunk:
        counts["rows"] += 1
        if row.sequence is None:
            counts["problems"] += 1
            writer.writerow((row.line, "", "", "", "", "", "", "", "", row.problem))
            continue
        i = position[id(row)]
        counts["abnormal"] += int(flags[i])
        writer.writerow((row.line, row.sequence, f"{values[i]:.6g}", f"{ranks[i]:.2f}", str(bool(flags[i])).lower(),
                         f"{scores.errors[i]:.6g}", formats[i], f"{scores.format_shares[i]:.6g}",
                         reasons.get(i, ""), ""))


def explanations(scorer: Scorer, sequences: list[str], formats: list[str], rows: list[int],
                 top: int = 3) -> dict[int, str]:
    """For each of ``rows``: the format's note when it is rare or new, then the parts carrying the error."""
    parts = scorer.explain([sequences[i] for i in rows], top) if rows else []
    return {i: "; ".join(filter(None, (scorer.format_note(formats[i]), _format_reasons(reasons))))
            for i, reasons in zip(rows, parts)}


def _format_reasons(reasons: Iterable[tuple[str, float]]) -> str:
    return "; ".join(f"{part} ({share:.0%})" for part, share in reasons)


def with_threshold(bundle: Bundle, quantile: float | None) -> Bundle:
    """``bundle`` flagging above ``quantile`` of its training rows' scores instead of its own quantile
    (``None``: as it is)."""
    if quantile is None:
        return bundle
    adjusted = bundle.with_threshold_quantile(quantile)
    log.info("threshold: quantile %g of the training rows' scores (the bundle's own: quantile %g); of the "
             "reconstruction errors: %.6g", quantile, bundle.threshold_quantile, adjusted.threshold)
    return adjusted
