"""Wiring for the long-running commands: configuration → model → Kafka clients → service, with signals.

``run_service`` is what ``python -m monitor run`` does; ``run_produce`` is the load generator's command.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from monitor import bundle as bundle_lib
from monitor import export, logs
from monitor.config import MonitorConfig, load_config
from monitor.errors import InputError
from monitor.hourly import HourlyPipeline, compare_settings
from monitor.kafka_io import KafkaSink, KafkaSource, client_options, is_outage
from monitor.model_lifecycle import BundleWatcher, Retrainer
from monitor.produce import HOUR_MS, StreamPlan, encode_value, paced, planned_stream
from monitor.schedule import start_jobs
from monitor.score import Scorer
from monitor.service import BACKOFF_MAX_S, BatchResult, NoHooks, Service
from monitor.state import StateStore

log = logging.getLogger(__name__)
T = TypeVar("T")
# After a stop request the loop is bounded by the shutdown timeout; this margin covers closing the clients.
_WATCHDOG_MARGIN_S = 15.0


def run_service(config_path: Path | None, model_path: str | None = None) -> int:
    config = load_config(config_path)
    if model_path:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, path=model_path))
    logs.configure(config.logging.level, config.logging.format)
    # Everything that can be wrong with the settings, the model or the state is found before connecting.
    client_options(config.kafka, "consumer")
    client_options(config.kafka, "producer")
    pipeline = HourlyPipeline(config.window.length_ms, config.window.allowed_lateness_ms,
                              compare_settings(config.compare))
    scorer = Scorer(bundle_lib.load(Path(config.model.path)))
    log.info("model bundle %s loaded from %s", scorer.bundle.version, config.model.path)
    state = StateStore(config.state.path)
    # TensorFlow leaves hundreds of thousands of long-lived objects; moving them out of the collector's
    # reach stops every full collection from walking them again (measured: ~20% more records a second).
    gc.freeze()
    stop = threading.Event()
    restore = _install_stop_handlers(stop)
    try:
        service = _start(config, scorer, state, pipeline, stop)
        if service is None:
            return 0  # stopped before the cluster was ever reachable: nothing was read
        server = _serve_metrics(config, service)
        scheduler = _schedule(config, service)
        threading.Thread(target=_forward_stop, args=(stop, service, config), daemon=True).start()
        try:
            service.run()
        finally:
            scheduler.shutdown(wait=False)
            if server is not None:
                server.shutdown()
    finally:
        restore()
    log.info("stopped")
    return 0


def build_service(config: MonitorConfig, scorer: Scorer, state: StateStore, pipeline: HourlyPipeline) -> Service:
    """A service with its checkpoint restored; its source and sink are attached once the cluster answers,
    the source told to resume at ``service.positions``."""
    service = Service(config, scorer, None, None, state, pipeline)  # type: ignore[arg-type]
    service.restore()
    return service


def _start(config: MonitorConfig, scorer: Scorer, state: StateStore, pipeline: HourlyPipeline,
           stop: threading.Event) -> Service | None:
    service = build_service(config, scorer, state, pipeline)
    source = _connect(lambda: KafkaSource(config.kafka, config.input.topics, config.input.group_id,
                                          config.input.auto_offset_reset, service.positions), stop, "consumer")
    sink = _connect(lambda: KafkaSink(config.kafka), stop, "producer") if source else None
    if source is None or sink is None:
        state.close()
        return None
    service.source, service.sink = source, sink
    if config.retrain.enabled:
        service.retrainer = Retrainer(lambda: service.scorer.bundle,
                                      Path(config.retrain.output_path or config.model.path),
                                      config.retrain.min_records, config.retrain.max_records)
        service.hooks.append(KeepNormal(service.retrainer))
    return service


def _serve_metrics(config: MonitorConfig, service: Service) -> Any:
    """Metrics hooks on the service and the HTTP endpoint, when ``metrics.enabled``."""
    if not config.metrics.enabled:
        return None
    metrics, server = export.start(service.scorer.bundle, config.metrics.host, config.metrics.port)
    service.hooks.append(metrics)
    log.info("metrics on http://%s:%d/metrics (also /healthz, /readyz)", config.metrics.host,
             server.server_port)
    return server


def _schedule(config: MonitorConfig, service: Service) -> Any:
    watcher = BundleWatcher(Path(config.model.path), service.scorer.bundle.version, service.offer_scorer)
    retrainer = getattr(service, "retrainer", None)
    return start_jobs(config, service.request_close_check, service.request_checkpoint, watcher.check,
                      retrainer.retrain if retrainer else None)


class KeepNormal(NoHooks):
    """Feeds the retrainer the sequences each batch scored normal."""

    def __init__(self, retrainer: Retrainer) -> None:
        self.retrainer = retrainer

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        self.retrainer.keep_normal(result.decoded.sequences, result.flags)


def _connect(make: Callable[[], T], stop: threading.Event, what: str) -> T | None:
    """Build a Kafka client, retrying with backoff while the cluster is unreachable; ``None`` if stopped."""
    delay, warned = 1.0, False
    while not stop.is_set():
        try:
            client = make()
        except Exception as exc:  # kafka-python raises several types for "no broker"; ask is_outage
            if not is_outage(exc) and type(exc).__name__ != "NoBrokersAvailable":
                raise
            if not warned:
                log.warning("cannot reach the Kafka cluster for the %s (%s); retrying with backoff", what, exc)
                warned = True
            stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
            continue
        if warned:
            log.warning("Kafka cluster reachable; %s connected", what)
        return client
    return None


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        log.info("received %s: finishing the batch in hand, committing, closing", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


def _forward_stop(stop: threading.Event, service: Service, config: MonitorConfig) -> None:
    """Turn the signal into a service stop, and end the process if the stop overruns its bound."""
    stop.wait()
    service.request_stop()
    deadline = config.shutdown.timeout_seconds + _WATCHDOG_MARGIN_S
    time.sleep(deadline)
    log.error("shutdown did not finish within %.0fs; exiting without a clean close", deadline)
    logging.shutdown()
    os._exit(1)


# -- produce ---------------------------------------------------------------------------------------------
def run_produce(args: argparse.Namespace) -> int:
    logs.configure()
    config = load_config(args.config)
    kafka = config.kafka
    if args.bootstrap_servers:
        kafka = dataclasses.replace(kafka, bootstrap_servers=tuple(args.bootstrap_servers.split(",")))
    topic = args.topic or config.input.topics[0]
    plan = StreamPlan(count=args.count, start_ms=_start_ms(args.start, args.hours), hours=args.hours,
                      fmt=args.format, drift_from_hour=args.drift_from_hour, drift_kind=args.drift_kind,
                      drift_share=args.drift_share, seed=args.seed)
    sequences = _file_sequences(args.input) if args.input else None
    sink = KafkaSink(kafka)
    sent = 0
    try:
        for timestamp, sequence in paced(planned_stream(plan, sequences), args.rate):
            sink.send(topic, encode_value(sequence, timestamp, args.json), timestamp_ms=timestamp)
            sent += 1
        sink.flush()
    finally:
        sink.close()
    print(f"produced {sent} records to {topic}, event times from "
          f"{_iso(plan.start_ms)} over {args.hours:g} simulated hours")
    return 0


def _start_ms(start: str | None, hours: float) -> int:
    if start:
        try:
            moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"--start {start!r} is not an ISO 8601 time") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    now_ms = int(time.time() * 1000)
    return (now_ms - int(hours * HOUR_MS)) // HOUR_MS * HOUR_MS


def _file_sequences(path: Path) -> list[str]:
    from monitor.source import read_sequences

    sequences, _ = read_sequences(path)
    return sequences


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")



# -- replay ----------------------------------------------------------------------------------------------
def run_replay(args: argparse.Namespace) -> int:
    from monitor.replay import ReplayColumns, replay, write_reports
    from monitor.source import open_output

    config = load_config(args.config)
    length_ms = int(args.window_seconds * 1000) if args.window_seconds else config.window.length_ms
    pipeline = HourlyPipeline(length_ms, config.window.allowed_lateness_ms, compare_settings(config.compare))
    scorer = Scorer(bundle_lib.load(args.model))
    columns = ReplayColumns(args.sequence_column, args.time_column, args.weight_column, args.time_format)
    result = replay(args.input, scorer, pipeline, columns, config.input)
    with open_output(args.output) as out:
        write_reports(result.reports, out, args.format)
    abnormal = sum(r.abnormal for r in result.reports)
    print(f"replayed {result.rows} rows into {len(result.reports)} windows ({abnormal} warning or critical); "
          f"{sum(result.rejected.values())} rows rejected {dict(result.rejected) or ''}, {result.late} late",
          file=sys.stderr)
    return 0
