"""Preparation of many never-seen strings at once, in compiled loops instead of one Python call each.

The strings of a batch become one array of code points, one string after another. Every token, separator and
shape is named by a 64-bit hash of its code points, and each (channel, step) dictionary becomes part of one
sorted array of keys; the loops that tokenize, hash and look up are in ``monitor.core.prepare_kernel``. The
result is the same as ``Preparer._indices_of`` string by string (``tests/core/test_prepare_batch.py`` checks
it on generated, hostile and random strings); a hash collision between a dictionary value and another string,
about one chance in 2**64 per pair, is the only way it could differ.

Only separator patterns that are a run of one character class (the default ``[^0-9A-Za-z]+``, ``[-_ ]+``,
``\\W+``, ...) split this way; under another pattern every string takes the string-by-string path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from monitor.core import prepare_kernel as kernel
from monitor.core.prepare_settings import PrepareSettings

_CLASS_RUN = re.compile(r"(\[(?:\\.|[^\]\\])+\]|\\[wWsSdD])\+")
_KINDS = {"token": kernel.TOKEN, "shape": kernel.SHAPE, "head": kernel.HEAD, "tail": kernel.TAIL,
          "separator": kernel.BEFORE}


class FittedPreparer(Protocol):
    """What the batch path reads of a fitted ``monitor.core.prepare.Preparer``: its settings and shape, the
    look-up tables it built, and its string-by-string path for the strings left to it."""

    settings: PrepareSettings
    mode: str
    length: int
    _vocabulary_index: dict[str, int]
    _lookups: list[tuple[dict[str | None, int], int]]

    @property
    def steps(self) -> int: ...
    @property
    def channels(self) -> tuple[str, ...]: ...
    def _bag_one_by_one(self, sequences: Sequence[str]) -> np.ndarray: ...
    def _indices_of(self, sequence: str) -> tuple[int, ...]: ...


class BatchPreparer:
    """The feature indices of a ``Preparer`` for many strings at once (see the module docstring)."""

    def __init__(self, preparer: FittedPreparer) -> None:
        self.preparer = preparer
        settings = preparer.settings
        self.length = preparer.length
        self.steps = preparer.steps
        self.channels = preparer.channels
        # The loops split on one character class; another pattern takes the string-by-string path.
        self.in_loops = preparer.mode == "chars" or _CLASS_RUN.fullmatch(settings.separator_pattern) is not None
        self._separator_class = re.compile(settings.separator_pattern[:-1]) if preparer.mode != "chars" else None
        self._class_of = np.full(0x110000, kernel.UNKNOWN, dtype=np.int8)  # per code point: separator or not
        self._kinds = np.array([_KINDS[c] for c in self.channels], dtype=np.int64)
        self._build_tables()

    # -- the dictionaries as one sorted array of keys --------------------------------------------------------
    def _build_tables(self) -> None:
        preparer = p = self.preparer
        keys, indices = [], []
        if preparer.settings.encoding == "bag":
            for token, index in preparer._vocabulary_index.items():  # noqa: SLF001 - one concept, two modules
                keys.append((kernel.text_hash(token), len(token), 0))
                indices.append(index)
            self.miss = None
        else:
            self.miss = np.empty(len(p._lookups), dtype=np.int64)  # noqa: SLF001
            self.pad = np.empty(len(p._lookups), dtype=np.int64)  # noqa: SLF001
            for table_id, (table, miss) in enumerate(p._lookups):  # noqa: SLF001
                self.miss[table_id], self.pad[table_id] = miss, table[None]
                for value, index in table.items():
                    if value is not None:
                        keys.append((kernel.text_hash(value), len(value), table_id))
                        indices.append(index)
            self.count_index = np.empty(0, dtype=np.int64)
            if p._lookups:  # noqa: SLF001 - a preparer being fitted has none yet
                summary = self.channels.index("token") * self.steps + self.length
                table = p._lookups[summary][0]  # noqa: SLF001
                self.count_index = np.array([table.get(f"n={k}", self.miss[summary])
                                             for k in range(kernel.MAX_COUNT_VALUE + 1)], dtype=np.int64)
        hashes = np.array([k[0] for k in keys], dtype=np.uint64)
        lengths = np.array([k[1] for k in keys], dtype=np.int64)
        tables = np.array([k[2] for k in keys], dtype=np.int64)
        table_keys = kernel.keys_of(hashes, lengths, tables)
        order = np.argsort(table_keys, kind="stable")
        self._keys, self._indices = table_keys[order], np.asarray(indices, dtype=np.int64)[order]
        # Buckets by the keys' top bits, about two for each key: a look-up checks the one or two keys of its
        # bucket, and the table of where each bucket starts stays small enough for the processor's caches.
        bits = min(max(int(len(self._keys)).bit_length() + 1, 4), 24)
        buckets = self._keys >> np.uint64(64 - bits)
        self._bucket_start = np.searchsorted(buckets, np.arange((1 << bits) + 1, dtype=np.uint64))

    # -- a batch --------------------------------------------------------------------------------------------
    def indices(self, sequences: Sequence[str]) -> np.ndarray:
        """``(len(sequences), features)`` int32: for the positional encoding, one index per (channel, step);
        for ``bag``, the vocabulary ids of the kept tokens."""
        preparer = self.preparer
        bag = preparer.settings.encoding == "bag"
        width = self.length if bag else len(preparer._lookups)  # noqa: SLF001
        if not self.in_loops:
            out = np.empty((len(sequences), width), dtype=np.int32)
            for i, sequence in enumerate(sequences):
                out[i] = self._one(sequence)
            return out
        codes, starts, lengths = self._code_points(sequences)
        chars = self._separator_class is None
        if not chars:
            self._classify(codes)
        if bag:
            out = np.zeros((len(sequences), width), dtype=np.int32)  # PAD
            if len(sequences):
                kernel.bag(codes, starts, lengths, self._class_of, chars, self.length, 1, self._keys,
                           self._indices, self._bucket_start, out)
            return out
        out = np.empty((len(sequences), width), dtype=np.int32)
        if len(sequences) and width:
            kernel.positional(codes, starts, lengths, self._class_of, chars, self._kinds, self.steps, self.length,
                              self._keys, self._indices, self._bucket_start, self.miss, self.pad, self.count_index,
                              out)
        return out

    def _code_points(self, sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch as one array of code points, and each string's start in it and length after the cut to
        ``max_chars`` (and case folding, which may change a length)."""
        settings = self.preparer.settings
        # Cut first, then fold (as ``Preparer.split`` does): without folding the cut is only a shorter length.
        texts = [s[: settings.max_chars].lower() for s in sequences] if settings.lowercase else sequences
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        starts = np.zeros(len(texts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        # surrogatepass: a lone surrogate (which a str may hold) is one code point, as everywhere else.
        codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return codes, starts, lengths if settings.lowercase else np.minimum(lengths, settings.max_chars)

    def _classify(self, codes: np.ndarray) -> None:
        """Ask the separator pattern about each code point not seen before (once per code point)."""
        for code in kernel.unknown_code_points(codes, self._class_of).tolist():
            separator = self._separator_class.fullmatch(chr(code)) is not None  # type: ignore[union-attr]
            self._class_of[code] = kernel.SEPARATOR if separator else kernel.IN_TOKEN

    def _one(self, sequence: str) -> np.ndarray:
        preparer = self.preparer
        if preparer.settings.encoding == "bag":
            return preparer._bag_one_by_one([sequence])[0]  # noqa: SLF001
        return np.asarray(preparer._indices_of(sequence), dtype=np.int32)  # noqa: SLF001
