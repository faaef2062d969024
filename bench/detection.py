"""Drift detection on simulated days: how soon the hourly monitor goes critical, and how often it cries wolf.

    python bench/detection.py [--scenario all] [--hours 96] [--drift-hour 72] [--seeds 5] [--records-per-hour 2000]
                              [--method calibrated] [--retrain-hours 168] [--retrain-drift-hour 124] [--retrain-seeds 3]
                              [--retrain-every 24] [--days 30] [--volumes 30,150,2000,20000]
                              [--drift-shares 0.01,0.03,0.1]

Trains one default model on normal serials, then for each seed generates a stream (``monitor.devtools.simulate``:
a daily cycle in the hourly counts with noise, 1 % of every hour broken by mixed corruptions, from the drift
hour on a further ``--drift-share`` of sequences in another format) and runs it through ``HourlyJudge`` with
the default ``CompareConfig`` (``--method``: the judgement, ``calibrated`` or ``mean_z``). ``--scenario``
picks ``drift``, ``retrain``, ``calibration`` or ``all`` (the default: the three).

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

**calibration**: how often clean hours alarm, at any volume, and how soon drifts go critical, for the
calibrated judgement (``CompareConfig()``, the default) next to today's reference, the z of the weighted
mean (``method="mean_z"``), judged on the same records in the same run: each record is scored once and fed to
both judges (``monitor.devtools.calibration.run_judges``; records are drawn from pools of sequences each scored
once, so 30 days of 20,000 records an hour take about a minute). For each volume of ``--volumes`` (records an hour,
with the daily cycle and noise of the drift scenario) and each of ``--seeds`` (default 1):

- ``clean``: ``--days`` days; a ``--background-rate`` (0.05 %) of corrupted records every hour, and one stray
  record more (foreign or corrupted, even odds) in a ``--stray-hours`` (10 %) share of the hours;
- ``weekly``: the same, the weekend at ``--weekend-volume`` (half) the volume, with ``--weekend-share`` (5 %)
  of its records in a legitimate weekend-only format (``uid`` user ids, foreign to the serial model). The
  calibrated judge compares the same hour of the week (``baseline="same_hour_of_week", min_history=1``); the
  reference keeps its default baseline (the previous 168 windows);
- ``foreign N%``: ``--history-hours`` (80) clean hours, then ``--drift-length`` (12) hours with N % of the
  records of other formats (each of ``--drift-shares``; ``--drift-draw exact``: N % of each hour's records,
  rounded at random; ``binomial``: each record independently); the drift starts at 08:00 of day 4, an hour of
  average volume;
- ``shift``: the same history, then every record slightly changed (``general_shift``: a new year code, the
  last letter of the prefix moves on one letter, ``AB428G`` -> ``AC428G``; the format stays the same).

Every stream has a seed of its own (each drift its own history). Per volume, stream and judgement it prints
the judged hours (the first ``min_history`` (24) hours, learning, are left out; for ``weekly`` the first week,
in which the weekly baseline is empty, is left out for both judgements), the false critical and warning hours
in them and per 1,000, the ``delay`` (hours from the drift's first hour to its first critical hour: 0 is the
first hour; ``-``: not within the drift) and a NAB-style score (Lavin and Ahmad, "Evaluating real-time
anomaly detection algorithms: the Numenta Anomaly Benchmark", 2015):

- a drift critical at delay d of the drift's W hours earns sigma(d / W - 1), sigma(y) = 2 / (1 + e^(5y)) - 1
  (0.987 in the first hour, 0.5 at 0.78 W, 0 at W); a drift never critical costs 1;
- each false critical hour costs 0.11 (NAB's standard profile), each false warning hour 0.011;
- a row's ``NAB`` is its raw sum; per volume, ``score`` = 100 (raw - null) / (perfect - null), with null
  -1 per drift (nothing ever flagged) and perfect sigma(-1) per drift (each flagged in its first hour, no
  false alarm): 100 is perfect, 0 no better than silence, below 0 worse.

Then each weekly stream's weekend hours, weekend by weekend (critical/warning/learning of 48), and, for the
calibrated judgement, its false alarms and late or missed drifts with the hours' reasons and top records
(``--diagnostics`` per stream). Last, the drift scenario's streams (``--hours``, ``--drift-hour``, ``--seeds``
or 5) judged both ways through the record pipeline, to compare their delays.

The targets, for the calibrated judgement on every seed: no false critical hour in the clean streams at any
volume; at most 1 % of the clean streams' judged hours warnings; a 3 % foreign drift critical within 2 hours
(delay at most 1) from 150 records an hour up; a 10 % drift in its first hour (delay 0) from 30 an hour; the
weekly stream neither critical nor warning on its second and later weekends; and the drift scenario's drift
critical on every seed no later than the reference flags it, with no critical hour before it; and every stream
judged to its end (a judge that raises is marked ``!`` and its later hours count as no alarm). The exit status
is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate
from monitor.devtools.calibration import POOLS, CalibrationStream, JudgesFailed, Pools, calibration_hours, run_judges
from monitor.devtools.detection import CRITICAL, WARNING, Detection, Evaluation, evaluate
from monitor.devtools.retraining import RetrainRun, run_with_retraining
from monitor.devtools.simulate import Simulation
from monitor.hourly.hour_figures import VERDICT_LEVEL
from monitor.hourly.report import WindowReport
from monitor.settings import CompareConfig

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
          f"{args.drift_kind}; default compare settings, method {args.method}")
    met = True
    if args.scenario in ("drift", "all"):
        met = _drift_scenario(args, scorer) and met
    if args.scenario in ("retrain", "all"):
        met = _retrain_scenario(args, scorer) and met
    if args.scenario in ("calibration", "all"):
        met = _calibration_scenario(args, scorer) and met
    print(f"{time.perf_counter() - started:.0f}s in all")
    return 0 if met else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="all", choices=("drift", "retrain", "calibration", "all"))
    parser.add_argument("--hours", type=int, default=96)
    parser.add_argument("--drift-hour", type=int, default=72)
    parser.add_argument("--seeds", type=int, default=None,
                        help="streams per case (default: 5 for drift, 1 for calibration)")
    parser.add_argument("--method", default=CompareConfig().method, choices=("calibrated", "mean_z"),
                        help="the judgement of the drift and retrain scenarios")
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
    calibration = parser.add_argument_group("calibration scenario")
    calibration.add_argument("--days", type=int, default=30, help="length of the clean and weekly streams")
    calibration.add_argument("--volumes", type=_ints, default=(30, 150, 2_000, 20_000), help="records an hour")
    calibration.add_argument("--drift-shares", type=_floats, default=(0.01, 0.03, 0.10),
                             help="shares of foreign-format records of the drifts")
    calibration.add_argument("--drift-draw", default="exact", choices=("exact", "binomial"))
    calibration.add_argument("--history-hours", type=int, default=80, help="clean hours before each drift")
    calibration.add_argument("--drift-length", type=int, default=12, help="hours of each drift (the NAB window)")
    calibration.add_argument("--background-rate", type=float, default=0.0005, help="corrupted share of every hour")
    calibration.add_argument("--stray-hours", type=float, default=0.1, help="share of hours with one stray record")
    calibration.add_argument("--weekend-share", type=float, default=0.05, help="weekend-only format's share")
    calibration.add_argument("--weekend-volume", type=float, default=0.5, help="weekend volume / weekday volume")
    calibration.add_argument("--diagnostics", type=int, default=3,
                             help="false alarms and late drifts shown with their reasons, per stream")
    return parser


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _seeds(args: argparse.Namespace, default: int) -> int:
    return default if args.seeds is None else args.seeds


def _settings(args: argparse.Namespace) -> CompareConfig:
    return CompareConfig(method=args.method)


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
    runs = [evaluate(_simulation(args, args.hours, args.drift_hour, seed), scorer, _settings(args))
            for seed in range(_seeds(args, 5))]
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
    min_history = CompareConfig().min_history
    print(f"\nretrain: {args.retrain_hours} h streams, drift from hour {args.retrain_drift_hour}, retrained every "
          f"{args.retrain_every} h on the newest {args.retrain_max_records} sampled normal sequences (at least "
          f"{MIN_RETRAIN_RECORDS}) with the default model settings (epochs not cut), shadowed with the default "
          f"promotion settings; learning counted from hour {min_history}")
    runs: list[tuple[RetrainRun, RetrainRun]] = []
    for seed in range(args.retrain_seeds):
        sim = _simulation(args, args.retrain_hours, args.retrain_drift_hour, seed)
        monitor = run_with_retraining(sim, scorer, _settings(args), args.retrain_every,
                                      max_records=args.retrain_max_records, min_records=MIN_RETRAIN_RECORDS)
        same_version = run_with_retraining(sim, scorer, _settings(args), args.retrain_every, sample_size=0,
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


# -- calibration: false alarms per 1,000 clean hours and drift delays at any volume, two judgements ---------
JUDGEMENTS = ("calibrated", "mean_z")
COST_CRITICAL = 0.11  # NAB's standard profile: a false positive costs 0.11 of a detection
COST_WARNING = 0.011  # a warning pages no one: a tenth of that
WEEKLY_SKIP_HOURS = 7 * 24  # the weekly baseline is empty during the first week
SMALLEST_3_PERCENT = 150  # the 3 % target holds from this volume up
TARGET_3_PERCENT_DELAY = 1  # critical within 2 hours: in the drift's first or second hour
TARGET_10_PERCENT_DELAY = 0  # critical in the drift's first hour
MAX_WARNING_SHARE = 0.01
MIN_DRIFT_RECORDS = 3  # a drift without a target is diagnosed when missed though holding this many records an hour


@dataclass(frozen=True)
class Case:
    """One stream of the calibration scenario and the settings of its two judges (``JUDGEMENTS`` order);
    ``skip``: its first hours, left out of the false alarm counts."""

    volume: int
    name: str
    stream: CalibrationStream
    settings: tuple[CompareConfig, CompareConfig]
    skip: int

    @property
    def drift_hour(self) -> int | None:
        return self.stream.drift_from_hour


@dataclass(frozen=True)
class Outcome:
    """One judgement of one case: its reports, a level per hour, the false alarms among the ``judged`` hours
    (from ``case.skip`` to the drift or the end), the delay (drifts only) and the NAB-style score."""

    case: Case
    judgement: str
    reports: list[WindowReport]
    levels: list[int]
    judged: int
    false_critical: int
    false_warning: int
    delay: int | None
    nab: float
    error: str = ""

    @classmethod
    def of(cls, case: Case, judgement: str, reports: list[WindowReport], drift_length: int,
           failure: tuple[int, Exception] | None = None) -> Outcome:
        """``failure``: the hour at which the judge raised and the exception (its hours from there count as
        no alarm)."""
        stream = case.stream
        levels = [VERDICT_LEVEL["insufficient_data"]] * stream.hours
        for report in reports:
            levels[stream.hour_of(report.start_ms)] = VERDICT_LEVEL[report.verdict]
        end = stream.hours if case.drift_hour is None else case.drift_hour
        judged = levels[case.skip:end]
        false_critical = sum(level >= CRITICAL for level in judged)
        false_warning = sum(level == WARNING for level in judged)
        detection = Detection.of(levels, case.drift_hour)
        nab = -COST_CRITICAL * false_critical - COST_WARNING * false_warning
        if case.drift_hour is not None:
            nab += -1.0 if detection.delay_hours is None else _sigmoid(detection.delay_hours / drift_length - 1)
        error = "" if failure is None else \
            f"raised {type(failure[1]).__name__} ({failure[1]}) judging h{failure[0]}, {_when(stream, failure[0])}"
        return cls(case, judgement, reports, levels, len(judged), false_critical, false_warning,
                   detection.delay_hours, nab, error)


def _sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: 0.987 at the window's start (y = -1), 0 at its end (y = 0), towards -1 after."""
    return 2 / (1 + math.exp(5 * y)) - 1


