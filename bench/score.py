"""Batch scoring throughput on one core, next to the seed's way of scoring, in the same run.

    python bench/score.py [--format serial] [--rows 200000] [--repeats 5]

Trains a default (dense) bundle on generated sequences, pins this process to one CPU core with one
TensorFlow and BLAS thread, then times:

- ``monitor``  ``Scorer.score`` over batches: preparation, reconstruction, error, flag; ``cold``: the memo
               of encodings emptied before each run (every distinct string prepared afresh), ``warm``: kept
               from the run before (a stream of identifiers seen before);
- ``prepare``  preparation alone (cold and warm), and ``model`` the forward pass alone (where the time goes);
- ``seed``     the seed notebook's way: one ``model.predict`` call per sequence (on a small sample).

Prints the median sequences per second of each over ``--repeats`` runs and the ratio of the monitor to the
seed's way. Figures are medians on a shared machine: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy or TensorFlow start their pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import tensorflow as tf  # noqa: E402

from monitor.core.model import Reconstructor  # noqa: E402
from monitor.core.score import Scorer  # noqa: E402
from monitor.core.train import train  # noqa: E402
from monitor.devtools import generate  # noqa: E402


def pin_to_one_core() -> int:
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return core


def rate(work: Callable[[], object], items: int, repeats: int) -> float:
    """Median items per second of ``work`` over ``repeats`` timed runs (after one warm-up)."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return items / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", default="serial", choices=list(generate.FORMATS))
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=200_000, help="sequences scored per timed run")
    parser.add_argument("--seed-rows", type=int, default=300, help="sequences for the one-call-each way")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    core = pin_to_one_core()
    bundle = train(generate.sample(args.format, args.train_rows), verbose=0)
    sequences = generate.sample(args.format, args.rows, seed=1)
    scorer = Scorer(bundle)
    reconstruct = Reconstructor(bundle.model)
    encoded = bundle.preparer.encode(sequences)
    few = sequences[: args.seed_rows]

    def seed_way() -> None:  # the notebook: prepare and predict one sequence at a time
        for s in few:
            bundle.model.predict(bundle.preparer.encode([s]), verbose=0)

    def cold(work: Callable[[], object]) -> Callable[[], object]:
        return lambda: (bundle.preparer.forget(), work())

    results = {
        "monitor, cold": rate(cold(lambda: scorer.score(sequences)), args.rows, args.repeats),
        "monitor, warm": rate(lambda: scorer.score(sequences), args.rows, args.repeats),
        "prepare, cold": rate(cold(lambda: bundle.preparer.encode(sequences)), args.rows, args.repeats),
        "prepare, warm": rate(lambda: bundle.preparer.encode(sequences), args.rows, args.repeats),
        "model": rate(lambda: reconstruct(encoded), args.rows, args.repeats),
        "seed": rate(seed_way, len(few), max(1, args.repeats // 2)),
    }
    print(f"format {args.format}: {bundle.preparer.mode} tokens, {bundle.preparer.width} features; "
          f"{len(set(sequences)):,} distinct among {args.rows:,}; pinned to CPU core {core}, one thread; "
          f"median of {args.repeats} runs")
    for name, value in results.items():
        print(f"  {name:14} {value:12,.0f} sequences/s")
    print(f"  monitor / seed way: {results['monitor, cold'] / results['seed']:,.0f}x cold, "
          f"{results['monitor, warm'] / results['seed']:,.0f}x warm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
