"""A trained model as one versioned directory, saved atomically and checked on load.

Layout of a bundle directory::

    bundle.json          format version, metadata, thresholds, SHA-256 of every other file
    model.keras          the Keras autoencoder (native format, loaded in safe mode)
    preparation.json     tokenizing mode, length, vocabulary, position dictionaries
    training_errors.npy  sorted reconstruction errors of the training rows (for percentile ranks)
    formats.json         the training data's formats: shares, examples, long tail (format version 2)
    fusion.json          the fused score's signals, their calibrations (format version 2) and weights (3)
    fused_scores.npy     sorted fused scores of the training rows (format version 2)
    ngram.npz            the character n-gram model, when the fused score uses it (format version 2)

Format version 1 bundles (before formats) still load: they score with the autoencoder's error alone. Format
version 2 bundles (before learned weights) still load and score as they did: every signal weighs 1.

Loading refuses, naming the file and the problem, a bundle that is missing, incomplete, corrupt, of another
format version, or whose files do not match the checksums recorded when it was saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.core import model as model_lib
from monitor.core.format_table import FormatTable
from monitor.core.fusion import Fusion
from monitor.core.ngram import CharNgramModel
from monitor.core.prepare import Preparer
from monitor.errors import BundleError, BundleIncomplete, ConfigError

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "bundle.json"
MODEL_FILE = "model.keras"
PREPARATION_FILE = "preparation.json"
ERRORS_FILE = "training_errors.npy"
FORMATS_FILE = "formats.json"
FUSION_FILE = "fusion.json"
FUSED_SCORES_FILE = "fused_scores.npy"
NGRAM_FILE = "ngram.npz"
_CHECKED_FILES = (MODEL_FILE, PREPARATION_FILE, ERRORS_FILE)
_FUSION_FILES = (FORMATS_FILE, FUSION_FILE, FUSED_SCORES_FILE)


@dataclass
class Bundle:
    """Everything needed to score: preparation, network, training errors, thresholds, metadata.

    ``thresholds`` maps a quantile of the training errors (as text, e.g. ``"0.99"``) to its error value;
    ``threshold_quantile`` names the one that flags a sequence as abnormal.
    """

    preparer: Preparer
    model: Any  # keras.Model; typed loosely so this module's users need not import Keras
    training_errors: np.ndarray
    threshold_quantile: float
    thresholds: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)
    fusion: Fusion | None = None  # None: a version 1 bundle, scored by the autoencoder's error alone

    @property
    def threshold(self) -> float:
        return self.thresholds[_quantile_key(self.threshold_quantile)]

    @property
    def version(self) -> str:
        """A short id of this bundle: the first 12 hex digits of its data fingerprint and creation time."""
        return str(self.metadata.get("version", "unsaved"))

    def with_threshold_quantile(self, quantile: float) -> Bundle:
        """This bundle flagging errors above ``quantile`` of its training errors (a copy; no retraining)."""
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
            raise ConfigError(f"a threshold quantile must be a number between 0 and 1 (exclusive), got {quantile!r}")
        thresholds = {**self.thresholds, **thresholds_for(self.training_errors, (float(quantile),))}
        return dataclasses.replace(self, threshold_quantile=float(quantile), thresholds=thresholds)

    def info(self) -> dict[str, str]:
        """What identifies the bundle to an operator: version, creation time, data fingerprint (16 digits)."""
        return {"version": self.version, "created_at": str(self.metadata.get("created_at", "")),
                "fingerprint": str(self.metadata.get("data_fingerprint", ""))[:16],
                "threshold_quantile": f"{self.threshold_quantile:g}", "threshold": f"{self.threshold:.6g}"}


def thresholds_for(errors: np.ndarray, quantiles: tuple[float, ...]) -> dict[str, float]:
    return {_quantile_key(q): float(np.quantile(errors, q)) for q in quantiles}


def _quantile_key(q: float) -> str:
    return f"{q:g}"


def save(bundle: Bundle, directory: Path) -> Path:
    """Write ``bundle`` to ``directory`` atomically: readers see the old bundle or the new one, never half."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model_lib.save(bundle.model, staging / MODEL_FILE)
        (staging / PREPARATION_FILE).write_text(json.dumps(bundle.preparer.to_dict()), encoding="utf-8")
        np.save(staging / ERRORS_FILE, np.sort(bundle.training_errors).astype(np.float64))
        files = _save_fusion(bundle.fusion, staging) if bundle.fusion is not None else ()
        manifest = {
            "format_version": _format_version(bundle.fusion),
            "metadata": bundle.metadata,
            "threshold_quantile": bundle.threshold_quantile,
            "thresholds": bundle.thresholds,
            "checksums": {name: _sha256(staging / name) for name in (*_CHECKED_FILES, *files)},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        _owner_only(staging)
        _replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _format_version(fusion: Fusion | None) -> int:
    """1 without a fusion, 2 for a fusion of equal weights (as every fusion was before version 3), else 3:
    a reader of version 2 would score a version 3 bundle as if its weights were equal, so it must refuse it."""
    return 1 if fusion is None else 2 if fusion.weights is None else FORMAT_VERSION


def _save_fusion(fusion: Fusion, staging: Path) -> tuple[str, ...]:
    (staging / FORMATS_FILE).write_text(json.dumps(fusion.formats.to_dict()), encoding="utf-8")
    (staging / FUSION_FILE).write_text(json.dumps(fusion.to_dict()), encoding="utf-8")
    np.save(staging / FUSED_SCORES_FILE, np.sort(fusion.training_scores).astype(np.float64))
    if fusion.ngram is None:
        return _FUSION_FILES
    with (staging / NGRAM_FILE).open("wb") as handle:
        np.savez(handle, **fusion.ngram.to_arrays())
    return (*_FUSION_FILES, NGRAM_FILE)


def _owner_only(folder: Path) -> None:
    """A bundle is readable by its owner only: it holds the training data's errors and, in its
    vocabulary, pieces of the training sequences (which may be personal data). mkdtemp made the folder 0700."""
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)


