"""How much a string's error depends on the batch it is scored in, next to scoring it in one batch.

    python bench/batch_rounding.py [--format serial] [--rows 3000]

Trains a default bundle on generated sequences, scores ``--rows`` others in one batch (the reference), then
again in batches of 1, 7, 64, 500 and 1,000 with a fresh scorer each time, and prints how many errors differ
from the reference and by how much (relative). The model computes in float32, and the kernels TensorFlow
picks, with their order of additions, depend on a batch's row count: the figures say how far a live service's
errors (its batches) can be from replay's or ``score``'s (theirs). Comparisons of a service's hours with
replay's are held to these figures (tests/tolerances.py).

Then the way out not taken: the model called on fixed blocks of ``BLOCKS`` rows (the last one padded with
zeros), every string in every batch size again, with the time a row takes next to one call of all the rows
(median of 5, unpinned).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable

import numpy as np

from monitor.core.model import Reconstructor
from monitor.core.score import Scorer, reconstruction_errors
from monitor.core.train import train
from monitor.devtools import generate

SIZES = (1, 7, 64, 500, 1_000)
BLOCKS = (64, 256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", default="serial", choices=list(generate.FORMATS))
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--train-rows", type=int, default=5_000)
    args = parser.parse_args(argv)

    bundle = train(generate.sample(args.format, args.train_rows), verbose=0)
    sequences = generate.sample(args.format, args.rows, seed=3)
    reference = Scorer(bundle).errors(sequences)
    print(f"{args.rows:,} {args.format} strings; errors scored in batches of each size against one batch of all")
    print(f"{'batch size':>10}  {'errors differing':>16}  {'largest relative difference':>27}")
    for size in SIZES:
        scorer = Scorer(bundle)
        errors = np.concatenate([scorer.errors(sequences[i:i + size]) for i in range(0, len(sequences), size)])
        relative = np.abs(errors - reference) / reference
        print(f"{size:>10,}  {int(np.count_nonzero(relative)):>16,}  {float(relative.max()):>27.2e}")

    x = bundle.preparer.encode(sequences)
    reconstruct = Reconstructor(bundle.model)
    print(f"the model on fixed blocks: errors differing between batch sizes {SIZES}, and time a row")
    print(f"  one call of {len(x):,} rows: {_per_row(lambda: reconstruct(x), len(x)):.2f} us a row")
    for block in BLOCKS:
        def errors(rows: np.ndarray, block: int = block) -> np.ndarray:
            return reconstruction_errors(rows, _blocked(reconstruct, rows, block))

        whole = errors(x)
        differing = sum(int(np.count_nonzero(np.concatenate([errors(x[i:i + size]) for i in
                                                             range(0, len(x), size)]) != whole)) for size in SIZES)
        print(f"  blocks of {block:>4} rows: {differing:,} errors differing, "
              f"{_per_row(lambda block=block: _blocked(reconstruct, x, block), len(x)):.2f} us a row")
    return 0


def _blocked(reconstruct: Reconstructor, x: np.ndarray, block: int) -> np.ndarray:
    padded = np.concatenate([x, np.zeros(((-len(x)) % block, x.shape[1]), dtype=x.dtype)])
    return np.concatenate([reconstruct(padded[i:i + block]) for i in range(0, len(padded), block)])[: len(x)]


def _per_row(work: Callable[[], object], rows: int, repeats: int = 5) -> float:
    """Median microseconds a row over ``repeats`` timed runs, after one warm-up."""
    work()
    return statistics.median(timeit.repeat(work, number=1, repeat=repeats)) / rows * 1e6


if __name__ == "__main__":
    sys.exit(main())
