#!/usr/bin/env sh
# Run a throwaway single-node Kafka broker on a free loopback port until Ctrl-C.
# Prints its bootstrap address first.  Needs java and mvn (mvn on first run only).
# Options: --cache-dir DIR, --work-dir DIR, --partitions N.
set -eu
repo_root=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
# No cd: relative --cache-dir/--work-dir stay relative to the caller's folder.
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"
# Prefer the project's venv, where kafka-python is installed.
python="$repo_root/.venv/bin/python"
[ -x "$python" ] || python=python3
exec "$python" -m monitor.devtools.local_services kafka "$@"
