"""A candidate model scored beside the current one on the recent windows' samples: would it judge the hours
the way they were judged?

Each window kept in history with a sample is estimated under both models (``WindowSample.estimate``) and
judged against the *other* windows usable in a baseline (not judged warning or critical, unless accepted),
estimated under the same model: leave one out, so every window gets a verdict, early ones included. The candidate passes when it keeps the hours
judged normal normal, still flags those judged warning or critical (accepted ones aside: they are meant to
become normal), and flags no more than ``promotion.max_flag_rate_ratio`` times the share of the normal hours'
weight the current model flags of the same samples (or its own threshold quantile expects, when that is
more). The current model, judged the same way from the same samples, is shown beside it: the sampling's own
noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from monitor.hourly.compare import compare
from monitor.hourly.history import ErrorModel, History
from monitor.hourly.hour_figures import ABNORMAL, HourFigures
from monitor.hourly.timeline import iso_utc
from monitor.settings import CompareConfig, PromotionConfig

COMPARABLE = frozenset({"learning", "normal", *ABNORMAL})  # windows with enough records for a figure


@dataclass(frozen=True)
class ShadowedWindow:
    """One window: its verdict as judged live, and as each model judges it from its sample."""

    topic: str
    start_ms: int
    verdict: str
    accepted: bool
    current: str
    candidate: str
    current_mean: float
    candidate_mean: float


@dataclass(frozen=True)
class ShadowReport:
    """The comparison and the decision it supports: ``promote`` when ``reasons`` is empty. ``shadowed``:
    False when too few windows with samples were there to compare (the candidate is then promoted unseen,
    as there is no baseline a change could blind)."""

    current: str
    candidate: str
    windows: tuple[ShadowedWindow, ...]
    flag_rate: float
    expected_flag_rate: float
    current_flag_rate: float
    reasons: tuple[str, ...]
    shadowed: bool

    @property
    def promote(self) -> bool:
        return not self.reasons

    @property
    def outcome(self) -> str:
        return "refused" if self.reasons else "promoted" if self.shadowed else "promoted_unshadowed"

    def allowed_flag_rate(self, promotion: PromotionConfig) -> float:
        """The most of the normal hours' weight the candidate may flag: ``max_flag_rate_ratio`` times what the
        current model flags of the same records, or what the candidate's threshold quantile expects when
        that is more (a floor: a current model flagging next to nothing on a quiet week must not make every
        candidate fail)."""
        current = self.current_flag_rate if math.isfinite(self.current_flag_rate) else 0.0
        return promotion.max_flag_rate_ratio * max(current, self.expected_flag_rate)

    def normal_kept(self, model: str = "candidate") -> tuple[int, int]:
        """(hours judged normal that ``model`` — "candidate" or "current" — judges normal, hours judged normal)."""
        normal = [getattr(w, model) for w in self.windows if w.verdict == "normal"]
        return normal.count("normal"), len(normal)

    def flagged_kept(self, model: str = "candidate") -> tuple[int, int]:
        """(hours judged warning or critical, not accepted, that ``model`` still flags; all such hours)."""
        flagged = [getattr(w, model) for w in self.windows if w.verdict in ABNORMAL and not w.accepted]
        return sum(v in ABNORMAL for v in flagged), len(flagged)

    def summary(self) -> dict[str, Any]:
        """The figures a metric or a log line needs."""
        normal_kept, normal = self.normal_kept()
        flagged_kept, flagged = self.flagged_kept()
        return {"candidate": self.candidate, "current": self.current, "outcome": self.outcome,
                "windows": len(self.windows), "normal": normal, "normal_kept": normal_kept, "flagged": flagged,
                "flagged_kept": flagged_kept, "accepted": sum(w.accepted for w in self.windows),
                "flag_rate": _none_if_nan(self.flag_rate), "expected_flag_rate": self.expected_flag_rate,
                "current_flag_rate": _none_if_nan(self.current_flag_rate), "reasons": list(self.reasons)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "shadowed": self.shadowed,
                "per_window": [{k: _none_if_nan(v) if isinstance(v, float) else v for k, v in asdict(w).items()}
                               for w in self.windows]}

    def render(self) -> str:
        """The comparison as a person reads it."""
        s = self.summary()
        lines = [f"candidate {self.candidate} beside current {self.current}: {self.outcome.upper()}"]
        if not self.shadowed:
            lines.append(f"  only {len(self.windows)} windows with samples: too few to compare, nothing to blind")
            return "\n".join(lines)
        current_normal, normal = self.normal_kept("current")
        current_flagged, flagged = self.flagged_kept("current")
        lines += [f"  {len(self.windows)} windows re-scored from their samples, {s['accepted']} accepted",
                  f"  hours judged normal kept normal:     candidate {s['normal_kept']}/{normal}, "
                  f"current {current_normal}/{normal}",
                  f"  hours judged warning/critical still flagged (accepted aside): candidate "
                  f"{s['flagged_kept']}/{flagged}, current {current_flagged}/{flagged}",
                  f"  share of normal hours' weight above threshold: candidate {_percent(self.flag_rate)}, "
                  f"current {_percent(self.current_flag_rate)}, expected {_percent(self.expected_flag_rate)}"]
        lines += [f"  refused: {reason}" for reason in self.reasons]
        changed = [w for w in self.windows if (w.candidate in ABNORMAL) != (w.verdict in ABNORMAL)]
        if changed:
            lines.append("  hours the candidate judges otherwise:")
            lines += [f"    {w.topic} {iso_utc(w.start_ms)}: {w.verdict}{' (accepted)' if w.accepted else ''} -> "
                      f"{w.candidate}" for w in changed[:10]]
            if len(changed) > 10:
                lines.append(f"    ... and {len(changed) - 10} more")
        return "\n".join(lines)


def shadow(histories: Mapping[str, History], current: ErrorModel, candidate: ErrorModel, expected_flag_rate: float,
           settings: CompareConfig, promotion: PromotionConfig) -> ShadowReport:
    """Judge the recent windows of ``histories`` under ``current`` and ``candidate`` from their samples."""
    chosen = [(topic, h, history.samples[h.start_ms]) for topic, history in sorted(histories.items())
              for h in history.entries[-promotion.windows:]
              if h.verdict in COMPARABLE and len(history.samples.get(h.start_ms, ()))]
    if len(chosen) <= settings.min_history:
        return ShadowReport(current.version, candidate.version, (), float("nan"), expected_flag_rate,
                            float("nan"), (), False)
    kept = [sample.kept()[0] for _, _, sample in chosen]
    verdicts, rates = {}, {}
    for name, model in (("current", current), ("candidate", candidate)):
        estimates = _estimates(chosen, kept, model)
        verdicts[name] = _leave_one_out(chosen, estimates, settings)
        rates[name] = _flag_rate(chosen, estimates)
    windows = tuple(ShadowedWindow(topic, h.start_ms, h.verdict, h.accepted, verdicts["current"][i][0],
                                   verdicts["candidate"][i][0], verdicts["current"][i][1],
                                   verdicts["candidate"][i][1]) for i, (topic, h, _) in enumerate(chosen))
    report = ShadowReport(current.version, candidate.version, windows, rates["candidate"], expected_flag_rate,
                          rates["current"], (), True)
    return replace(report, reasons=tuple(_reasons(report, promotion)))


def _estimates(chosen: Sequence[tuple[str, HourFigures, Any]], kept: Sequence[list[str]],
               model: ErrorModel) -> list[HourFigures]:
    errors = model.errors([s for sequences in kept for s in sequences])
    bounds = np.cumsum([0, *(len(k) for k in kept)])
    estimates = []
    for (_, h, sample), low, high in zip(chosen, bounds[:-1], bounds[1:]):
        e = sample.estimate(errors[low:high], model.threshold)
        estimates.append(replace(h, weighted_mean=e.weighted_mean, above_threshold_share=e.above_threshold_share,
                                 histogram=e.histogram, model_version=model.version, sample_size=e.sample_size,
                                 standard_error=0.0 if e.exact else e.standard_error))
    return estimates


def _leave_one_out(chosen: Sequence[tuple[str, HourFigures, Any]], estimates: Sequence[HourFigures],
                   settings: CompareConfig) -> list[tuple[str, float]]:
    """Each window's verdict against the other windows of its topic (as judged live: normal or accepted)."""
    results = []
    for i, (topic, _, _) in enumerate(chosen):
        others = [e for j, e in enumerate(estimates) if j != i and chosen[j][0] == topic]
        after = max(e.start_ms for e in estimates) + 1  # judged as if after all the others
        loo = replace(settings, baseline="previous", previous_windows=max(len(others), settings.min_history))
        comparison = compare(replace(estimates[i], start_ms=after, verdict=""), others, loo)
        results.append((comparison.verdict, estimates[i].weighted_mean))
    return results


