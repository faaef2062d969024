"""Scale-out: 1 and 2 monitor instances in one consumer group (``state.store: kafka``, exactly once) on a
4-partition topic, next to 1 and 2 bare readers in a group, on each client library, in the same run.

    python bench/scale_out.py [--records 1500000] [--partitions 4] [--instances 1,2] [--repeats 2]
                              [--libraries kafka-python,confluent-kafka]
    python bench/throughput.py --instances 1,2 ...   (the same)

Starts a local single-node broker, fills a new topic with generated serials, trains a bundle, then for each
instance count runs that many ``python -m monitor run`` processes (and, interleaved, that many bare readers
that poll, decode and commit every second) in a fresh group, and follows the group's committed offsets. The
rate is steady state: from the moment every member holds partitions (its log says so) to the moment all
records are committed (process start, TensorFlow's import and the group joins excluded). Total and per-instance rates are medians; the
ratio monitor / bare is the figure to read. Each process is one Python interpreter, one core at most: on a
machine with fewer cores than instances plus the broker, the instances share them.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, KafkaException
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    TopicPartition,
)
from producers import produce_confluent

from monitor.devtools import generate
from monitor.devtools.kafka_broker import KafkaBroker
from monitor.stream.kafka import keep_rebalances_requested

COMMIT_EVERY_S = 1.0
STALL_S = 120.0


def bare_reader(bootstrap: str, topic: str, group: str, library: str) -> None:
    """A bare group member: poll, decode, commit every second (so its progress shows like the monitor's)."""
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    if library == "confluent-kafka":
        bare_confluent(bootstrap, topic, group, lambda: stop)
        return
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest")

    class Announce(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: object) -> None:
            pass

        def on_partitions_assigned(self, assigned: set[object]) -> None:
            print(f"assigned {len(assigned)} input partitions", flush=True)

    keep_rebalances_requested(consumer)  # the monitor's fix for a lost rebalance (else: no partitions, seen)
    consumer.subscribe([topic], listener=Announce())
    last = time.monotonic()
    while not stop:
        for records in consumer.poll(timeout_ms=200, max_records=5000).values():
            [r.value.decode("utf-8") for r in records]
        if time.monotonic() - last >= COMMIT_EVERY_S:
            consumer.commit()
            last = time.monotonic()
    consumer.close(autocommit=False)


def bare_confluent(bootstrap: str, topic: str, group: str, stopped: Any) -> None:
    """``bare_reader`` on confluent-kafka, set up as the monitor sets its consumer up."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topic], on_assign=lambda c, parts: print(f"assigned {len(parts)} input partitions",
                                                                  flush=True))
    last = time.monotonic()
    while not stopped():
        [m.value().decode("utf-8") for m in consumer.consume(5000, 0.2) if m.error() is None]
        if time.monotonic() - last >= COMMIT_EVERY_S and consumer.assignment():
            try:
                consumer.commit(asynchronous=False)
            except KafkaException:
                pass  # nothing consumed since the last commit
            last = time.monotonic()
    consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))
    finally:
        consumer.close()


ASSIGNED = re.compile(r"assigned [1-9][0-9]* input partitions")


def working(log: Path) -> bool:
    """Whether the member's latest assignment gave it partitions."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "input partitions" in line] \
        if log.exists() else []
    return bool(lines) and ASSIGNED.search(lines[-1]) is not None


def follow(bootstrap: str, group: str, topic: str, partitions: int, n: int,
           commands: list[list[str]], logs: Path) -> float:
    """Run ``commands`` (one group member each) until all ``n`` records are committed; the steady rate from
    the moment every member holds partitions."""
    processes = []
    for i, command in enumerate(commands):
        with (logs / f"{group}-{i}.log").open("wb") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=log,
                                              env={**os.environ, "PYTHONUNBUFFERED": "1"}))
    try:
        first: tuple[float, int] | None = None
        last_change, last_count = time.monotonic(), -1
        while True:
            count = committed(bootstrap, group, topic, partitions)
            now = time.perf_counter()
            if count != last_count:
                last_change, last_count = time.monotonic(), count
            elif time.monotonic() - last_change > STALL_S:
                raise RuntimeError(f"{group}: no progress for {STALL_S:.0f} s at {count} of {n}; see {logs}")
            if first is None and all(working(logs / f"{group}-{i}.log") for i in range(len(commands))):
                first = (now, count)
            if count >= n and first is not None:
                if count == first[1]:
                    return float("nan")  # all read before every member held partitions: too fast to time
                return (count - first[1]) / max(now - first[0], 1e-9)
            time.sleep(0.25)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def monitor_config(bootstrap: str, topic: str, group: str, bundle: Path, folder: Path, i: int,
                   library: str) -> Path:
    config = {"kafka": {"bootstrap_servers": [bootstrap], "library": library},
              "input": {"topics": [topic], "group_id": group},
              "model": {"path": str(bundle)},
              "dead_letter": {"topic": f"{topic}.dead-letter"},
              "metrics": {"enabled": False},
              "reload": {"check_interval_seconds": 0},
              "state": {"store": "kafka", "path": str(folder / f"{group}-{i}" / "state.sqlite"),
                        "checkpoint_interval_seconds": COMMIT_EVERY_S, "instance_id": f"i{i}"}}
    path = folder / f"{group}-{i}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--instances", default="1,2", help="instance counts to run, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--libraries", default="kafka-python,confluent-kafka", help="client libraries, comma-separated")
    parser.add_argument("--bare-reader", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "GROUP", "LIBRARY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_reader:
        bare_reader(*args.bare_reader)
        return 0
    counts = [int(c) for c in args.instances.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    sequences = generate.sample("serial", args.records, seed=1)
    training = folder / "train.txt"
    training.write_text("\n".join(generate.sample("serial", 20_000)) + "\n")
    bundle = folder / "bundle"
    subprocess.run([sys.executable, "-m", "monitor", "train", "--input", str(training), "--model", str(bundle)],
                   check=True, capture_output=True)
    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap_servers
        topic = f"bench-scale-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics({topic: {"num_partitions": args.partitions, "replication_factor": 1}},
                            wait_for_metadata=True)
        admin.close()
        now_ms = int(time.time() * 1000)
        produce_confluent(bootstrap, topic, [s.encode() for s in sequences],
                          [now_ms - 3_600_000 + i * 3_600_000 // len(sequences) for i in range(len(sequences))])
        rates: dict[tuple[str, int], list[float]] = {}
        libraries = args.libraries.split(",")
        for _ in range(args.repeats):
            for library in libraries:
                for count in counts:
                    group = f"bare-{uuid.uuid4().hex[:8]}"
                    bare = [[sys.executable, __file__, "--bare-reader", bootstrap, topic, group, library]] * count
                    rates.setdefault((f"bare {library}", count), []).append(
                        follow(bootstrap, group, topic, args.partitions, args.records, bare, folder))
                    group = f"monitor-{uuid.uuid4().hex[:8]}"
                    monitors = [[sys.executable, "-m", "monitor", "run", "--config",
                                 str(monitor_config(bootstrap, topic, group, bundle, folder, i, library))]
                                for i in range(count)]
                    rates.setdefault((f"monitor {library}", count), []).append(
                        follow(bootstrap, group, topic, args.partitions, args.records, monitors, folder))
    print(f"\n{args.records:,} serials on {args.partitions} partitions, {os.cpu_count()} cores shared with the "
          f"broker; median of {args.repeats} interleaved runs, steady state (every member working to all committed)")
    print(f"{'reader':<26}{'instances':>10}{'total rec/s':>14}{'per instance':>14}")
    for (name, count), values in sorted(rates.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        median = statistics.median(values)
        print(f"{name:<26}{count:>10}{median:>14,.0f}{median / count:>14,.0f}")
    for library in libraries:
        monitor, bare = f"monitor {library}", f"bare {library}"
        for count in counts:
            ratio = statistics.median(rates[(monitor, count)]) / statistics.median(rates[(bare, count)])
            print(f"{monitor} / {bare} with {count} instance(s): {ratio:.2f}")
        if len(counts) > 1:
            low, high = counts[0], counts[-1]
            scaling = statistics.median(rates[(monitor, high)]) / statistics.median(rates[(monitor, low)])
            print(f"{monitor} total with {high} instances / with {low}: {scaling:.2f}   (target >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
