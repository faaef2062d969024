"""The vectorized character n-gram model computes exactly the interpolated Witten-Bell model it documents."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from monitor.core import ngram
from monitor.core.ngram import CharNgramModel
from monitor.devtools.generate import sample

BOS, EOS, UNKNOWN = "<s>", "</s>", "<unk>"
Symbol = str
History = tuple[Symbol, ...]


class Reference:
    """The same model with dictionaries of tuples, one prediction at a time."""

    def __init__(self, corpus: list[str], order: int) -> None:
        self.order = order
        self.grams: Counter[tuple[Symbol, ...]] = Counter()  # C(h c), every length 1..order
        self.followers: defaultdict[History, set[Symbol]] = defaultdict(set)
        self.histories: Counter[History] = Counter()  # C(h)
        for text in corpus:
            for history, symbol in self.predictions(text):
                for k in range(1, order + 1):
                    h = history[len(history) - (k - 1):]
                    self.grams[(*h, symbol)] += 1
                    self.histories[h] += 1
                    self.followers[h].add(symbol)
        self.total = self.histories[()]
        self.alphabet = len(self.followers[()])

    def predictions(self, text: str) -> list[tuple[History, Symbol]]:
        symbols = [BOS] * (self.order - 1) + list(text) + [EOS]
        return [(tuple(symbols[i - self.order + 1: i]), symbols[i]) for i in range(self.order - 1, len(symbols))]

    def probability(self, history: History, symbol: Symbol) -> float:
        p = (self.grams[(symbol,)] + 1) / (self.total + self.alphabet + 1)
        for k in range(1, self.order + 1):
            h = history[len(history) - (k - 1):]
            seen, types = self.histories[h], len(self.followers[h])
            if seen:
                p = (self.grams[(*h, symbol)] + types * p) / (seen + types)
        return p

    def nll(self, texts: list[str]) -> np.ndarray:
        return np.array([-sum(math.log(self.probability(h, c)) for h, c in self.predictions(t)) for t in texts])


def random_strings(rng: random.Random, n: int, alphabet: str, longest: int) -> list[str]:
    return ["".join(rng.choices(alphabet, k=rng.randint(0, longest))) for _ in range(n)]


IDENTIFIERS = sample("serial", 2000, seed=1) + sample("residues", 500, seed=1)
STRANGE = ["", "", "A", "AB12", "Zürich-7", "日本-123", "a\x00b", "\x00", "AB\x00", "\ud800AB", chr(0x10FFFF),
           "x" * 700, "AB12" * 400, "usr-" + "1" * 40 + "-FR"]


def assert_same(model: CharNgramModel, reference: Reference, texts: list[str]) -> None:
    assert np.allclose(model.nll(texts), reference.nll(texts), rtol=1e-9, atol=0)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_reference_on_identifiers(order: int) -> None:
    model, reference = CharNgramModel.fit(IDENTIFIERS, order), Reference(IDENTIFIERS, order)
    probes = sample("serial", 300, seed=7) + sample("residues", 100, seed=7) + sample("uid", 100, seed=7)
    assert_same(model, reference, probes + STRANGE)


def test_matches_reference_on_random_unicode_strings() -> None:
    rng = random.Random(3)
    alphabet = "ab-_ 09Zéß日本\x00\U0001f600"
    corpus = random_strings(rng, 400, alphabet, 30) + STRANGE
    model, reference = CharNgramModel.fit(corpus, 4), Reference(corpus, 4)
    probes = random_strings(rng, 300, alphabet + "QÅ\u0301", 40) + STRANGE + ["é" * 2000, ""]
    assert_same(model, reference, probes)


def test_small_chunks_give_the_same_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries (sorted by length, a chunk per long string) change nothing, in fitting or scoring."""
    corpus = IDENTIFIERS[:600] + STRANGE
    model = CharNgramModel.fit(corpus, 3)
    probes = sample("serial", 200, seed=9) + STRANGE
    expected = model.nll(probes)
    monkeypatch.setattr(ngram, "_CELLS", 40)
    chunked = CharNgramModel.fit(corpus, 3)
    assert np.allclose(chunked.nll(probes), expected, rtol=1e-12, atol=0)
    assert_same(chunked, Reference(corpus, 3), probes)


