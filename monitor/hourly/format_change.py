"""What changed in a window's formats: new ones, vanished ones, shares that moved.

``compare_formats`` sets a closed window's format counts (``monitor.hourly.format_counts``) against its
baseline's, pooled (the windows its error is compared with), or against the training data's shares while
there is no baseline yet. The answer names formats with their shares then and now and example sequences,
which is what an operator asks first when an hour turns abnormal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from monitor.hourly.compare import Comparison, js_distance
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.reasons import Reason, firing
from monitor.settings import FormatConfig

MIN_EXPECTED = 10  # a format has vanished only from a window big enough to expect this many of it
LISTED = 5  # formats listed per kind of change
MIN_CELL = 5.0  # a format shares test merges the formats expected fewer times than this


@dataclass(frozen=True)
class FormatShift:
    """One format's share in the window and in the baseline (and in training, when known), with examples
    from the window (or from the baseline, for a vanished format)."""

    format: str
    share: float
    baseline_share: float
    training_share: float | None = None
    examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "share": self.share, "baseline_share": self.baseline_share,
                "training_share": self.training_share, "examples": list(self.examples)}

    def describe(self) -> str:
        example = f" e.g. {self.examples[0]!r}" if self.examples else ""
        return f"{self.format} {self.baseline_share:.1%} -> {self.share:.1%}{example}"


@dataclass(frozen=True)
class FormatChange:
    """A window's formats against its baseline's. ``new``, ``vanished``, ``moved``: the formats that changed
    (at most ``LISTED`` each, largest first); ``distance``: the Jensen-Shannon distance (base 2, 0..1)
    between the window's format shares and the baseline's (``nan`` without a baseline); ``against``:
    ``"baseline"``, ``"training"`` or ``"nothing"``; ``top``: the window's most common formats and shares."""

    new: tuple[FormatShift, ...] = ()
    vanished: tuple[FormatShift, ...] = ()
    moved: tuple[FormatShift, ...] = ()
    distance: float = float("nan")
    against: str = "nothing"
    moved_beyond: bool = False
    top: tuple[tuple[str, float], ...] = field(default=())

    @property
    def changed(self) -> bool:
        """Whether the change is one the verdict takes up (``FormatConfig``)."""
        return bool(self.new or self.vanished or self.moved_beyond)

    @property
    def new_to_training(self) -> tuple[FormatShift, ...]:
        return tuple(s for s in self.new if s.training_share == 0.0)

    def reasons(self) -> list[str]:
        """Sentences for the verdict's reasons, one per kind of change."""
        out = []
        if self.new:
            out.append(f"new format{'s' if len(self.new) > 1 else ''} (vs {self.against}): "
                       + "; ".join(s.describe() for s in self.new))
        if self.vanished:
            out.append("vanished: " + "; ".join(s.describe() for s in self.vanished))
        if self.moved_beyond:
            out.append(f"format shares moved (distance {self.distance:.2f}): "
                       + "; ".join(s.describe() for s in self.moved))
        return out

    def as_reasons(self, new_only_to_training: bool = False) -> list[Reason]:
        """The change as the verdict's reasons (warning level: a format change raises normal to warning);
        ``new_only_to_training``: only the formats training never had (a window with no baseline yet)."""
        new = self.new_to_training if new_only_to_training else self.new
        out = []
        if new:
            out.append(Reason("new_format", "warning", f"new format{'s' if len(new) > 1 else ''} (vs "
                              f"{self.against}): " + "; ".join(s.describe() for s in new),
                              observed=new[0].share, expected=new[0].baseline_share,
                              records=tuple(e for s in new for e in s.examples), formats=tuple(s.format for s in new)))
        if self.vanished and not new_only_to_training:
            out.append(Reason("vanished_format", "warning", "vanished: " + "; ".join(s.describe() for s in self.vanished),
                              observed=0.0, expected=self.vanished[0].baseline_share,
                              formats=tuple(s.format for s in self.vanished)))
        if self.moved_beyond and not new_only_to_training:
            out.append(Reason("moved_formats", "warning", f"format shares moved (distance {self.distance:.2f}): "
                              + "; ".join(s.describe() for s in self.moved), observed=self.distance,
                              records=tuple(e for s in self.moved for e in s.examples[:1]),
                              formats=tuple(s.format for s in self.moved)))
        return out

    def summary(self) -> str:
        """One line for a CSV cell: empty when nothing changed."""
        return " | ".join(self.reasons())

    def to_dict(self) -> dict[str, Any]:
        return {"new": [s.to_dict() for s in self.new], "vanished": [s.to_dict() for s in self.vanished],
                "moved": [s.to_dict() for s in self.moved],
                "distance": None if math.isnan(self.distance) else self.distance, "against": self.against,
                "top": [[name, share] for name, share in self.top]}


