"""The ``train`` command: a file of sequences → a model bundle written to a folder, and what the new bundle
is (data, epochs, preparation, and the threshold each score flags by), with charts of it on request.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, best_epoch, stopped_at_epoch_limit, train
from monitor.errors import InputError
from monitor.stream.files import check_skipped_share, read_sequences

log = logging.getLogger("monitor")  # the command line's logger: its lines read "monitor: ..."


def run_train(input_path: Path, input_format: str, column: str | None, model_dir: Path, settings: TrainSettings,
              allow_skipped: float, report: Path | None = None, verbose: bool = False) -> int:
    """``python -m monitor train``: the bundle in ``model_dir``, what it is on standard output, charts in
    ``report``. Refuses a ``model_dir`` that exists and is no bundle, and an input too little of which is
    usable (more than ``allow_skipped`` of its lines that are not blank give no sequence)."""
    if model_dir.exists() and not (model_dir / bundle_lib.MANIFEST).exists():
        raise InputError(f"--model {model_dir} exists and is not a model bundle: name a new folder, or an "
                         "existing bundle to replace")
    sequences, rejected = read_sequences(input_path, input_format, column)
    for row in rejected[:5]:
        log.warning("line %d skipped: %s", row.line, row.problem)
    if rejected:
        log.warning("%d of %d input lines skipped (not usable as sequences)", len(rejected),
                    len(rejected) + len(sequences))
    check_skipped_share(input_path, len(sequences), rejected, allow_skipped)
    bundle = train(sequences, settings, verbose=2 if verbose else 0)  # Keras prints epochs only on -v
    bundle.metadata["skipped_input_lines"] = len(rejected)
    bundle_lib.save(bundle, model_dir)
    fused_threshold = print_trained(bundle)
    print(f"saved bundle {bundle.version} to {model_dir}")
    if report:
        from monitor.charts import training_charts

        for path in training_charts(report, bundle, fused_threshold):
            print(f"chart: {path}")
    return 0


def print_trained(bundle: Bundle) -> float:
    """What ``train`` says of a new bundle: data, epochs, preparation, the thresholds each score flags by (the
    fused score's first: ``score`` and ``rank`` apply it by default), and what each signal weighs in the fused
    score. Returns the fused threshold."""
    # Imported here, not at the top: charts loads the hourly judge, which an input error need not wait for.
    from monitor.charts import epoch_limit_note

    meta, q = bundle.metadata, bundle.threshold_quantile
    best = best_epoch(meta["history"])
    print(f"trained on {meta['training_rows']} sequences ({meta['distinct_sequences']} distinct) in "
          f"{meta['training_seconds']}s, {meta['history']['epochs']} epochs"
          f"{f' (best: epoch {best}, kept)' if best else ''}; {meta['preparation']['mode']} tokens, length "
          f"{meta['preparation']['length']}, {meta['preparation']['features']} features")
    if stopped_at_epoch_limit(meta["history"], meta["model"]["epochs"]):
        print(f"note: {epoch_limit_note(meta['model']['epochs'])} (the validation loss was still falling); more "
              "--epochs may give a better model")
    fused_threshold = Scorer(bundle).fused_threshold
    print(f"threshold of the fused score (what score and rank flag by): {fused_threshold:.6g} = quantile {q:g} "
          "of the training rows' fused scores")
    print(f"threshold of the reconstruction error (--method autoencoder; the hourly windows' above-threshold "
          f"share): {bundle.threshold:.6g} = quantile {q:g} of the training rows' reconstruction errors")
    if bundle.fusion is not None:
        print(f"signals of the fused score (weight, share): {bundle.fusion.weights_note()}")
    return fused_threshold
