"""Training time at the seed's data size: 250,000 sequences, default settings, all cores.

    python bench/train.py [--rows 250000] [--formats serial residues]

Prints, per format, the wall-clock seconds of ``monitor.core.train.train`` (preparation, fitting with early
stopping, training errors, then the formats and the fused score's calibrations, whose share is shown) and the
epochs it ran, next to the time of one epoch of the seed recipe on the same data (with the error alone as its
score, so no n-gram model) as the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time

from monitor.core.model import ModelSettings
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.train import TrainSettings, train
from monitor.devtools import generate

SEED_RECIPE_ONE_EPOCH = TrainSettings(
    prepare=PrepareSettings(tokenize="separators", lowercase=True, encoding="bag", length=4),
    model=ModelSettings(loss="mse", bottleneck=16, epochs=1, validation_split=0.0),
    signals=("autoencoder",),
)


def timed(corpus: list[str], settings: TrainSettings) -> tuple[float, int, float]:
    """Wall-clock seconds, epochs, and the seconds after the network's training (formats, fusion)."""
    started = time.perf_counter()
    bundle = train(corpus, settings, verbose=0)
    seconds = time.perf_counter() - started
    return seconds, int(bundle.metadata["history"]["epochs"]), seconds - float(bundle.metadata["training_seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--formats", nargs="+", default=["serial", "residues"], choices=list(generate.FORMATS))
    args = parser.parse_args(argv)
    for fmt in args.formats:
        corpus = generate.sample(fmt, args.rows)
        seconds, epochs, fusion = timed(corpus, TrainSettings())
        seed_seconds, _, _ = timed(corpus, SEED_RECIPE_ONE_EPOCH)
        print(f"{fmt:9} {args.rows:,} rows: default training {seconds:6.1f}s ({epochs} epochs, "
              f"{(seconds - fusion) / epochs:.1f}s per epoch; formats and fused score {fusion:.1f}s); "
              f"seed recipe, one epoch: {seed_seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
