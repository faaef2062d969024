"""The compiled loops of batch preparation (numba): one pass over each string's code points, in machine code.

A batch arrives as one array of code points (every string one after another) with each string's start and
length. For each string the loop finds its tokens (runs of characters outside the separator class, or every
character in ``chars`` mode), names each token, separator, shape and first and last character by a 64-bit
hash of its code points, and looks the name up in the fitted dictionaries, kept as one sorted array of keys
(``monitor.core.prepare_batch``). The hashes are the ones ``text_hash`` gives for Python strings, which is how
the dictionaries' own values are named.

Everything here is plain loops over arrays, so numba compiles it once per machine (kept in its cache: the
first batch of a new install waits a few seconds for it) and the loops run without the interpreter and without
holding the GIL: a group's members prepare batches in parallel.
"""

from __future__ import annotations

import numpy as np

from monitor.core.compiled import compiled

# The same values as ``Preparer``'s string-by-string path (monitor/core/prepare.py), written here rather than
# imported: numba takes a global as a constant of the cached machine code and would not see another module's
# change. tests/core/test_prepare_batch.py holds the two paths equal, past both limits.
MAX_COUNT_VALUE = 999  # the token-count summary names counts up to this
SHAPE_WIDTH = 16  # the summary step's shape keeps this many characters
SEPARATOR, IN_TOKEN, UNKNOWN = 1, 0, 2  # a code point's class (unknown: not asked of the pattern yet)
# The channels' kinds, in the order ``kinds`` gives them per channel.
TOKEN, SHAPE, HEAD, TAIL, BEFORE = 0, 1, 2, 3, 4

_BASE = np.uint64(0x100000001B3)  # odd, so a hash never loses a character's weight
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)


@compiled
def _splitmix(x: np.uint64) -> np.uint64:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


@compiled
def key_of(text_hash: np.uint64, length: int, table: int) -> np.uint64:
    """The look-up key of a value (its code-point hash and length) in one (channel, step) table."""
    salt = _splitmix(np.uint64(length) + _GOLDEN * np.uint64(table))
    return _splitmix(text_hash ^ salt)