@pytest.mark.parametrize("order", [2, 5])
def test_probabilities_sum_to_one(order: int) -> None:
    """For each history, seen or not, P(c | h) over the seen alphabet, the end symbol and the unknown symbol
    sums to 1 (the reference, which the model matches)."""
    reference = Reference(IDENTIFIERS, order)
    symbols = sorted(reference.followers[()])
    assert EOS in symbols and len(symbols) > 20
    histories = {h for text in ["AB123E", "PRO-GLY-GLN", "Qü", ""] for h, _ in reference.predictions(text)}
    histories |= {("-", "G", "L", "Y")[-(order - 1):], ("§",) * (order - 1)}
    for history in histories:
        total = sum(reference.probability(history, c) for c in [*symbols, UNKNOWN])
        assert total == pytest.approx(1.0, abs=1e-12), history


def test_model_probabilities_sum_to_one() -> None:
    """On the model itself, at order 1 where nll(c) - nll("") = -log P(c): seen characters, the end symbol
    and the unknown symbol (any never-seen character) share probability 1."""
    model = CharNgramModel.fit(IDENTIFIERS, 1)
    alphabet = sorted(set("".join(IDENTIFIERS)))
    end = model.nll([""])[0]
    characters = np.exp(end - model.nll(alphabet))
    unknown = np.exp(end - model.nll(["§", "日"]))
    assert unknown[0] == unknown[1]
    assert characters.sum() + np.exp(-end) + unknown[0] == pytest.approx(1.0, abs=1e-12)


def test_normal_strings_score_lower_than_corrupted_ones() -> None:
    model = CharNgramModel.fit(sample("serial", 5000, seed=0), 5)
    normal = sample("serial", 200, seed=11)
    corrupted = [s[:2] + "§" + s[3:] for s in normal]  # a character the corpus never had
    assert np.all(model.nll(corrupted) > model.nll(normal) + 5.0)
    other_format = sample("uid", 200, seed=11)
    assert model.nll(other_format).min() > model.nll(normal).max()


def test_arrays_round_trip_through_npz(tmp_path: Path) -> None:
    model = CharNgramModel.fit(IDENTIFIERS + STRANGE, 5)
    arrays = model.to_arrays()
    assert all(isinstance(a, np.ndarray) and a.dtype.kind in "iuf" for a in arrays.values())
    probes = sample("uid", 200, seed=4) + sample("serial", 200, seed=4) + STRANGE
    again = CharNgramModel.from_arrays(arrays)
    assert again.order == model.order
    assert np.array_equal(again.nll(probes), model.nll(probes))
    path = tmp_path / "ngram.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as loaded:
        restored = CharNgramModel.from_arrays(loaded)
    assert np.array_equal(restored.nll(probes), model.nll(probes))


def test_from_arrays_rejects_other_arrays() -> None:
    arrays = CharNgramModel.fit(["AB1"], 2).to_arrays()
    with pytest.raises(ValueError, match="missing arrays"):
        CharNgramModel.from_arrays({k: v for k, v in arrays.items() if k != "types"})
    with pytest.raises(ValueError, match="strictly increasing"):
        CharNgramModel.from_arrays({**arrays, "keys": arrays["keys"][::-1]})
    with pytest.raises(ValueError, match="order >= 1"):
        CharNgramModel.from_arrays({**arrays, "order": np.array(0)})


def test_fit_on_empty_corpus_raises() -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        CharNgramModel.fit([], 3)
    with pytest.raises(ValueError, match="order must be a positive integer"):
        CharNgramModel.fit(["AB1"], 0)


def test_scores_are_float64_in_input_order() -> None:
    model = CharNgramModel.fit(IDENTIFIERS, 3)
    texts = ["x" * 900, "AB123E", "", "AB123E" + "§" * 50]
    scores = model.nll(texts)
    assert scores.dtype == np.float64 and scores.shape == (4,)
    assert np.allclose(scores, [model.nll([t])[0] for t in texts], rtol=1e-12, atol=0)
    assert model.nll([]).shape == (0,)
