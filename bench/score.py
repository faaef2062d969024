"""Batch scoring throughput on one core, next to the seed's way of scoring, in the same run.

    python bench/score.py [--formats serial uid] [--rows 200000] [--batch 5000] [--repeats 5]

For each format (serials, which repeat, and user ids, which mostly do not), trains a default (dense) bundle
on generated sequences, pins this process to one CPU core with one TensorFlow and BLAS thread, then times:

- ``monitor``  ``Scorer.score`` over batches of ``--batch`` (the service's ``batch.max_records``):
               preparation, reconstruction, error, flag; ``cold``: the memos of errors and encodings emptied
               before each run (every distinct string scored afresh, as in a new process), ``warm``: kept
               from the run before (a stream of identifiers seen before);
- ``fused``    ``Scorer.score(batch).fused`` over the same batches (warm): the above plus the fused score (format
               rarity, n-gram likelihood, calibrations and their weighted sum), what ``score`` and ``rank`` give;
- ``prepare``  preparation alone (cold and warm), the float32 matrix included (``encode``) and not (the feature
               indices, all the path from indices needs);
- ``model``    the model alone (where the time goes): ``TensorFlow`` its forward pass and the error over the
               encoded matrix, ``from indices`` the error from the feature indices (``monitor.core.dense_errors``,
               what ``monitor`` runs for a dense model), with how far apart their errors are and how far each
               is from the same model computed in float64;
- ``before``   the reference, measured in the same run: the same, cold, with each new string prepared by one
               Python call (``Preparer._indices_of``, how every string was prepared before batch arrays), a
               memo of encodings that always remembers, no memo of errors, and TensorFlow's forward pass;
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
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from monitor.core.bundle import Bundle  # noqa: E402
from monitor.core.dense_errors import DenseErrors  # noqa: E402
from monitor.core.model import Reconstructor, dense_layers  # noqa: E402
from monitor.core.prepare import Preparer  # noqa: E402
from monitor.core.row_memo import RowMemo  # noqa: E402
from monitor.core.score import Scorer, reconstruction_errors  # noqa: E402
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
    parser.add_argument("--formats", nargs="+", default=["serial", "uid"], choices=list(generate.FORMATS))
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=200_000, help="sequences scored per timed run")
    parser.add_argument("--seed-rows", type=int, default=300, help="sequences for the one-call-each way")
    parser.add_argument("--batch", type=int, default=5_000, help="sequences per Scorer.score call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    core = pin_to_one_core()
    for fmt in args.formats:
        measure(fmt, args, core)
    return 0


def measure(fmt: str, args: argparse.Namespace, core: int) -> None:
    bundle = train(generate.sample(fmt, args.train_rows), verbose=0)
    sequences = generate.sample(fmt, args.rows, seed=1)
    batches = [sequences[i:i + args.batch] for i in range(0, len(sequences), args.batch)]
    scorer = Scorer(bundle)
    reconstruct = Reconstructor(bundle.model)
    encoded = bundle.preparer.encode(sequences)
    active = bundle.preparer.active_features(sequences)
    dense = DenseErrors.of(dense_layers(bundle.model), bundle.preparer.repeats_features)
    few = sequences[: args.seed_rows]

    def seed_way() -> None:  # the notebook: prepare and predict one sequence at a time
        for s in few:
            bundle.model.predict(bundle.preparer.encode([s]), verbose=0)

    def cold(work: Callable[[], object]) -> Callable[[], object]:
        return lambda: (scorer.forget(), work())

    def scored(with_scorer: Scorer = scorer) -> None:
        for batch in batches:
            with_scorer.score(batch)

    def fused() -> None:
        for batch in batches:
            scorer.score(batch).fused  # noqa: B018 - computed on first use: this is what is timed

    def prepared(preparer: Preparer = bundle.preparer) -> None:
        for batch in batches:
            preparer.encode(batch)

    def indices() -> None:
        for batch in batches:
            bundle.preparer.active_features(batch)

    def tensorflow_errors() -> np.ndarray:
        return reconstruction_errors(encoded, reconstruct(encoded))

    before = one_string_at_a_time(bundle.preparer)
    before_scorer = Scorer(dataclasses.replace(bundle, preparer=before))
    before_scorer._errors = RowMemo(0, dtype=np.float64)  # noqa: SLF001 - before errors were remembered
    before_scorer._dense = None  # noqa: SLF001 - and before the errors came from feature indices

    results = {
        "before, cold": rate(lambda: (before.forget(), scored(before_scorer)), args.rows, args.repeats),
        "before, prepare": rate(lambda: (before.forget(), prepared(before)), args.rows, args.repeats),
        "monitor, cold": rate(cold(scored), args.rows, args.repeats),
        "monitor, warm": rate(scored, args.rows, args.repeats),
        "fused, warm": rate(fused, args.rows, args.repeats),
        "prepare, cold": rate(cold(prepared), args.rows, args.repeats),
        "prepare, warm": rate(prepared, args.rows, args.repeats),
        "indices, cold": rate(cold(indices), args.rows, args.repeats),
        "model, TensorFlow": rate(tensorflow_errors, args.rows, args.repeats),
        "seed": rate(seed_way, len(few), max(1, args.repeats // 2)),
    }
    if dense is not None:
        results["model, from indices"] = rate(lambda: dense.errors(active), args.rows, args.repeats)
    print(f"format {fmt}: {bundle.preparer.mode} tokens, {bundle.preparer.width} features; "
          f"{len(set(sequences)):,} distinct among {args.rows:,}, in batches of {args.batch:,}; pinned to CPU "
          f"core {core}, one thread; median of {args.repeats} runs")
    for name, value in results.items():
        print(f"  {name:19} {value:12,.0f} sequences/s")
    print(f"  monitor / seed way: {results['monitor, cold'] / results['seed']:,.0f}x cold, "
          f"{results['monitor, warm'] / results['seed']:,.0f}x warm")
    print(f"  monitor / before, cold: {results['monitor, cold'] / results['before, cold']:.2f}x scoring, "
          f"{results['prepare, cold'] / results['before, prepare']:.2f}x preparing")
    if dense is not None:
        expected = tensorflow_errors()
        apart = np.abs(dense.errors(active) - expected) / expected
        with_matrix = 1 / results["prepare, cold"] + 1 / results["model, TensorFlow"]
        with_indices = 1 / results["indices, cold"] + 1 / results["model, from indices"]
        print(f"  model from indices / TensorFlow: {results['model, from indices'] / results['model, TensorFlow']:.2f}x, "
              f"{with_matrix / with_indices:.2f}x with each one's preparation (indices, cold, against the matrix)")
        print(f"  their errors apart (relative): {_spread(apart)}; errors from {expected.min():.1e} to "
              f"{expected.max():.1e}")
        sample = slice(0, 20_000)
        exact = float64_errors(bundle, encoded[sample])
        for name, errors in (("TensorFlow", expected[sample]), ("from indices", dense.errors(active[sample]))):
            print(f"  {name} against the same model in float64 (20,000 rows): "
                  f"{_spread(np.abs(errors - exact) / exact)}")


def _spread(relative: np.ndarray) -> str:
    return (f"median {np.median(relative):.1e}, 99th percentile {np.quantile(relative, 0.99):.1e}, "
            f"largest {relative.max():.1e}")


def float64_errors(bundle: Bundle, x: np.ndarray) -> np.ndarray:
    """The dense model's errors on ``x`` in float64 throughout (a one's residual as ``sigmoid(-z)``): the
    reference both float32 paths are held to."""
    *hidden, last = dense_layers(bundle.model) or []
    h = x.astype(np.float64)
    for layer in hidden:
        h = np.maximum(h @ layer.weights.astype(np.float64) + layer.bias, 0.0)
    logits = h @ last.weights.astype(np.float64) + last.bias
    residuals = 1.0 / (1.0 + np.exp(np.where(x > 0, logits, -logits)))
    return np.mean(np.square(residuals), axis=1)


class _OneByOne:
    """Rows prepared one string at a time, as before batch arrays."""

    def __init__(self, preparer: Preparer) -> None:
        self.preparer = preparer

    def indices(self, sequences: list[str]) -> np.ndarray:
        rows = [self.preparer._indices_of(s) for s in sequences]  # noqa: SLF001 - the reference path
        return np.array(rows, dtype=np.int32).reshape(len(sequences), -1)


def one_string_at_a_time(preparer: Preparer) -> Preparer:
    """A copy of ``preparer`` preparing each new string by one Python call, with a memo that never stops
    remembering: the reference the batch preparation is measured against."""
    copy = Preparer.from_dict(preparer.to_dict())
    copy._batch = _OneByOne(copy)  # type: ignore[assignment]  # noqa: SLF001
    copy._memo._observe = lambda found, looked_up: None  # type: ignore[method-assign]  # noqa: SLF001
    return copy


if __name__ == "__main__":
    sys.exit(main())
