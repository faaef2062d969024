"""Training: a corpus of strings becomes a bundle (preparation, network, training errors, thresholds)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from monitor.core import model as model_lib
from monitor.core.bundle import Bundle, thresholds_for
from monitor.core.fusion import DEFAULT_SIGNALS, SIGNALS, HeldOut, fit_fusion
from monitor.core.prepare import Preparer
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.score import Scorer
from monitor.errors import ConfigError, InputError

log = logging.getLogger(__name__)

MIN_TRAINING_ROWS = 20
REPORTED_QUANTILES = (0.9, 0.95, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class TrainSettings:
    """What ``train`` needs beyond the corpus: preparation, network, the flagging quantile and the signals
    the fused score combines (``monitor.core.fusion``).

    ``threshold_quantile``: a sequence is flagged abnormal when its error exceeds this quantile of the
    training errors, so about ``1 - threshold_quantile`` of normal traffic is flagged.
    """

    prepare: PrepareSettings = field(default_factory=PrepareSettings)
    model: model_lib.ModelSettings = field(default_factory=model_lib.ModelSettings)
    threshold_quantile: float = 0.99
    signals: tuple[str, ...] = DEFAULT_SIGNALS

    def __post_init__(self) -> None:
        if not self.signals or not set(self.signals) <= set(SIGNALS):
            raise ConfigError(f"signals must be some of {', '.join(SIGNALS)}, got {list(self.signals)}")
        if not 0.5 <= self.threshold_quantile < 1:
            raise ConfigError(f"threshold_quantile must be in [0.5, 1), got {self.threshold_quantile}")
        if self.model.kind == "lstm" and self.prepare.encoding != "positional":
            raise ConfigError("the lstm model needs the positional encoding (a bag has no order to read)")


def train(corpus: Sequence[str], settings: TrainSettings | None = None, verbose: int | None = None) -> Bundle:
    """Fit preparation and autoencoder on ``corpus`` (empty strings are skipped and counted)."""
    settings = settings or TrainSettings()
    sequences = [s for s in corpus if s]
    _check_corpus(sequences, skipped=len(corpus) - len(sequences))
    started = time.perf_counter()
    preparer = Preparer.fit(sequences, settings.prepare)
    x = preparer.encode(sequences)
    log.info("prepared %d sequences: mode=%s length=%d features=%d", len(sequences), preparer.mode,
             preparer.length, preparer.width)
    network = model_lib.build(settings.model, preparer.width, preparer.steps)
    history = model_lib.fit(network, x, settings.model, verbose=verbose)
    bundle = Bundle(preparer, network, np.empty(0), settings.threshold_quantile, {})
    scorer = Scorer(bundle)
    row_errors = scorer.errors(sequences)
    errors = np.sort(row_errors)
    quantiles = tuple(sorted({*REPORTED_QUANTILES, settings.threshold_quantile}))
    bundle.training_errors = errors
    bundle.thresholds = thresholds_for(errors, quantiles)
    bundle.metadata = _metadata(sequences, len(corpus) - len(sequences), settings, preparer, history,
                                time.perf_counter() - started)
    bundle.metadata["training_errors"] = error_summary(errors)
    # The network's validation rows, never fitted on, against their corruptions: what weighs each signal.
    held_out = HeldOut(model_lib.held_out_rows(len(sequences), settings.model), scorer.errors, settings.model.seed)
    bundle.fusion = fit_fusion(sequences, row_errors, settings.signals, held_out=held_out)
    bundle.metadata["formats"] = len(bundle.fusion.formats.counts) + bundle.fusion.formats.tail_formats
    return bundle


def best_epoch(history: Mapping[str, Any]) -> int | None:
    """The epoch (from 1) of the first lowest finite validation loss, whose weights training keeps; ``None``
    without a validation loss."""
    val = np.asarray(history.get("val_loss", ()), dtype=float)
    if not np.isfinite(val).any():
        return None
    return int(np.argmin(np.where(np.isfinite(val), val, np.inf))) + 1


def stopped_at_epoch_limit(history: Mapping[str, Any], epoch_limit: int) -> bool:
    """Whether the best epoch is the last one ``epoch_limit`` (``--epochs``) allowed: the validation loss was
    still falling when training had to stop, so it stopped before it converged."""
    return best_epoch(history) == epoch_limit


def error_summary(errors: np.ndarray) -> dict[str, float]:
    """A few quantiles of the training errors, kept in the bundle's metadata (``train --report`` draws them)."""
    points = {"min": 0.0, "median": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999, "max": 1.0}
    return {name: float(np.quantile(errors, q)) for name, q in points.items()}


def _check_corpus(sequences: Sequence[str], skipped: int) -> None:
    if not sequences:
        raise InputError(f"the training input has no sequences ({skipped} empty lines)")
    if len(sequences) < MIN_TRAINING_ROWS:
        raise InputError(f"the training input has {len(sequences)} sequences; at least {MIN_TRAINING_ROWS} "
                         "are needed (a few thousand make a useful model)")
    if len(set(sequences[:10_000])) == 1 and len(set(sequences)) == 1:
        raise InputError(f"every training sequence is {sequences[0]!r}: one distinct value has no format "
                         "to learn; compare with equality instead")


def fingerprint(sequences: Sequence[str]) -> str:
    """SHA-256 of the training sequences in order: two bundles trained on the same data share it."""
    digest = hashlib.sha256()
    for s in sequences:
        digest.update(s.encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return digest.hexdigest()


def _metadata(sequences: Sequence[str], skipped: int, settings: TrainSettings, preparer: Preparer,
              history: dict[str, object], seconds: float) -> dict[str, object]:
    created = datetime.now(timezone.utc)
    data_fingerprint = fingerprint(sequences)
    return {
        "version": f"{created:%Y%m%dT%H%M%SZ}-{data_fingerprint[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "training_rows": len(sequences),
        "skipped_empty_rows": skipped,
        "distinct_sequences": len(set(sequences)),
        "data_fingerprint": data_fingerprint,
        "libraries": model_lib.library_versions(),
        "preparation": {"mode": preparer.mode, "length": preparer.length, "features": preparer.width,
                        "encoding": preparer.settings.encoding},
        "model": asdict(settings.model),
        "history": history,
        "training_seconds": round(seconds, 2),
    }
