"""Each command's parsed flags handed to the function that does it: the offline commands' in
``monitor.commands``, the service's in ``monitor.app`` and the development tools' in ``monitor.devtools``.

An adapter imports its command only when the command runs: ``--help``, ``--version`` and argument errors
do not wait for a command's imports, TensorFlow's least of all.
"""

from __future__ import annotations

import argparse
import sys


def train(args: argparse.Namespace) -> int:
    from monitor.commands.train import run_train
    from monitor.core.model import ModelSettings
    from monitor.core.prepare import PrepareSettings
    from monitor.core.train import TrainSettings

    settings = TrainSettings(
        prepare=PrepareSettings(tokenize=args.tokenize, separator_pattern=args.separator_pattern,
                                lowercase=args.lowercase, encoding=args.encoding, length=args.length,
                                vocabulary_size=args.vocabulary_size),
        model=ModelSettings(kind=args.model_kind, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed),
        threshold_quantile=args.threshold_quantile,
    )
    return run_train(args.input, args.input_format, args.column, args.model, settings, args.allow_skipped,
                     args.report, args.verbose)


def score(args: argparse.Namespace) -> int:
    from monitor.commands.score import run_score

    return run_score(args.model, args.input, args.input_format, args.column, args.output, args.explain, args.method,
                     args.threshold_quantile)


def rank(args: argparse.Namespace) -> int:
    from monitor.commands.rank import run_rank

    return run_rank(args.model, args.sequences, args.parts, args.sort, args.method, args.threshold_quantile)


def evaluate(args: argparse.Namespace) -> int:
    from monitor.commands.evaluate import run_evaluate

    return run_evaluate(args.model, args.normal, args.anomalies, args.input_format, args.column, args.method,
                        args.threshold_quantile, args.report, args.json)


def formats(args: argparse.Namespace) -> int:
    from monitor.commands.formats import run_formats

    return run_formats(args.model, args.top, args.json)


def generate(args: argparse.Namespace) -> int:
    from monitor.devtools.generate import run_generate

    return run_generate(args.format, args.count, args.anomalies, args.seed, args.output)


def service(args: argparse.Namespace) -> int:
    from monitor.app import run_service

    return run_service(args.config, args.model)


def produce(args: argparse.Namespace) -> int:
    from monitor.devtools.produce import run_produce

    return run_produce(args)


def replay(args: argparse.Namespace) -> int:
    from monitor.commands.replay import run_replay

    return run_replay(args.model, args.input, args.config, args.sequence_column, args.time_column, args.weight_column,
                      args.time_format, args.window_seconds, args.output, args.format, args.model_change or [])


def candidate(args: argparse.Namespace) -> int:
    from monitor.commands.promotion import run_candidate

    return run_candidate(args.model, args.candidate, args.state, args.config, args.json)


def accept(args: argparse.Namespace) -> int:
    from monitor.commands.promotion import run_accept

    return run_accept(args.state, args.config, args.window, args.file, args.pattern, args.topic)


def state(args: argparse.Namespace) -> int:
    from monitor.commands.state import run_state

    return run_state(args.config, args.action, args.key, args.shown_key)


def demo(args: argparse.Namespace) -> int:
    from monitor.devtools.demo import run_demo

    return run_demo(args.formats, args.rows, args.output_dir, args.seed, sys.stdout, chart=args.chart)
