"""Keeping the model current: the bundle watcher, the published version, retraining on normal records, the
promoter without files."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.devtools import generate
from monitor.hourly.shadow import ShadowReport
from monitor.ops.lifecycle import (
    INCOMPLETE_PATIENCE_S,
    BundleWatcher,
    ModelStore,
    Promoter,
    Retrainer,
    published_version,
    settings_of,
)
from monitor.settings import CompareConfig, PromotionConfig

QUICK = TrainSettings(model=ModelSettings(epochs=2))
LOGGER = "monitor.ops.lifecycle"


@pytest.fixture(scope="module")
def quick_bundle(serial_corpus: list[str]) -> Bundle:
    """A bundle trained for two epochs (the watched and retrained bundles start from it)."""
    return train(serial_corpus, QUICK, verbose=0)


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory: pytest.TempPathFactory, quick_bundle: Bundle) -> Path:
    return bundle_lib.save(quick_bundle, tmp_path_factory.mktemp("quick") / "bundle")


@pytest.fixture
def watched(tmp_path: Path, quick_dir: Path) -> Path:
    """A copy of the quick bundle in the folder the watcher checks."""
    return Path(shutil.copytree(quick_dir, tmp_path / "models" / "current"))


def as_version(bundle: Bundle, version: str) -> Bundle:
    return dataclasses.replace(bundle, metadata={**bundle.metadata, "version": version})


class Offers:
    """Collects what the watcher offers."""

    def __init__(self) -> None:
        self.scorers: list[Scorer] = []

    def __call__(self, scorer: Scorer) -> None:
        self.scorers.append(scorer)

    @property
    def versions(self) -> list[str]:
        return [s.bundle.version for s in self.scorers]


# -- published_version ---------------------------------------------------------------------------------------
def test_published_version_reads_the_manifest(quick_dir: Path, quick_bundle: Bundle) -> None:
    assert published_version(quick_dir) == quick_bundle.version


@pytest.mark.parametrize("manifest", [None, "{not json", "[]", '{"metadata": {}}', '{"format_version": 1}'],
                         ids=["missing", "not-json", "a-list", "no-version", "no-metadata"])
def test_published_version_is_none_for_an_unreadable_manifest(tmp_path: Path, manifest: str | None) -> None:
    if manifest is not None:
        (tmp_path / bundle_lib.MANIFEST).write_text(manifest)
    assert published_version(tmp_path) is None
    assert published_version(tmp_path / "absent") is None


# -- BundleWatcher ------------------------------------------------------------------------------------------
def test_the_watcher_ignores_the_version_in_use(watched: Path, quick_bundle: Bundle) -> None:
    offers = Offers()
    watcher = BundleWatcher(watched, quick_bundle.version, offers)
    assert watcher.check() is False and watcher.check() is False
    assert offers.versions == []


def test_the_watcher_offers_a_newly_saved_bundle_exactly_once(watched: Path, quick_bundle: Bundle) -> None:
    offers = Offers()
    watcher = BundleWatcher(watched, quick_bundle.version, offers)
    bundle_lib.save(as_version(quick_bundle, "v-second"), watched)
    assert watcher.check() is True
    assert watcher.check() is False
    assert offers.versions == ["v-second"] and watcher.seen == {quick_bundle.version, "v-second"}
    sequences = ["AB121E", "9 ER 223 ABCDSED"]
    np.testing.assert_allclose(offers.scorers[0].errors(sequences), Scorer(quick_bundle).errors(sequences),
                               rtol=1e-6)


def test_the_watcher_does_nothing_while_no_bundle_is_published(tmp_path: Path) -> None:
    offers = Offers()
    watcher = BundleWatcher(tmp_path / "not-yet", "v1", offers)
    assert watcher.check() is False and offers.versions == []


def test_a_tampered_bundle_is_checked_again_for_a_while_then_refused_once_and_the_watcher_keeps_going(
        watched: Path, quick_bundle: Bundle, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that does not match the manifest may still be being copied: the bundle is looked at again at
    each check, with one line saying so, and refused with a warning once it stayed so for the patience."""
    offers = Offers()
    now = [0.0]
    watcher = BundleWatcher(watched, quick_bundle.version, offers, clock=lambda: now[0])
    bundle_lib.save(as_version(quick_bundle, "v-tampered"), watched)
    preparation = watched / bundle_lib.PREPARATION_FILE
    preparation.write_text(preparation.read_text() + " ")
    loads: list[Path] = []
    real_load = bundle_lib.load

    def counted_load(path: Path, *args: object) -> Bundle:
        loads.append(path)
        return real_load(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_lib, "load", counted_load)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert watcher.check() is False
        now[0] = INCOMPLETE_PATIENCE_S - 1
        assert watcher.check() is False
        now[0] = INCOMPLETE_PATIENCE_S
        assert watcher.check() is False
        assert watcher.check() is False  # refused: not loaded again
    mine = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in mine] == [logging.INFO, logging.WARNING] and len(loads) == 3
    message = mine[1].getMessage()
    assert "refused" in message and "v-tampered" in message and "checksum" in message and "rename" in message
    assert offers.versions == []

    bundle_lib.save(as_version(quick_bundle, "v-fixed"), watched)
    assert watcher.check() is True
    assert offers.versions == ["v-fixed"]


