"""Drift detection on simulated days: how soon the hourly monitor goes critical, and how often it cries wolf.

    python bench/detection.py [--hours 96] [--drift-hour 72] [--seeds 5] [--records-per-hour 2000]

Trains one default model on normal serials, then for each seed generates a stream (``monitor.devtools.simulate``:
a daily cycle in the hourly counts with noise, 1 % of every hour broken by mixed corruptions, from
``--drift-hour`` on a further ``--drift-share`` of sequences in another format) and runs it through
``HourlyJudge`` with the default ``CompareSettings``. Per seed and as the median it prints:

- ``delay``      hours from the drift's start to the first critical hour (``-``: never critical);
- ``false c/w``  critical and warning hours before the drift;
- ``kept``       drift hours that stayed critical, of all drift hours.

Two naive rules judge the same hours as the reference, measured in the same run (one alarm level each,
shown in the critical columns): ``static`` alarms when the hour's mean error is above the 99th percentile of
the mean of as many training errors (history plays no part); ``rolling`` when it is above the mean plus 3
standard deviations of the previous 24 hours. The target: critical within two hours of the drift's start,
no critical hour before it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate
from monitor.devtools.simulate import Detection, Evaluation, Simulation, evaluate
from monitor.hourly.compare import CompareSettings

TARGET_DELAY_HOURS = 2
RULES = ("monitor", "static", "rolling")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    scorer = Scorer(train(generate.sample(args.format, args.rows, seed=0), verbose=0))
    print(f"trained on {args.rows} normal {args.format} sequences in {time.perf_counter() - started:.0f}s; "
          f"{args.hours} h streams, ~{args.records_per_hour} records/h, {args.anomaly_rate:.0%} broken, "
          f"from hour {args.drift_hour} {args.drift_share:.0%} {args.drift_kind}; default compare settings")
    runs = []
    for seed in range(args.seeds):
        sim = Simulation(hours=args.hours, records_per_hour=args.records_per_hour, anomaly_rate=args.anomaly_rate,
                         drift_from_hour=args.drift_hour, drift_kind=args.drift_kind,
                         drift_share=args.drift_share, fmt=args.format, seed=seed)
        runs.append(evaluate(sim, scorer, CompareSettings()))
    _print_table(runs)
    met = all(_meets_target(run.monitor) for run in runs)
    print(f"target (critical within {TARGET_DELAY_HOURS} h of the drift, no critical before it): "
          f"{'met' if met else 'NOT met'} on {sum(_meets_target(r.monitor) for r in runs)} of {len(runs)} seeds; "
          f"{time.perf_counter() - started:.0f}s in all")
    return 0 if met else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=96)
    parser.add_argument("--drift-hour", type=int, default=72)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--records-per-hour", type=int, default=2_000)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    parser.add_argument("--drift-kind", default="other_format", choices=generate.ANOMALY_KINDS)
    parser.add_argument("--drift-share", type=float, default=0.15)
    parser.add_argument("--format", default="serial", choices=sorted(generate.FORMATS))
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (normal sequences only)")
    return parser


def _meets_target(d: Detection) -> bool:
    return d.delay_hours is not None and d.delay_hours < TARGET_DELAY_HOURS and d.false_critical == 0


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


if __name__ == "__main__":
    sys.exit(main())
