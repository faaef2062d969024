"""Keeping the model current: load a newly published bundle, and retrain on recent normal records.

A published bundle is validated completely (checksums, format, Keras safe mode) before it is offered to the
service, which swaps it in between two batches; a broken one is logged and the current model stays. Retraining
learns only from records the current model scored normal, so a slow legitimate drift becomes the new normal
while an abrupt drift (scored abnormal) is kept out of the training data and still reported.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.errors import MonitorError
from monitor.stream.hooks import NoHooks
from monitor.stream.pipeline import BatchResult

log = logging.getLogger(__name__)


class BundleWatcher:
    """Checks ``path`` for a bundle whose version differs from the one in use and offers it."""

    def __init__(self, path: Path, current_version: str, offer: Callable[[Scorer], None],
                 adjust: Callable[[Bundle], Bundle] = lambda bundle: bundle) -> None:
        self.path = Path(path)
        self.current_version = current_version
        self.offer = offer
        self.adjust = adjust  # e.g. the configured threshold, applied to every bundle loaded
        self._refused: str | None = None

    def check(self) -> bool:
        """Offer a new bundle if one is published; returns whether it did."""
        version = published_version(self.path)
        if version is None or version in (self.current_version, self._refused):
            return False
        try:
            scorer = Scorer(self.adjust(bundle_lib.load(self.path)))
        except Exception as exc:  # a bundle that fails in any way is refused once, not retried every check
            log.warning("a new bundle at %s was refused, keeping %s: %s", self.path, self.current_version, exc)
            self._refused = version
            return False
        self.current_version = scorer.bundle.version
        self.offer(scorer)
        return True


def published_version(path: Path) -> str | None:
    """The version named in a bundle's manifest, without loading the model (``None`` if unreadable)."""
    try:
        manifest = json.loads((Path(path) / bundle_lib.MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["metadata"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Retrainer:
    """Keeps the newest ``max_records`` normal-scored sequences and retrains from them on request."""

    def __init__(self, current: Callable[[], Any], output: Path, min_records: int, max_records: int) -> None:
        self.current = current  # returns the bundle in use (its settings are reused)
        self.output = Path(output)
        self.min_records = min_records
        self.recent: deque[str] = deque(maxlen=max_records)
        self._lock = threading.Lock()

    def keep_normal(self, sequences: Sequence[str], flags: np.ndarray) -> None:
        with self._lock:
            self.recent.extend(s for s, flag in zip(sequences, flags) if not flag)

    def retrain(self) -> bool:
        """Train on the kept sequences and publish the bundle; ``False`` when too few are kept."""
        with self._lock:
            corpus = list(self.recent)
        if len(corpus) < self.min_records:
            log.info("retraining skipped: %d normal records kept, %d needed", len(corpus), self.min_records)
            return False
        try:
            fresh = train(corpus, settings_of(self.current()), verbose=0)
            bundle_lib.save(fresh, self.output)
        except MonitorError as exc:
            log.warning("retraining failed; the current model stays: %s", exc)
            return False
        log.info("retrained on %d recent normal records: bundle %s published to %s", len(corpus), fresh.version,
                 self.output)
        return True


class KeepNormal(NoHooks):
    """Feeds a retrainer the sequences each batch scored normal."""

    def __init__(self, retrainer: Retrainer) -> None:
        self.retrainer = retrainer

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        self.retrainer.keep_normal(result.decoded.sequences, result.flags)


def settings_of(bundle: Any) -> TrainSettings:
    """The training settings a bundle was made with (so a retrain keeps its preparation and network)."""
    saved = bundle.metadata.get("model", {})
    names = {f.name for f in fields(ModelSettings)}
    model = {k: (tuple(v) if k == "hidden" else v) for k, v in saved.items() if k in names}
    return TrainSettings(prepare=bundle.preparer.settings, model=ModelSettings(**model),
                         threshold_quantile=bundle.threshold_quantile)
