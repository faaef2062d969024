from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import FORMAT_VERSION, MANIFEST, Bundle
from monitor.core.score import Scorer
from monitor.errors import BundleError

PROBES = ["AB121E", "DN176", "PHE-SER-CYS", "ab121e"]


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    return target


def test_saved_and_loaded_bundle_scores_identically(serial_bundle: Bundle, copy: Path, tmp_path: Path) -> None:
    again = bundle_lib.save(serial_bundle, tmp_path / "again")
    loaded = bundle_lib.load(again)
    assert np.array_equal(Scorer(serial_bundle).errors(PROBES), Scorer(loaded).errors(PROBES))
    assert loaded.thresholds == serial_bundle.thresholds
    assert np.array_equal(loaded.training_errors, serial_bundle.training_errors)


def test_metadata_records_what_a_user_needs_to_trust_the_bundle(serial_bundle: Bundle) -> None:
    meta = serial_bundle.metadata
    for key in ("version", "created_at", "training_rows", "data_fingerprint", "libraries", "preparation"):
        assert key in meta
    assert meta["training_rows"] == 4000
    assert set(meta["libraries"]) >= {"tensorflow", "keras", "numpy"}


def test_training_errors_are_sorted(serial_bundle: Bundle) -> None:
    assert np.all(np.diff(serial_bundle.training_errors) >= 0)


def test_saving_over_an_existing_bundle_replaces_it_whole(serial_bundle: Bundle, copy: Path) -> None:
    bundle_lib.save(serial_bundle, copy)
    assert bundle_lib.load(copy).version == serial_bundle.version
    assert sorted(p.name for p in copy.parent.iterdir()) == ["bundle"]  # no staging or retired folders left


def test_saving_over_a_folder_that_is_not_a_bundle_is_refused(serial_bundle: Bundle, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not a model bundle"):
        bundle_lib.save(serial_bundle, tmp_path / "data")
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"


def test_a_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="monitor train"):
        bundle_lib.load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["model.keras", "preparation.json", "training_errors.npy", MANIFEST])
def test_an_incomplete_bundle_names_the_missing_file(copy: Path, name: str) -> None:
    (copy / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        bundle_lib.load(copy)


@pytest.mark.parametrize("name", ["model.keras", "preparation.json", "training_errors.npy"])
def test_a_changed_file_is_refused_by_its_checksum(copy: Path, name: str) -> None:
    with (copy / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=f"{name} does not match the checksum"):
        bundle_lib.load(copy)


def test_a_corrupt_manifest_is_refused(copy: Path) -> None:
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        bundle_lib.load(copy)


def test_another_format_version_is_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"format version {FORMAT_VERSION + 1}"):
        bundle_lib.load(copy)


def test_a_model_file_that_is_not_keras_is_refused_even_with_a_matching_checksum(copy: Path) -> None:
    (copy / "model.keras").write_bytes(b"not a zip archive")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["checksums"]["model.keras"] = bundle_lib._sha256(copy / "model.keras")
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="model.keras is not a Keras archive"):
        bundle_lib.load(copy)


def test_a_saved_bundle_is_readable_by_its_owner_only(serial_bundle: Bundle, tmp_path: Path) -> None:
    directory = bundle_lib.save(serial_bundle, tmp_path / "private")
    assert directory.stat().st_mode & 0o777 == 0o700
    assert {path.stat().st_mode & 0o777 for path in directory.iterdir()} == {0o600}


V2_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundle-v2-serials"


def test_a_bundle_of_format_version_2_loads_and_scores_as_it_did(tmp_path: Path) -> None:
    """``tests/data/bundle-v2-serials`` was saved by the monitor before learned weights (format version 2,
    every signal weighing 1), with what it scored then in ``bundle-v2-serials.expected.json``."""
    expected = json.loads(V2_BUNDLE.with_name(V2_BUNDLE.name + ".expected.json").read_text())
    assert json.loads((V2_BUNDLE / MANIFEST).read_text())["format_version"] == 2
    loaded = bundle_lib.load(V2_BUNDLE)
    assert loaded.fusion is not None and loaded.fusion.weights is None
    assert loaded.fusion.weight_of() == {"format": 1.0, "autoencoder": 1.0, "ngram": 1.0}
    for bundle in (loaded, bundle_lib.load(bundle_lib.save(loaded, tmp_path / "again"))):
        scores = Scorer(bundle).score(expected["probes"])
        assert np.allclose(scores.errors, expected["errors"], rtol=1e-6, atol=0)
        assert np.allclose(scores.fused, expected["fused"], rtol=1e-6, atol=0)
        assert np.allclose(scores.fused_percentiles, expected["fused_percentiles"], rtol=1e-6, atol=1e-9)
        assert scores.fused_flags.tolist() == expected["fused_flags"]
    assert json.loads((tmp_path / "again" / MANIFEST).read_text())["format_version"] == 2  # still equal weights


def test_learned_weights_are_saved_checksummed_and_in_format_version_3(serial_bundle: Bundle, copy: Path) -> None:
    fusion = serial_bundle.fusion
    assert fusion is not None and fusion.weights is not None and fusion.learning["learned"]
    assert json.loads((copy / MANIFEST).read_text())["format_version"] == FORMAT_VERSION == 3
    saved = json.loads((copy / "fusion.json").read_text())
    assert saved["weights"] == fusion.weight_of() and saved["learning"] == fusion.learning
    saved["weights"] = {name: 1.0 for name in saved["weights"]}
    (copy / "fusion.json").write_text(json.dumps(saved))
    with pytest.raises(BundleError, match="fusion.json does not match the checksum"):
        bundle_lib.load(copy)