def _flag_rate(chosen: Sequence[tuple[str, HourFigures, Any]], estimates: Sequence[HourFigures]) -> float:
    """Share of the weight above the model's threshold, over the windows judged normal."""
    normal = [(e.above_threshold_share, h.weight_sum) for (_, h, _), e in zip(chosen, estimates)
              if h.verdict == "normal" and math.isfinite(e.above_threshold_share)]
    total = sum(w for _, w in normal)
    return sum(s * w for s, w in normal) / total if total > 0 else float("nan")


def _reasons(report: ShadowReport, promotion: PromotionConfig) -> list[str]:
    reasons = []
    normal_kept, normal = report.normal_kept()
    if normal and normal_kept < promotion.min_normal_kept * normal:
        first = next(w for w in report.windows if w.verdict == "normal" and w.candidate != "normal")
        reasons.append(f"it would judge {normal - normal_kept} of {normal} hours judged normal otherwise "
                       f"(first: {first.topic} {iso_utc(first.start_ms)} {first.candidate}); promotion."
                       f"min_normal_kept is {promotion.min_normal_kept:g}")
    flagged_kept, flagged = report.flagged_kept()
    if flagged and flagged_kept < promotion.min_flagged_kept * flagged:
        first = next(w for w in report.windows if w.verdict in ABNORMAL and not w.accepted
                     and w.candidate not in ABNORMAL)
        reasons.append(f"it would no longer flag {flagged - flagged_kept} of {flagged} hours judged warning or "
                       f"critical (first: {first.topic} {iso_utc(first.start_ms)}, {first.verdict} -> "
                       f"{first.candidate}); accept their format first if it is legitimate")
    if math.isfinite(report.flag_rate) and report.flag_rate > report.allowed_flag_rate(promotion):
        reasons.append(f"it flags {_percent(report.flag_rate)} of the normal hours' weight where the current "
                       f"model flags {_percent(report.current_flag_rate)} of the same records (its threshold "
                       f"quantile expects {_percent(report.expected_flag_rate)}): more than "
                       f"{_percent(report.allowed_flag_rate(promotion))}, promotion.max_flag_rate_ratio "
                       f"{promotion.max_flag_rate_ratio:g} times the larger of the two")
    return reasons


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.2f}%"


def _none_if_nan(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value
