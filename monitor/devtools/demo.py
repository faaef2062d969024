"""The built-in first run: train on generated formats, score a mix of normal and broken sequences, explain;
then four simulated days of traffic through the hourly monitor, with a drift injected on the fourth."""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np

from monitor.charts import evaluation_charts, hourly_chart
from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.evaluation import evaluate as evaluate_scores
from monitor.core.score import Scorer, Scores, group_score
from monitor.core.train import train
from monitor.devtools import generate
from monitor.devtools.detection import Evaluation, evaluate
from monitor.devtools.simulate import Simulation
from monitor.settings import CompareConfig

TEST_NORMAL_ROWS = 2_000
ANOMALIES_PER_KIND = 5
STREAM_FORMAT = "serial"
CHART_NAME = "demo-hourly.png"
REPORT_NAME = "demo-report"  # beside the hourly chart: the stream model's evaluation charts
CONTEXT_HOURS = 3  # hours shown on each side of the drift's start


def run_demo(formats: list[str], rows: int, output_dir: Path | None, seed: int, out: TextIO, *,
             chart: Path | None = None) -> int:
    """Prints the demo to ``out``; the hourly chart goes to ``chart`` (default: ``demo-hourly.png`` in
    ``output_dir``, or else in the current directory)."""
    chart = chart or (output_dir or Path.cwd()) / CHART_NAME
    with tempfile.TemporaryDirectory(prefix="monitor-demo-") as scratch:
        target = output_dir or Path(scratch)
        report = chart.parent / REPORT_NAME
        bundles = {fmt: _demo_format(fmt, rows, target / f"demo-{fmt}", seed, out,
                                     report if fmt == STREAM_FORMAT else None) for fmt in formats}
        stream_bundle = bundles.get(STREAM_FORMAT) or _trained(STREAM_FORMAT, rows, target, seed, out)
        _demo_hourly(stream_bundle, seed, chart, out)
    return 0


def _demo_format(fmt: str, rows: int, directory: Path, seed: int, out: TextIO, report: Path | None) -> Bundle:
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
    order = np.argsort(-scores.fused, kind="stable")
    _print_rows("most abnormal", order[:8], sequences, labels, scores, scorer, out)
    _print_rows("least abnormal", order[-3:], sequences, labels, scores, None, out)
    flagged_broken = int(scores.fused_flags[len(normal):].sum())
    flagged_normal = int(scores.fused_flags[: len(normal)].sum())
    print(f"   flagged {flagged_broken} of {len(broken)} broken sequences and {flagged_normal} of {len(normal)} "
          f"normal ones by the fused score (threshold: quantile {bundle.threshold_quantile:g} of the training "
          f"rows'); by the error alone {int(scores.flags[len(normal):].sum())} and "
          f"{int(scores.flags[: len(normal)].sum())}", file=out)
    print(f"   group score (weighted mean error): normal batch {group_score(scores.errors[: len(normal)]):.5f}, "
          f"with the broken ones mixed in {group_score(scores.errors):.5f}", file=out)
    if report is not None:  # the fused score, as the lines above and `monitor evaluate` by default
        normal_scores, broken_scores = scores.fused[: len(normal)], scores.fused[len(normal):]
        quality = evaluate_scores(normal_scores, broken_scores, scorer.fusion.training_scores,
                                  bundle.threshold_quantile)
        drawn = evaluation_charts(report, bundle, quality, normal_scores, broken_scores, method="fused")
        print(f"   by the fused score: AUROC {quality.auroc:.4f}, average precision {quality.average_precision:.4f}; "
              f"charts (as `monitor evaluate --report` draws them): {', '.join(str(path) for path in drawn)}",
              file=out)
    return bundle


def _print_rows(title: str, indices: np.ndarray, sequences: list[str], labels: list[str], scores: Scores,
                scorer: Scorer | None, out: TextIO) -> None:
    """One line per row: fused score, its rank, error, format; with a ``scorer``, followed by a rare or new
    format and the parts that carry most of its error."""
    print(f"   {title}:", file=out)
    explanations = scorer.explain([sequences[i] for i in indices]) if scorer else [[] for _ in indices]
    formats = scores.formats.of_each()
    for i, reasons in zip(indices, explanations):
        note = scorer.format_note(formats[i]) if scorer else None
        why = "; ".join(filter(None, [note, *(f"{part} ({share:.0%})" for part, share in reasons)]))
        print(f"     {sequences[i]!r:24} {labels[i]:24} score {scores.fused[i]:7.2f}  "
              f"pct {scores.fused_percentiles[i]:6.2f}  error {scores.errors[i]:.5f}  {formats[i]:12}  {why}",
              file=out)


def _trained(fmt: str, rows: int, target: Path, seed: int, out: TextIO) -> Bundle:
    print(f"\n== training a {fmt} model for the hourly monitor on {rows} generated sequences", file=out)
    directory = target / f"demo-{fmt}"
    bundle_lib.save(train(generate.sample(fmt, rows, seed=seed), verbose=0), directory)
    return bundle_lib.load(directory)


