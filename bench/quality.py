"""Detection quality on generated tasks: the project's fused default against references, in one run.

    python bench/quality.py [--rows 20000] [--formats serial uid residues plate] [--corpora mixed logs]
                            [--methods fused autoencoder seed iforest shape ngram shape_lm] [--json out.json]

Two groups of tasks, each model trained on normal sequences only:

- per format (``monitor.devtools.generate``): one identifier format; each task mixes held-out normal
  sequences with one kind of anomaly (another format, or a realistic corruption);
- per corpus (``monitor.devtools.corpora``): ``mixed``, one column of 13 identifier families whose weights
  span three orders of magnitude, with the kinds ``rare_valid_vs_unseen`` (the normal test rows
  over-represent the rare families; the anomalies are unseen token structures of the same mix),
  ``char_edit_same_shape`` (a value made impossible without changing its shape) and ``foreign_format``;
  ``logs``, log-message contents from 30 templates of very different frequency, with the kinds
  ``rare_valid_vs_unseen``, ``unseen_template``, ``field_type_change`` and ``char_edit_same_shape`` (a
  template word or HTTP method misspelled, same shape).

Methods, in this order (``--methods`` picks some):

- ``fused``       the project's default score, ``Scorer(bundle).score(xs).fused``: autoencoder error, rarity
                  of the format and character n-gram likelihood in one (``n/a`` if the scores lack it);
- ``autoencoder`` the same bundle's reconstruction error, ``.score(xs).errors``;
- ``seed``        the seed article's recipe: lower-cased separator tokens, multi-hot bag of a 750-token
                  vocabulary, dense 750->64->16->64->750 trained on mean squared error;
- ``iforest``     scikit-learn's IsolationForest on character 1-3-gram counts, plus the length and the
                  number of n-grams never seen in training;
- ``shape``       string-shape frequency: letters->A, digits->9, other characters kept; the rarer the
                  shape was in training, the more abnormal;
- ``ngram``       a character 5-gram language model with interpolated Witten-Bell smoothing
                  (``monitor.core.ngram``); the score is the string's negative log-likelihood;
- ``shape_lm``    the two cheapest references together, the obvious ensemble: the shape's frequency (score
                  1 - training share) and the 5-gram model's negative log-likelihood, each made an upper-tail
                  probability on the training data (``TailCalibration``; the model's values cross-fitted on
                  two halves, so they are held out), score ``-log p_shape - log p_lm``.

Prints AUROC, average precision and precision@k (k = number of anomalies) per task and method, the median
of each method over tasks, then for each reference the tasks ``fused`` wins (AUROC and AP both higher), ties
(both metrics at >= 0.9995 for both) and loses (named). Timings go to stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import sparse
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.core.model import ModelSettings
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.score import Scorer, Scores
from monitor.core.train import TrainSettings, train
from monitor.devtools import corpora, generate

Scorer_ = Callable[[Sequence[str]], np.ndarray]
Metrics = dict[str, float]
METHODS = ("fused", "autoencoder", "seed", "iforest", "shape", "ngram", "shape_lm")
PROJECT_METHODS = ("fused", "autoencoder")  # both read one trained bundle
CEILING = 0.9995  # both methods at or above it on both metrics: a tie, nothing left to win


class ProjectScores:
    """One bundle trained with default settings, scored once per batch for both of its scores."""

    def __init__(self, corpus: list[str], seed: int) -> None:
        self.scorer = Scorer(train(corpus, TrainSettings(model=ModelSettings(seed=seed)), verbose=0))
        self._last: tuple[Sequence[str], Scores] | None = None

    def score(self, xs: Sequence[str]) -> Scores:
        if self._last is None or self._last[0] is not xs:
            self._last = (xs, self.scorer.score(xs))
        return self._last[1]

    def errors(self, xs: Sequence[str]) -> np.ndarray:
        return self.score(xs).errors

    def fused(self, xs: Sequence[str]) -> np.ndarray:
        return self.score(xs).fused

    def has_fused(self, probe: Sequence[str]) -> bool:
        """Whether this version of ``Scores`` gives a fused score (it is missing before the fusion exists)."""
        try:
            return len(self.scorer.score(probe).fused) == len(probe)
        except (AttributeError, ValueError):
            return False


def seed_method(corpus: list[str], seed: int) -> Scorer_:
    lengths = Counter(len(s.replace("-", " ").split()) for s in corpus)
    settings = TrainSettings(
        prepare=PrepareSettings(tokenize="separators", lowercase=True, encoding="bag",
                                length=lengths.most_common(1)[0][0]),
        model=ModelSettings(hidden=(64,), bottleneck=16, loss="mse", seed=seed),
    )
    return Scorer(train(corpus, settings, verbose=0)).errors


def iforest_method(corpus: list[str], seed: int) -> Scorer_:
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False).fit(corpus)
    known = set(vectorizer.vocabulary_)

    def features(xs: Sequence[str]) -> np.ndarray:
        # Counts alone make a string of unseen n-grams an all-zero, very "normal" row; its length and its
        # number of unseen n-grams give the forest something to isolate it by.
        extra = np.array([[len(s), sum(g not in known for g in _ngrams(s))] for s in xs], dtype=np.float32)
        # float32, densified once: the forest works in float32 anyway (so the scores are the same), and
        # the corpora have ~7,000 n-grams, too many for a float64 copy of 20,000 rows.
        return sparse.hstack([vectorizer.transform(list(xs)), extra], format="csr", dtype=np.float32).toarray()

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(features(corpus))
    return lambda xs: -forest.score_samples(features(xs))


def _ngrams(text: str) -> list[str]:
    return [text[i: i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1)]


def shape_method(corpus: list[str], seed: int) -> Scorer_:
    counts = Counter(map(generate.shape_key, corpus))
    n = len(corpus)
    return lambda xs: np.array([-math.log((counts.get(generate.shape_key(s), 0) + 1) / (n + 1)) for s in xs])


def ngram_method(corpus: list[str], seed: int) -> Scorer_ | None:
    try:  # written alongside this benchmark: an older tree does not have it yet
        from monitor.core.ngram import CharNgramModel
    except ImportError as exc:
        print(f"  ngram: n/a ({exc})", file=sys.stderr)
        return None
    model = CharNgramModel.fit(corpus, order=5)
    return lambda xs: np.asarray(model.nll(list(xs)), dtype=np.float64)


def shape_lm_method(corpus: list[str], seed: int) -> Scorer_ | None:
    try:
        from monitor.core.fusion import TailCalibration
        from monitor.core.ngram import CharNgramModel
    except ImportError as exc:
        print(f"  shape_lm: n/a ({exc})", file=sys.stderr)
        return None
    counts = Counter(map(generate.shape_key, corpus))
    n = len(corpus)

    def rarity(xs: Sequence[str]) -> np.ndarray:
        return np.array([1.0 - counts.get(generate.shape_key(s), 0) / n for s in xs])

    shape_tail = TailCalibration.fit(rarity(corpus))
    halves = np.arange(n) % 2 == 1
    held_out = np.empty(n)
    for out in (halves, ~halves):
        model = CharNgramModel.fit([s for s, o in zip(corpus, out) if not o], order=5)
        held_out[out] = model.nll([s for s, o in zip(corpus, out) if o])
    lm_tail = TailCalibration.fit(held_out)
    lm = CharNgramModel.fit(corpus, order=5)
    return lambda xs: -np.log(shape_tail.p(rarity(xs))) - np.log(lm_tail.p(np.asarray(lm.nll(list(xs)))))


BUILDERS: dict[str, Callable[[list[str], int], Scorer_ | None]] = {
    "seed": seed_method, "iforest": iforest_method, "shape": shape_method, "ngram": ngram_method,
    "shape_lm": shape_lm_method}


def build_methods(names: Sequence[str], corpus: list[str], seed: int, label: str) -> dict[str, Scorer_ | None]:
    """The scorer of each method (None: not available in this tree), trained on ``corpus``."""
    built: dict[str, Scorer_ | None] = {}
    project: ProjectScores | None = None
    for name in names:
        started = time.perf_counter()
        if name in PROJECT_METHODS:
            if project is None:
                project = ProjectScores(corpus, seed)
                print(f"  {label}: {'+'.join(n for n in PROJECT_METHODS if n in names)} trained in "
                      f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
                fusion = project.scorer.bundle.fusion
                if hasattr(fusion, "weights_note"):  # learned weights: not in older trees
                    print(f"  {label}: fused score's signals: {fusion.weights_note()}", file=sys.stderr)
            if name == "autoencoder":
                built[name] = project.errors
            elif project.has_fused(corpus[:2]):
                built[name] = project.fused
            else:
                print(f"  {label}: fused n/a (Scores has no fused score in this tree)", file=sys.stderr)
                built[name] = None
            continue
        built[name] = BUILDERS[name](corpus, seed)
        print(f"  {label}: {name} trained in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return built


def evaluate(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    k = int(labels.sum())
    top = np.argsort(-scores, kind="stable")[:k]
    return {"auroc": float(roc_auc_score(labels, scores)),
            "ap": float(average_precision_score(labels, scores)),
            "p_at_k": float(labels[top].mean())}


class Source(NamedTuple):  # not a dataclass: tests load this file without registering it as a module
    """Where one group of tasks comes from: a generated format or a corpus."""

    name: str
    kinds: tuple[str, ...]
    training: Callable[[int, int], list[str]]  # (rows, seed) -> normal sequences
    normal_test: Callable[[str, int, int], list[str]]  # (kind, rows, seed) -> held-out normal sequences
    anomalies: Callable[[str, int, set[str], int], list[str]]  # (kind, n, known normal, seed)


def format_source(fmt: str) -> Source:
    return Source(fmt, generate.ANOMALY_KINDS, functools.partial(generate.sample, fmt),
                  lambda _kind, n, seed: generate.sample(fmt, n, seed), functools.partial(generate.anomalies, fmt))


def corpus_source(corpus: str) -> Source:
    return Source(corpus, corpora.ANOMALY_KINDS[corpus], functools.partial(corpora.sample, corpus),
                  functools.partial(corpora.normal_test, corpus), functools.partial(corpora.anomalies, corpus))


def run_source(source: Source, methods: Sequence[str], rows: int, test_rows: int, per_kind: int,
               seed: int) -> list[dict[str, object]]:
    corpus = source.training(rows, seed)
    scorers = build_methods(methods, corpus, seed, source.name)
    # Most kinds share one normal test set; rare_valid_vs_unseen draws its own.
    tests = {kind: source.normal_test(kind, test_rows, seed + 1000) for kind in source.kinds}
    known = set(corpus).union(*tests.values())
    normal_scores: dict[tuple[str, ...], dict[str, np.ndarray | None]] = {}
    results = []
    started = time.perf_counter()
    for kind in source.kinds:
        abnormal = source.anomalies(kind, per_kind, known, seed)
        if len(abnormal) < per_kind // 2:
            continue  # the corruption does not apply to this format (e.g. no separators to drop)
        normal = tests[kind]
        if tuple(normal) not in normal_scores:
            normal_scores[tuple(normal)] = {m: s(normal) if s else None for m, s in scorers.items()}
        labels = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
        row: dict[str, object] = {"format": source.name, "kind": kind, "anomalies": len(abnormal)}
        for name, scorer in scorers.items():
            ours = normal_scores[tuple(normal)][name]
            row[name] = None if scorer is None or ours is None else evaluate(labels, np.r_[ours, scorer(abnormal)])
        results.append(row)
    print(f"  {source.name}: {len(results)} tasks scored in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return results


def verdict(ours: Metrics, theirs: Metrics) -> str:
    if all(ours[m] >= CEILING and theirs[m] >= CEILING for m in ("auroc", "ap")):
        return "tie"
    if all(ours[m] > theirs[m] or ours[m] >= CEILING for m in ("auroc", "ap")):
        return "win"
    return "loss"


def verdicts(results: list[dict[str, object]], methods: Sequence[str]) -> dict[str, Counter[str]]:
    """Per reference: tasks the fused default wins (both metrics higher), ties at the ceiling, and losses."""
    tally: dict[str, Counter[str]] = {}
    for ref in methods:
        if ref == "fused":
            continue
        counter: Counter[str] = Counter()
        for row in results:
            ours, theirs = row["fused"], row[ref]
            if ours is None or theirs is None:
                continue
            outcome = verdict(ours, theirs)  # type: ignore[arg-type]
            counter[outcome] += 1
            if outcome == "loss":
                counter[f"loss: {row['format']}/{row['kind']}"] += 1
        tally[ref] = counter
    return tally


def _cell(metrics: Metrics | None) -> str:
    if metrics is None:
        return f" {'n/a':>17}"
    return f"  {metrics['auroc']:.3f} {metrics['ap']:.3f} {metrics['p_at_k']:.2f}"


def print_table(results: list[dict[str, object]], methods: Sequence[str]) -> None:
    print(f"{'data':9} {'anomaly':24}" + "".join(f" {m:>17}" for m in methods))
    print(f"{'':34}" + "".join(f" {'AUROC   AP  P@k':>17}" for _ in methods))
    for row in results:
        print(f"{row['format']:9} {row['kind']:24}" + "".join(_cell(row[m]) for m in methods))  # type: ignore[arg-type]
    print()
    for m in methods:
        scored = [r[m] for r in results if r[m] is not None]
        if not scored:
            print(f"median over tasks  {m:11} n/a")
            continue
        auroc = statistics.median(s["auroc"] for s in scored)  # type: ignore[index]
        ap = statistics.median(s["ap"] for s in scored)  # type: ignore[index]
        print(f"median over tasks  {m:11} AUROC {auroc:.3f}  AP {ap:.3f}")
    print()
    print_verdicts(results, methods)


def print_verdicts(results: list[dict[str, object]], methods: Sequence[str]) -> None:
    if "fused" not in methods or all(r["fused"] is None for r in results):
        print("fused: not run or not available, no wins or losses to count")
        return
    for ref, counter in verdicts(results, methods).items():
        if not sum(counter.values()):
            print(f"fused vs {ref:11}: n/a")
            continue
        losses = sorted(k[6:] for k in counter if k.startswith("loss: "))
        print(f"fused vs {ref:11}: {counter['win']} wins, {counter['tie']} ties at 1.0, {counter['loss']} losses"
              + (f" ({', '.join(losses)})" if losses else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows per format or corpus")
    parser.add_argument("--test-rows", type=int, default=2_000, help="held-out normal rows per task")
    parser.add_argument("--per-kind", type=int, default=200, help="anomalies per task")
    parser.add_argument("--formats", nargs="*", default=list(generate.FORMATS), choices=list(generate.FORMATS),
                        help="generated formats (none: only the corpora)")
    parser.add_argument("--corpora", nargs="*", default=list(corpora.ANOMALY_KINDS),
                        choices=list(corpora.ANOMALY_KINDS), help="mixed corpora (none: only the formats)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="methods to run (printed in the standard order)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    methods = [m for m in METHODS if m in args.methods]
    sources = [format_source(f) for f in args.formats] + [corpus_source(c) for c in args.corpora]
    started = time.perf_counter()
    results = [row for source in sources
               for row in run_source(source, methods, args.rows, args.test_rows, args.per_kind, args.seed)]
    print(f"total {time.perf_counter() - started:.0f}s", file=sys.stderr)
    print_table(results, methods)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
