"""Detection quality on generated tasks: the default model against three references, in one run.

    python bench/quality.py [--rows 20000] [--formats serial uid residues plate] [--json out.json]

For each format a model is trained on normal sequences only; each task mixes held-out normal sequences with
one kind of anomaly (another format, or a realistic corruption) and is scored by:

- ``default``   this project's default settings (positional encoding, dense autoencoder);
- ``seed``      the seed article's recipe: lower-cased separator tokens, multi-hot bag of a 750-token
                vocabulary, dense 750->64->16->64->750 trained on mean squared error;
- ``iforest``   scikit-learn's IsolationForest on character 1-3-gram counts, plus the length and the
                number of n-grams never seen in training;
- ``shape``     string-shape frequency: letters->A, digits->9, other characters kept; the rarer the
                shape was in training, the more abnormal.

Prints AUROC, average precision and precision@k (k = number of anomalies) per task and method, then for each
reference how many tasks the default beats it on in both AUROC and AP (a tie at the ceiling of 1.0 is shown
as a tie, not a win).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.core.model import ModelSettings
from monitor.core.prepare import PrepareSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.devtools import generate

Scorer_ = Callable[[Sequence[str]], np.ndarray]
METHODS = ("default", "seed", "iforest", "shape")


def default_method(corpus: list[str], seed: int) -> Scorer_:
    scorer = Scorer(train(corpus, TrainSettings(model=ModelSettings(seed=seed)), verbose=0))
    return scorer.errors


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
        extra = np.array([[len(s), sum(g not in known for g in _ngrams(s))] for s in xs], dtype=np.float64)
        return np.hstack([vectorizer.transform(list(xs)).toarray(), extra])

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(features(corpus))
    return lambda xs: -forest.score_samples(features(xs))


def _ngrams(text: str) -> list[str]:
    return [text[i: i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1)]


def shape_method(corpus: list[str], seed: int) -> Scorer_:
    counts = Counter(map(generate.shape_key, corpus))
    n = len(corpus)
    return lambda xs: np.array([-math.log((counts.get(generate.shape_key(s), 0) + 1) / (n + 1)) for s in xs])


BUILDERS: dict[str, Callable[[list[str], int], Scorer_]] = {
    "default": default_method, "seed": seed_method, "iforest": iforest_method, "shape": shape_method}


def evaluate(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    k = int(labels.sum())
    top = np.argsort(-scores, kind="stable")[:k]
    return {"auroc": float(roc_auc_score(labels, scores)),
            "ap": float(average_precision_score(labels, scores)),
            "p_at_k": float(labels[top].mean())}


def run_format(fmt: str, rows: int, test_rows: int, per_kind: int, seed: int) -> list[dict[str, object]]:
    corpus = generate.sample(fmt, rows, seed=seed)
    normal_test = generate.sample(fmt, test_rows, seed=seed + 1000)
    known = set(corpus) | set(normal_test)
    scorers = {}
    for name in METHODS:
        started = time.perf_counter()
        scorers[name] = BUILDERS[name](corpus, seed)
        print(f"  {fmt}: {name} trained in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    normal_scores = {name: scorer(normal_test) for name, scorer in scorers.items()}
    results = []
    for kind in generate.ANOMALY_KINDS:
        abnormal = generate.anomalies(fmt, kind, per_kind, known, seed=seed)
        if len(abnormal) < per_kind // 2:
            continue  # the corruption does not apply to this format (e.g. no separators to drop)
        labels = np.r_[np.zeros(len(normal_test)), np.ones(len(abnormal))]
        row: dict[str, object] = {"format": fmt, "kind": kind, "anomalies": len(abnormal)}
        for name, scorer in scorers.items():
            row[name] = evaluate(labels, np.r_[normal_scores[name], scorer(abnormal)])
        results.append(row)
    return results


def verdicts(results: list[dict[str, object]]) -> dict[str, Counter[str]]:
    """Per reference: tasks the default wins (both metrics higher), ties at 1.0, and losses."""
    tally: dict[str, Counter[str]] = {}
    for ref in METHODS[1:]:
        counter: Counter[str] = Counter()
        for row in results:
            ours, theirs = row["default"], row[ref]
            if all(ours[m] >= 0.9995 and theirs[m] >= 0.9995 for m in ("auroc", "ap")):
                counter["tie at 1.0"] += 1
            elif all(ours[m] > theirs[m] or ours[m] >= 0.9995 for m in ("auroc", "ap")):
                counter["win"] += 1
            else:
                counter["loss"] += 1
                counter[f"loss: {row['format']}/{row['kind']}"] += 1
        tally[ref] = counter
    return tally


def print_table(results: list[dict[str, object]]) -> None:
    head = f"{'format':9} {'anomaly':24}" + "".join(f" {m:>17}" for m in METHODS)
    print(head)
    print(f"{'':34}" + "".join(f" {'AUROC   AP  P@k':>17}" for _ in METHODS))
    for row in results:
        cells = "".join(f"  {row[m]['auroc']:.3f} {row[m]['ap']:.3f} {row[m]['p_at_k']:.2f}" for m in METHODS)
        print(f"{row['format']:9} {row['kind']:24}{cells}")
    print()
    for m in METHODS:
        auroc = statistics.median(r[m]["auroc"] for r in results)
        ap = statistics.median(r[m]["ap"] for r in results)
        print(f"median over tasks  {m:8} AUROC {auroc:.3f}  AP {ap:.3f}")
    print()
    for ref, counter in verdicts(results).items():
        losses = sorted(k[6:] for k in counter if k.startswith("loss: "))
        print(f"default vs {ref:8}: {counter['win']} wins, {counter['tie at 1.0']} ties at 1.0, "
              f"{counter['loss']} losses" + (f" ({', '.join(losses)})" if losses else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows per format")
    parser.add_argument("--test-rows", type=int, default=2_000, help="held-out normal rows per format")
    parser.add_argument("--per-kind", type=int, default=200, help="anomalies per task")
    parser.add_argument("--formats", nargs="+", default=list(generate.FORMATS), choices=list(generate.FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results = [row for fmt in args.formats
               for row in run_format(fmt, args.rows, args.test_rows, args.per_kind, args.seed)]
    print_table(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
