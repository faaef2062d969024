"""Command line for the local development services: ``python -m monitor.devtools.local_services kafka
[--cache-dir DIR] [--work-dir DIR] [--partitions N]`` starts a broker, prints its bootstrap address and
runs until Ctrl-C/SIGTERM (``deploy/local/kafka.sh`` calls it)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from monitor.devtools.kafka_broker import KafkaBroker
from monitor.devtools.kafka_jars import CACHE_ENV_VAR, KAFKA_VERSION
from monitor.errors import LocalServiceError


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.devtools.local_services", description="Run local services for development."
    )
    commands = parser.add_subparsers(dest="service", required=True)
    kafka = commands.add_parser("kafka", help=f"run a single-node Kafka {KAFKA_VERSION} broker")
    kafka.add_argument(
        "--cache-dir", type=Path, help=f"jar cache (default: ${CACHE_ENV_VAR} or ~/.cache/monitor)"
    )
    kafka.add_argument(
        "--work-dir", type=Path, help="keep data here (default: a temporary dir, deleted at exit)"
    )
    kafka.add_argument(
        "--partitions", type=int, default=1, help="num.partitions for auto-created topics"
    )
    return parser.parse_args(argv)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker until Ctrl-C or SIGTERM; print its bootstrap address."""
    args = _parse_args(argv)
    # SIGTERM takes the same clean path as Ctrl-C: leave the with-block.
    # SIGINT is set too, since a shell's background job starts with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_keyboard_interrupt)
    broker = KafkaBroker(args.work_dir, cache_dir=args.cache_dir, num_partitions=args.partitions)
    try:
        with broker:
            print(broker.bootstrap_servers, flush=True)
            note = f"Kafka {KAFKA_VERSION} running; log: {broker.log_path}; Ctrl-C stops it."
            print(note, file=sys.stderr)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("Kafka stopped.", file=sys.stderr)
        return 0
    except LocalServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
