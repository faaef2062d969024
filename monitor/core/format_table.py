"""The formats of a model's training data: each format's share, a few examples, and a long-tail bucket.

A bundle keeps the ``MAX_FORMATS`` most common formats (``monitor.core.signature``) of the sequences it was
trained on; the rest are counted together as the long tail. From it come each sequence's
``format_share`` (how common its format was in training), the rarity of a format as a tail probability
(``rarity``, one of the fused score's signals), and "new to training" in the hourly judgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.core.signature import FormatReader, Formats

MAX_FORMATS = 1000
EXAMPLES = 3


@dataclass(frozen=True)
class FormatTable:
    """``counts``: training records per kept format, most common first; ``total``: every training record;
    ``tail_records``/``tail_formats``: the records and formats beyond the kept ones."""

    counts: dict[str, int]
    total: int
    tail_records: int = 0
    tail_formats: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def learn(cls, sequences: Sequence[str], formats: Formats | None = None,
              max_formats: int = MAX_FORMATS) -> FormatTable:
        """The table of ``sequences`` (``formats``: theirs, when already read)."""
        formats = FormatReader().read(sequences) if formats is None else formats
        counts = np.bincount(formats.ids, minlength=len(formats.names))
        order = sorted(range(len(counts)), key=lambda i: (-counts[i], formats.names[i]))
        kept, tail = order[:max_formats], order[max_formats:]
        examples: dict[str, list[str]] = {formats.names[i]: [] for i in kept}
        for sequence, i in zip(sequences, formats.ids.tolist()):
            chosen = examples.get(formats.names[i])
            if chosen is not None and len(chosen) < EXAMPLES and sequence not in chosen:
                chosen.append(sequence)
        return cls({formats.names[i]: int(counts[i]) for i in kept}, int(counts.sum()),
                   int(sum(counts[i] for i in tail)), len(tail), examples)

    def share(self, name: str) -> float:
        """The format's share of the training records (0 for a format not kept: new, or in the long tail)."""
        return self.counts.get(name, 0) / self.total if self.total else 0.0

    def share_by_format(self) -> dict[str, float]:
        """Each kept format's share of the training records (empty for an empty table)."""
        return {name: n / self.total for name, n in self.counts.items()} if self.total else {}

    def shares(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.share(n) for n in names], dtype=np.float64)

    def rarity(self, names: Sequence[str]) -> np.ndarray:
        """For each format, the share of training records whose format was at most as common (with one
        record's worth added, so never 0): a tail probability, small for a rare or unseen format.

        >>> table = FormatTable({"AA999": 90, "AA99": 9, "A9": 1}, 100)
        >>> [round(float(p), 3) for p in table.rarity(["AA999", "A9", "99-99"])]
        [1.0, 0.02, 0.01]
        """
        if not self.total:
            return np.ones(len(names))
        # Sorted by count, cumulative records of formats no more common than each kept one.
        by_count = sorted(self.counts.values())
        cumulative = np.cumsum(by_count)
        values = np.asarray(by_count)
        out = np.empty(len(names))
        for i, name in enumerate(names):
            count = self.counts.get(name)
            at_most = self.tail_records if count is None else \
                self.tail_records + int(cumulative[np.searchsorted(values, count, side="right") - 1])
            out[i] = (at_most + 1) / (self.total + 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"counts": [[name, n] for name, n in self.counts.items()], "total": self.total,
                "tail_records": self.tail_records, "tail_formats": self.tail_formats,
                "examples": self.examples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FormatTable:
        return cls({str(name): int(n) for name, n in data["counts"]}, int(data["total"]),
                   int(data["tail_records"]), int(data["tail_formats"]),
                   {str(k): [str(s) for s in v] for k, v in data.get("examples", {}).items()})
