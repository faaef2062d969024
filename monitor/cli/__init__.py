"""Command line: ``python -m monitor {train,score,rank,evaluate,formats,generate,run,produce,replay,candidate,accept,
state,demo}``.

``parser`` defines every command's arguments and help texts, ``adapters`` hands each command's parsed flags to
its function, and ``main`` runs it and maps the project's errors to exit codes; the CLI holds no logic of its
own. ``main(argv)`` returns the exit code so tests can call it in-process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from monitor.cli.parser import build_parser
from monitor.errors import MonitorError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # read when TensorFlow is first imported, after this
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.run(args) or 0)
    except MonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
