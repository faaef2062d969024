"""Consumer throughput from a real broker: the monitor next to bare Kafka consumers, in the same run.

    python bench/throughput.py [--records 1000000] [--repeats 3] [--bootstrap HOST:PORT] [--partitions 1]
                               [--format serial|uid|...] [--unique]

Starts a local single-node broker (or uses ``--bootstrap``), fills one new topic with ``--records``
generated serials (or ``--format``; ``--unique``: every record a distinct sequence, e.g. a stream of user
ids never seen twice) as plain UTF-8 values, timestamps spread over the last hour, written by
confluent-kafka's producer (or kafka-python's with ``--producer kafka-python``), trains a default bundle on
20,000 sequences of the format,
then reads the whole topic from the beginning, each time with a fresh consumer group, with:

- ``bare kafka-python``       a KafkaConsumer poll loop (``--max-records`` per poll) that only decodes values;
- ``monitor kafka-python``    the real service (``StreamLoop``) built by ``monitor.app.build`` with default settings
                              (batches of 5,000, no output topic, a fresh state file, the metrics hooks but no
                              HTTP endpoint) looped as ``StreamLoop.run`` loops it: ``step`` (decode, score,
                              hourly windows) and, every ``state.checkpoint_interval_seconds``, a checkpoint,
                              then the commit;
- ``bare confluent-kafka``    a confluent_kafka Consumer ``consume`` loop that only decodes values (the ceiling
                              for Python);
- ``monitor confluent-kafka`` the same service with ``kafka.library: confluent-kafka``;

interleaved, ``--repeats`` times each. A rate is steady state: records after the first batch, divided by
the time from the end of the first batch to the last record (group join and first fetch excluded; they are
shown as ``start``). Also prints ``Scorer.score`` alone over the same strings in batches of
``--max-records``, where the monitor's time went, and the ratios. Figures are medians on a shared machine
whose broker shares the CPU with the client: compare ratios measured in one run, not absolute numbers.
The printed report is ``bench/throughput_report.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import pstats
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from producers import PRODUCERS
from prometheus_client import CollectorRegistry
from throughput_report import BARE_CK, BARE_KP, MONITORS, VARIANTS, Run, report

from monitor.app import build
from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate
from monitor.devtools.kafka_broker import KafkaBroker
from monitor.hourly.timeline import HOUR_MS
from monitor.ops.buckets import error_buckets
from monitor.ops.metrics import Metrics
from monitor.settings import MonitorConfig, config_from_dict
from monitor.stream.kafka import keep_rebalances_requested
from monitor.stream.loop import StreamLoop

STALL_S = 60.0  # no record for this long means the topic holds fewer than --records: give up


class Pace:
    """Counts records as they arrive; the clock starts when the first batch has been handled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.created = time.perf_counter()
        self.first_at: float | None = None
        self.first_count = 0
        self.last_record_at = self.created

    def handled(self, count: int) -> None:
        now = time.perf_counter()
        if count == 0:
            if now - self.last_record_at > STALL_S:
                raise RuntimeError(f"no record for {STALL_S:.0f}s; the topic holds fewer than {self.expected}")
            return
        self.last_record_at = now
        if self.first_at is None:
            self.first_at, self.first_count = now, count

    def run(self, seen: int, parts: Counter[str] | None = None) -> Run:
        if seen < self.expected or self.first_at is None:  # more: a profile stops at a batch boundary
            raise RuntimeError(f"read {seen} records, expected {self.expected}")
        rate = (seen - self.first_count) / max(self.last_record_at - self.first_at, 1e-9)
        return Run(rate, self.first_at - self.created, parts or Counter())


# ---- the topic ---------------------------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-size-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(_partition_size(consumer, topic, p) for p in partitions)
    finally:
        consumer.close()


def _partition_size(consumer: Consumer, topic: str, partition: int) -> int:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return high - low


# ---- the three readers -------------------------------------------------------------------------------------


