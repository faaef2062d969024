"""Keeping the model current: candidates from a newly published bundle or from retraining, shadowed on the
recent windows' samples before they may take over.

A published bundle is validated completely (checksums, format, Keras safe mode) before it becomes a candidate;
a broken one is logged and the current model stays. A candidate is scored beside the current model on the
samples of the windows in history (``monitor.hourly.shadow``) and promoted only if it judges those hours as
they were judged; the decision goes to the service, which records it and promotes at the next window
boundary. Retraining learns from the samples of windows judged normal, and from accepted formats, so its
corpus survives restarts and an abrupt drift (judged abnormal) stays out of it.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.errors import BundleIncomplete, MonitorError
from monitor.hourly.shadow import ShadowReport, shadow
from monitor.settings import CompareConfig, PromotionConfig
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.state import private_folder

log = logging.getLogger(__name__)


INCOMPLETE_PATIENCE_S = 600.0  # how long a published bundle may stay incomplete (being copied) before it is refused


class BundleWatcher:
    """Checks ``path`` for a bundle whose version was not considered yet and makes it a candidate.

    A bundle whose files are missing or do not match its manifest yet (copied file by file: the manifest
    may land first) is checked again at every check for ``INCOMPLETE_PATIENCE_S``, then refused; a bundle
    broken otherwise is refused at once. A refused bundle is not loaded again while its files stay as they
    are: published anew (renamed into place, or its files rewritten), it is checked again."""

    def __init__(self, path: Path, current_version: str, consider: Callable[[Scorer], None],
                 threshold_quantile: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.consider = consider
        self.threshold_quantile = threshold_quantile  # the configured one, applied to every bundle loaded
        self.seen = {current_version}  # versions in use, refused, or already considered
        self.incomplete_since: dict[str, float] = {}
        self.refused: dict[str, tuple[Any, ...]] = {}  # version -> the files as they were when refused
        self._clock = clock

    def check(self) -> bool:
        """Consider a newly published bundle; returns whether there was one."""
        version = published_version(self.path)
        if version is None or version in self.seen:
            return False
        if version in self.refused:
            if self.refused[version] == files_of(self.path):
                return False
            del self.refused[version]  # published anew: look again
            self.incomplete_since.pop(version, None)
        try:
            scorer = Scorer(bundle_lib.load(self.path, self.threshold_quantile))
        except BundleIncomplete as exc:
            return self._incomplete(version, exc)
        except Exception as exc:
            self.refused[version] = files_of(self.path)
            log.warning("the bundle %s published at %s was refused; the current model stays: %s", version,
                        self.path, exc)
            return False
        self.seen.add(version)
        self.incomplete_since.pop(version, None)
        self.consider(scorer)
        return True

    def _incomplete(self, version: str, problem: Exception) -> bool:
        now = self._clock()
        since = self.incomplete_since.setdefault(version, now)
        if since == now:
            log.info("the bundle %s at %s is not complete yet (%s); checking again", version, self.path, problem)
        elif now - since >= INCOMPLETE_PATIENCE_S:
            self.refused[version] = files_of(self.path)
            log.warning("the bundle %s published at %s stayed incomplete for %.0f s and was refused; the current "
                        "model stays: %s. Publish a bundle whole: save it to a sibling folder, then rename that "
                        "folder onto model.path", version, self.path, now - since, problem)
        return False


def files_of(path: Path) -> tuple[Any, ...]:
    """What tells one publication of a bundle folder from another: the folder's identity and each file's
    name, size and modification time (a rename onto the path, or a file rewritten, changes it)."""
    try:
        folder = path.stat()
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
    except OSError:
        return ()
    return (folder.st_ino, folder.st_dev, *files)


def published_version(path: Path) -> str | None:
    """The version named in a bundle's manifest, without loading the model (``None`` if unreadable)."""
    try:
        manifest = json.loads((Path(path) / bundle_lib.MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["metadata"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DecisionTaker(Protocol):
    """What the promoter needs of the service (``monitor.stream.loop.StreamLoop``, or the simulation's stand-in,
    ``monitor.devtools.retraining``): the model in use, the judge's history, and ``offer_decision``, which
    promotes an accepted candidate between two batches at the next window boundary."""

    pipeline: RecordPipeline

    @property
    def scorer(self) -> Scorer: ...

    def offer_decision(self, report: ShadowReport, scorer: Scorer | None) -> None: ...


class Promoter:
    """Shadows each candidate against the current model and hands the decision to the service; a promoted
    candidate is first copied to ``store`` (the state keeps which version scores which window, and a restart
    reloads them from there). A short report of each decision is written to ``reports``. Without a ``store``
    or ``reports`` (the simulation, which keeps no files), nothing is copied or written."""

    def __init__(self, service: DecisionTaker, compare: CompareConfig, promotion: PromotionConfig,
                 store: ModelStore | None, reports: Path | None) -> None:
        self.service = service
        self.compare = compare
        self.promotion = promotion
        self.store = store
        self.reports = None if reports is None else Path(reports)
        self._lock = threading.Lock()  # the watcher and the retrainer may offer at once

    def consider(self, candidate: Scorer) -> ShadowReport:
        with self._lock:
            current = self.service.scorer.for_another_thread()  # the loop goes on scoring with its own
            expected = 1 - candidate.bundle.threshold_quantile
            if self.promotion.shadow:
                report = shadow(self.service.pipeline.judge.history_copies(), current, candidate, expected,
                                self.compare, self.promotion)
            else:
                report = ShadowReport(current.version, candidate.version, (), float("nan"), expected,
                                      float("nan"), (), False)
            if report.promote and self.store is not None:
                self.store.keep(candidate.bundle)
            self._write(report)
            self.service.offer_decision(report, candidate if report.promote else None)
            return report

    def _write(self, report: ShadowReport) -> None:
        if self.reports is None:
            return
        try:
            private_folder(self.reports)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            (self.reports / f"{stamp}-{report.candidate}-{report.outcome}.txt").write_text(report.render() + "\n")
        except OSError as exc:
            log.warning("the report on candidate %s could not be written to %s: %s", report.candidate,
                        self.reports, exc)


class ModelStore:
    """Copies of the bundles in use, by version (``<folder>/<version>``): a window keeps the model it started
    with across a restart, even after ``model.path`` holds a newer bundle."""

    def __init__(self, folder: Path, threshold_quantile: float | None = None) -> None:
        self.folder = Path(folder)
        self.threshold_quantile = threshold_quantile

    def keep(self, bundle: Bundle) -> None:
        if not (self.folder / bundle.version / bundle_lib.MANIFEST).exists():
            private_folder(self.folder)  # before save, which would make it (and the state's folder) 0755
            bundle_lib.save(bundle, self.folder / bundle.version)

    def load(self, version: str) -> Scorer:
        return Scorer(bundle_lib.load(self.folder / version, self.threshold_quantile))

    def keep_only(self, versions: set[str]) -> None:
        """Remove the copies of versions no window uses any more."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.is_dir() and not path.name.startswith(".") and path.name not in versions:
                shutil.rmtree(path, ignore_errors=True)


class Retrainer:
    """Retrains, on request, from ``normal_samples()`` (the sampled sequences of windows judged normal,
    oldest first) capped to the newest ``max_records``, plus ``accepted`` (sequences of accepted formats);
    the new bundle is saved to ``output`` and handed to ``consider`` (``claim`` is told its version first,
    so a watcher of ``output`` does not consider it again)."""

    def __init__(self, current: Callable[[], Any], output: Path, min_records: int, max_records: int,
                 normal_samples: Callable[[], list[str]], accepted: list[str] | None = None,
                 consider: Callable[[Scorer], Any] | None = None, claim: Callable[[str], None] | None = None) -> None:
        self.current = current  # returns the bundle in use (its settings are reused)
        self.output = Path(output)
        self.min_records = min_records
        self.max_records = max_records
        self.normal_samples = normal_samples
        self.accepted = list(accepted or [])
        self.consider = consider
        self.claim = claim

    def corpus(self) -> list[str]:
        return self.normal_samples()[-self.max_records:] + self.accepted

    def retrain(self) -> bool:
        """Train on the corpus and publish the bundle; ``False`` when it is too small or training fails."""
        corpus = self.corpus()
        if len(corpus) < self.min_records:
            log.info("retraining skipped: %d sampled normal records kept, %d needed", len(corpus), self.min_records)
            return False
        try:
            fresh = train(corpus, settings_of(self.current()), verbose=0)
            if self.claim is not None:
                self.claim(fresh.version)
            bundle_lib.save(fresh, self.output)
        except MonitorError as exc:
            log.warning("retraining failed; the current model stays: %s", exc)
            return False
        log.info("retrained on %d sampled normal records: bundle %s published to %s", len(corpus), fresh.version,
                 self.output)
        if self.consider is not None:
            self.consider(Scorer(fresh))
        return True


def settings_of(bundle: Any) -> TrainSettings:
    """The training settings a bundle was made with (so a retrain keeps its preparation and network)."""
    saved = bundle.metadata.get("model", {})
    names = {f.name for f in fields(ModelSettings)}
    model = {k: (tuple(v) if k == "hidden" else v) for k, v in saved.items() if k in names}
    return TrainSettings(prepare=bundle.preparer.settings, model=ModelSettings(**model),
                         threshold_quantile=bundle.threshold_quantile)