def _calibration_scenario(args: argparse.Namespace, scorer: Scorer) -> bool:
    started = time.perf_counter()
    seeds = _seeds(args, 1)
    hours = args.days * 24
    pools = Pools(scorer, args.format)
    drift_hours = args.history_hours + args.drift_length
    print(f"\ncalibration: {hours} h ({args.days} days) clean and weekly streams and {drift_hours} h drift streams "
          f"({args.history_hours} clean h, then {args.drift_length} h of drift) at "
          f"{', '.join(str(v) for v in args.volumes)} records/h, {seeds} seed{'s' if seeds != 1 else ''}; "
          f"{args.background_rate:.2%} of every hour corrupted, one stray record (foreign or corrupted) in "
          f"{args.stray_hours:.0%} of hours; weekly: weekend volume x{args.weekend_volume:g} with "
          f"{args.weekend_share:.0%} weekend-only format; drifts: "
          f"{', '.join(f'{share:.0%}' for share in args.drift_shares)} foreign ({args.drift_draw}) and a general "
          f"shift; records drawn from {pools.scored} distinct sequences scored once ({pools.seconds:.0f}s)")
    print("judgements on the same records: calibrated (CompareConfig(); weekly: baseline same_hour_of_week, "
          "min_history 1) and mean_z (CompareConfig(method='mean_z'), today's, default baseline everywhere)")
    outcomes: list[Outcome] = []
    for volume in args.volumes:
        volume_started = time.perf_counter()
        for seed in range(seeds):
            for case in _cases(args, volume, seed):
                try:
                    reports, failures = run_judges(case.stream, pools, case.settings), {}
                except JudgesFailed as failed:
                    reports, failures = failed.reports, failed.failures
                outcomes += [Outcome.of(case, judgement, judged, args.drift_length, failures.get(i))
                             for i, (judgement, judged) in enumerate(zip(JUDGEMENTS, reports))]
        print(f"  {volume} records/h judged in {time.perf_counter() - volume_started:.0f}s")
    _print_calibration_table(outcomes, args)
    _print_weekends(outcomes)
    met = _calibration_targets(outcomes, args)
    _print_diagnostics(outcomes, pools, args)
    met = _existing_drift_both_ways(args, scorer) and met
    print(f"calibration: {time.perf_counter() - started:.0f}s")
    return met


