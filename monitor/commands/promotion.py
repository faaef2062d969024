"""Model changes from the command line: ``candidate`` (would this bundle be promoted over the one in use?)
and ``accept`` (a flagged format is legitimate), both working on the service's state: its file, or with
``state.store: kafka`` its changelog (and the group's models topic, where an acceptance is written).

``candidate`` runs the comparison the service runs before a promotion (``monitor.hourly.shadow``) on the
state's history and samples, and only reads the file. ``accept`` records a declaration in the file; the
running service (or the next one started on it) applies it at its next checkpoint, and ``candidate`` applies
the declarations the service has not applied yet to its own copy of the history, so it judges as the service
will.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from contextlib import closing
from pathlib import Path

from monitor.core import bundle as bundle_lib
from monitor.core.score import Scorer
from monitor.errors import InputError, StateError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.shadow import shadow
from monitor.hourly.timeline import iso_utc, parse_time, window_start
from monitor.hourly.restoring import restoring
from monitor.settings import MonitorConfig, load_config
from monitor.stream.group_state import ACCEPTED_PREFIX, topic_state
from monitor.stream.clients import clients_for
from monitor.stream.closed_windows import accept_covered
from monitor.stream.file_store import restore
from monitor.stream.state import Accepted, StateStore

REFUSED_EXIT = 5


def run_candidate(model_dir: Path, candidate_dir: Path, state_path: Path | None, config_path: Path | None,
                  as_json: bool = False) -> int:
    """``python -m monitor candidate``: the comparison on standard output; exit 5 when it would be refused.
    ``state_path`` ``None``: the history from the changelog (``state.store: kafka`` in the configuration)."""
    config = load_config(config_path)
    judge, pending = _restored(state_path, config)
    current, candidate = (Scorer(bundle_lib.load(path, config.model.threshold_quantile))
                          for path in (model_dir, candidate_dir))
    report = shadow(judge.histories, current, candidate, 1 - candidate.bundle.threshold_quantile, config.compare,
                    config.promotion)
    if as_json:
        print(json.dumps({**report.to_dict(), "accepted_not_yet_applied_by_the_service": len(pending)}, indent=2))
    else:
        print(report.render())
        if pending:
            print(f"  taken in here: accepted {', '.join(f'#{a.id}' for a in pending)} in {state_path}, which the "
                  "service applies at its next checkpoint")
    return REFUSED_EXIT if not report.promote else 0


def run_accept(state_path: Path | None, config_path: Path | None, window: str | None = None,
               sequences_file: Path | None = None, pattern: str | None = None, topic: str | None = None) -> int:
    """``python -m monitor accept``: record the accepted format; says what it covers. One of ``window`` (a time
    in it), ``sequences_file`` and ``pattern`` names what is accepted; ``topic``: only that topic's windows."""
    config = load_config(config_path)
    judge, _ = _restored(state_path, config)
    samples = {name: history.samples for name, history in judge.histories.items() if topic in (None, name)}
    if window is not None:
        start = window_start(_time(window), judge.length_ms)
        sequences = [s for by_start in samples.values() if start in by_start for s in by_start[start].kept()[0]]
        if not sequences:
            raise InputError(f"no window starting {iso_utc(start)} with a sample in {state_path or config.changelog_topic}"
                             f"{' on topic ' + repr(topic) if topic else ''}; the kept windows start "
                             f"from {_oldest(judge)}")
        kind, value = "window", str(start)
    elif sequences_file is not None:
        sequences = _read_sequences(sequences_file)
        kind, value = "file", str(sequences_file)
    else:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise InputError(f"--pattern {pattern!r} is not a regular expression: {exc}") from exc
        sequences = sorted({s for by_start in samples.values() for sample in by_start.values()
                            for s in sample.kept()[0] if compiled.search(s)})
        if not sequences:
            raise InputError(f"--pattern {pattern!r} matches none of the sampled sequences in "
                             f"{state_path or config.changelog_topic}")
        kind, value = "pattern", pattern
    shown = value if kind != "window" else iso_utc(int(value))
    if config.state.store == "kafka":
        record = {"at_ms": int(time.time() * 1000), "kind": kind, "value": value, "topic": topic,
                  "sequences": sequences}
        clients_for(config.kafka).publish(config.models_topic, f"{ACCEPTED_PREFIX}{uuid.uuid4().hex}",
                                          json.dumps(record).encode("utf-8"))
        print(f"accepted ({kind} {shown}): written to {config.models_topic}. The member judging each topic applies "
              "it within a commit interval: the windows it covers serve in baselines again (with state in Kafka "
              "retraining is off; publish a bundle that knows the format at model.path)")
        return 0
    with closing(StateStore(state_path)) as state:
        number = state.add_accepted(kind, value, topic, sequences)
    print(f"accepted #{number} ({kind} {shown}): {len(sequences)} "
          "sequences join the retraining corpus. The service applies it at its next checkpoint: the windows it "
          "covers serve in baselines again and a retrain is requested (its candidate goes through promotion). "
          "`candidate` on this state file takes it in already.")
    return 0


def _restored(path: Path | None, config: MonitorConfig) -> tuple[HourlyJudge, list[Accepted]]:
    """The history as the state holds it, with the accepted formats the service has not applied yet applied
    (in memory only: the file is not written); returns them too."""
    if config.state.store == "kafka":
        return _restored_from_kafka(config), []
    if path is None:
        raise InputError("--state is required: the service's state.path (or give --config with state.store kafka)")
    if not path.is_file():
        raise StateError(f"no state file at {path}: point --state at the service's state.path")
    with closing(StateStore(path)) as state:
        checkpoint = state.load()
        if checkpoint is None:
            raise StateError(f"{path} holds no checkpoint yet: nothing to compare or accept")
        # The windows' length is the state's own, whatever the configuration given says.
        with restoring(f"{path}: the saved windows"):
            lengths = {int(snapshot["length_ms"]) for snapshot in checkpoint.windows.values()}
        judge = HourlyJudge.from_config(config, lengths.pop() if len(lengths) == 1 else None)
        restore(state, judge)
        pending = state.accepted(checkpoint.accepted_applied)
    for accepted in pending:  # as the service's apply_accepted does at its next checkpoint
        accept_covered(judge, accepted)
    return judge, pending


def _restored_from_kafka(config: MonitorConfig) -> HourlyJudge:
    """The judged topics' histories as the group's changelog holds them."""
    reader = clients_for(config.kafka).changelog(config.changelog_topic)
    try:
        state, _ = reader.read()
    finally:
        reader.close()
    judge = HourlyJudge.from_config(config)
    for topic in config.input.topics:
        with restoring(f"the judging of {topic!r} in the changelog {config.changelog_topic!r}"):
            stored, hours = topic_state(state, topic)
        if stored is not None:
            judge.judge_topic(topic, stored, hours)
    if not judge.histories:
        raise StateError(f"the changelog {config.changelog_topic!r} holds no judged window of "
                         f"{', '.join(config.input.topics)} yet: nothing to compare or accept")
    return judge


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise InputError(f"--window: {exc}") from exc


def _oldest(judge: HourlyJudge) -> str:
    starts = [h.start_ms for history in judge.histories.values() for h in history.entries]
    return iso_utc(min(starts)) if starts else "nowhere (no window closed yet)"


def _read_sequences(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    sequences = [line.strip() for line in lines if line.strip()]
    if not sequences:
        raise InputError(f"{path} holds no sequence (one per line)")
    return sequences

