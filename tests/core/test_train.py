from __future__ import annotations

import numpy as np
import pytest

from monitor.core.model import ModelSettings
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, best_epoch, fingerprint, stopped_at_epoch_limit, train
from monitor.devtools import generate
from monitor.errors import ConfigError, InputError

QUICK = ModelSettings(epochs=3)


def test_empty_and_blank_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="no sequences"):
        train(["", ""], TrainSettings(model=QUICK))


def test_a_single_distinct_value_is_refused_with_advice() -> None:
    with pytest.raises(InputError, match="one distinct value"):
        train(["AB121E"] * 500, TrainSettings(model=QUICK))


def test_too_few_rows_are_refused() -> None:
    with pytest.raises(InputError, match="at least"):
        train(["AB1", "AB2", "AB3"], TrainSettings(model=QUICK))


def test_the_lstm_needs_an_ordered_encoding() -> None:
    with pytest.raises(ConfigError, match="positional"):
        TrainSettings(prepare=PrepareSettings(encoding="bag"), model=ModelSettings(kind="lstm"))


def test_empty_rows_are_skipped_and_counted() -> None:
    corpus = generate.sample("residues", 300, seed=1) + [""] * 7
    bundle = train(corpus, TrainSettings(model=QUICK), verbose=0)
    assert bundle.metadata["training_rows"] == 300
    assert bundle.metadata["skipped_empty_rows"] == 7


def test_training_is_repeatable_with_a_seed() -> None:
    corpus = generate.sample("residues", 500, seed=2)
    first, second = (train(corpus, TrainSettings(model=QUICK), verbose=0) for _ in range(2))
    assert np.allclose(first.training_errors, second.training_errors, rtol=1e-5, atol=1e-9)
    assert first.metadata["data_fingerprint"] == second.metadata["data_fingerprint"] == fingerprint(corpus)


def test_thresholds_are_quantiles_of_the_training_errors() -> None:
    bundle = train(generate.sample("uid", 600, seed=4), TrainSettings(model=QUICK, threshold_quantile=0.95),
                   verbose=0)
    assert bundle.threshold == pytest.approx(np.quantile(bundle.training_errors, 0.95))
    assert {"0.9", "0.95", "0.99"} <= set(bundle.thresholds)


@pytest.mark.slow
def test_the_lstm_autoencoder_learns_a_format() -> None:
    corpus = generate.sample("residues", 3000, seed=5)
    bundle = train(corpus, TrainSettings(model=ModelSettings(kind="lstm", hidden=(32,), bottleneck=16,
                                                             epochs=15)), verbose=0)
    scores = Scorer(bundle).score(["PHE-SER-CYS", "GLY-LEU-ALA", "AB121E", "phe-ser-cys"])
    assert scores.errors[2:].min() > scores.errors[:2].max()


@pytest.mark.parametrize(("val_loss", "best", "at_limit_of_4"), [
    ([0.06, 0.012, 0.005, 0.004], 4, True),  # still falling at the last epoch allowed
    ([0.06, 0.012, 0.005, 0.006], 3, False),  # early stopping's patience ran out after the best
    ([0.06, float("nan"), 0.004, 0.004], 3, False),  # the first of equal lows; a nan is not a low
    ([], None, False),  # trained without a validation split: nothing to tell
])
def test_the_best_epoch_and_whether_it_is_the_epochs_limit(val_loss: list[float], best: int | None,
                                                           at_limit_of_4: bool) -> None:
    history = {"loss": [0.1] * max(len(val_loss), 1), "val_loss": val_loss}
    assert best_epoch(history) == best
    assert stopped_at_epoch_limit(history, 4) is at_limit_of_4