@compiled
def keys_of(text_hashes: np.ndarray, lengths: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """``key_of`` for arrays of values (the dictionaries' own, when the tables are built)."""
    out = np.empty(len(text_hashes), dtype=np.uint64)
    for i in range(len(text_hashes)):
        out[i] = key_of(text_hashes[i], lengths[i], tables[i])
    return out


def text_hash(text: str) -> int:
    """The code-point hash of ``text`` as the loops compute it, in Python integers."""
    h, power, modulus, base = 0, 1, 1 << 64, int(_BASE)
    for char in text:
        h = (h + (ord(char) + 1) * power) % modulus
        power = power * base % modulus
    return h


@compiled
def _shape(code: np.uint32) -> np.uint32:
    """``shape_of`` of one code point: ASCII upper → 'A', lower → 'a', digit → '9', the rest kept."""
    if 65 <= code <= 90:
        return np.uint32(65)
    if 97 <= code <= 122:
        return np.uint32(97)
    if 48 <= code <= 57:
        return np.uint32(57)
    return code


@compiled
def _hash(codes: np.ndarray, start: int, end: int, shaped: bool) -> np.uint64:
    """``text_hash`` of ``codes[start:end]`` (of their shapes, if ``shaped``)."""
    h, power = np.uint64(0), _ONE
    for k in range(start, end):
        code = _shape(codes[k]) if shaped else codes[k]
        h += (np.uint64(code) + _ONE) * power
        power *= _BASE
    return h


@compiled
def _shift(bucket_start: np.ndarray) -> np.uint64:
    """How far a key is shifted to its bucket: the buckets are its top bits (a power of two of them)."""
    bits = 0
    while (1 << bits) < len(bucket_start) - 1:
        bits += 1
    return np.uint64(64 - bits)


@compiled
def _find(key: np.uint64, miss: int, keys: np.ndarray, values: np.ndarray, bucket_start: np.ndarray,
          shift: np.uint64) -> int:
    """The value of ``key`` in the sorted ``keys``, or ``miss``: the keys of its bucket (``key >> shift``) are
    checked one by one."""
    bucket = np.int64(key >> shift)
    for at in range(bucket_start[bucket], bucket_start[bucket + 1]):
        if keys[at] == key:
            return values[at]
    return miss


@compiled
def unknown_code_points(codes: np.ndarray, class_of: np.ndarray) -> np.ndarray:
    """The distinct code points of ``codes`` whose class is not known yet (asked of the pattern by the caller)."""
    seen = set()
    for code in codes:
        if class_of[code] == UNKNOWN:
            seen.add(code)
    out = np.empty(len(seen), dtype=np.uint32)
    for i, code in enumerate(seen):
        out[i] = code
    return out


@compiled
def _tokens(codes: np.ndarray, start: int, end: int, class_of: np.ndarray, chars: bool,
            bounds: np.ndarray) -> int:
    """Fill ``bounds`` with each token's (start, end) and return how many tokens there are."""
    count = 0
    i = start
    while i < end:
        if chars:
            bounds[count, 0], bounds[count, 1] = i, i + 1
            count += 1
            i += 1
        elif class_of[codes[i]] == SEPARATOR:
            i += 1
        else:
            j = i + 1
            while j < end and class_of[codes[j]] != SEPARATOR:
                j += 1
            bounds[count, 0], bounds[count, 1] = i, j
            count += 1
            i = j
    return count


@compiled
def positional(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, class_of: np.ndarray, chars: bool,
               kinds: np.ndarray, steps: int, length: int, keys: np.ndarray, values: np.ndarray,
               bucket_start: np.ndarray, miss: np.ndarray, pad: np.ndarray, count_index: np.ndarray,
               out: np.ndarray) -> None:
    """Each string's feature index per (channel, step) into ``out`` (``Preparer._indices_of``'s result).

    Channel ``c`` (of kind ``kinds[c]``) at token ``t`` is table ``c * steps + t``; step ``length`` of the token
    channel counts the tokens, of the shape channel holds the shape of the tokens past ``length``, of the
    separator channel the separator after the last kept token."""
    bounds = np.empty((max(int(lengths.max()), 1) if len(lengths) else 1, 2), dtype=np.int64)
    shift = _shift(bucket_start)
    for row in range(len(starts)):
        begin, end = starts[row], starts[row] + lengths[row]
        for table in range(out.shape[1]):
            out[row, table] = pad[table]
        count = _tokens(codes, begin, end, class_of, chars, bounds)
        for number in range(min(count, length)):
            token_start, token_end = bounds[number, 0], bounds[number, 1]
            for c in range(len(kinds)):
                table = c * steps + number
                kind = kinds[c]
                if kind == TOKEN:
                    key = key_of(_hash(codes, token_start, token_end, False), token_end - token_start, table)
                elif kind == SHAPE:
                    key = key_of(_hash(codes, token_start, token_end, True), token_end - token_start, table)
                elif kind == HEAD:
                    key = key_of(_hash(codes, token_start, token_start + 1, False), 1, table)
                elif kind == TAIL:
                    key = key_of(_hash(codes, token_end - 1, token_end, False), 1, table)
                else:  # the separator in front of the token: from the previous token's end (or the start)
                    previous = bounds[number - 1, 1] if number > 0 else begin
                    key = key_of(_hash(codes, previous, token_start, False), token_start - previous, table)
                out[row, table] = _find(key, miss[table], keys, values, bucket_start, shift)
        for c in range(len(kinds)):
            table = c * steps + length
            if kinds[c] == TOKEN:
                out[row, table] = count_index[min(count, MAX_COUNT_VALUE)]
            elif kinds[c] == SHAPE and count > length:
                # The shapes of the characters of the tokens past the kept ones, joined, cut to SHAPE_WIDTH.
                h, power, size = np.uint64(0), _ONE, 0
                for t in range(length, count):
                    for k in range(bounds[t, 0], bounds[t, 1]):
                        if size < SHAPE_WIDTH:
                            h += (np.uint64(_shape(codes[k])) + _ONE) * power
                            power *= _BASE
                            size += 1
                out[row, table] = _find(key_of(h, size, table), miss[table], keys, values, bucket_start, shift)
            elif kinds[c] == BEFORE:
                # The separator after the last kept token: the one before the first token past them, or the
                # trailing one (all of an empty or all-separator string).
                if count > length:
                    after, until = bounds[length - 1, 1], bounds[length, 0]
                elif count > 0:
                    after, until = bounds[count - 1, 1], end
                else:
                    after, until = end, end
                key = key_of(_hash(codes, after, until, False), until - after, table)
                out[row, table] = _find(key, miss[table], keys, values, bucket_start, shift)


@compiled
def bag(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, class_of: np.ndarray, chars: bool,
        length: int, oov: int, keys: np.ndarray, values: np.ndarray, bucket_start: np.ndarray,
        out: np.ndarray) -> None:
    """The vocabulary id of each string's first ``length`` tokens into ``out`` (already padding)."""
    bounds = np.empty((max(int(lengths.max()), 1) if len(lengths) else 1, 2), dtype=np.int64)
    shift = _shift(bucket_start)
    for row in range(len(starts)):
        begin = starts[row]
        count = _tokens(codes, begin, begin + lengths[row], class_of, chars, bounds)
        for number in range(min(count, length)):
            token_start, token_end = bounds[number, 0], bounds[number, 1]
            key = key_of(_hash(codes, token_start, token_end, False), token_end - token_start, 0)
            out[row, number] = _find(key, oov, keys, values, bucket_start, shift)
