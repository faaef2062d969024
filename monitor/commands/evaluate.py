"""The ``evaluate`` command: how well a model separates sequences a user believes normal from ones known to
be bad, as figures, as JSON, and as pictures (``monitor.charts``) to choose a threshold by.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from monitor.charts import evaluation_charts
from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.evaluation import Evaluation, evaluate
from monitor.core.score import Scorer
from monitor.errors import InputError
from monitor.stream.files import check_input_file, read_sequences, skipped_summary


def run_evaluate(model_dir: Path, normal_path: Path, anomalies_path: Path | None, input_format: str,
                 column: str | None, method: str, threshold_quantile: float | None, report: Path | None = None,
                 as_json: bool = False) -> int:
    """``python -m monitor evaluate``: figures on standard output (text or ``as_json``), charts in ``report``."""
    for flag, path in (("--normal", normal_path), ("--anomalies", anomalies_path)):
        if path is not None:
            try:
                check_input_file(path)  # before the bundle: loading its model takes seconds
            except InputError as exc:
                raise InputError(f"{flag}: {exc}") from exc
    bundle = bundle_lib.load(model_dir)
    if threshold_quantile is not None:
        bundle = bundle.with_threshold_quantile(threshold_quantile)
    normal = usable_sequences(normal_path, input_format, column, "--normal")
    anomalies = usable_sequences(anomalies_path, input_format, column, "--anomalies") if anomalies_path else []
    scorer = Scorer(bundle)
    normal_errors = scorer.score(normal).by(method)[0]
    anomaly_errors = scorer.score(anomalies).by(method)[0] if anomalies else np.empty(0)
    training = bundle.training_errors if method == "autoencoder" else scorer.fusion.training_scores
    result = evaluate(normal_errors, anomaly_errors, training, bundle.threshold_quantile)
    charts = evaluation_charts(report, bundle, result, normal_errors, anomaly_errors,
                               method=method) if report else []
    if as_json:
        json.dump({**result.to_dict(), "model": bundle.info(), "charts": [str(c) for c in charts]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_evaluation(result, bundle, model_dir, normal_path, anomalies_path, method, sys.stdout)
        for path in charts:
            print(f"chart: {path}")
    return 0


def usable_sequences(path: Path, fmt: str, column: str | None, flag: str) -> list[str]:
    """The sequences of ``path``; ``InputError`` when it gives none, saying why its lines were skipped."""
    try:
        sequences, rejected = read_sequences(path, fmt, column)
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from exc
    if not sequences:
        why = skipped_summary(rejected) or "the file is empty"
        raise InputError(f"{flag} {path} has no usable sequence ({why})")
    return sequences


def print_evaluation(result: Evaluation, bundle: Bundle, model_dir: Path, normal_path: Path,
                     anomalies_path: Path | None, method: str, out: TextIO) -> None:
    at = result.at_bundle_threshold
    what = "training errors" if method == "autoencoder" else "training rows' fused scores"
    print(f"model {model_dir} (bundle {bundle.version}), {method} score: threshold {at.threshold:.6g} = "
          f"quantile {at.quantile:g} of its {len(bundle.training_errors):,} {what}", file=out)
    print(f"normal: {result.normal:,} sequences from {normal_path}"
          + (f"; anomalies: {result.anomalies:,} from {anomalies_path}" if result.anomalies else ""), file=out)
    if result.auroc is not None:
        print(f"AUROC {result.auroc:.4f}   average precision {result.average_precision:.4f}   "
              f"precision@{result.anomalies} {result.precision_at_k:.4f}", file=out)
    print(f"\nat each threshold (q: quantile of the {what}; * the bundle's):", file=out)
    print(f"  {'q':<8}{'threshold':>11}  {'normal flagged':>18}", file=out, end="")
    print(f"  {'anomalies flagged':>19}  {'precision':>9}" if result.anomalies else "", file=out)
    for p in result.points:
        mark = "*" if p.quantile == result.bundle_quantile else " "
        line = f"  {p.quantile:<6g}{mark} {p.threshold:>11.4g}  {p.normal_flag_rate:>9.2%} ({p.false_positives:>6,})"
        if result.anomalies:
            line += f"  {p.recall:>10.2%} ({p.true_positives:>6,})  {p.precision:>9.3f}"
        print(line, file=out)
    if result.anomalies:
        tn, fp, fn, tp = at.true_negatives, at.false_positives, at.false_negatives, at.true_positives
        print(f"\nconfusion matrix at the bundle's threshold (q {at.quantile:g}):", file=out)
        print(f"  {'':<16}{'flagged normal':>16}{'flagged abnormal':>18}", file=out)
        print(f"  {'actual normal':<16}{tn:>16,}{fp:>18,}", file=out)
        print(f"  {'actual anomaly':<16}{fn:>16,}{tp:>18,}", file=out)