def test_a_bundle_copied_file_by_file_is_offered_once_complete(watched: Path, quick_bundle: Bundle,
                                                               tmp_path: Path) -> None:
    """The folder emptied, the manifest copied first, then the rest: not ready, then offered once."""
    offers = Offers()
    watcher = BundleWatcher(watched, quick_bundle.version, offers)
    staged = tmp_path / "staged"
    bundle_lib.save(as_version(quick_bundle, "v-copied"), staged)
    for old in watched.iterdir():
        old.unlink()
    shutil.copy2(staged / bundle_lib.MANIFEST, watched / bundle_lib.MANIFEST)
    assert watcher.check() is False and watcher.check() is False  # its files are not there yet
    for name in sorted(p.name for p in staged.iterdir() if p.name != bundle_lib.MANIFEST):
        shutil.copy2(staged / name, watched / name)
    assert watcher.check() is True and offers.versions == ["v-copied"]


def test_a_refused_version_published_again_whole_by_renaming_is_taken(watched: Path, quick_bundle: Bundle,
                                                                     tmp_path: Path) -> None:
    """The refusal's advice followed with the same version: the bundle saved to a sibling folder and renamed
    onto the watched path is a new publication, looked at again; unchanged, a refused bundle is not."""
    offers = Offers()
    now = [0.0]
    watcher = BundleWatcher(watched, quick_bundle.version, offers, clock=lambda: now[0])
    bundle_lib.save(as_version(quick_bundle, "v-again"), watched)
    (watched / bundle_lib.PREPARATION_FILE).write_text("{}")  # half copied: not what the manifest says
    assert watcher.check() is False
    now[0] = INCOMPLETE_PATIENCE_S
    assert watcher.check() is False and "v-again" in watcher.refused
    now[0] += INCOMPLETE_PATIENCE_S
    assert watcher.check() is False and offers.versions == []  # the same files: still refused, not loaded
    sibling = bundle_lib.save(as_version(quick_bundle, "v-again"), tmp_path / "models" / "next")
    shutil.rmtree(watched)
    sibling.rename(watched)
    assert watcher.check() is True and offers.versions == ["v-again"]


def test_after_a_refusal_the_version_in_use_is_still_ignored(watched: Path, quick_bundle: Bundle) -> None:
    offers = Offers()
    watcher = BundleWatcher(watched, quick_bundle.version, offers)
    bundle_lib.save(as_version(quick_bundle, "v-broken"), watched)
    (watched / bundle_lib.ERRORS_FILE).write_bytes(b"damaged")
    assert watcher.check() is False
    bundle_lib.save(quick_bundle, watched)  # the version in use published again
    assert watcher.check() is False and offers.versions == []


# -- Retrainer ----------------------------------------------------------------------------------------------
def test_the_retrainer_learns_from_the_newest_normal_samples_plus_accepted_sequences(
        tmp_path: Path, quick_bundle: Bundle) -> None:
    samples = [f"S{i}" for i in range(12)]
    retrainer = Retrainer(lambda: quick_bundle, tmp_path / "out", min_records=20, max_records=5,
                          normal_samples=lambda: samples, accepted=["ZZ1"])
    assert retrainer.corpus() == ["S7", "S8", "S9", "S10", "S11", "ZZ1"]


