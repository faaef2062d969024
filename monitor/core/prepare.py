"""Sequence preparation: strings become fixed-width arrays an autoencoder can reconstruct.

A ``Preparer`` is fitted on a training corpus and then turns any batch of strings into a float32 matrix.
It owns tokenizing (separator runs or single characters), the vocabulary with its out-of-vocabulary id,
the sequence length, and two encodings:

``positional`` (the default)
    One step per token position plus a summary step. Each step one-hot encodes, from dictionaries learned
    per position, the token, the token's *shape* (``A`` upper, ``a`` lower, ``9`` digit, other characters
    kept) and, in separator mode, the separator in front of it. The summary step holds the exact token
    count, so a sequence longer than the kept length still shows its extra length in the score.
    Order, character classes, positions and lengths are all visible to the model.
``bag``
    The seed recipe: a multi-hot vector over the global vocabulary (column 0 marks padding, column 1
    unknown tokens). It cannot tell ``AB 12`` from ``12 AB``; kept as the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from monitor.core.prepare_settings import PrepareSettings
from monitor.core.row_memo import MEMO_SIZE, RowMemo
from monitor.errors import InputError

PAD, OOV = 0, 1  # reserved slots of every dictionary
_RESERVED = 2
_SHAPE_TABLE = str.maketrans(
    {**{c: "A" for c in map(chr, range(65, 91))},
     **{c: "a" for c in map(chr, range(97, 123))},
     **{c: "9" for c in "0123456789"}}
)
_MAX_COUNT_VALUE = 999  # token counts above this share one summary value
def shape_of(text: str) -> str:
    """Character-class shape of ``text``: ``AB-12c`` → ``AA-99a`` (non-ASCII characters are kept)."""
    return text.translate(_SHAPE_TABLE)


class Tokens(NamedTuple):
    """A split sequence: ``separators[i]`` stands before ``tokens[i]``; ``separators[-1]`` trails."""

    tokens: list[str]
    separators: list[str]


@dataclass
class Preparer:
    """A fitted preparation: build it with ``Preparer.fit(corpus, settings)``.

    >>> p = Preparer.fit(["AB-12", "AB-13", "CD-12"] * 5, PrepareSettings(min_count=1))
    >>> p.mode, p.length, p.encode(["AB-12", "12-AB"]).shape
    ('separators', 2, (2, 54))
    """

    settings: PrepareSettings
    mode: str
    length: int
    vocabulary: list[str]
    # positional: per channel, per step (positions then the summary step), the kept values in slot order
    dictionaries: dict[str, list[list[str]]] = field(default_factory=dict)

    # -- fitting -------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, corpus: Sequence[str], settings: PrepareSettings | None = None) -> Preparer:
        """Learn mode, length, vocabulary and position dictionaries from ``corpus``."""
        settings = settings or PrepareSettings()
        if not corpus:
            raise InputError("the training corpus is empty: give at least a few hundred sequences")
        mode = settings.tokenize if settings.tokenize != "auto" else _pick_mode(corpus, settings)
        probe = cls(settings, mode, length=1, vocabulary=[])
        probe._build_lookups()
        split = [probe.split(s) for s in corpus]
        counts = np.fromiter((len(t.tokens) for t in split), dtype=np.int64, count=len(split))
        length = settings.length or int(np.clip(np.quantile(counts, settings.length_quantile), 1, settings.max_length))
        token_counts = Counter(tok for t in split for tok in t.tokens)
        vocabulary = [tok for tok, _ in token_counts.most_common(settings.vocabulary_size - _RESERVED)]
        prepared = cls(settings, mode, length, vocabulary)
        if settings.encoding == "positional":
            prepared.dictionaries = prepared._fit_dictionaries(split)
        prepared._build_lookups()
        return prepared

    def _fit_dictionaries(self, split: list[Tokens]) -> dict[str, list[list[str]]]:
        in_vocabulary = set(self.vocabulary)
        limits = {"token": self.settings.values_per_position, "shape": self.settings.shapes_per_position,
                  "separator": self.settings.separators_per_position,
                  "head": self.settings.values_per_position, "tail": self.settings.values_per_position}
        counters = {c: [Counter() for _ in range(self.steps)] for c in self.channels}
        for tokens in split:
            for channel, values in self._step_values(tokens).items():
                for step, value in enumerate(values):
                    if value is not None:
                        counters[channel][step][value] += 1
        dictionaries: dict[str, list[list[str]]] = {}
        for channel, per_step in counters.items():
            keep_all = channel == "token"  # the summary step's count values are not tokens
            dictionaries[channel] = [
                [v for v, n in counter.most_common() if n >= self.settings.min_count
                 and (not keep_all or step == self.length or v in in_vocabulary)][: limits[channel]]
                for step, counter in enumerate(per_step)
            ]
        return dictionaries

    # -- splitting -----------------------------------------------------------------------------------------
    def split(self, sequence: str) -> Tokens:
        """Tokens and the separators around them, after case folding and the ``max_chars`` cut."""
        text = sequence[: self.settings.max_chars]
        if self.settings.lowercase:
            text = text.lower()
        if self.mode == "chars":
            return Tokens(list(text), [])
        parts = self._separator_re.split(text)
        # A capturing split alternates token, separator, token, ...; an empty first or last token means the
        # text starts or ends with a separator.
        tokens, between = parts[0::2], parts[1::2]
        leading = trailing = ""
        if len(tokens) > 1 and tokens[0] == "":
            tokens.pop(0)
            leading = between.pop(0)
        if between and tokens[-1] == "":
            tokens.pop()
            trailing = between.pop()
        if tokens == [""]:
            tokens = []
        return Tokens(tokens, [leading, *between, trailing])

    # -- shape of the encoding -----------------------------------------------------------------------------
    @property
    def channels(self) -> tuple[str, ...]:
        if self.mode == "chars":
            return ("token", "shape")
        return ("token", "shape", "separator", "head", "tail")

    @property
    def steps(self) -> int:
        """Positions kept plus the summary step."""
        return self.length + 1

    @property
    def step_width(self) -> int:
        """Features per step in the positional encoding (every step has the same layout)."""
        return sum(self._channel_widths().values())

    @property
    def width(self) -> int:
        """Number of features one sequence becomes."""
        if self.settings.encoding == "bag":
            return self.settings.vocabulary_size
        return self.steps * self.step_width

    @property
    def ones_per_sequence(self) -> int:
        """How many feature indices ``active_features`` gives each sequence."""
        return self.length if self.settings.encoding == "bag" else len(self._lookups)

    @property
    def repeats_features(self) -> bool:
        """Whether one sequence's ``active_features`` may name a feature twice (a bag repeats a token); the
        matrix of ``encode`` holds a one there all the same."""
        return self.settings.encoding == "bag"

    def _channel_widths(self) -> dict[str, int]:
        return {c: _RESERVED + max(len(d) for d in self.dictionaries[c]) for c in self.channels}

    # -- encoding ------------------------------------------------------------------------------------------
    def encode(self, sequences: Sequence[str]) -> np.ndarray:
        """A ``(len(sequences), width)`` float32 matrix of zeros and ones."""
        active = self.active_features(sequences)
        matrix = np.zeros((len(sequences), self.width), dtype=np.float32)
        # One flat index per feature set: a 1-d scatter takes a third of the time of a (row, column) one.
        flat = active.astype(np.intp)
        flat += np.arange(0, len(sequences) * self.width, self.width, dtype=np.intp)[:, None]
        matrix.ravel()[flat.ravel()] = 1.0
        return matrix

    def active_features(self, sequences: Sequence[str]) -> np.ndarray:
        """Indices of the features set for each sequence, shape ``(n, k)`` (repeats allowed in ``bag``)."""
        if self.settings.encoding == "bag":
            return self._bag_indices(sequences)
        return self._positional_indices(sequences)

    def _bag_indices(self, sequences: Sequence[str]) -> np.ndarray:
        return self._batch.indices(sequences)

    def _bag_one_by_one(self, sequences: Sequence[str]) -> np.ndarray:
        """The reference of ``_bag_indices``, one string at a time."""
        lookup, length = self._vocabulary_index, self.length
        out = np.full((len(sequences), length), PAD, dtype=np.int32)
        for row, sequence in enumerate(sequences):
            ids = [lookup.get(tok, OOV) for tok in self.split(sequence).tokens[:length]]
            out[row, : len(ids)] = ids
        return out

    def _positional_indices(self, sequences: Sequence[str]) -> np.ndarray:
        # Identifier streams repeat (a serial, a user id, a residue triplet seen before): a bounded memo of
        # each string's feature indices skips tokenizing and the dictionary look-ups for repeats.
        return self._memo.rows(sequences, self._batch.indices)

    def forget(self) -> None:
        """Empty the memo of encodings (benchmarks start each run as cold as a new process)."""
        self._memo.forget()

    def _indices_of(self, sequence: str) -> tuple[int, ...]:
        values = self._flat_values(self.split(sequence))
        return tuple(table.get(v, miss) for (table, miss), v in zip(self._lookups, values))

    def _flat_values(self, split: Tokens) -> list[str | None]:
        per_channel = self._step_values(split)
        return [v for c in self.channels for v in per_channel[c]]

    def _step_values(self, split: Tokens) -> dict[str, list[str | None]]:
        """Per channel, the value at each step; ``None`` is padding."""
        tokens, length = split.tokens, self.length
        kept = tokens[:length]
        pad: list[str | None] = [None] * (length - len(kept))
        count = f"n={min(len(tokens), _MAX_COUNT_VALUE)}"
        values: dict[str, list[str | None]] = {
            "token": [*kept, *pad, count],
            "shape": [*(shape_of(t) for t in kept), *pad, shape_of("".join(tokens[length:]))[:16] or None],
        }
        if self.mode != "chars":
            seps = split.separators
            values["separator"] = [*seps[: len(kept)], *pad, seps[-1] if len(tokens) <= length else seps[length]]
            # First and last character of each token: where a rare token's class or range is encoded.
            values["head"] = [*(t[:1] or None for t in kept), *pad, None]
            values["tail"] = [*(t[-1:] or None for t in kept), *pad, None]
        return values

    def _build_lookups(self) -> None:
        # Imported here: the batch path loads numba (half a second), which commands that build no preparer,
        # such as the CLI's help, should not pay for.
        from monitor.core.prepare_batch import BatchPreparer

        self._separator_re = re.compile(f"({self.settings.separator_pattern})")
        self._vocabulary_index = {tok: i + _RESERVED for i, tok in enumerate(self.vocabulary)}
        self._lookups: list[tuple[dict[str | None, int], int]] = []
        self._memo = RowMemo(MEMO_SIZE)
        if self.settings.encoding != "positional" or not self.dictionaries:
            self._batch = BatchPreparer(self)
            return
        offset = 0
        for channel, width in self._channel_widths().items():
            for step, values in enumerate(self.dictionaries[channel]):
                base = step * self.step_width + offset
                table: dict[str | None, int] = {v: base + _RESERVED + i for i, v in enumerate(values)}
                table[None] = base + PAD
                self._lookups.append((table, base + OOV))
            offset += width
        self._batch = BatchPreparer(self)

    # -- explaining ----------------------------------------------------------------------------------------
    def describe(self, sequence: str, feature_errors: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
        """The parts of ``sequence`` whose features carry most of ``feature_errors`` (one row of squared
        errors), as ``(description, share of the error)`` pairs, largest first."""
        total = float(feature_errors.sum()) or 1.0
        if self.settings.encoding == "bag":
            groups = self._bag_groups(sequence, feature_errors)
        else:
            groups = self._positional_groups(sequence, feature_errors)
        ranked = sorted(groups.items(), key=lambda kv: kv[1], reverse=True)[:top]
        # A part worth under half a percent explains nothing: leave it out rather than show "0%".
        return [(name, round(err / total, 3)) for name, err in ranked if err / total >= 0.005]

    def _positional_groups(self, sequence: str, feature_errors: np.ndarray) -> dict[str, float]:
        split = self.split(sequence)
        per_step = self._step_values(split)
        by_step = feature_errors.reshape(self.steps, self.step_width)
        unit = "character" if self.mode == "chars" else "token"
        extra = split.tokens[self.length:]
        groups: dict[str, float] = {}
        offset = 0
        for channel, width in self._channel_widths().items():
            errors = by_step[:, offset: offset + width].sum(axis=1)
            for step, err in enumerate(errors):
                name = _part_name(channel, step, self.length, per_step[channel][step], unit)
                if step == self.length and channel == "shape" and extra:
                    # The encoding joins the extra tokens' shapes; a reader wants them apart.
                    shown = "".join(extra) if unit == "character" else " ".join(extra)
                    name = f"extra {unit}s {shown[:40]!r}"
                groups[name] = groups.get(name, 0.0) + float(err)  # a missing token's channels add up
            offset += width
        return groups

    def _bag_groups(self, sequence: str, feature_errors: np.ndarray) -> dict[str, float]:
        present = set(self.split(sequence).tokens[: self.length])
        names = ["padding", "unknown token", *self.vocabulary]
        groups: dict[str, float] = {}
        for index in np.argsort(feature_errors)[::-1][:8]:
            name = names[index] if index < len(names) else f"feature {index}"
            groups[f"token {name!r}" + ("" if name in present else " expected")] = float(feature_errors[index])
        return groups

    # -- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "mode": self.mode, "length": self.length,
                "vocabulary": self.vocabulary, "dictionaries": self.dictionaries}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preparer:
        prepared = cls(PrepareSettings(**data["settings"]), data["mode"], int(data["length"]),
                       list(data["vocabulary"]), {k: [list(v) for v in d] for k, d in data["dictionaries"].items()})
        prepared._build_lookups()
        return prepared


def _part_name(channel: str, step: int, length: int, value: str | None, unit: str) -> str:
    """A reader's name for one channel at one step, e.g. ``shape of token 2 'AA9'``."""
    if step == length:
        if value is None:
            return "length"
        return {"token": f"length {value}", "shape": f"extra {unit}s {value!r}",
                "separator": f"trailing separator {value!r}"}.get(channel, "length")
    where = f"{unit} {step + 1}"
    if value is None:
        return f"{where} missing"
    if channel == "token":
        return f"{where} {value!r}"
    label = {"shape": "class of" if unit == "character" else "shape of", "separator": "separator before",
             "head": "first character of", "tail": "last character of"}[channel]
    return f"{label} {where} {value!r}"


def _pick_mode(corpus: Sequence[str], settings: PrepareSettings) -> str:
    pattern = re.compile(settings.separator_pattern)
    sample = corpus[:: max(1, len(corpus) // 5000)]
    with_separator = sum(1 for s in sample if pattern.search(s.strip()))
    return "separators" if with_separator * 2 > len(sample) else "chars"