def _cases(args: argparse.Namespace, volume: int, seed: int) -> list[Case]:
    hours = args.days * 24
    default, reference = CompareConfig(), CompareConfig(method="mean_z")
    weekly = CompareConfig(baseline="same_hour_of_week", min_history=1)
    common = {"records_per_hour": volume, "background_rate": args.background_rate, "stray_hours": args.stray_hours}
    cases = [Case(volume, "clean", CalibrationStream(hours=hours, seed=seed, **common), (default, reference),
                  default.min_history),
             Case(volume, "weekly", CalibrationStream(hours=hours, weekend_volume=args.weekend_volume,
                                                      weekend_share=args.weekend_share, seed=1_000 + seed, **common),
                  (weekly, reference), max(WEEKLY_SKIP_HOURS, default.min_history))]
    drift = {"hours": args.history_hours + args.drift_length, "drift_from_hour": args.history_hours,
             "drift_draw": args.drift_draw, **common}
    cases += [Case(volume, f"foreign {share:.0%}",
                   CalibrationStream(drift_share=share, seed=2_000 + 100 * k + seed, **drift), (default, reference),
                   default.min_history) for k, share in enumerate(args.drift_shares)]
    shift_seed = 2_000 + 100 * len(args.drift_shares) + seed
    cases.append(Case(volume, "shift", CalibrationStream(drift="shift", seed=shift_seed, **drift), (default, reference),
                      default.min_history))
    return cases