def compare_formats(current: FormatCounts, baseline: Sequence[FormatCounts], training: Mapping[str, float],
                    settings: FormatConfig = FormatConfig(), moved_p: float = 1.0) -> FormatChange:
    """``current`` against the pooled ``baseline`` windows, or against ``training`` (format -> share of the
    training data) while the baseline is empty. Shares count as moved when their distance reaches
    ``settings.moved_distance`` and a G-test of the window's counts against the baseline's shares gives at
    most ``moved_p``: a sparse hour's shares wander far by chance alone (30 records over five formats reach a
    distance of 0.3 in a few hours of a hundred)."""
    top = tuple((name, n / current.total) for name, n in current.top(settings.metrics_top)) if current.total else ()
    pooled = _pooled(baseline)
    if pooled is not None:
        then, examples_then, against = pooled[0], pooled[1], "baseline"
    elif training:
        then, examples_then, against = dict(training), {}, "training"
    else:
        return FormatChange(top=top)
    if not current.total:
        return FormatChange(against=against, top=top)
    now = current.shares()
    known = sum(w.total for w in baseline) if against == "baseline" else 0
    new = [FormatShift(name, share, 0.0, training.get(name, 0.0) if training else None,
                       tuple(current.examples(name)))
           for name, share in now.items() if share >= settings.new_share and then.get(name, 0.0) == 0.0
           and current.count(name) >= settings.new_min_records
           and (known <= 0 or moved_p >= 1.0 or _absent_by_chance(current.count(name), current.total, known) <= moved_p)]
    vanished = [FormatShift(name, 0.0, share, training.get(name), tuple(examples_then.get(name, ())))
                for name, share in then.items() if share >= settings.vanished_share
                and now.get(name, 0.0) == 0.0 and share * current.total >= MIN_EXPECTED]
    distance = _js_distance(now, then)
    moved = [FormatShift(name, now.get(name, 0.0), then.get(name, 0.0), training.get(name),
                         tuple(current.examples(name) or examples_then.get(name, ())))
             for name in set(now) | set(then) if name not in {s.format for s in (*new, *vanished)}]
    moved = [s for s in moved if abs(s.share - s.baseline_share) >= settings.new_share]
    beyond = distance >= settings.moved_distance and (moved_p >= 1.0 or _g_test(current, then, known) <= moved_p)
    return FormatChange(_largest(new, "share"), _largest(vanished, "baseline_share"),
                        tuple(sorted(moved, key=lambda s: -abs(s.share - s.baseline_share))[:LISTED]),
                        distance, against, beyond, top)


def escalate(comparison: Comparison, change: FormatChange) -> Comparison:
    """The verdict once the formats are taken into account: a normal window whose formats changed is a
    warning, and so is a learning one (no baseline yet) with a format training never had. The change joins
    the verdict's reasons whenever it counts."""
    judged = comparison.verdict in ("normal", "warning", "critical")
    if judged and change.changed:
        added = change.as_reasons()
    elif comparison.verdict == "learning" and change.new_to_training:
        added = change.as_reasons(new_only_to_training=True)
    else:
        return comparison
    reasons = (*comparison.reasons, *added)
    verdict = "warning" if comparison.verdict in ("normal", "learning") else comparison.verdict
    return replace(comparison, verdict=verdict, reasons=reasons, signal=firing(reasons))