def read_kafka_python(bootstrap: str, topic: str, n: int, max_records: int) -> Run:
    """A bare KafkaConsumer, set up like the monitor's: group, no auto-commit, from the earliest offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=_group("kp"), enable_auto_commit=False,
                             auto_offset_reset="earliest")
    keep_rebalances_requested(consumer)  # the monitor's fix for a lost rebalance; no cost per record
    consumer.subscribe([topic])
    pace, seen = Pace(n), 0
    try:
        while seen < n:
            polled = consumer.poll(timeout_ms=200, max_records=max_records)
            count = 0
            for records in polled.values():
                values = [r.value.decode("utf-8") for r in records]
                count += len(values)
            seen += count
            pace.handled(count)
    finally:
        consumer.close(autocommit=False)
    return pace.run(seen)


def read_confluent(bootstrap: str, topic: str, n: int, max_records: int) -> Run:
    # librdkafka (>= 2.4) waits fetch.queue.backoff.ms (1 s) before fetching again once 100,000 records are
    # queued: a fast reader would spend most of its time waiting for that. 10 ms keeps it a ceiling.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": _group("ck"), "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topic])
    pace, seen = Pace(n), 0
    try:
        while seen < n:
            messages = consumer.consume(num_messages=max_records, timeout=0.2)
            values = [_value(m) for m in messages]
            seen += len(values)
            pace.handled(len(values))
    finally:
        consumer.close()
    return pace.run(seen)


def _value(message: Any) -> str:
    if message.error():
        raise KafkaException(message.error())
    return message.value().decode("utf-8")


def read_monitor(bootstrap: str, topic: str, n: int, scorer: Scorer, library: str = "kafka-python") -> Run:
    """The real service over the topic on ``library``, looped as ``StreamLoop.run`` does; its stages timed
    from outside."""
    with tempfile.TemporaryDirectory(prefix="bench-state-") as folder:
        config = monitor_config(bootstrap, topic, Path(folder) / "state.sqlite", library)
        service, clock = timed_service(config, scorer)
        pace, before = Pace(n), 0
        try:
            while service.counts.consumed < n:
                step(service, config.state.checkpoint_interval_seconds, clock)
                pace.handled(service.counts.consumed - before)
                before = service.counts.consumed
            _timed(clock, "loop", service.commit)()  # as a clean stop does
        finally:
            close(service)
    return pace.run(service.counts.consumed, clock)


def step(service: StreamLoop, checkpoint_interval_s: float, clock: Counter[str]) -> None:
    """One turn of ``StreamLoop.run``, with the checkpoint (then commit) that the scheduler asks for every
    ``state.checkpoint_interval_seconds``."""
    started = time.perf_counter()
    if time.time() - service.store.last_checkpoint_at >= checkpoint_interval_s:  # type: ignore[attr-defined]
        service.request_checkpoint()
    service.step()
    clock["loop"] += time.perf_counter() - started


def monitor_config(bootstrap: str, topic: str, state_path: Path, library: str = "kafka-python") -> MonitorConfig:
    return config_from_dict({"kafka": {"bootstrap_servers": [bootstrap], "library": library},
                             "input": {"topics": [topic], "group_id": _group("monitor")},
                             "output": {"topic": None}, "state": {"path": str(state_path)},
                             "metrics": {"enabled": False}}, environ={})


def timed_service(config: MonitorConfig, scorer: Scorer) -> tuple[StreamLoop, Counter[str]]:
    """A service built by ``monitor.app.build`` with the metrics hooks (no HTTP endpoint), with timers
    around its stages."""
    clock: Counter[str] = Counter()
    timed_scorer = SimpleNamespace(score=_timed(clock, "score", scorer.score), explain=scorer.explain,
                                   bundle=scorer.bundle, version=scorer.bundle.version, threshold=scorer.bundle.threshold,
                                   errors=scorer.errors)
    metrics = Metrics(CollectorRegistry(), error_buckets(scorer.bundle.training_errors), scorer.bundle.info())
    app = build(config, scorer=timed_scorer, hooks=[metrics])  # type: ignore[arg-type]
    assert app is not None
    service, pipeline = app.service, app.service.pipeline
    client_poll = [(service.source.consumer, "poll", "kafka poll")] if config.kafka.library == "kafka-python" else []
    for obj, name, label in (*client_poll,  # confluent-kafka's consumer is a C type: its methods stay as they are
                             (service.source, "next_batch", "next_batch"), (pipeline, "process", "process"),
                             (pipeline, "_window", "window"), (pipeline, "close_due", "close windows"),
                             (service.store, "commit", "checkpoint"), (metrics, "on_batch", "metrics batch"),
                             (metrics, "on_tick", "metrics tick")):
        setattr(obj, name, _timed(clock, label, getattr(obj, name)))
    return service, clock


def _timed(clock: Counter[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - started
    return timed


def close(service: StreamLoop) -> None:
    service.store.close()


def _group(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:12]}"


def score_only(scorer: Scorer, sequences: list[str], batch: int) -> float:
    """Sequences per second of ``Scorer.score`` alone over ``sequences`` in batches of ``batch``."""
    started = time.perf_counter()
    for i in range(0, len(sequences), batch):
        scorer.score(sequences[i: i + batch])
    return len(sequences) / (time.perf_counter() - started)


# ---- main --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def kafka(bootstrap: str | None, partitions: int) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    started = time.perf_counter()
    with KafkaBroker(num_partitions=partitions) as broker:
        print(f"local broker up in {time.perf_counter() - started:.1f}s at {broker.bootstrap_servers}",
              file=sys.stderr)
        yield broker.bootstrap_servers


def fill(bootstrap: str, topic: str, sequences: list[str], partitions: int, producer: str) -> None:
    create_topic(bootstrap, topic, partitions)
    values = [s.encode("utf-8") for s in sequences]
    start_ms = int(time.time() * 1000) - HOUR_MS  # event times spread over the last hour
    timestamps = [start_ms + i * HOUR_MS // len(values) for i in range(len(values))]
    started = time.perf_counter()
    PRODUCERS[producer](bootstrap, topic, values, timestamps)
    seconds = time.perf_counter() - started
    size = topic_size(bootstrap, topic)
    if size != len(values):
        raise RuntimeError(f"the topic holds {size} records, {len(values)} were produced")
    print(f"produced {len(values):,} records with {producer} in {seconds:.1f}s "
          f"({len(values) / seconds:,.0f} rec/s)")


def measure(bootstrap: str, topic: str, sequences: list[str], scorer: Scorer,
            args: argparse.Namespace) -> tuple[dict[str, list[Run]], list[float]]:
    n = len(sequences)
    readers: dict[str, Callable[[], Run]] = {
        BARE_KP: lambda: read_kafka_python(bootstrap, topic, n, args.max_records),
        BARE_CK: lambda: read_confluent(bootstrap, topic, n, args.max_records),
        **{name: (lambda library=library: cold(scorer) and read_monitor(bootstrap, topic, n, scorer, library))
           for name, library in MONITORS.items()},
    }
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    scoring = []
    for repeat in range(args.repeats):
        for name in VARIANTS:
            runs[name].append(readers[name]())
            print(f"  run {repeat + 1} {name:24} {runs[name][-1].rate:11,.0f} rec/s", file=sys.stderr)
        cold(scorer)
        scoring.append(score_only(scorer, sequences, args.max_records))
    return runs, scoring


def cold(scorer: Scorer) -> bool:
    """Forget remembered errors and encodings, so no run profits from the one before (a fresh process would
    not)."""
    scorer.forget()
    return True


def profile_monitor(bootstrap: str, topic: str, n: int, scorer: Scorer, library: str, top: int = 18) -> None:
    """cProfile over one monitor read of the first ``n`` records (a fresh group); top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    read_monitor(bootstrap, topic, n, scorer, library)
    profiler.disable()
    print(f"\ncProfile of the monitor loop on {library} over {n:,} records (own time; profiling slows Python):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", help="use this cluster (HOST:PORT) instead of starting a local broker")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--producer", default="confluent-kafka", choices=list(PRODUCERS))
    parser.add_argument("--max-records", type=int, default=5000, help="records per poll of the bare readers")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--format", default="serial", choices=sorted(generate.FORMATS),
                        help="what the records hold: serials repeat; with --unique, uid is a stream of user ids "
                             "never seen twice")
    parser.add_argument("--unique", action="store_true", help="every record a distinct sequence")
    parser.add_argument("--instances", help="instead: scale-out runs with these instance counts (e.g. 1,2) on "
                        "--partitions partitions (default 4), see bench/scale_out.py")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="afterwards, cProfile one monitor read of the first N records")
    parser.add_argument("--profile-library", default="confluent-kafka", choices=sorted(set(MONITORS.values())))
    args = parser.parse_args(argv)
    if args.instances:
        import scale_out  # noqa: PLC0415 - its own broker and processes; only for this mode

        partitions = args.partitions if args.partitions > 1 else 4
        return scale_out.main(["--records", str(args.records), "--partitions", str(partitions),
                               "--instances", args.instances, "--repeats", str(args.repeats)])

    sequences = distinct(args.format, args.records) if args.unique else generate.sample(args.format, args.records,
                                                                                        seed=1)
    scorer = Scorer(train(generate.sample(args.format, args.train_rows), verbose=0))
    scorer.score(sequences[: args.max_records])  # the first call traces the forward pass
    gc.freeze()  # as `monitor run` does after loading the model; it applies to every reader below alike
    print(f"{len(set(sequences)):,} distinct sequences among {len(sequences):,}", file=sys.stderr)
    topic = f"bench-throughput-{uuid.uuid4().hex[:8]}"
    with kafka(args.bootstrap, args.partitions) as bootstrap:
        fill(bootstrap, topic, sequences, args.partitions, args.producer)
        try:
            runs, scoring = measure(bootstrap, topic, sequences, scorer, args)
            report(runs, scoring, args)
            if args.profile:
                profile_monitor(bootstrap, topic, min(args.profile, args.records), scorer, args.profile_library)
        finally:
            if args.bootstrap:
                delete_topic(bootstrap, topic)
    return 0


def distinct(fmt: str, n: int) -> list[str]:
    """``n`` distinct sequences of ``fmt`` (generated until that many differ), in generation order."""
    seen: dict[str, None] = {}
    seed = 1
    while len(seen) < n:
        seen.update(dict.fromkeys(generate.sample(fmt, n, seed=seed)))
        seed += 1
    return list(seen)[:n]


if __name__ == "__main__":
    sys.exit(main())