def test_the_retrainer_skips_with_too_few_records(tmp_path: Path, quick_bundle: Bundle,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "out"
    retrainer = Retrainer(lambda: quick_bundle, output, min_records=50, max_records=100,
                          normal_samples=lambda: generate.sample("serial", 49, seed=1))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert retrainer.retrain() is False
    assert "49 sampled normal records kept, 50 needed" in caplog.text
    assert not output.exists()


def test_a_failed_retraining_keeps_the_current_model(tmp_path: Path, quick_bundle: Bundle,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    output = bundle_lib.save(quick_bundle, tmp_path / "out")
    before = published_version(output)
    retrainer = Retrainer(lambda: quick_bundle, output, min_records=20, max_records=100,
                          normal_samples=lambda: ["AB121E"] * 30)  # one distinct value: nothing to learn
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert retrainer.retrain() is False
    assert "retraining failed" in caplog.text and "one distinct value" in caplog.text
    assert published_version(output) == before


def test_retraining_publishes_a_loadable_bundle_claims_it_and_offers_it(tmp_path: Path, quick_dir: Path) -> None:
    original = bundle_lib.load(quick_dir)
    output = tmp_path / "retrained"
    offers, claimed = Offers(), []
    retrainer = Retrainer(lambda: original, output, min_records=200, max_records=300,
                          normal_samples=lambda: generate.sample("serial", 400, seed=21), consider=offers,
                          claim=claimed.append)
    assert retrainer.retrain() is True
    fresh = bundle_lib.load(output)
    assert settings_of(fresh) == settings_of(original) == QUICK
    assert fresh.version != original.version and fresh.version == published_version(output)
    assert fresh.metadata["training_rows"] == 300
    assert claimed == offers.versions == [fresh.version]


# -- settings_of --------------------------------------------------------------------------------------------
def test_settings_of_rebuilds_the_training_settings_from_json_metadata() -> None:
    model = ModelSettings(hidden=(32, 16), bottleneck=8, epochs=3, loss="mse", seed=4)
    prepare = PrepareSettings(length=12, encoding="bag")
    metadata = json.loads(json.dumps({"model": {**dataclasses.asdict(model), "retired_option": 1}}))
    bundle = SimpleNamespace(metadata=metadata, preparer=SimpleNamespace(settings=prepare), threshold_quantile=0.95)
    assert settings_of(bundle) == TrainSettings(prepare=prepare, model=model, threshold_quantile=0.95)


def test_settings_of_a_bundle_without_model_metadata_uses_the_default_network() -> None:
    bundle = SimpleNamespace(metadata={}, preparer=SimpleNamespace(settings=PrepareSettings()), threshold_quantile=0.99)
    assert settings_of(bundle) == TrainSettings()


def test_the_model_store_makes_its_folder_and_the_state_folder_owner_only(tmp_path: Path,
                                                                         quick_bundle: Bundle) -> None:
    instance = tmp_path / "state" / "instance"
    ModelStore(instance / "models").keep(quick_bundle)
    for folder in (tmp_path / "state", instance, instance / "models", instance / "models" / quick_bundle.version):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_folders_that_exist_keep_their_mode(tmp_path: Path, quick_bundle: Bundle) -> None:
    (tmp_path / "models").mkdir(mode=0o750)
    ModelStore(tmp_path / "models").keep(quick_bundle)
    assert (tmp_path / "models").stat().st_mode & 0o777 == 0o750


# -- Promoter -----------------------------------------------------------------------------------------------
def test_a_promoter_without_a_store_or_a_reports_folder_writes_nothing_and_hands_the_decision_on(
        tmp_path: Path, quick_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the simulation uses it: the decision goes to the service all the same (no history here: too few
    windows to shadow on, the candidate is promoted unseen)."""
    monkeypatch.chdir(tmp_path)
    offered: list[tuple[ShadowReport, Scorer | None]] = []
    service = SimpleNamespace(scorer=Scorer(quick_bundle), pipeline=SimpleNamespace(judge=SimpleNamespace(
        history_copies=dict)), offer_decision=lambda report, scorer: offered.append((report, scorer)))
    candidate = Scorer(as_version(quick_bundle, "v-next"))
    report = Promoter(service, CompareConfig(), PromotionConfig(), None, None).consider(candidate)
    assert (report.outcome, report.candidate) == ("promoted_unshadowed", "v-next")
    assert offered == [(report, candidate)] and list(tmp_path.iterdir()) == []