def _replace_directory(staging: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not (directory / MANIFEST).exists():
        raise BundleError(f"{directory} exists and is not a model bundle; refusing to overwrite it")
    retired = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(directory, retired)
    os.replace(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)


def load(directory: Path, threshold_quantile: float | None = None) -> Bundle:
    """Load and verify the bundle in ``directory``; raises ``BundleError`` naming what is wrong.
    ``threshold_quantile`` replaces the bundle's own (``model.threshold_quantile``; ``None`` keeps it)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"no model bundle at {directory}: train one with `python -m monitor train`")
    manifest = _read_manifest(directory)
    fused = manifest["format_version"] >= 2
    optional = (NGRAM_FILE,) if NGRAM_FILE in manifest["checksums"] else ()
    _verify_files(directory, manifest["checksums"], (*_CHECKED_FILES, *_FUSION_FILES, *optional) if fused
                  else _CHECKED_FILES)
    try:
        preparer = Preparer.from_dict(json.loads((directory / PREPARATION_FILE).read_text(encoding="utf-8")))
        errors = np.load(directory / ERRORS_FILE, allow_pickle=False)
        fusion = _load_fusion(directory) if fused else None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory}: preparation or training errors unreadable: {exc}") from exc
    network = model_lib.load(directory / MODEL_FILE)
    if network.input_shape[-1] != preparer.width:
        raise BundleError(f"{directory}: the model takes {network.input_shape[-1]} features but the "
                          f"preparation makes {preparer.width}")
    bundle = Bundle(preparer, network, errors, float(manifest["threshold_quantile"]),
                    {k: float(v) for k, v in manifest["thresholds"].items()}, manifest["metadata"], fusion)
    return bundle if threshold_quantile is None else bundle.with_threshold_quantile(threshold_quantile)


def _load_fusion(directory: Path) -> Fusion:
    formats = FormatTable.from_dict(json.loads((directory / FORMATS_FILE).read_text(encoding="utf-8")))
    data = json.loads((directory / FUSION_FILE).read_text(encoding="utf-8"))
    scores = np.load(directory / FUSED_SCORES_FILE, allow_pickle=False)
    ngram = None
    if (directory / NGRAM_FILE).exists():
        with np.load(directory / NGRAM_FILE, allow_pickle=False) as arrays:
            ngram = CharNgramModel.from_arrays(dict(arrays))
    return Fusion.from_parts(data, formats, scores, ngram)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise BundleError(f"{directory} is incomplete: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupt: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{path} has format version {version!r}; this monitor reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}")
    missing = [k for k in ("checksums", "thresholds", "threshold_quantile", "metadata") if k not in manifest]
    if missing:
        raise BundleError(f"{path} is incomplete: missing {', '.join(missing)}")
    return manifest


def _verify_files(directory: Path, checksums: dict[str, str], names: tuple[str, ...]) -> None:
    for name in names:
        path = directory / name
        if not path.exists():
            raise BundleIncomplete(f"{directory} is incomplete: {name} is missing")
        if _sha256(path) != checksums.get(name):
            raise BundleIncomplete(f"{path} does not match the checksum recorded in {MANIFEST}: the file was "
                                   "changed or damaged after the bundle was saved, or is still being copied")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
