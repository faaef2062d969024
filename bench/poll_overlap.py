"""Does polling the next batch while the current one is scored pay? Both orders on both clients, same run.

    python bench/poll_overlap.py [--records 300000] [--repeats 3] [--bootstrap HOST:PORT]

Fills a one-partition topic with generated serials (as ``bench/throughput.py`` does), trains a default bundle,
then reads the topic with a fresh group per run, each batch decoded and given to ``Scorer.score``:

- ``sequential``  poll, score, poll, score ... on one thread (what the service does);
- ``overlapped``  a thread polls into a queue of two batches while the main thread scores.

Interleaved, ``--repeats`` times each, for kafka-python and confluent-kafka. Rates are steady state (after
the first batch); the figure to read is overlapped / sequential per client. The service keeps one thread:
its rebalance callbacks run inside the poll, on the thread that owns the state they change.
"""

from __future__ import annotations

import argparse
import gc
import queue
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer
from kafka import KafkaConsumer
from throughput import fill, kafka

from monitor.core.score import Scorer
from monitor.core.train import train
from monitor.devtools import generate

Poll = Callable[[], list[bytes]]


def kafka_python_poll(bootstrap: str, topic: str) -> tuple[Poll, Callable[[], None]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=uuid.uuid4().hex, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    consumer.subscribe([topic])

    def poll() -> list[bytes]:
        return [r.value for records in consumer.poll(timeout_ms=200, max_records=5000).values() for r in records]
    return poll, lambda: consumer.close(autocommit=False)


def confluent_poll(bootstrap: str, topic: str) -> tuple[Poll, Callable[[], None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topic])

    def poll() -> list[bytes]:
        return [m.value() for m in consumer.consume(5000, 0.2) if m.error() is None]
    return poll, consumer.close


CLIENTS = {"kafka-python": kafka_python_poll, "confluent-kafka": confluent_poll}


def batches(poll: Poll, n: int, overlapped: bool) -> Iterator[list[bytes]]:
    """The topic's ``n`` records in batches, polled on this thread or on one of its own."""
    if not overlapped:
        seen = 0
        while seen < n:
            batch = poll()
            seen += len(batch)
            if batch:
                yield batch
        return
    ready: queue.Queue[list[bytes]] = queue.Queue(maxsize=2)

    def fetch() -> None:
        got = 0
        while got < n:
            batch = poll()
            if batch:
                ready.put(batch)
                got += len(batch)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    seen = 0
    while seen < n:
        batch = ready.get()
        seen += len(batch)
        yield batch
    thread.join()


def read(client: str, bootstrap: str, topic: str, n: int, scorer: Scorer, overlapped: bool) -> float:
    """Steady-state records per second of polling and scoring the whole topic."""
    scorer.forget()  # no run profits from the one before
    poll, close = CLIENTS[client](bootstrap, topic)
    started: float | None = None
    first = seen = 0
    try:
        for batch in batches(poll, n, overlapped):
            scorer.score([value.decode("utf-8") for value in batch])
            seen += len(batch)
            if started is None:
                started, first = time.perf_counter(), len(batch)
    finally:
        close()
    assert started is not None
    return (seen - first) / max(time.perf_counter() - started, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", help="use this cluster (HOST:PORT) instead of starting a local broker")
    args = parser.parse_args(argv)
    sequences = generate.sample("serial", args.records, seed=1)
    scorer = Scorer(train(generate.sample("serial", 20_000), verbose=0))
    scorer.score(sequences[:5000])  # the first call traces the forward pass
    gc.freeze()  # as `monitor run` does
    topic = f"bench-overlap-{uuid.uuid4().hex[:8]}"
    rates: dict[tuple[str, bool], list[float]] = {}
    with kafka(args.bootstrap, 1) as bootstrap:
        fill(bootstrap, topic, sequences, 1, "confluent-kafka")
        for repeat in range(args.repeats):
            for client in CLIENTS:
                for overlapped in (False, True):
                    rate = read(client, bootstrap, topic, args.records, scorer, overlapped)
                    rates.setdefault((client, overlapped), []).append(rate)
                    print(f"  run {repeat + 1} {client:16} {'overlapped' if overlapped else 'sequential':11} "
                          f"{rate:11,.0f} rec/s", file=sys.stderr)
    print(f"\n{args.records:,} serials, one partition, median of {args.repeats} interleaved runs (steady state)")
    for client in CLIENTS:
        sequential, overlapped = (statistics.median(rates[(client, o)]) for o in (False, True))
        print(f"{client:16} sequential {sequential:11,.0f} rec/s   overlapped {overlapped:11,.0f} rec/s   "
              f"overlapped / sequential {overlapped / sequential:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
