"""Shared fixtures: a small trained bundle (once per session) and its directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings
from monitor.core.train import TrainSettings, train
from monitor.devtools import generate

TINY_SETTINGS = TrainSettings(model=ModelSettings(epochs=25, seed=7))


@pytest.fixture(scope="session")
def serial_corpus() -> list[str]:
    return generate.sample("serial", 4000, seed=3)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, serial_corpus: list[str]) -> Path:
    """A bundle trained on generated serials and saved; tests must not modify it (copy it first)."""
    directory = tmp_path_factory.mktemp("bundles") / "serials"
    bundle_lib.save(train(serial_corpus, TINY_SETTINGS, verbose=0), directory)
    return directory


@pytest.fixture(scope="session")
def serial_bundle(bundle_dir: Path) -> Bundle:
    return bundle_lib.load(bundle_dir)


@pytest.fixture(scope="session")
def retrained_bundle_dir(tmp_path_factory: pytest.TempPathFactory, serial_corpus: list[str]) -> Path:
    """Another version of the serial model (other seed, other rows): what a retrain publishes."""
    directory = tmp_path_factory.mktemp("bundles") / "serials-retrained"
    settings = TrainSettings(model=ModelSettings(epochs=25, seed=8))
    bundle_lib.save(train(generate.sample("serial", 4000, seed=4), settings, verbose=0), directory)
    return directory
