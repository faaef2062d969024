"""Preparation of many never-seen strings at once, with array operations instead of one Python call each.

The strings of a batch become one matrix of code points (a row per string, padded with zeros). Token
boundaries come from a per-character class (separator or not), every token, separator and shape is named
by a 64-bit hash of its code points computed from row prefix sums, and each (channel, step) dictionary look-up
becomes one sorted search over all the batch's values. The result is the same as
``Preparer._indices_of`` string by string (``tests/core/test_prepare_batch.py`` checks it on generated and
random strings); a hash collision between a dictionary value and another string, about one chance in 2**64
per pair, is the only way it could differ.

Only separator patterns that are a run of one character class (the default ``[^0-9A-Za-z]+``, ``[-_ ]+``,
``\\W+``, ...) split this way; strings longer than ``WIDE`` characters, or any string under another pattern,
take the string-by-string path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from monitor.core.prepare_settings import PrepareSettings

_BUCKET_BITS = 16
_UNKNOWN = 2
WIDE = 256  # longer strings are prepared one by one (a batch matrix is as wide as its longest string)
_MAX_COUNT_VALUE = 999
_SHAPE_WIDTH = 16  # the summary step's shape keeps this many characters
_CLASS_RUN = re.compile(r"(\[(?:\\.|[^\]\\])+\]|\\[wWsSdD])\+")
_M = 1 << 64
_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
_BASE_INVERSE = pow(_BASE, -1, _M)
_MIX_1, _MIX_2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX_1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX_2)
    return x ^ (x >> np.uint64(31))


def _key(hashes: np.ndarray, lengths: np.ndarray, table: np.ndarray | int) -> np.ndarray:
    """The look-up key of values (their code-point hash and length) in one (channel, step) table."""
    salt = _splitmix(lengths.astype(np.uint64) + np.uint64(_GOLDEN) * np.asarray(table, dtype=np.uint64))
    return _splitmix(hashes ^ salt)


def _text_hash(text: str) -> int:
    """What ``_substring_hashes`` gives for ``text`` (Python integers, for the dictionaries' values)."""
    h, power = 0, 1
    for char in text:
        h = (h + (ord(char) + 1) * power) % _M
        power = power * _BASE % _M
    return h


def _shape_codes(codes: np.ndarray) -> np.ndarray:
    """``shape_of`` on code points: ASCII upper → 'A', lower → 'a', digit → '9', the rest kept."""
    shapes = codes.copy()
    shapes[(codes >= 65) & (codes <= 90)] = 65
    shapes[(codes >= 97) & (codes <= 122)] = 97
    shapes[(codes >= 48) & (codes <= 57)] = 57
    return shapes


class _Prefix:
    """Row prefix hashes of a code-point matrix: the hash of any substring in two gathers."""

    def __init__(self, codes: np.ndarray, powers: np.ndarray) -> None:
        weighted = (codes.astype(np.uint64) + np.uint64(1)) * powers[None, : codes.shape[1]]
        self.sums = np.zeros((codes.shape[0], codes.shape[1] + 1), dtype=np.uint64)
        np.cumsum(weighted, axis=1, out=self.sums[:, 1:])

    def of(self, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        return (self.sums[rows, ends] - self.sums[rows, starts]) * inverse[starts]


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
        self.vectorized = preparer.mode == "chars" or _CLASS_RUN.fullmatch(settings.separator_pattern) is not None
        self._separator_class = re.compile(settings.separator_pattern[:-1]) if preparer.mode != "chars" else None
        self._class_of = np.full(0x110000, _UNKNOWN, dtype=np.int8)  # per code point: 1 separator, 0 not
        self._powers = np.ones(1, dtype=np.uint64)
        self._inverse = np.ones(1, dtype=np.uint64)
        self._build_tables()

    # -- the dictionaries as one sorted array of keys --------------------------------------------------------
    def _build_tables(self) -> None:
        preparer = p = self.preparer
        keys, indices = [], []
        if preparer.settings.encoding == "bag":
            for token, index in preparer._vocabulary_index.items():  # noqa: SLF001 - one concept, two modules
                keys.append((_text_hash(token), len(token), 0))
                indices.append(index)
            self.miss = None
        else:
            self.miss = np.empty(len(p._lookups), dtype=np.int64)  # noqa: SLF001
            self.pad = np.empty(len(p._lookups), dtype=np.int64)  # noqa: SLF001
            for table_id, (table, miss) in enumerate(p._lookups):  # noqa: SLF001
                self.miss[table_id], self.pad[table_id] = miss, table[None]
                for value, index in table.items():
                    if value is not None:
                        keys.append((_text_hash(value), len(value), table_id))
                        indices.append(index)
            self.count_index = np.empty(0, dtype=np.int64)
            if p._lookups:  # noqa: SLF001 - a preparer being fitted has none yet
                summary = self.channels.index("token") * self.steps + self.length
                table = p._lookups[summary][0]  # noqa: SLF001
                self.count_index = np.array([table.get(f"n={k}", self.miss[summary])
                                             for k in range(_MAX_COUNT_VALUE + 1)], dtype=np.int64)
        hashes = np.array([k[0] for k in keys], dtype=np.uint64)
        lengths = np.array([k[1] for k in keys], dtype=np.int64)
        tables = np.array([k[2] for k in keys], dtype=np.uint64)
        table_keys = _key(hashes, lengths, tables) if keys else np.empty(0, dtype=np.uint64)
        order = np.argsort(table_keys, kind="stable")
        self._keys, self._indices = table_keys[order], np.asarray(indices, dtype=np.int64)[order]
        # Buckets by the keys' top bits: a look-up checks the one or two keys of its bucket, where a binary
        # search over every key would take ten steps.
        buckets = self._keys >> np.uint64(64 - _BUCKET_BITS)
        self._bucket_start = np.searchsorted(buckets, np.arange((1 << _BUCKET_BITS) + 1, dtype=np.uint64))
        self._bucket_depth = int(np.diff(self._bucket_start).max()) if len(self._keys) else 0

    def _find(self, keys: np.ndarray, misses: np.ndarray | int) -> np.ndarray:
        """The index each key names, or its miss index."""
        found = np.broadcast_to(np.asarray(misses, dtype=np.int64), keys.shape).copy()
        if not self._bucket_depth:
            return found
        bucket = (keys >> np.uint64(64 - _BUCKET_BITS)).astype(np.int64)
        low, high = self._bucket_start[bucket], self._bucket_start[bucket + 1]
        last = len(self._keys) - 1
        for depth in range(self._bucket_depth):
            at = np.minimum(low + depth, last)
            hit = (low + depth < high) & (self._keys[at] == keys)
            found[hit] = self._indices[at[hit]]
        return found

    def _grow_powers(self, width: int) -> None:
        if len(self._powers) > width:
            return
        size = max(2 * len(self._powers), width + 1)
        powers, inverse = [1] * size, [1] * size
        for k in range(1, size):
            powers[k] = powers[k - 1] * _BASE % _M
            inverse[k] = inverse[k - 1] * _BASE_INVERSE % _M
        self._powers, self._inverse = np.array(powers, dtype=np.uint64), np.array(inverse, dtype=np.uint64)

    # -- a batch --------------------------------------------------------------------------------------------
    def indices(self, sequences: Sequence[str]) -> np.ndarray:
        """``(len(sequences), features)`` int32: for the positional encoding, one index per (channel, step);
        for ``bag``, the vocabulary ids of the kept tokens."""
        preparer = self.preparer
        settings = preparer.settings
        texts = [s[: settings.max_chars] for s in sequences]
        if settings.lowercase:
            texts = [t.lower() for t in texts]
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        width = self.length if settings.encoding == "bag" else len(preparer._lookups)  # noqa: SLF001
        out = np.empty((len(texts), width), dtype=np.int32)
        wide = lengths > WIDE
        one_by_one = np.arange(len(texts)) if not self.vectorized else np.flatnonzero(wide)
        at_once = np.flatnonzero(~wide) if self.vectorized else np.empty(0, dtype=np.int64)
        if len(at_once):
            batch = [texts[i] for i in at_once] if len(at_once) < len(texts) else texts
            out[at_once] = self._at_once(batch, lengths[at_once])
        for i in one_by_one:
            out[i] = self._one(sequences[i])
        return out

    def _one(self, sequence: str) -> np.ndarray:
        preparer = self.preparer
        if preparer.settings.encoding == "bag":
            return preparer._bag_one_by_one([sequence])[0]  # noqa: SLF001
        return np.asarray(preparer._indices_of(sequence), dtype=np.int32)  # noqa: SLF001

    def _at_once(self, texts: list[str], lengths: np.ndarray) -> np.ndarray:
        n, width = len(texts), max(int(lengths.max()), 1)
        self._grow_powers(width + 1)
        # Code points, zero-padded; a NUL inside a string is code point 0 as well, and the lengths say where
        # each string ends.
        codes = np.array(texts, dtype=f"<U{width}").view(np.uint32).reshape(n, width)
        column = np.arange(width)
        valid = column[None, :] < lengths[:, None]
        in_token = valid if self._separator_class is None else valid & ~self._separators(codes)
        return _Batch(self, codes, lengths, valid, in_token).features()

    def _separators(self, codes: np.ndarray) -> np.ndarray:
        """Whether each code point is in the separator class; each code point is asked of the pattern once."""
        unknown = np.unique(codes[self._class_of[codes] == _UNKNOWN])
        for code in unknown.tolist():
            self._class_of[code] = self._separator_class.fullmatch(chr(code)) is not None  # type: ignore[union-attr]
        return self._class_of[codes] == 1


class _Batch:
    """One batch's tokens, as (row, start, end) triples in reading order, and its features."""

    def __init__(self, owner: BatchPreparer, codes: np.ndarray, lengths: np.ndarray, valid: np.ndarray,
                 in_token: np.ndarray) -> None:
        self.owner, self.codes, self.lengths = owner, codes, lengths
        self.chars = owner._separator_class is None  # noqa: SLF001
        n = codes.shape[0]
        if self.chars:  # every character is a token
            self.rows, self.starts = np.nonzero(in_token)
            self.ends = self.starts + 1
        else:  # a token is a run of characters outside the separator class
            before = np.zeros_like(in_token)
            before[:, 1:] = in_token[:, :-1]
            after = np.zeros_like(in_token)
            after[:, :-1] = in_token[:, 1:]
            self.rows, self.starts = np.nonzero(in_token & ~before)
            self.ends = np.nonzero(in_token & ~after)[1] + 1
        self.counts = np.bincount(self.rows, minlength=n)
        first = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.number = np.arange(len(self.rows)) - first[self.rows]  # token number within its row
        self.first = first
        self.in_token = in_token
        self.text = _Prefix(codes, owner._powers)  # noqa: SLF001
        self.shapes = _shape_codes(codes)
        self.shape = _Prefix(self.shapes, owner._powers)  # noqa: SLF001

    def hashes(self, prefix: _Prefix, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return prefix.of(rows, starts, ends, self.owner._inverse)  # noqa: SLF001

    def features(self) -> np.ndarray:
        owner = self.owner
        n = len(self.lengths)
        if owner.preparer.settings.encoding == "bag":
            return self._bag()
        out = np.empty((n, len(owner.miss)), dtype=np.int64)
        steps, length = owner.steps, owner.length
        # Padding first: every (channel, step) a row has no value for.
        out[:] = owner.pad[None, :]
        kept = self.number < length
        rows, number = self.rows[kept], self.number[kept]
        starts, ends = self.starts[kept], self.ends[kept]
        for c, channel in enumerate(owner.channels):
            table = c * steps + number
            if channel == "token":
                keys = _key(self.hashes(self.text, rows, starts, ends), ends - starts, table)
            elif channel == "shape":
                keys = _key(self.hashes(self.shape, rows, starts, ends), ends - starts, table)
            elif channel == "head":
                keys = _key(self.hashes(self.text, rows, starts, starts + 1), np.ones_like(starts), table)
            elif channel == "tail":
                keys = _key(self.hashes(self.text, rows, ends - 1, ends), np.ones_like(starts), table)
            else:  # the separator in front of each token: from the previous token's end (or 0) to its start
                previous = np.where(number > 0, np.roll(self.ends, 1)[kept], 0)
                keys = _key(self.hashes(self.text, rows, previous, starts), starts - previous, table)
            out[rows, table] = owner._find(keys, owner.miss[table])  # noqa: SLF001
        self._summary(out)
        return out

    def _summary(self, out: np.ndarray) -> None:
        owner = self.owner
        n, steps, length = len(self.lengths), owner.steps, owner.length
        counts = self.lengths if self.chars else self.counts
        every = np.arange(n)
        token_column = owner.channels.index("token") * steps + length
        out[:, token_column] = owner.count_index[np.minimum(counts, _MAX_COUNT_VALUE)]
        # The shape of the tokens past the kept length, joined, cut to 16 characters (none: padding).
        shape_column = owner.channels.index("shape") * steps + length
        extra = np.flatnonzero(counts > length)
        if len(extra):
            if self.chars:
                begin = np.full(len(extra), length)
            else:
                begin = self.starts[self.first[extra] + length]
            column = np.arange(self.codes.shape[1])[None, :]
            chosen = self.in_token[extra] & (column >= begin[:, None])
            rank = np.cumsum(chosen, axis=1)
            chosen &= rank <= _SHAPE_WIDTH
            powers = owner._powers[np.maximum(rank - 1, 0)]  # noqa: SLF001
            weighted = (self.shapes[extra].astype(np.uint64) + np.uint64(1)) * powers
            hashes = np.where(chosen, weighted, np.uint64(0)).sum(axis=1, dtype=np.uint64)
            sizes = chosen.sum(axis=1)
            keys = _key(hashes, sizes, np.full(len(extra), shape_column))
            out[extra, shape_column] = owner._find(keys, owner.miss[shape_column])  # noqa: SLF001
        if self.chars:
            return
        # The separator after the last kept position: the trailing one, or the one before the first extra token.
        separator_column = owner.channels.index("separator") * steps + length
        has = self.counts > 0
        last_end = np.zeros(n, dtype=np.int64)
        last_end[has] = self.ends[self.first[has] + self.counts[has] - 1]
        begin, end = np.where(has, last_end, self.lengths), self.lengths.copy()
        if len(extra):
            begin[extra] = self.ends[self.first[extra] + length - 1]
            end[extra] = self.starts[self.first[extra] + length]
        keys = _key(self.hashes(self.text, every, begin, end), end - begin, np.full(n, separator_column))
        out[:, separator_column] = owner._find(keys, owner.miss[separator_column])  # noqa: SLF001

    def _bag(self) -> np.ndarray:
        owner = self.owner
        length = owner.length
        out = np.zeros((len(self.lengths), length), dtype=np.int64)  # PAD
        kept = self.number < length
        rows, starts, ends, number = self.rows[kept], self.starts[kept], self.ends[kept], self.number[kept]
        keys = _key(self.hashes(self.text, rows, starts, ends), ends - starts, np.zeros(len(rows), dtype=np.int64))
        out[rows, number] = owner._find(keys, 1)  # noqa: SLF001 - OOV
        return out
