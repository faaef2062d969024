"""Drift detection on simulated days: how soon the hourly monitor goes critical, and how often it cries wolf.

    python bench/detection.py [--scenario all] [--hours 96] [--drift-hour 72] [--seeds 5] [--records-per-hour 2000]
                              [--retrain-hours 168] [--retrain-drift-hour 124] [--retrain-seeds 3] [--retrain-every 24]

Trains one default model on normal serials, then for each seed generates a stream (``monitor.devtools.simulate``:
a daily cycle in the hourly counts with noise, 1 % of every hour broken by mixed corruptions, from the drift
hour on a further ``--drift-share`` of sequences in another format) and runs it through ``HourlyJudge`` with
the default ``CompareSettings``. ``--scenario`` picks ``drift``, ``retrain`` or ``all`` (the default: both).

**drift**: ``--hours`` long streams, the drift from ``--drift-hour``, one model throughout. Per seed and as the
median it prints:

- ``delay``      hours from the drift's start to the first critical hour (``-``: never critical);
- ``false c/w``  critical and warning hours before the drift;
- ``kept``       drift hours that stayed critical, of all drift hours.

Two naive rules judge the same hours as the reference, measured in the same run (one alarm level each,
shown in the critical columns): ``static`` alarms when the hour's mean error is above the 99th percentile of
the mean of as many training errors (history plays no part); ``rolling`` when it is above the mean plus 3
standard deviations of the previous 24 hours.

**retrain**: ``--retrain-hours`` long streams (a week), the model retrained at the start of every
``--retrain-every``-th hour, the drift from ``--retrain-drift-hour`` (a few hours after a retrain). Each
retrain trains a candidate, with the settings of the model in use (the default ones), on the newest
``--retrain-max-records`` sampled sequences of the windows judged normal (a retrain with fewer than 10,000 is
skipped, as the first one is: hours judged learning do not count), shadows it on the windows' samples and
promotes it from the next hour if it passes (``run_with_retraining``). Two variants, on the same stream:

- ``monitor``            the monitor as it is: windows keep samples, so a new model's first window re-scores the
                         history from them and verdicts go on;
- ``same-version only``  as before samples existed (``sample_size=0``): the same candidates, promoted at the
                         same hours, every one of them (with no samples there is nothing to shadow them on), and
                         only windows of the model in use make a baseline.

Each candidate is trained once, in the ``monitor`` run, and offered as such to the other. Per seed and as the
median, for each variant: ``delay``, ``false c/w`` and ``kept`` as above, and

- ``learning``   hours judged learning after the first ``min_history`` (24) hours of the stream: hours a model
                 change left without a baseline;
- ``p/r``        retrains promoted and refused (the rest were skipped).

Then each seed's retrains: the hour, the outcome, the corpus, and the reasons of any refusal.

The target: critical within two hours of the drift's start, no critical hour before it, and (retrain
scenario) no learning hour after the first ``min_history`` hours. The exit status is 1 when the monitor
misses it on any seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate
from monitor.devtools.simulate import (
    Detection,
    Evaluation,
    RetrainRun,
    Simulation,
    evaluate,
    run_with_retraining,
)
from monitor.hourly.compare import CompareSettings

TARGET_DELAY_HOURS = 2
RULES = ("monitor", "static", "rolling")
VARIANTS = ("monitor", "same-version only")
MIN_RETRAIN_RECORDS = 10_000


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    scorer = Scorer(train(generate.sample(args.format, args.rows, seed=0), verbose=0))
    print(f"trained on {args.rows} normal {args.format} sequences in {time.perf_counter() - started:.0f}s; "
          f"~{args.records_per_hour} records/h, {args.anomaly_rate:.0%} broken, drift: {args.drift_share:.0%} "
          f"{args.drift_kind}; default compare settings")
    met = True
    if args.scenario in ("drift", "all"):
        met = _drift_scenario(args, scorer) and met
    if args.scenario in ("retrain", "all"):
        met = _retrain_scenario(args, scorer) and met
    print(f"{time.perf_counter() - started:.0f}s in all")
    return 0 if met else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="all", choices=("drift", "retrain", "all"))
    parser.add_argument("--hours", type=int, default=96)
    parser.add_argument("--drift-hour", type=int, default=72)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--records-per-hour", type=int, default=2_000)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    parser.add_argument("--drift-kind", default="other_format", choices=generate.ANOMALY_KINDS)
    parser.add_argument("--drift-share", type=float, default=0.15)
    parser.add_argument("--format", default="serial", choices=sorted(generate.FORMATS))
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (normal sequences only)")
    parser.add_argument("--retrain-hours", type=int, default=168, help="stream length of the retrain scenario")
    parser.add_argument("--retrain-drift-hour", type=int, default=124, help="drift start of the retrain scenario")
    parser.add_argument("--retrain-seeds", type=int, default=3, help="streams of the retrain scenario")
    parser.add_argument("--retrain-every", type=int, default=24, help="hours between retrains")
    parser.add_argument("--retrain-max-records", type=int, default=20_000,
                        help="newest sampled normal sequences a retrain learns from")
    return parser


def _simulation(args: argparse.Namespace, hours: int, drift_hour: int, seed: int) -> Simulation:
    return Simulation(hours=hours, records_per_hour=args.records_per_hour, anomaly_rate=args.anomaly_rate,
                      drift_from_hour=drift_hour, drift_kind=args.drift_kind, drift_share=args.drift_share,
                      fmt=args.format, seed=seed)


def _meets_target(d: Detection) -> bool:
    return d.delay_hours is not None and d.delay_hours < TARGET_DELAY_HOURS and d.false_critical == 0


# -- drift: one model throughout, the monitor beside two naive rules ----------------------------------------
def _drift_scenario(args: argparse.Namespace, scorer: Scorer) -> bool:
    started = time.perf_counter()
    print(f"\ndrift: {args.hours} h streams, drift from hour {args.drift_hour}, one model")
    runs = [evaluate(_simulation(args, args.hours, args.drift_hour, seed), scorer, CompareSettings())
            for seed in range(args.seeds)]
    _print_table(runs)
    hits = sum(_meets_target(r.monitor) for r in runs)
    print(f"target (critical within {TARGET_DELAY_HOURS} h of the drift, no critical before it): "
          f"{'met' if hits == len(runs) else 'NOT met'} on {hits} of {len(runs)} seeds; "
          f"{time.perf_counter() - started:.0f}s")
    return hits == len(runs)


def _print_table(runs: Sequence[Evaluation]) -> None:
    print(f"{'':6}" + "".join(f"{name:^26}" for name in RULES))
    print(f"{'seed':6}" + f"{'delay':>7}{'false c/w':>10}{'kept':>9}" * len(RULES))
    for run in runs:
        print(f"{run.sim.seed:<6}" + "".join(_cells(getattr(run, name)) for name in RULES))
    print(f"{'median':6}" + "".join(_median_cells([getattr(run, name) for run in runs]) for name in RULES))


def _cells(d: Detection) -> str:
    delay = "-" if d.delay_hours is None else str(d.delay_hours)
    return f"{delay:>7}{f'{d.false_critical}/{d.false_warning}':>10}{f'{d.drift_hours_critical}/{d.drift_hours}':>9}"


def _median_cells(ds: Sequence[Detection]) -> str:
    # A drift never flagged counts as an infinite delay, so the median says "-" once half the runs missed it.
    delays = [float("inf") if d.delay_hours is None else d.delay_hours for d in ds]
    delay = statistics.median(delays)
    false_c = statistics.median(d.false_critical for d in ds)
    false_w = statistics.median(d.false_warning for d in ds)
    kept = statistics.median(d.drift_hours_critical for d in ds)
    return (f"{'-' if delay == float('inf') else f'{delay:g}':>7}{f'{false_c:g}/{false_w:g}':>10}"
            f"{f'{kept:g}/{ds[0].drift_hours}':>9}")


# -- retrain: a model change every day, with and without history re-scored from samples --------------------
def _retrain_scenario(args: argparse.Namespace, scorer: Scorer) -> bool:
    started = time.perf_counter()
    min_history = CompareSettings().min_history
    print(f"\nretrain: {args.retrain_hours} h streams, drift from hour {args.retrain_drift_hour}, retrained every "
          f"{args.retrain_every} h on the newest {args.retrain_max_records} sampled normal sequences (at least "
          f"{MIN_RETRAIN_RECORDS}) with the default model settings (epochs not cut), shadowed with the default "
          f"promotion settings; learning counted from hour {min_history}")
    runs: list[tuple[RetrainRun, RetrainRun]] = []
    for seed in range(args.retrain_seeds):
        sim = _simulation(args, args.retrain_hours, args.retrain_drift_hour, seed)
        monitor = run_with_retraining(sim, scorer, CompareSettings(), args.retrain_every,
                                      max_records=args.retrain_max_records, min_records=MIN_RETRAIN_RECORDS)
        same_version = run_with_retraining(sim, scorer, CompareSettings(), args.retrain_every, sample_size=0,
                                           candidates=monitor.candidates())
        runs.append((monitor, same_version))
    _print_retrain_table(runs)
    for monitor, same_version in runs:
        _print_retrains(monitor, same_version)
    hits = sum(_meets_target(m.detection) and m.learning_hours == 0 for m, _ in runs)
    print(f"target (critical within {TARGET_DELAY_HOURS} h of the drift, no critical before it, no learning hour "
          f"after hour {min_history}): {'met' if hits == len(runs) else 'NOT met'} on {hits} of {len(runs)} seeds; "
          f"{time.perf_counter() - started:.0f}s")
    return hits == len(runs)


def _print_retrain_table(runs: Sequence[tuple[RetrainRun, RetrainRun]]) -> None:
    columns = f"{'delay':>7}{'false c/w':>10}{'kept':>9}{'learning':>9}{'p/r':>6}"
    print(f"{'':6}" + "".join(f"{name:^41}" for name in VARIANTS))
    print(f"{'seed':6}" + columns * len(VARIANTS))
    for pair in runs:
        print(f"{pair[0].sim.seed:<6}" + "".join(_cells(run.detection) + _retrain_cells(run) for run in pair))
    print(f"{'median':6}" + "".join(
        _median_cells([pair[i].detection for pair in runs])
        + _median_retrain_cells([pair[i] for pair in runs]) for i in range(len(VARIANTS))))


def _retrain_cells(run: RetrainRun) -> str:
    return f"{run.learning_hours:>9}{f'{run.promoted}/{run.refused}':>6}"


def _median_retrain_cells(runs: Sequence[RetrainRun]) -> str:
    def median(of: Callable[[RetrainRun], int]) -> str:
        return f"{statistics.median(of(run) for run in runs):g}"

    return f"{median(lambda r: r.learning_hours):>9}{f'{median(lambda r: r.promoted)}/{median(lambda r: r.refused)}':>6}"


def _print_retrains(monitor: RetrainRun, same_version: RetrainRun) -> None:
    cells = [f"h{r.hour} {r.outcome.replace('_', ' ')} ({r.corpus})" for r in monitor.retrainings]
    print(f"seed {monitor.sim.seed} retrains (sampled normal sequences): " + ", ".join(cells))
    for r in monitor.retrainings:
        for reason in r.reasons:
            print(f"  h{r.hour} refused: {reason}")
    other = {r.outcome for r in same_version.retrainings if r.candidate is not None}
    print(f"  same-version only: the same {len(same_version.candidates())} candidates, "
          f"{', '.join(sorted(o.replace('_', ' ') for o in other)) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
