"""The parser of the command line: every command, argument, default and help text, and the exit codes the
help lists.

Building it does not import TensorFlow: ``monitor.cli.adapters`` imports each command when it runs, so
``--help``, ``--version`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from monitor import __version__
from monitor.cli import adapters
from monitor.errors import MonitorError


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help, 0 included, unless it has none (``None``, off) or the help
    already says it; descriptions and epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # By identity: 0 == False, and a default of 0 is worth showing.
        if any(action.default is none for none in (None, False, argparse.SUPPRESS)) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


EXIT_CODES = """exit codes:
  0  success                      2  bad input or settings (the message says which)
  1  other error                  3  missing, damaged or incompatible model bundle
  130 interrupted (Ctrl-C)        4  unusable state file"""


def _command(commands: argparse._SubParsersAction, name: str, summary: str, description: str = "",
             epilog: str = EXIT_CODES) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}."
                               + (f"\n\n{description}" if description else ""), epilog=epilog,
                               formatter_class=_Formatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description="Learn the formats of string sequences "
                                     "with an autoencoder and tell how abnormal each sequence is.",
                                     formatter_class=_Formatter, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and TensorFlow's own start-up and warning lines (also "
                             "TF_CPP_MIN_LOG_LEVEL=0)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_score(commands)
    _add_rank(commands)
    _add_evaluate(commands)
    _add_formats(commands)
    _add_generate(commands)
    _add_run(commands)
    _add_produce(commands)
    _add_replay(commands)
    _add_candidate(commands)
    _add_accept(commands)
    _add_state(commands)
    _add_demo(commands)
    return parser


def _add_input_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("input")
    group.add_argument("--input", type=Path, required=required,
                       help="text file (one sequence per line), CSV or JSONL")
    group.add_argument("--input-format", default="auto", choices=("auto", "text", "csv", "jsonl"),
                       help="auto: from the file's suffix (.csv, .jsonl), else text")
    group.add_argument("--column", help="the CSV column or JSON field holding the sequence (needed for CSV "
                                        "and JSONL)")


# -- train ------------------------------------------------------------------------------------------------
def _add_train(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "train", "learn the formats of a file of sequences",
                 "Writes a model bundle (the network, its preparation, the training errors and thresholds) "
                 "to --model, and prints\nthe number of sequences, the epochs, the preparation and each "
                 "score's threshold. A few thousand normal sequences make a\nuseful model; lines that are empty or "
                 "not text are skipped and counted.")
    _add_input_arguments(p)
    p.add_argument("--allow-skipped", nargs="?", type=_share, const=1.0, default=0.5, metavar="SHARE",
                   help="the largest share of the input's lines that are not blank and give no sequence (not "
                        "text, no such field...) before train refuses to write a model; alone: any share")
    p.add_argument("--model", type=Path, required=True,
                   help="bundle directory to write (a new folder, or an existing bundle to replace)")
    prep = p.add_argument_group("preparation")
    prep.add_argument("--tokenize", default="auto", choices=("auto", "separators", "chars"),
                      help="split into tokens at separators, or into characters; auto: separators when most "
                           "sequences have them")
    prep.add_argument("--separator-pattern", default=r"[^0-9A-Za-z]+", help="regular expression of separators")
    prep.add_argument("--lowercase", action="store_true", help="fold case (off: case is part of a format)")
    prep.add_argument("--encoding", default="positional", choices=("positional", "bag"),
                      help="positional: each token's place, shape and separators; bag: which tokens occur "
                           "(the seed article's multi-hot encoding)")
    prep.add_argument("--length", type=int, help="tokens kept per sequence (default: from the data, the 99th "
                                                  "percentile)")
    prep.add_argument("--vocabulary-size", type=int, default=750,
                      help="most frequent tokens kept; rarer ones are encoded as unknown")
    net = p.add_argument_group("network")
    net.add_argument("--model-kind", default="dense", choices=("dense", "lstm"),
                     help="dense autoencoder, or an LSTM sequence autoencoder (slower)")
    net.add_argument("--epochs", type=int, default=40, help="upper bound; training stops early")
    net.add_argument("--batch-size", type=int, default=256, help="sequences per training step")
    net.add_argument("--seed", type=int, default=0, help="random seed: the same seed and data give the same model")
    p.add_argument("--threshold-quantile", type=float, default=0.99,
                   help="flag sequences whose score exceeds this quantile of the training rows' scores of the "
                        "same kind: fused scores for the fused score, reconstruction errors for the error (0 < q "
                        "< 1; score, rank and the service can override it without retraining)")
    p.add_argument("--report", type=Path, help="also draw the loss per epoch and the training rows' fused scores "
                                              "and reconstruction errors with their thresholds, as PNG files in "
                                              "this folder")
    p.set_defaults(run=adapters.train)


def _share(text: str) -> float:
    share = float(text)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {text}")
    return share


# -- score ------------------------------------------------------------------------------------------------
def _add_score(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "score", "score every line of a file; one output row per input line",
                 "Output columns (CSV):\n"
                 "  line          the input line number (1 = first line; after the header for CSV)\n"
                 "  sequence      the sequence read from the line\n"
                 "  score         how abnormal the sequence is under --method (higher is more abnormal)\n"
                 "  percentile    rank of the score among the training rows' scores, 0-100\n"
                 "  abnormal      true when the score is above the threshold\n"
                 "  error         the autoencoder's reconstruction error (mean squared), whatever the method\n"
                 "  format        the sequence's format: its shape, e.g. AB121E -> AA999A\n"
                 "  format_share  the format's share of the training data (0: never seen in training)\n"
                 "  explanation   a rare or new format, then the parts that carry most of the error\n"
                 "  problem       why the line gave no sequence (then the score columns are empty)\n"
                 "The output file is written whole or not at all: an error or Ctrl-C leaves an existing "
                 "file as it was.")
    p.add_argument("--model", type=Path, required=True, help="bundle directory")
    _add_input_arguments(p)
    p.add_argument("--output", default="-", help="CSV file to write; - for standard output")
    p.add_argument("--explain", choices=("abnormal", "all", "none"), default="abnormal",
                   help="which rows get an explanation")
    _add_method_argument(p)
    _add_threshold_argument(p)
    p.set_defaults(run=adapters.score)


def _add_method_argument(parser: argparse.ArgumentParser) -> None:
    from monitor.core.score import DEFAULT_METHOD, METHODS

    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help="what ranks and flags a sequence: fused (the format's rarity, the autoencoder's error "
                             "and a character n-gram likelihood in one) or autoencoder (its error alone)")


def _add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold-quantile", type=float,
                        help="flag sequences whose --method score is above this quantile of the training rows' "
                             "scores of that method, instead of the bundle's own quantile (0 < q < 1; default: "
                             "the bundle's)")


# -- rank -------------------------------------------------------------------------------------------------
def _add_rank(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "rank", "score a few sequences given on the command line",
                 "Prints each sequence's score, its percentile rank among the training rows' and its verdict, "
                 "its error and format;\nabnormal ones get a 'why' line naming a rare or new format and the "
                 "parts that carry most of the error.")
    p.add_argument("--model", type=Path, required=True, help="bundle directory")
    p.add_argument("sequences", nargs="+", help="sequences to score")
    p.add_argument("--parts", type=int, default=3, help="parts shown in each explanation")
    p.add_argument("--top", type=int, dest="parts", help=argparse.SUPPRESS)  # its name before 'formats --top'

    p.add_argument("--sort", action="store_true", help="most abnormal first, instead of the order given")
    _add_method_argument(p)
    _add_threshold_argument(p)
    p.set_defaults(run=adapters.rank)


# -- evaluate ---------------------------------------------------------------------------------------------
def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "evaluate", "see how well a model separates normal sequences from known anomalies",
                 "Scores a file of sequences believed normal and, optionally, one of known anomalies (same "
                 "input formats as\nscore). Prints AUROC, average precision and precision@k (k: the number of "
                 "anomalies), and at the\nbundle's threshold and other quantiles of the training rows' scores "
                 "how many of each are flagged, with the\nconfusion matrix. With --normal alone: the flag rate "
                 "on data believed normal. --report draws the\ndistributions of the --method score with its "
                 "threshold, the precision-recall curve and the confusion matrix.")
    p.add_argument("--model", type=Path, required=True, help="bundle directory")
    p.add_argument("--normal", type=Path, required=True, help="sequences believed normal (text, CSV or JSONL)")
    p.add_argument("--anomalies", type=Path, help="sequences known to be abnormal (same format as --normal)")
    p.add_argument("--input-format", default="auto", choices=("auto", "text", "csv", "jsonl"),
                   help="auto: from each file's suffix (.csv, .jsonl), else text")
    p.add_argument("--column", help="the CSV column or JSON field holding the sequence (needed for CSV and JSONL)")
    p.add_argument("--report", type=Path, help="write the charts as PNG files into this folder")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object (for scripts)")
    _add_method_argument(p)
    _add_threshold_argument(p)
    p.set_defaults(run=adapters.evaluate)


# -- formats ----------------------------------------------------------------------------------------------
def _add_formats(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "formats", "list the formats a model learned from its training data",
                 "A format is a sequence's shape: upper-case letters A, lower-case a, digits 9, other letters L, "
                 "punctuation kept,\nlong runs with their length (9{6}), mixed tokens as their classes and length "
                 "([9a]{32}), long or free text\ncoarser ([Aa]+ a+ 9+). Each is listed with its share of the "
                 "training data and examples; formats\nbeyond the kept ones are counted together as the long tail.")
    p.add_argument("--model", type=Path, required=True, help="bundle directory")
    p.add_argument("--top", type=int, default=50, help="formats listed (most common first)")
    p.add_argument("--json", action="store_true", help="print the whole table as one JSON object")
    p.set_defaults(run=adapters.formats)


# -- generate ---------------------------------------------------------------------------------------------
def _add_generate(commands: argparse._SubParsersAction) -> None:
    from monitor.devtools.generate import ANOMALY_KINDS, FORMATS

    p = _command(commands, "generate", "write generated sequences of a built-in format, one per line",
                 "Formats: serial (product serials such as AB121E), uid (user ids such as usr-709498-GB), "
                 "residues (amino-acid\ntriplets such as PHE-SER-CYS) and plate (four-part codes such as "
                 "MY 141 ZY 9); --anomalies writes broken\nsequences of one kind instead.")
    p.add_argument("--format", default="serial", choices=list(FORMATS), help="which built-in format")
    p.add_argument("-n", "--count", type=int, default=10_000, help="how many sequences")
    p.add_argument("--anomalies", choices=ANOMALY_KINDS, help="write abnormal sequences of this kind instead")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same lines, so "
                                                       "two runs without --seed write identical files")
    p.add_argument("--output", default="-", help="file to write; - for standard output")
    p.set_defaults(run=adapters.generate)


# -- run ------------------------------------------------------------------------------------------------
def _add_run(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "run", "consume a Kafka topic and score every sequence as it arrives",
                 "Windows the scores by event time, judges every closed window against history, exports "
                 "metrics, and stops\ncleanly on SIGTERM or Ctrl-C. Every setting is documented in "
                 "config/monitor.yaml.")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="YAML configuration (env MONITOR_CONFIG; default: built-in defaults, see "
                        "config/monitor.yaml); MONITOR__SECTION__KEY variables override single settings")
    p.add_argument("--model", help="bundle directory; overrides model.path")
    p.set_defaults(run=adapters.service)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


# -- produce ----------------------------------------------------------------------------------------------
def _add_produce(commands: argparse._SubParsersAction) -> None:
    from monitor.devtools.generate import ANOMALY_KINDS, FORMATS

    p = _command(commands, "produce", "write sequences to a topic (load generator, replayable hours)",
                 "Plain UTF-8 values by default; --json writes objects that `replay` reads without extra "
                 "flags.")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="take the Kafka connection and topic from this configuration (env MONITOR_CONFIG)")
    p.add_argument("--bootstrap-servers", help="host:port[,host:port]; overrides the configuration")
    p.add_argument("--topic", help="default: the configuration's first input topic")
    what = p.add_argument_group("what to write")
    what.add_argument("--input", type=Path, help="a text file of sequences (default: the built-in generator)")
    what.add_argument("--format", default="serial", choices=list(FORMATS), help="built-in generator format")
    what.add_argument("-n", "--count", type=int, default=10_000, help="how many records")
    what.add_argument("--json", action="store_true",
                      help='write {"sequence": ..., "event_time_ms": ...} objects instead of plain strings')
    when = p.add_argument_group("event time and pace")
    when.add_argument("--hours", type=float, default=1.0, help="simulated hours the records' timestamps span")
    when.add_argument("--start", help="ISO 8601 time of the first record (default: --hours before now, "
                                      "on an hour boundary)")
    when.add_argument("--rate", type=float, default=0.0, help="records per second (default 0: as fast as possible)")
    drift = p.add_argument_group("format drift")
    drift.add_argument("--drift-from-hour", type=float, help="inject anomalies from this simulated hour on")
    drift.add_argument("--drift-kind", default="other_format", choices=ANOMALY_KINDS,
                       help="which kind of anomaly the drift injects")
    drift.add_argument("--drift-share", type=float, default=0.5, help="share of records replaced once drifting")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated stream")
    p.set_defaults(run=adapters.produce)


# -- replay ---------------------------------------------------------------------------------------------
def _add_replay(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "replay", "the hourly monitor over a file: one report row per window",
                 "Reads timestamped sequences from CSV (with a header) or JSONL, runs them through the same "
                 "record pipeline as\nthe service and writes each window's figures and verdict.")
    p.add_argument("--model", type=Path, required=True, help="bundle directory")
    p.add_argument("--input", type=Path, required=True, help="CSV (with a header) or JSONL file")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="window, compare and input limits from this configuration (env MONITOR_CONFIG)")
    cols = p.add_argument_group("columns")
    cols.add_argument("--sequence-column", default="sequence", help="column or field holding the sequence")
    cols.add_argument("--time-column", help="column or field holding the event time (default: the first of "
                                            "timestamp, event_time_ms that the file has)")
    cols.add_argument("--time-format", default="epoch_ms", choices=("epoch_ms", "epoch_s", "iso8601"),
                      help="how the event time is written")
    cols.add_argument("--weight-column", help="column or field holding a weight (default: every record weighs 1)")
    p.add_argument("--window-seconds", type=float, help="window length; overrides window.length_seconds")
    p.add_argument("--output", default="-", help="file to write; - for standard output")
    p.add_argument("--format", default="csv", choices=("csv", "json"), help="csv, or json (one object a line)")
    p.add_argument("--model-change", action="append", type=_model_change, metavar="TIME=DIR",
                   help="promote the bundle in DIR at TIME (ISO 8601 or epoch ms) as the service would: it scores "
                        "the windows from the first boundary at or after TIME, history is re-scored from the "
                        "windows' samples (repeatable)")
    p.set_defaults(run=adapters.replay)


def _model_change(text: str) -> tuple[int, Path]:
    from monitor.commands.replay import parse_model_change

    try:
        return parse_model_change(text)
    except MonitorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# -- model changes --------------------------------------------------------------------------------------
def _add_candidate(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "candidate", "compare a candidate model with the current one on a state file's "
                 "recent windows", "Scores the samples of the windows in the state's history with both models "
                 "and judges each window against the\nothers, as the service does before promoting a model; prints "
                 "the comparison and whether it would be promoted.", EXIT_CODES + "\n  5  the candidate would "
                 "be refused")
    p.add_argument("--model", type=Path, required=True, help="the bundle in use")
    p.add_argument("--candidate", type=Path, required=True, help="the bundle to compare")
    p.add_argument("--state", type=Path, help="the service's state file (read only), required unless --config "
                                              "sets state.store kafka: then the history is read from the "
                                              "changelog instead")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="compare and promotion settings from this configuration (env MONITOR_CONFIG)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON, every window included")
    p.set_defaults(run=adapters.candidate)


def _add_accept(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "accept", "declare a flagged format legitimate",
                 "Records in the state file that what a flagged window holds is legitimate: its sequences join "
                 "the retraining\ncorpus, the windows it covers serve in baselines again, and a retrain is "
                 "requested (the running service\napplies it at its next checkpoint; the candidate then goes "
                 "through promotion).")
    p.add_argument("--state", type=Path, help="the service's state file, required unless --config sets "
                                              "state.store kafka: then the history is read from the changelog and "
                                              "the acceptance written to the group's models topic instead")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--window", metavar="TIME", help="the window holding TIME (ISO 8601 or epoch ms): its sampled "
                                                       "sequences")
    what.add_argument("--file", type=Path, help="a text file of legitimate sequences, one per line")
    what.add_argument("--pattern", help="a regular expression (Python syntax, matched anywhere): the sampled "
                                        "sequences it matches")
    p.add_argument("--topic", help="only this topic's windows (default: every topic)")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="the window length from this configuration (env MONITOR_CONFIG)")
    p.set_defaults(run=adapters.accept)


def _add_state(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "state", "look at the group's changelog and repair a key (state.store kafka)",
                 "`show` lists every key of the changelog with its location and whether it reads; `show --key K` "
                 "lists K's values\nstill in the topic, newest first, and prints the newest readable one. "
                 "`drop-key K` removes K (a tombstone):\na partition stopped on an unreadable value is then "
                 "started afresh from the group's committed offset.", EXIT_CODES +
                 "\n  5  show found an unreadable value")
    p.add_argument("action", choices=["show", "drop-key"], help="what to do")
    p.add_argument("key", nargs="?", help="the key to drop (drop-key)")
    p.add_argument("--key", dest="shown_key", metavar="KEY", help="show this key's values (show)")
    p.add_argument("--config", type=Path, default=_env_path("MONITOR_CONFIG"),
                   help="the group's configuration (env MONITOR_CONFIG): kafka settings and state.changelog_topic")
    p.set_defaults(run=adapters.state)


# -- demo -------------------------------------------------------------------------------------------------
def _add_demo(commands: argparse._SubParsersAction) -> None:
    p = _command(commands, "demo", "the built-in first run: train, score and explain generated data",
                 "Trains a model per format, scores held-out normal rows and known anomalies, then streams "
                 "four simulated days\nwith a format drift through the hourly monitor and draws the chart. "
                 "Writes demo-hourly.png (the hourly chart)\nand demo-report/ (the serial model's evaluation "
                 "charts, when serial is among --formats) into --output-dir, else\nthe current directory; "
                 "--chart moves both.")
    p.add_argument("--rows", type=int, default=20_000, help="training rows per format")
    p.add_argument("--formats", nargs="+", default=["serial", "uid", "residues"], help="built-in formats to train")
    p.add_argument("--output-dir", type=Path, help="keep the trained bundles here (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the data and the models")
    p.add_argument("--chart", type=Path, help="where to write the hourly chart PNG (default: demo-hourly.png "
                                              "in --output-dir, else in the current directory)")
    p.set_defaults(run=adapters.demo)
