"""A character n-gram language model: how unlikely a whole string is, in nats, for many strings at once.

The model
---------
Each string is read as ``order - 1`` begin-of-string symbols, its characters, then one end-of-string symbol.
Every character and the end symbol is predicted from the ``k - 1`` symbols before it, so a string of ``n``
characters makes ``n + 1`` predictions and its score is ``-sum(log P)`` over them (natural log: nats; higher
means less likely). Probabilities are interpolated Witten-Bell estimates over orders ``1..order``::

    P_k(c | h) = (C(h c) + N1+(h .) * P_{k-1}(c | h')) / (C(h) + N1+(h .))     (P_k = P_{k-1} when C(h) = 0)
    P_0(c)     = (C(c) + 1) / (N + V + 1)

where ``h`` has ``k - 1`` symbols and ``h'`` drops its oldest one, ``C(h c)`` counts the k-gram, ``C(h)`` the
predictions made after ``h``, ``N1+(h .)`` the distinct symbols seen after ``h``, ``N`` all predictions of
the corpus and ``V`` the distinct predicted symbols (characters and the end symbol). The base ``P_0`` is
add-one over that alphabet plus one *unknown* symbol, which every never-seen character shares, so a new
character costs a finite, large amount instead of an infinite one.

Witten-Bell because it is simple (counts only, no discount to tune) and works well on small alphabets such
as identifiers: a history followed by few distinct symbols (``usr-`` is always followed by a digit) keeps
almost all its mass for them, one followed by many hands more to the shorter history.

The vectorized computation
--------------------------
A batch becomes a matrix of symbols (a row per string, code points, begin and end symbols above
``0x10FFFF``, zero padding). Every k-gram ending at every position is named by a 64-bit key: the polynomial
hash ``sum((symbol + 1) * BASE**i)`` modulo 2**64 (built one order at a time from the order below, with
uint64 wrap-around), finalized by splitmix64 salted by the length ``k``. The fitted model is one sorted
array of keys, each with three counts: as a k-gram (``C(h c)``) and as a history (``C(h)``, ``N1+(h .)``);
a batch looks all its keys up with ``np.searchsorted``. Fitting counts the keys of the corpus with sorts, in
chunks that bound memory. Strings are processed sorted by length and chunked so that one long string does
not widen the matrix of all the others.

The result is the exact model above (``tests/core/test_ngram.py`` checks it against a dictionary
implementation) unless two different n-grams get the same key, about one chance in 2**64 per pair.

>>> model = CharNgramModel.fit(["AB12", "AB13", "AB22"], order=3)
>>> usual, odd = model.nll(["AB12", "ZZ99"])
>>> bool(usual < odd)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

_BOS = 0x110000  # begin-of-string and end-of-string: above every Unicode code point
_EOS = 0x110001
_CELLS = 1 << 18  # symbols per chunk matrix (rows x padded width): bounds the memory of a batch
_BASE = 0x100000001B3  # odd, so the hash of distinct short sequences stays distinct
_M = 1 << 64
_MIX_1, _MIX_2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15
_FORMAT = 1  # to_arrays layout version


def _splitmix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on uint64 arrays (wraps modulo 2**64, as intended)."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX_1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX_2)
    return x ^ (x >> np.uint64(31))


def _salts(order: int) -> np.ndarray:
    """One salt per n-gram length 0..order, so equal hashes of different lengths still get different keys."""
    return _splitmix(np.arange(order + 1, dtype=np.uint64) * np.uint64(_GOLDEN))


def _empty_key() -> np.ndarray:
    """The key of the empty sequence (hash 0): the history of every order-1 prediction."""
    return _splitmix(_salts(0))


def _powers(order: int) -> np.ndarray:
    """``BASE**i`` modulo 2**64 for i < order (Python integers first: numpy scalars would warn on overflow)."""
    return np.array([pow(_BASE, i, _M) for i in range(order)], dtype=np.uint64)


def _symbols(texts: list[str], lengths: np.ndarray, order: int) -> np.ndarray:
    """``(n, order + width)`` uint64: begin symbols, code points, the end symbol, zeros after it."""
    n, width, pad = len(texts), max(int(lengths.max()), 1), order - 1
    codes = np.array(texts, dtype=f"<U{width}").view(np.uint32).reshape(n, width)
    symbols = np.zeros((n, pad + width + 1), dtype=np.uint64)
    symbols[:, :pad] = _BOS
    symbols[:, pad : pad + width] = codes
    symbols[np.arange(n), pad + lengths] = _EOS
    return symbols


def _keys(symbols: np.ndarray, order: int) -> list[np.ndarray]:
    """``keys[L][:, j]``: the key of the L-gram ending at column ``j`` (L = 1..order; index 0 unused).

    Columns ``j < L - 1`` hold junk (the gram would start before the row); no caller reads them.
    """
    salts, powers = _salts(order), _powers(order)
    weighted = symbols + np.uint64(1)
    hashes = weighted.copy()
    keys = [np.empty(0, dtype=np.uint64), _splitmix(hashes ^ salts[1])]
    for length in range(2, order + 1):
        # hash(s[j-L+1..j]) = hash(s[j-L+1..j-1]) + (s[j] + 1) * BASE**(L-1): the same polynomial as a
        # prefix-sum difference, one shifted add per order.
        longer = np.zeros_like(hashes)
        longer[:, 1:] = hashes[:, :-1] + weighted[:, 1:] * powers[length - 1]
        hashes = longer
        keys.append(_splitmix(hashes ^ salts[length]))
    return keys


def _chunks(lengths: np.ndarray, order: int) -> Iterator[np.ndarray]:
    """Indices of the strings, shortest first, in groups whose matrix stays within ``_CELLS`` symbols."""
    by_length = np.argsort(lengths, kind="stable")
    widths = lengths[by_length] + order  # padded width of a chunk ending at each string
    start, n = 0, len(by_length)
    while start < n:
        window = widths[start : start + _CELLS]
        cells = np.arange(1, len(window) + 1) * window  # nondecreasing: rows and width both grow
        stop = start + max(int(np.searchsorted(cells, _CELLS, side="right")), 1)
        yield by_length[start:stop]
        start = stop


def _lengths(texts: list[str]) -> np.ndarray:
    return np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))


class CharNgramModel:
    """Interpolated Witten-Bell character n-gram model (see the module docstring)."""

    order: int

    def __init__(self, order: int, keys: np.ndarray, gram: np.ndarray, context: np.ndarray,
                 types: np.ndarray) -> None:
        """``keys`` sorted uint64; per key its count as an n-gram, as a history, and its distinct followers."""
        self.order = order
        self._keys = keys
        # One zero row after the last key: where a key that is not in the model points.
        self._gram = np.append(gram, 0).astype(np.float64)
        self._context = np.append(context, 0).astype(np.float64)
        self._types = np.append(types, 0).astype(np.float64)
        empty = self._find(_empty_key())[0]
        self._total, self._alphabet = self._context[empty], self._types[empty]  # N and V

    # -- fitting --------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, corpus: Sequence[str], order: int = 5) -> CharNgramModel:
        """Count the n-grams of ``corpus`` (orders 1..``order``) and return the model."""
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        texts = list(corpus)
        if not texts:
            raise ValueError("cannot fit a CharNgramModel on an empty corpus: give it at least one string")
        lengths = _lengths(texts)
        parts = [_count_chunk([texts[i] for i in rows], lengths[rows], order) for rows in _chunks(lengths, order)]
        grams, counts, contexts = _merge(*(np.concatenate(p) for p in zip(*parts)))
        return cls(order, *_table(grams, counts, contexts))

    # -- scoring --------------------------------------------------------------------------------------------
    def nll(self, sequences: Sequence[str]) -> np.ndarray:
        """Negative log-likelihood (nats) of each string, end symbol included: higher is less likely."""
        texts = list(sequences)
        out = np.empty(len(texts), dtype=np.float64)
        if not texts:
            return out
        lengths = _lengths(texts)
        for rows in _chunks(lengths, self.order):
            out[rows] = self._nll_chunk([texts[i] for i in rows], lengths[rows])
        return out

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key in the count arrays; a missing key gets the zero row at the end."""
        at = np.searchsorted(self._keys, keys)
        missing = len(self._keys)
        inside = np.minimum(at, missing - 1)
        return np.where(self._keys[inside] == keys, inside, missing)

    def _nll_chunk(self, texts: list[str], lengths: np.ndarray) -> np.ndarray:
        order, pad = self.order, self.order - 1
        keys = _keys(_symbols(texts, lengths, order), order)
        grams, histories = self._look_up(keys)
        probability = self._interpolate(self._base(grams[0]), grams[0], None)
        for k in range(2, order + 1):
            probability = self._interpolate(probability, grams[k - 1], histories[k - 2])
        predicted = np.arange(keys[1].shape[1] - pad)[None, :] <= lengths[:, None]
        return -np.where(predicted, np.log(probability), 0.0).sum(axis=1)

    def _look_up(self, keys: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Count rows of the L-grams ending at each prediction (L = 1..order) and of the L-grams ending just
        before it (L = 1..order-1: the histories); all in one search, each key once."""
        order, pad = self.order, self.order - 1
        # Columns pad-1.. of orders below ``order`` serve both as grams (from pad) and as histories (to -1).
        wanted = [k[:, pad - 1 :] for k in keys[1:order]] + [keys[order][:, pad:]]
        rows = self._find(np.concatenate([w.ravel() for w in wanted]))
        found = np.split(rows, np.cumsum([w.size for w in wanted])[:-1])
        found = [f.reshape(w.shape) for f, w in zip(found, wanted)]
        grams = [f[:, 1:] for f in found[:-1]] + [found[-1]]
        histories = [f[:, :-1] for f in found[:-1]]
        return grams, histories

    def _base(self, unigram: np.ndarray) -> np.ndarray:
        """P_0: add-one over the seen symbols plus one unknown symbol."""
        return (self._gram[unigram] + 1.0) / (self._total + self._alphabet + 1.0)

    def _interpolate(self, lower: np.ndarray, gram: np.ndarray, history: np.ndarray | None) -> np.ndarray:
        """P_k from P_{k-1}; ``history`` None is the empty history of order 1 (all N predictions)."""
        if history is None:
            return (self._gram[gram] + self._alphabet * lower) / (self._total + self._alphabet)
        seen, types = self._context[history], self._types[history]
        # An unseen history (count 0) has no followers either: keep the lower order rather than divide 0 by 0.
        denominator = np.where(seen > 0, seen + types, 1.0)
        return np.where(seen > 0, (self._gram[gram] + types * lower) / denominator, lower)

    # -- saving ---------------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Numeric arrays only (``np.savez``, then ``np.load(..., allow_pickle=False)``)."""
        return {"format": np.array(_FORMAT, dtype=np.int64), "order": np.array(self.order, dtype=np.int64),
                "keys": self._keys.copy(), "gram": self._gram[:-1].astype(np.int64),
                "context": self._context[:-1].astype(np.int64), "types": self._types[:-1].astype(np.int64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> CharNgramModel:
        """The model ``to_arrays`` describes; ValueError if they do not describe one."""
        missing = {"format", "order", "keys", "gram", "context", "types"} - set(arrays)
        if missing:
            raise ValueError(f"not a CharNgramModel: missing arrays {sorted(missing)}")
        if int(arrays["format"]) != _FORMAT:
            raise ValueError(f"CharNgramModel arrays of format {int(arrays['format'])}, expected {_FORMAT}")
        keys = np.asarray(arrays["keys"], dtype=np.uint64)
        counts = [np.asarray(arrays[name], dtype=np.int64) for name in ("gram", "context", "types")]
        if any(c.shape != keys.shape for c in counts) or keys.ndim != 1 or np.any(keys[1:] <= keys[:-1]):
            raise ValueError("not a CharNgramModel: keys must be strictly increasing, one count of each per key")
        order = int(arrays["order"])
        if order < 1 or not np.any(keys == _empty_key()):
            raise ValueError("not a CharNgramModel: needs order >= 1 and the counts of the empty history")
        return cls(order, keys, *counts)


def _count_chunk(texts: list[str], lengths: np.ndarray, order: int) -> tuple[np.ndarray, ...]:
    """Every predicted gram of the chunk (orders 1..order) with its history, counted per distinct gram."""
    pad = order - 1
    keys = _keys(_symbols(texts, lengths, order), order)
    predicted = np.arange(keys[1].shape[1] - pad)[None, :] <= lengths[:, None]
    empty = np.broadcast_to(_empty_key(), predicted.shape)
    grams = [keys[k][:, pad:][predicted] for k in range(1, order + 1)]
    histories = [empty[predicted]] + [keys[k - 1][:, pad - 1 : -1][predicted] for k in range(2, order + 1)]
    return _merge(np.concatenate(grams), np.ones(int(predicted.sum()) * order, dtype=np.int64),
                  np.concatenate(histories))


def _merge(grams: np.ndarray, counts: np.ndarray, histories: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sum the counts of equal gram keys (a gram's key fixes its history's key, so any one of them is kept)."""
    by_key = np.argsort(grams, kind="stable")
    grams, counts, histories = grams[by_key], counts[by_key], histories[by_key]
    starts = np.flatnonzero(np.concatenate(([True], grams[1:] != grams[:-1])))
    return grams[starts], np.add.reduceat(counts, starts), histories[starts]


def _table(grams: np.ndarray, counts: np.ndarray, histories: np.ndarray) -> tuple[np.ndarray, ...]:
    """One sorted key array for grams and histories, with C(gram), C(history) and N1+(history .) per key."""
    by_history = np.argsort(histories, kind="stable")
    sorted_histories = histories[by_history]
    starts = np.flatnonzero(np.concatenate(([True], sorted_histories[1:] != sorted_histories[:-1])))
    history_keys = sorted_histories[starts]
    history_counts = np.add.reduceat(counts[by_history], starts)
    history_types = np.diff(np.append(starts, len(histories)))
    keys = np.union1d(grams, history_keys)
    gram, context, types = (np.zeros(len(keys), dtype=np.int64) for _ in range(3))
    gram[np.searchsorted(keys, grams)] = counts
    at = np.searchsorted(keys, history_keys)
    context[at], types[at] = history_counts, history_types
    return keys, gram, context, types
