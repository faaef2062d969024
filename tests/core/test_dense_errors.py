"""The error from feature indices (compiled loops, no TensorFlow) against TensorFlow's on the same model."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from monitor.core import dense_kernel
from monitor.core import model as model_lib
from monitor.core.bundle import Bundle
from monitor.core.dense_errors import AGREEMENT, DenseErrors
from monitor.core.model import ModelSettings, Reconstructor
from monitor.core.prepare import Preparer
from monitor.core.prepare_settings import PrepareSettings
from monitor.core.score import Scorer, reconstruction_errors
from monitor.devtools import generate

HOSTILE = ["", "\x00", "💥" * 300, "a" * 5_000, "AB121E AB121E", "-_-", "ÄÖÜ-ßẞ-İı", "\ud800", "9" * 40]


def tensorflow_errors(model: object, preparer: Preparer, sequences: list[str]) -> np.ndarray:
    x = preparer.encode(sequences)
    return reconstruction_errors(x, Reconstructor(model)(x))


def errors_of(model: object, preparer: Preparer, sequences: list[str]) -> np.ndarray:
    dense = DenseErrors.of(model_lib.dense_layers(model), preparer.repeats_features)
    assert dense is not None
    return dense.errors(preparer.active_features(sequences))


def test_a_trained_models_errors_are_tensorflows_to_float32_rounding(serial_bundle: Bundle) -> None:
    # A trained model reconstructs normal rows closely (errors far below the abnormal rows': other formats,
    # hostile strings), where TensorFlow's own 1 - r keeps fewest digits.
    sequences = generate.sample("serial", 2_000, seed=11) + generate.sample("uid", 300, seed=11) + HOSTILE
    got = errors_of(serial_bundle.model, serial_bundle.preparer, sequences)
    expected = tensorflow_errors(serial_bundle.model, serial_bundle.preparer, sequences)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-11)
    assert expected.max() > 100 * expected.min()  # both ends of the range were compared
    assert len(np.unique(got)) > 1_000  # rows stay each string's own


@pytest.mark.parametrize("prepare", [PrepareSettings(), PrepareSettings(encoding="bag"),
                                     PrepareSettings(encoding="bag", tokenize="chars")],
                         ids=["positional", "bag", "chars-bag"])
@pytest.mark.parametrize("hidden", [(64,), (), (48, 24)], ids=["one-hidden", "no-hidden", "two-hidden"])
def test_every_encoding_and_depth_of_dense_model_agrees_with_tensorflow(prepare: PrepareSettings,
                                                                       hidden: tuple[int, ...]) -> None:
    # An untrained network (random weights) reconstructs nothing: every residual counts. A bag names a repeated
    # token twice among its indices, and the padding index many times; the input holds a one there once.
    corpus = generate.sample("uid", 500, seed=2) + generate.sample("serial", 500, seed=2)
    preparer = Preparer.fit(corpus, prepare)
    model = model_lib.build(ModelSettings(hidden=hidden, bottleneck=16), preparer.width, preparer.steps)
    sequences = corpus[:300] + ["usr-1-1-1-1-1-1", "a a a a a a a a"] + HOSTILE
    if prepare.encoding == "bag":
        assert any(len(set(row)) < len(row) for row in preparer.active_features(sequences).tolist())
    np.testing.assert_allclose(errors_of(model, preparer, sequences),
                               tensorflow_errors(model, preparer, sequences), rtol=1e-5)


def test_the_sigmoid_residuals_hold_at_extreme_logits() -> None:
    # The exponential is computed by hand (vectorizable): held to float64's on logits from 0 to past float32's
    # range, with no one, some ones and only ones in the row.
    logits = np.array([[0.0, 1e-6, -1e-6, 0.5, -0.5, 9.0, -9.0, 20.0, -20.0, 86.9, -86.9, 88.0, -88.0, 500.0,
                        -500.0, np.inf, -np.inf, 3.3]], dtype=np.float32)
    width = logits.shape[1]
    for ones in ([], [0, 3, 6, 9, 12, 15], list(range(width))):
        x = np.zeros(width)
        x[ones] = 1.0
        expected = np.mean(np.square(x - 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))))
        out = np.empty(1)
        dense_kernel.squared_error_means(logits.copy(), np.array(ones, dtype=np.int32).reshape(1, -1), False, out)
        assert out[0] == pytest.approx(expected, rel=1e-6)


def test_a_scorer_takes_the_path_from_indices_for_a_dense_model_and_tensorflow_for_an_lstm() -> None:
    corpus = generate.sample("serial", 800, seed=5)
    preparer = Preparer.fit(corpus)
    dense = Bundle(preparer, model_lib.build(ModelSettings(), preparer.width), np.sort(np.random.rand(10)), 0.99, {})
    lstm = Bundle(preparer, model_lib.build(ModelSettings(kind="lstm", hidden=(), bottleneck=8), preparer.width,
                                            preparer.steps), np.sort(np.random.rand(10)), 0.99, {})
    assert Scorer(dense)._dense is not None
    assert Scorer(lstm)._dense is None
    assert model_lib.dense_layers(lstm.model) is None
    errors = Scorer(lstm).errors(corpus[:50])
    np.testing.assert_allclose(errors, tensorflow_errors(lstm.model, preparer, corpus[:50]), rtol=1e-6)


def test_a_model_this_path_would_get_wrong_is_left_to_tensorflow(serial_bundle: Bundle,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    layers = model_lib.dense_layers(serial_bundle.model)
    assert layers is not None
    # Not a ReLU network with a sigmoid output: refused before any arithmetic.
    assert DenseErrors.of([dataclasses.replace(layers[0], activation="tanh"), *layers[1:]], False) is None
    assert DenseErrors.of([*layers[:-1], dataclasses.replace(layers[-1], activation="linear")], False) is None
    assert DenseErrors.of(layers[:1], False) is None
    # Weights that are not the model's: the check against TensorFlow says so, and the scorer keeps TensorFlow.
    wrong = [dataclasses.replace(layers[0], weights=layers[0].weights * 1.5), *layers[1:]]
    reconstruct = Reconstructor(serial_bundle.model)
    features = serial_bundle.preparer.ones_per_sequence

    def reference(x: np.ndarray) -> np.ndarray:
        return reconstruction_errors(x, reconstruct(x))

    assert DenseErrors.of(layers, False).agrees_with(reference, features) <= AGREEMENT  # type: ignore[union-attr]
    assert DenseErrors.of(wrong, False).agrees_with(reference, features) > 100 * AGREEMENT  # type: ignore[union-attr]

    monkeypatch.setattr("monitor.core.score.dense_layers", lambda model: wrong)
    with caplog.at_level(logging.WARNING):
        scorer = Scorer(serial_bundle)
    assert scorer._dense is None
    assert "scored by TensorFlow" in caplog.text
    sequences = generate.sample("serial", 100, seed=6)
    np.testing.assert_allclose(scorer.errors(sequences),
                               tensorflow_errors(serial_bundle.model, serial_bundle.preparer, sequences), rtol=1e-6)


def test_indices_outside_the_input_are_refused_and_batches_are_cut_without_changing_a_row(serial_bundle: Bundle) -> None:
    dense = DenseErrors.of(model_lib.dense_layers(serial_bundle.model), False, batch_size=7)
    whole = DenseErrors.of(model_lib.dense_layers(serial_bundle.model), False)
    assert dense is not None and whole is not None
    active = serial_bundle.preparer.active_features(generate.sample("serial", 100, seed=8))
    np.testing.assert_array_equal(dense.errors(active), whole.errors(active))
    assert dense.errors(active[:0]).shape == (0,)
    for bad in (-1, dense.width):
        wrong = active.copy()
        wrong[3, 2] = bad
        with pytest.raises(ValueError, match="feature indices"):
            dense.errors(wrong)


def test_a_strings_error_is_the_same_to_the_bit_in_any_batch_and_at_any_place_in_it(serial_bundle: Bundle) -> None:
    # TensorFlow's and BLAS's products differ in their last bits with a row's batch and its place in it; rows
    # multiplied one at a time do not: replay, a restart's batches and a member's share give the same errors.
    sequences = generate.sample("serial", 1_000, seed=4)
    whole = Scorer(serial_bundle).errors(sequences)
    for size in (1, 7, 100, 333):
        scorer = Scorer(serial_bundle)
        parts = np.concatenate([scorer.errors(sequences[i:i + size]) for i in range(0, len(sequences), size)])
        np.testing.assert_array_equal(parts, whole)
    one = sequences[17]
    repeated = [one if i % 7 == 0 else s for i, s in enumerate(sequences)]
    scorer = Scorer(serial_bundle)
    scorer._errors.capacity = 0  # noqa: SLF001 - no memo: every copy of the string is computed where it stands
    assert set(scorer.errors(repeated)[::7].tolist()) == {whole[17]}
