"""What the fused score's character n-gram model costs: size in the bundle, fit time and scoring rate, at the
order the fused score picks for the data (``ngram_order_for``) next to the order-5 reference of
``bench/quality.py``, in the same run.

    python bench/ngram.py [--rows 100000] [--batch 5000] [--repeats 5]

For log-message contents (``monitor.devtools.corpora``) and user ids. Scoring rates are medians over
``--repeats`` batches; read the ratios, not the absolute rates (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from monitor.core.fusion import ngram_order_for
from monitor.core.ngram import CharNgramModel
from monitor.devtools import corpora, generate

REFERENCE_ORDER = 5


def measure(corpus: list[str], order: int, batch: int, repeats: int) -> dict[str, float]:
    started = time.perf_counter()
    model = CharNgramModel.fit(corpus, order)
    fit_seconds = time.perf_counter() - started
    size_mb = sum(a.nbytes for a in model.to_arrays().values()) / 1e6
    rates = []
    for r in range(repeats):
        chunk = corpus[r * batch:(r + 1) * batch]
        started = time.perf_counter()
        model.nll(chunk)
        rates.append(len(chunk) / (time.perf_counter() - started))
    return {"size_mb": size_mb, "fit_s": fit_seconds, "rate": statistics.median(rates)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = {"logs": corpora.sample("logs", args.rows, seed=0), "uid": generate.sample("uid", args.rows, seed=0)}
    print(f"{'data':6} {'order':>5} {'size MB':>8} {'fit s':>7} {'nll/s':>9}   ratio to order {REFERENCE_ORDER}")
    for name, corpus in data.items():
        reference = measure(corpus, REFERENCE_ORDER, args.batch, args.repeats)
        order_used = ngram_order_for(corpus)
        ours = measure(corpus, order_used, args.batch, args.repeats)
        for order, m in ((REFERENCE_ORDER, reference), (order_used, ours)):
            print(f"{name:6} {order:>5} {m['size_mb']:8.1f} {m['fit_s']:7.2f} {m['rate']:9,.0f}", end="")
            print(f"   size x{m['size_mb'] / reference['size_mb']:.1f}, rate x{m['rate'] / reference['rate']:.2f}"
                  if order != REFERENCE_ORDER else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