def _grouped(outcomes: Sequence[Outcome]) -> dict[tuple[int, str], dict[str, list[Outcome]]]:
    """Outcomes by (volume, case name), then judgement, seeds together, in the order run."""
    groups: dict[tuple[int, str], dict[str, list[Outcome]]] = {}
    for o in outcomes:
        groups.setdefault((o.case.volume, o.case.name), {}).setdefault(o.judgement, []).append(o)
    return groups


def _print_calibration_table(outcomes: Sequence[Outcome], args: argparse.Namespace) -> None:
    print("\nhours: judged hours (clean and drift streams from hour 24, weekly from hour 168), seeds together; "
          "c, w: false critical and warning hours among them (drift streams: before the drift); /1000h: per 1,000 "
          f"of them; delay: hours from the drift's first hour to its first critical one (0: the first; -: not "
          f"within its {args.drift_length} h), per seed; NAB: the row's raw NAB-style sum")
    cells = f"{'c':>4}{'w':>4}{'c/1000h':>9}{'w/1000h':>9}{'delay':>7}{'NAB':>8} "
    width = len(cells)
    print(f"{'':8}{'':12}{'':7}" + "".join(f"  {name:^{width}}" for name in JUDGEMENTS))
    print((f"{'volume':<8}{'stream':<12}{'hours':>7}" + f"  {cells}" * len(JUDGEMENTS)).rstrip())
    groups = _grouped(outcomes)
    for volume in args.volumes:
        for (v, name), by_judgement in groups.items():
            if v != volume:
                continue
            first = by_judgement[JUDGEMENTS[0]]
            print((f"{volume:<8}{name:<12}{sum(o.judged for o in first):>7}"
                   + "".join(f"  {_row_cells(by_judgement[j])}" for j in JUDGEMENTS)).rstrip())
        print(f"{volume:<8}{'score':<12}{'':>7}" + "".join(
            f"  {_normalised(outcomes, volume, j):>{width}.1f}" for j in JUDGEMENTS))
    print(f"{'all':<8}{'score':<12}{'':>7}" + "".join(
        f"  {_normalised(outcomes, None, j):>{width}.1f}" for j in JUDGEMENTS))
    for o in outcomes:
        if o.error:
            print(f"! {o.case.volume}/h {o.case.name} seed {o.case.stream.seed % 100}, {o.judgement}: {o.error}; "
                  "its later hours count as no alarm")
    print("score: NAB-style, 100 (raw - null) / (perfect - null): 100 every drift critical in its first hour and no "
          "false alarm, 0 nothing ever flagged; raw: a drift critical at delay d of W hours earns "
          "2 / (1 + e^(5 (d/W - 1))) - 1, a drift never critical -1, a false critical hour -0.11, a false warning hour "
          "-0.011")


