"""What the state keeps of a closed window beside its figures, and which closed windows a format an operator
accepted covers: the same for state in a file (``monitor.stream.file_store``) and in the changelog
(``monitor.stream.group``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.sample import WindowSample
from monitor.stream.state import Accepted


def accepted_windows(judge: HourlyJudge, accepted: Accepted) -> list[tuple[str, int]]:
    """The history windows an accepted format covers: the one named (on its topic, or every topic), or, for
    a file or a pattern, each window judged warning or critical whose sample's share of matching weight is
    at least half the window's share above the threshold (the accepted format is what flagged it)."""
    if accepted.kind == "pattern":
        pattern = re.compile(accepted.value)
        matches: Callable[[str], bool] = lambda s: pattern.search(s) is not None  # noqa: E731
    else:
        known = set(accepted.sequences)
        matches = known.__contains__
    covered = []
    for topic, history in sorted(judge.histories.items()):
        for entry in history.entries:
            if accepted.kind == "window":
                if entry.start_ms == int(accepted.value) and accepted.topic in (None, topic):
                    covered.append((topic, entry.start_ms))
                continue
            sample = history.samples.get(entry.start_ms)
            if entry.verdict not in ("warning", "critical") or sample is None or accepted.topic not in (None, topic):
                continue
            sequences, stands_for = sample.kept()
            matched = sum(w for s, w in zip(sequences, stands_for) if matches(s))
            if stands_for.sum() > 0 and matched / stands_for.sum() >= entry.above_threshold_share / 2:
                covered.append((topic, entry.start_ms))
    return covered


def accept_covered(judge: HourlyJudge, accepted: Accepted,
                   topics: Collection[str] | None = None) -> list[tuple[str, int]]:
    """Let the history windows ``accepted`` covers (``accepted_windows``; on ``topics`` only, when given)
    serve in baselines whatever their verdict; returns them. The one way a store, a group member or the
    offline commands take an accepted format in."""
    windows = [w for w in accepted_windows(judge, accepted) if topics is None or w[0] in topics]
    for topic, start_ms in windows:
        judge.accept(topic, start_ms)
    return windows


def kept_of(report: WindowReport) -> dict[str, Any]:
    """What the state keeps of a closed window beside its figures: its sample and its format counts."""
    sample = report.sample if report.sample is not None else WindowSample(0)
    return {**sample.to_dict(), **({"formats": report.format_counts.to_dict()} if report.format_counts else {})}