def _absent_by_chance(count: int, total: int, known: int) -> float:
    """The chance that a format with ``count`` of the window's ``total`` records and none of the baseline's
    ``known`` had all its records fall in the window though both share one rate (hypergeometric): a sparse
    baseline misses common formats by chance alone (20 records miss a 15 % format one time in 25)."""
    log_p = (math.lgamma(total + 1) - math.lgamma(total - count + 1)
             - math.lgamma(total + known + 1) + math.lgamma(total + known - count + 1))
    return math.exp(log_p)


def _g_test(current: FormatCounts, then: Mapping[str, float], known: int) -> float:
    """The tail probability that the window's format counts and the baseline's (``known`` records with the
    shares ``then``; 0: the shares are training's, taken as exact) come from the same shares: a G-test of
    homogeneity, so a baseline of one sparse window is as uncertain as the window itself."""
    n = current.total
    counts = dict(current.top(len(current)))
    names = sorted(set(counts) | set(then))
    now = np.array([counts.get(name, 0) for name in names] + [max(0, n - sum(counts.values()))], dtype=np.float64)
    shares = np.array([then.get(name, 0.0) for name in names] + [max(0.0, 1 - math.fsum(then.values()))])
    if known <= 0:  # one sample against exact shares, smoothed by half a record so a new format is possible
        expected = (shares * n + 0.5) / (n + 0.5 * len(shares)) * n
        now, expected = _merge_sparse(expected, now, expected)
        return chi_square_sf(_g(now, expected), len(now) - 1)
    before = shares * known
    now, before = _merge_sparse((now + before) / (n + known) * min(n, known), now, before)
    pooled = (now + before) / (n + known)
    return chi_square_sf(_g(now, pooled * n) + _g(before, pooled * known), int(np.count_nonzero(now + before > 0)) - 1)


def _merge_sparse(expected: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """``columns`` with the categories expected fewer than ``MIN_CELL`` times (in the smaller sample) merged
    into one: the G statistic's chi-square law fails on sparse cells, making chance shifts look real."""
    sparse = expected < MIN_CELL
    if sparse.sum() < 2:
        return columns
    return tuple(np.append(c[~sparse], c[sparse].sum()) for c in columns)


def _g(observed: np.ndarray, expected: np.ndarray) -> float:
    present = observed > 0
    return 2.0 * float(np.sum(observed[present] * np.log(observed[present] / expected[present])))


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square X with ``df`` degrees of freedom (Wilson-Hilferty's normal approximation,
    within a few percent of the exact tail down to 1e-6).

    >>> round(chi_square_sf(3.84, 1), 2), round(chi_square_sf(18.3, 10), 2)
    (0.05, 0.05)
    """
    if df <= 0 or x <= 0:
        return 1.0
    ratio = 2.0 / (9.0 * df)
    z = ((x / df) ** (1.0 / 3.0) - (1.0 - ratio)) / math.sqrt(ratio)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _largest(shifts: list[FormatShift], key: str) -> tuple[FormatShift, ...]:
    return tuple(sorted(shifts, key=lambda s: (-getattr(s, key), s.format))[:LISTED])


def _pooled(baseline: Sequence[FormatCounts]) -> tuple[dict[str, float], dict[str, list[str]]] | None:
    """The baseline windows' formats counted together: shares and examples (``None`` without records)."""
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    total = 0
    for window in baseline:
        total += window.total
        for name, n in window.top(len(window)):
            counts[name] = counts.get(name, 0) + n
            examples.setdefault(name, window.examples(name))
    if total == 0:
        return None
    return {name: n / total for name, n in counts.items()}, examples


def _js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon distance of two share tables; what neither lists (uncounted formats) is one more bin."""
    names = sorted(set(p) | set(q))
    # fsum: the same result whatever order the shares came in (the figures must not depend on batching).
    a = np.array([p.get(n, 0.0) for n in names] + [max(0.0, 1 - math.fsum(p.values()))])
    b = np.array([q.get(n, 0.0) for n in names] + [max(0.0, 1 - math.fsum(q.values()))])
    return js_distance(a, b)