def _row_cells(runs: Sequence[Outcome]) -> str:
    judged = sum(o.judged for o in runs)
    false_c, false_w = sum(o.false_critical for o in runs), sum(o.false_warning for o in runs)
    per = (lambda n: f"{1000 * n / judged:.1f}") if judged else (lambda n: "-")
    if runs[0].case.drift_hour is None:
        delay = "."
    else:
        delay = ",".join("-" if o.delay is None else str(o.delay) for o in runs)
    return (f"{false_c:>4}{false_w:>4}{per(false_c):>9}{per(false_w):>9}{delay:>7}"
            f"{sum(o.nab for o in runs):>8.2f}{'!' if any(o.error for o in runs) else ' '}")


def _normalised(outcomes: Sequence[Outcome], volume: int | None, judgement: str) -> float:
    mine = [o for o in outcomes if o.judgement == judgement and (volume is None or o.case.volume == volume)]
    drifts = sum(o.case.drift_hour is not None for o in mine)
    raw = sum(o.nab for o in mine)
    null, perfect = -float(drifts), drifts * _sigmoid(-1)
    return 100 * (raw - null) / (perfect - null) if drifts else float("nan")


def _weekends(outcome: Outcome) -> list[tuple[int, int, int, int]]:
    """(critical, warning, learning, hours) of each weekend of a stream, in order."""
    by_week: dict[int, list[int]] = {}
    for hour, level in enumerate(outcome.levels):
        if outcome.case.stream.weekend(hour):
            by_week.setdefault(hour // WEEKLY_SKIP_HOURS, []).append(level)
    return [(sum(v >= CRITICAL for v in levels), sum(v == WARNING for v in levels),
             sum(v < 0 for v in levels), len(levels)) for _, levels in sorted(by_week.items())]


def _print_weekends(outcomes: Sequence[Outcome]) -> None:
    weekly = [o for o in outcomes if o.case.name == "weekly"]
    if not weekly:
        return
    print("\nweekly streams, weekend hours weekend by weekend: critical/warning/learning of the weekend's hours "
          "(seeds together; the first weekend has no weekly baseline yet)")
    groups = _grouped(weekly)
    count = max(len(_weekends(o)) for o in weekly)
    width = 16
    print(f"{'volume':<8}" + "".join(f"  {name:^{count * width}}" for name in JUDGEMENTS))
    print(f"{'':8}" + ("  " + "".join(f"{f'weekend {i + 1}':>{width}}" for i in range(count))) * len(JUDGEMENTS))
    for (volume, _), by_judgement in groups.items():
        row = f"{volume:<8}"
        for judgement in JUDGEMENTS:
            sums = [[0, 0, 0, 0] for _ in range(count)]
            for o in by_judgement[judgement]:
                for i, cells in enumerate(_weekends(o)):
                    sums[i] = [a + b for a, b in zip(sums[i], cells)]
            row += "  " + "".join(f"{f'{c}/{w}/{le} of {n}':>{width}}" for c, w, le, n in sums)
        print(row + (" !" if any(o.error for runs in by_judgement.values() for o in runs) else ""))


def _calibration_targets(outcomes: Sequence[Outcome], args: argparse.Namespace) -> bool:
    mine = [o for o in outcomes if o.judgement == "calibrated"]
    groups = _grouped(mine)
    checks: list[tuple[str, list[str]]] = []
    clean = [(v, runs["calibrated"]) for (v, name), runs in groups.items() if name == "clean"]
    checks.append(("no false critical hour in the clean streams",
                   [f"{v}/h: {sum(o.false_critical for o in runs)}" for v, runs in clean
                    if any(o.false_critical for o in runs)]))
    checks.append((f"at most {MAX_WARNING_SHARE:.0%} of the clean streams' judged hours warnings",
                   [f"{v}/h: {sum(o.false_warning for o in runs)} of {sum(o.judged for o in runs)}" for v, runs in clean
                    if sum(o.false_warning for o in runs) > MAX_WARNING_SHARE * sum(o.judged for o in runs)]))
    for share, smallest, delay in ((0.03, SMALLEST_3_PERCENT, TARGET_3_PERCENT_DELAY),
                                   (0.10, min(args.volumes), TARGET_10_PERCENT_DELAY)):
        name = f"foreign {share:.0%}"
        runs = [(v, o) for (v, n), by in groups.items() if n == name and v >= smallest for o in by["calibrated"]]
        if not any(math.isclose(s, share) for s in args.drift_shares):
            continue
        checks.append((f"a {share:.0%} foreign drift critical within {delay + 1} h from {smallest} records/h up",
                       [f"{v}/h seed {o.case.stream.seed % 100}: delay {'-' if o.delay is None else o.delay}"
                        for v, o in runs if o.delay is None or o.delay > delay]))
    weekly = [o for (v, n), by in groups.items() if n == "weekly" for o in by["calibrated"]]
    checks.append(("the weekly stream neither critical nor warning on its second and later weekends",
                   [f"{o.case.volume}/h seed {o.case.stream.seed % 100} weekend {i + 1}: {c} critical, {w} warning"
                    for o in weekly for i, (c, w, _, _) in enumerate(_weekends(o)) if i >= 1 and c + w]))
    checks.append(("every stream judged to its end without an error",
                   [f"{o.case.volume}/h {o.case.name} seed {o.case.stream.seed % 100}" for o in mine if o.error]))
    print("\ntargets (calibrated judgement, every seed):")
    for text, misses in checks:
        print(f"  {'met    ' if not misses else 'NOT met'} {text}" + (f": {'; '.join(misses)}" if misses else ""))
    return not any(misses for _, misses in checks)


def _print_diagnostics(outcomes: Sequence[Outcome], pools: Pools, args: argparse.Namespace) -> None:
    """The calibrated judgement's false alarms and late or missed drifts: each hour's verdict, reasons and
    top records, and what the hour held."""
    if args.diagnostics <= 0:
        return
    shown = False
    for o in outcomes:
        if o.judgement != "calibrated":
            continue
        case = o.case
        end = case.stream.hours if case.drift_hour is None else case.drift_hour
        false = [h for h in range(case.skip, end) if o.levels[h] >= WARNING]
        hours = false[:args.diagnostics]
        if case.name == "weekly":  # the weekend's alarms apart: the weekdays' come first
            hours = [h for h in false if not case.stream.weekend(h)][:args.diagnostics] + \
                [h for h in false if case.stream.weekend(h)][:args.diagnostics]
        late = case.drift_hour is not None and _late(case, o.delay)
        if late:
            last = case.stream.hours if o.delay is None else case.drift_hour + o.delay + 1
            hours += list(range(case.drift_hour, last))[:max(args.diagnostics, 1) + 1]
        if not hours:
            continue
        if not shown:
            print("\ncalibrated judgement: false alarms (first few per stream) and late or missed drifts, hour by hour")
            shown = True
        weekend = sum(case.stream.weekend(h) for h in false) if case.name == "weekly" else 0
        what = f"{len(false)} false alarm hours" + (f" ({weekend} on weekends)" if weekend else "")
        if case.drift_hour is not None:
            what += f", drift delay {'-' if o.delay is None else o.delay}"
        print(f"{case.volume}/h {case.name} seed {case.stream.seed % 100}: {what}")
        held = _held(case, pools, set(hours))
        by_hour = {case.stream.hour_of(r.start_ms): r for r in o.reports}
        for hour in hours:
            report = by_hour.get(hour)
            if report is None:
                continue
            top = ", ".join(f"{r.sequence!r} {r.error:.3g}" for r in report.top_records[:3])
            p = report.comparison.p_value
            print(f"  h{hour} {_when(case.stream, hour)} {report.verdict} (p {p:.2g}); {held[hour]}; "
                  f"top: {top}")
            for reason in report.reasons:
                print(f"      {reason.describe()}")


def _late(case: Case, delay: int | None) -> bool:
    """Whether a drift missed its target delay, or, without one, was never critical though it held at least
    ``MIN_DRIFT_RECORDS`` records an hour on average (a general shift: all of them)."""
    target = None
    if case.name == "foreign 10%":
        target = TARGET_10_PERCENT_DELAY
    elif case.name == "foreign 3%" and case.volume >= SMALLEST_3_PERCENT:
        target = TARGET_3_PERCENT_DELAY
    if target is not None:
        return delay is None or delay > target
    stream = case.stream
    drifting = stream.records_per_hour * (stream.drift_share if stream.drift == "foreign" else 1.0)
    return delay is None and drifting >= MIN_DRIFT_RECORDS


def _when(stream: CalibrationStream, hour: int) -> str:
    """A simulated hour's start as weekday, date and hour (UTC), e.g. ``Mon 01-08 02:00``."""
    start_ms = stream.start_ms + hour * stream.hour_ms
    return datetime.fromtimestamp(start_ms / 1000, timezone.utc).strftime("%a %m-%d %H:%M")


def _held(case: Case, pools: Pools, hours: set[int]) -> dict[int, str]:
    """What each of ``hours`` held, by pool (the stream drawn again: it is deterministic)."""
    held = {}
    for hour in calibration_hours(case.stream, pools):
        if hour.hour in hours:
            counts = {name: hour.count(name) for name in POOLS}
            held[hour.hour] = f"{len(hour.errors)} records: " + ", ".join(
                f"{n} {name}" for name, n in counts.items() if n)
        if hour.hour >= max(hours):
            break
    return held


def _existing_drift_both_ways(args: argparse.Namespace, scorer: Scorer) -> bool:
    """The drift scenario's streams through the record pipeline, judged the calibrated way and today's."""
    started = time.perf_counter()
    seeds = _seeds(args, 5)
    print(f"\ndrift scenario's streams ({args.hours} h, ~{args.records_per_hour} records/h, {args.anomaly_rate:.0%} "
          f"broken, from hour {args.drift_hour} {args.drift_share:.0%} {args.drift_kind}) judged both ways:")
    print(f"{'':6}" + "".join(f"{name:^26}" for name in JUDGEMENTS))
    print(f"{'seed':6}" + f"{'delay':>7}{'false c/w':>10}{'kept':>9}" * len(JUDGEMENTS))
    misses = []
    for seed in range(seeds):
        sim = _simulation(args, args.hours, args.drift_hour, seed)
        new, old = (evaluate(sim, scorer, CompareConfig(method=m)).monitor for m in JUDGEMENTS)
        print(f"{seed:<6}{_cells(new)}{_cells(old)}")
        late = new.delay_hours is None or (old.delay_hours is not None and new.delay_hours > old.delay_hours)
        if late or new.false_critical:
            misses.append(f"seed {seed}")
    print(f"target (calibrated critical no later than mean_z, no critical before the drift): "
          f"{'met' if not misses else 'NOT met on ' + ', '.join(misses)}; {time.perf_counter() - started:.0f}s")
    return not misses


if __name__ == "__main__":
    sys.exit(main())