def _demo_hourly(bundle: Bundle, seed: int, chart: Path, out: TextIO) -> None:
    sim = Simulation(fmt=STREAM_FORMAT, seed=seed)
    print(f"\n== hourly monitor: {sim.hours} simulated hours of {sim.fmt} traffic, ~{sim.records_per_hour} "
          f"records/hour with a daily cycle, {sim.anomaly_rate:.0%} of them broken (mixed corruptions); from "
          f"hour {sim.drift_from_hour} on, {sim.drift_share:.0%} more are {sim.drift_kind.replace('_', ' ')}",
          file=out)
    started = time.perf_counter()
    settings = CompareConfig()
    result = evaluate(sim, Scorer(bundle), settings)
    print(f"   {sum(r.totals.count for r in result.reports)} records scored and judged in 1-hour windows in "
          f"{time.perf_counter() - started:.1f}s (the record pipeline, default compare settings: the first "
          f"{settings.min_history} hours are learning)", file=out)
    _print_hours(result, out)
    _print_outcome(result, out)
    drift_ms = None if sim.drift_from_hour is None else sim.start_ms + sim.drift_from_hour * sim.hour_ms
    title = f"Hourly abnormality of simulated {sim.fmt} traffic, {sim.anomaly_rate:.0%} broken throughout"
    drawn = hourly_chart(result.reports, chart, title, marker_ms=drift_ms,
                         marker_label=f"drift: +{sim.drift_share:.0%} {sim.drift_kind.replace('_', ' ')} "
                                      f"from hour {sim.drift_from_hour}")
    print(f"   chart: {drawn}", file=out)


def _print_hours(result: Evaluation, out: TextIO) -> None:
    """Hours around the drift's start and every hour whose verdict is not the expected one, with ``...``
    where hours are left out; then a line for the drift hours not shown."""
    sim, reports = result.sim, result.reports
    drift = sim.drift_from_hour if sim.drift_from_hour is not None else sim.hours
    shown = [r for r in reports if _worth_showing(sim.hour_of(r.start_ms), r.verdict, drift)]
    print(f"   {'hour':>4}  {'start (UTC)':16} {'count':>6} {'mean error':>11}  {'above thr.':>10} {'p':>8}  "
          "verdict", file=out)
    previous = None
    for report in shown:
        hour = sim.hour_of(report.start_ms)
        if previous is not None and hour > previous + 1:
            print("    ...", file=out)
        print(f"   {hour:>4}  {_utc(report.start_ms)} {report.totals.count:>6} {report.totals.weighted_mean:>11.6f}  "
              f"{report.totals.above_threshold_share:>10.1%} {report.comparison.p_value:>8.2g}  {report.verdict}", file=out)
        if report.reasons_summary():  # why, in the words an operator would look for
            print(f"{'':9}why: {cut(report.reasons_summary(), 150)}", file=out)
        previous = hour
    shown_hours = {sim.hour_of(r.start_ms) for r in shown}
    rest = [r for r in reports if sim.hour_of(r.start_ms) >= drift + CONTEXT_HOURS
            and sim.hour_of(r.start_ms) not in shown_hours]
    if rest:
        critical = sum(r.verdict == "critical" for r in rest)
        print(f"    ... hours {sim.hour_of(rest[0].start_ms)}-{sim.hour_of(rest[-1].start_ms)} not shown: "
              f"{critical} of {len(rest)} critical", file=out)


def _worth_showing(hour: int, verdict: str, drift_hour: int) -> bool:
    if drift_hour - CONTEXT_HOURS <= hour < drift_hour + CONTEXT_HOURS:
        return True
    return verdict in ("warning", "critical") if hour < drift_hour else verdict != "critical"


def _print_outcome(result: Evaluation, out: TextIO) -> None:
    monitor, static, before = result.monitor, result.static, result.sim.drift_from_hour
    if monitor.drift_hour is None:
        print(f"   no drift injected; false alarms: {monitor.false_critical} critical, "
              f"{monitor.false_warning} warning", file=out)
        return
    first = "none" if monitor.first_alarm_hour is None else \
        f"{monitor.first_alarm_hour} (delay {monitor.delay_hours} h)"
    print(f"   drift injected from hour {monitor.drift_hour}; first critical hour: {first}; false alarms "
          f"before it: {monitor.false_critical} critical, {monitor.false_warning} warning", file=out)
    print(f"   for comparison, a fixed limit from the training errors alone (99th percentile of an hour's "
          f"mean) would have alarmed in {static.false_critical} of the {before} hours before the drift:\n"
          f"   the steady {result.sim.anomaly_rate:.0%} of broken input is normal for this topic, and only "
          f"its history says so", file=out)


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: when it is longer, its whole items (apart at ", " or "; ")
    that fit, then "…", so that no example is cut in the middle."""
    if len(text) <= width:
        return text
    head = text[: width - 2]
    end = max(head.rfind(", "), head.rfind("; "))
    return f"{head[: end + 1]} …" if end > 0 else f"{text[: width - 1]}…"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
