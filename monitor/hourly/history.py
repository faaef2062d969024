"""The judged windows a topic keeps for the windows to come, each with its sample and format counts.

``History.judge`` compares each closed window with its baseline among the kept ones (``monitor.hourly.compare``),
then keeps it; ``rescore`` estimates every kept window under another model from its sample, so the baseline
carries over a model change. Memory stays bounded.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from monitor.hourly.baseline import WEEK_MS, select_baseline, serves_in_baseline
from monitor.hourly.compare import Comparison, compare
from monitor.hourly.evidence import Levels
from monitor.hourly.format_counts import FormatCounts
from monitor.hourly.hour_figures import HourFigures
from monitor.hourly.sample import WindowSample
from monitor.hourly.timeline import DAY_MS, HOUR_MS
from monitor.settings import CompareConfig


class ErrorModel(Protocol):
    """What re-scoring a window's sample needs of a model (``monitor.core.score.Scorer`` is one)."""

    @property
    def version(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    def errors(self, sequences: Sequence[str]) -> np.ndarray: ...


class History:
    """Judged windows, oldest first, kept as long as a baseline may need them, each with its sample.

    It keeps the newest ``capacity`` windows and also the newest ``capacity`` usable ones, so that during a
    long incident excluded from baselines the last normal windows stay available; memory stays bounded.
    When windows scored by another model come to be judged, ``rescore`` estimates every kept window's figures
    under that model from its sample, so the baseline carries over a model change. ``formats``: each kept
    window's format counts, for the format comparison (``monitor.hourly.format_change``).
    """

    def __init__(self, settings: CompareConfig = CompareConfig(), length_ms: int = HOUR_MS,
                 entries: Iterable[HourFigures] = (), samples: dict[int, WindowSample] | None = None,
                 formats: dict[int, FormatCounts] | None = None) -> None:
        self.settings = settings
        self.length_ms = length_ms
        self.capacity = max(settings.previous_windows, settings.same_hour_days * DAY_MS // length_ms,
                            settings.same_hour_weeks * WEEK_MS // length_ms if settings.baseline == "same_hour_of_week"
                            else 0, settings.evidence_hours) + 1
        self._entries: list[HourFigures] = []
        self.samples: dict[int, WindowSample] = {}
        self.formats: dict[int, FormatCounts] = {}
        for figures in entries:
            self._insert(figures)
        starts = {h.start_ms for h in self._entries}
        self.samples = {start: sample for start, sample in (samples or {}).items() if start in starts}
        self.formats = {start: counts for start, counts in (formats or {}).items() if start in starts}

    @property
    def entries(self) -> tuple[HourFigures, ...]:
        return tuple(self._entries)

    @property
    def model_version(self) -> str | None:
        """The model version of the newest window (``None`` while empty)."""
        return self._entries[-1].model_version if self._entries else None

    def judge(self, figures: HourFigures, sample: WindowSample | None = None,
              levels: Levels | None = None) -> Comparison:
        """Compares a closed window with its baseline, then keeps it (with its verdict and sample) for later
        windows."""
        comparison = self.compare(figures, levels)
        self.keep(replace(figures, verdict=comparison.verdict), sample)
        return comparison

    def compare(self, figures: HourFigures, levels: Levels | None = None) -> Comparison:
        """A closed window against its baseline among the kept windows (nothing is kept)."""
        return compare(figures, self._entries, self.settings, self.length_ms, levels)

    def baseline_formats(self, figures: HourFigures) -> list[FormatCounts]:
        """The format counts of the windows ``figures`` is compared with (those that have them)."""
        baseline = select_baseline(figures, self._entries, self.settings, self.length_ms)
        return [self.formats[h.start_ms] for h in baseline if h.start_ms in self.formats]

    def keep(self, figures: HourFigures, sample: WindowSample | None = None,
             formats: FormatCounts | None = None) -> None:
        """Keep a judged window (``figures.verdict`` set) with its sample and format counts for later ones."""
        if sample is not None:
            self.samples[figures.start_ms] = sample
        if formats is not None:
            self.formats[figures.start_ms] = formats
        self._insert(figures)

    def rescore(self, model: ErrorModel) -> int:
        """Every kept window not scored by ``model``, estimated under it from its sample (verdicts stay as
        judged); returns how many. Windows without a sample keep their figures and version."""
        stale = [i for i, h in enumerate(self._entries)
                 if h.model_version != model.version and len(self.samples.get(h.start_ms, ()))]
        if not stale:
            return 0
        kept = [self.samples[self._entries[i].start_ms].kept()[0] for i in stale]
        tops = [[sequence for sequence, _ in self._entries[i].top] for i in stale]
        errors = model.errors([s for sequences in (*kept, *tops) for s in sequences])  # one call: the model's pace
        bounds = np.cumsum([0, *(len(k) for k in (*kept, *tops))])
        for n, (i, low, high) in enumerate(zip(stale, bounds[:-1], bounds[1:])):
            old = self._entries[i]
            estimate = self.samples[old.start_ms].estimate(errors[low:high], model.threshold)
            low, high = bounds[len(stale) + n], bounds[len(stale) + n + 1]
            top = tuple(sorted(zip(tops[n], errors[low:high].tolist()), key=lambda r: (-r[1], r[0])))
            self._entries[i] = replace(old, weighted_mean=estimate.weighted_mean, top=top,
                                       above_threshold_share=estimate.above_threshold_share,
                                       histogram=estimate.histogram, model_version=model.version,
                                       sample_size=estimate.sample_size,
                                       standard_error=0.0 if estimate.exact else estimate.standard_error)
        return len(stale)

    def accept(self, start_ms: int) -> bool:
        """Mark the window at ``start_ms`` accepted (usable in baselines whatever its verdict)."""
        for i, h in enumerate(self._entries):
            if h.start_ms == start_ms:
                self._entries[i] = replace(h, accepted=True)
                return True
        return False

    def normal_samples(self) -> list[tuple[int, list[str]]]:
        """(start, sampled sequences) of each kept window judged normal or accepted, oldest first."""
        return [(h.start_ms, self.samples[h.start_ms].kept()[0]) for h in self._entries
                if (h.verdict == "normal" or h.accepted) and h.start_ms in self.samples]

    def _insert(self, figures: HourFigures) -> None:
        # A window judged again (re-read after a restart) replaces its earlier figures.
        starts = [h.start_ms for h in self._entries]
        index = bisect.bisect_left(starts, figures.start_ms)
        replaced = index < len(starts) and starts[index] == figures.start_ms
        self._entries[index:index + replaced] = [figures]
        self._prune()

    def _prune(self) -> None:
        kept: list[HourFigures] = []
        usable = 0
        for rank, figures in enumerate(reversed(self._entries)):
            is_usable = serves_in_baseline(figures, self.settings)
            if rank < self.capacity or (is_usable and usable < self.capacity):
                kept.append(figures)
            usable += is_usable
        self._entries = kept[::-1]
        if len(self.samples) > len(self._entries) or len(self.formats) > len(self._entries):
            starts = {h.start_ms for h in self._entries}
            self.samples = {start: sample for start, sample in self.samples.items() if start in starts}
            self.formats = {start: counts for start, counts in self.formats.items() if start in starts}

    def to_list(self) -> list[dict[str, Any]]:
        """The figures (samples are stored apart: they are written once, when a window closes)."""
        return [figures.to_dict() for figures in self._entries]

    @classmethod
    def from_list(cls, items: Iterable[dict[str, Any]], settings: CompareConfig = CompareConfig(),
                  length_ms: int = HOUR_MS, samples: dict[int, WindowSample] | None = None,
                  formats: dict[int, FormatCounts] | None = None) -> History:
        return cls(settings, length_ms, (HourFigures.from_dict(item) for item in items), samples, formats)
