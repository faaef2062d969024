"""What ``bench/throughput.py`` prints of its runs: the readers' rates, their ratios and where the monitor's
loop spent its time; and what one read of the topic gives (``Run``).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import libversion as confluent_libversion
from confluent_kafka import version as confluent_version
from kafka import __version__ as kafka_version
from kafka.record import util as kafka_record_util

BARE_KP, MONITOR_KP = "bare kafka-python", "monitor kafka-python"
BARE_CK, MONITOR_CK = "bare confluent-kafka", "monitor confluent-kafka"
VARIANTS = (BARE_KP, MONITOR_KP, BARE_CK, MONITOR_CK)
MONITORS = {MONITOR_KP: "kafka-python", MONITOR_CK: "confluent-kafka"}  # reader -> kafka.library


@dataclass
class Run:
    """One read of the topic: steady-state rate, time to the first batch, and (monitor) where time went."""

    rate: float
    start_s: float
    parts: Counter[str] = field(default_factory=Counter)


# ---- the report ---------------------------------------------------------------------------------------------


def breakdown(parts: Counter[str]) -> list[tuple[str, float]]:
    """The monitor's loop split into exclusive stages (seconds), from the nested timers (the client's own
    poll is timed apart on kafka-python only: confluent-kafka's consumer is a C type)."""
    return [
        ("client poll", parts["kafka poll"] or parts["next_batch"]),
        ("batch assembly", parts["next_batch"] - parts["kafka poll"] if parts["kafka poll"] else 0.0),
        ("decode + bookkeeping", parts["process"] - parts["score"] - parts["window"] - parts["close windows"]
         - parts["metrics batch"]),
        ("Scorer.score", parts["score"]),
        ("windows", parts["window"] + parts["close windows"]),
        ("checkpoint + commit", parts["checkpoint"]),
        ("metrics hooks", parts["metrics batch"] + parts["metrics tick"]),
        ("rest of the loop", parts["loop"] - parts["next_batch"] - parts["process"] - parts["checkpoint"]
         - parts["metrics tick"]),
    ]


def print_rates(runs: dict[str, list[Run]], scoring: list[float]) -> dict[str, float]:
    print(f"{'reader':24} {'median rec/s':>13} {'min':>10} {'max':>10} {'start s':>8}")
    medians = {}
    for name, results in runs.items():
        rates = [r.rate for r in results]
        medians[name] = statistics.median(rates)
        start = statistics.median(r.start_s for r in results)
        print(f"{name:24} {medians[name]:13,.0f} {min(rates):10,.0f} {max(rates):10,.0f} {start:8.2f}")
    medians["score only"] = statistics.median(scoring)
    print(f"{'Scorer.score alone':24} {medians['score only']:13,.0f} {min(scoring):10,.0f} {max(scoring):10,.0f}")
    return medians


def print_ratios(medians: dict[str, float]) -> None:
    kp, mkp, ck, mck, sc = (medians[k] for k in (BARE_KP, MONITOR_KP, BARE_CK, MONITOR_CK, "score only"))
    print(f"monitor kafka-python / bare kafka-python:        {mkp / kp:5.2f}   (target >= 0.75)")
    print(f"monitor confluent-kafka / monitor kafka-python:  {mck / mkp:5.2f}   (target >= 3)")
    print(f"monitor confluent-kafka / bare confluent-kafka:  {mck / ck:5.2f}")
    print(f"monitor confluent-kafka / Scorer.score alone:    {mck / sc:5.2f}")
    print(f"bare kafka-python / bare confluent-kafka:        {kp / ck:5.2f}")
    for name, bare in ((BARE_KP, kp), (BARE_CK, ck)):
        serial = 1 / (1 / bare + 1 / sc)
        print(f"{name} poll + score alone, one thread: {serial:,.0f} rec/s (a monitor's bound on it)")


def print_breakdown(name: str, monitor_runs: list[Run], n: int) -> None:
    total = sum((r.parts for r in monitor_runs), Counter())
    records = n * len(monitor_runs)
    loop = total["loop"]
    print(f"where the {name}'s time goes (all {len(monitor_runs)} runs, incl. first batch):")
    for stage, seconds in breakdown(total):
        print(f"  {stage:24} {seconds / records * 1e6:7.2f} us/record  {seconds / loop:6.1%}")


def report(runs: dict[str, list[Run]], scoring: list[float], args: argparse.Namespace) -> None:
    what = f"{'distinct ' if args.unique else ''}{args.format}s"
    print(f"\n{args.records:,} {what}, topic with {args.partitions} partition(s), median of {args.repeats} "
          f"interleaved runs; rates are steady state (after the first batch); start = time to first batch")
    crc = "C (crc32c package)" if kafka_record_util.crc32c_c is not None else "pure Python (no crc32c package)"
    print(f"kafka-python {kafka_version}, its CRC32C check: {crc}; confluent-kafka {confluent_version()} "
          f"(librdkafka {confluent_libversion()[0]})")
    medians = print_rates(runs, scoring)
    print_ratios(medians)
    for name in MONITORS:
        print_breakdown(name, runs[name], args.records)
