"""Outlier exposure: the corruptions of held-out training strings and the fusion weights learned from them."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core import exposure
from monitor.core.bundle import Bundle
from monitor.core.model import ModelSettings, held_out_rows
from monitor.core.train import TrainSettings, train
from monitor.devtools import corpora, generate

QUICK = TrainSettings(model=ModelSettings(epochs=3, seed=5))
SIGNALS = ("format", "autoencoder", "ngram")


def test_corruptions_are_seeded_made_of_the_given_strings_and_never_a_training_string() -> None:
    strings = generate.sample("residues", 300, seed=1)
    training = set(generate.sample("residues", 3000, seed=2)) | set(strings)
    made = exposure.corrupt(strings, 40, training, seed=3)
    assert made == exposure.corrupt(strings, 40, training, seed=3)
    assert made != exposure.corrupt(strings, 40, training, seed=4)
    assert set(made) == set(exposure.CORRUPTIONS)
    for kind, (sources, corrupted) in made.items():
        assert len(sources) == len(corrupted) == 40, kind
        for source, text in zip(sources, corrupted):
            assert text != strings[source] and text not in training
    drops = made["drop_char"]
    assert all(len(text) == len(strings[i]) - 1 for i, text in zip(*drops))


def test_a_kind_that_does_not_apply_comes_out_empty() -> None:
    made = exposure.corrupt(["AB12", "AB13", "AB14", "AB15"], 5, set(), seed=0)
    assert made["move_token"] == ([], [])  # one token each: nothing to move
    assert len(made["drop_char"][1]) == 5


def test_equal_weights_stay_when_every_signal_tells_every_corruption_apart() -> None:
    rng = np.random.default_rng(0)
    normal = {s: rng.exponential(1.0, 500) for s in SIGNALS}
    abnormal = {kind: {s: 50 + rng.exponential(1.0, 100) for s in SIGNALS} for kind in ("a", "b")}
    weights, learning = exposure.learn_weights(normal, abnormal, SIGNALS)
    assert weights == (1.0, 1.0, 1.0)
    assert learning["learned"] and learning["log_loss"] == learning["log_loss_equal"] < 1e-3
    assert learning["corruptions"] == {"a": 100, "b": 100} and learning["held_out"] == 500


def test_a_signal_that_only_adds_noise_loses_its_weight() -> None:
    rng = np.random.default_rng(1)
    normal = {s: rng.exponential(1.0, 2000) for s in SIGNALS}
    # Format and n-gram likelihood each see one kind of corruption; the error sees none (same as normal).
    abnormal = {
        "format-visible": {"format": 3 + rng.exponential(1.0, 300), "autoencoder": rng.exponential(1.0, 300),
                           "ngram": rng.exponential(1.0, 300)},
        "ngram-visible": {"format": rng.exponential(1.0, 300), "autoencoder": rng.exponential(1.0, 300),
                          "ngram": 3 + rng.exponential(1.0, 300)},
    }
    weights, learning = exposure.learn_weights(normal, abnormal, SIGNALS)
    assert dict(zip(SIGNALS, weights))["autoencoder"] < 0.5
    assert sum(weights) == pytest.approx(3.0)
    assert learning["log_loss"] < learning["log_loss_equal"]
    assert exposure.learn_weights(normal, abnormal, SIGNALS) == (weights, learning)  # deterministic


def test_the_weights_are_learned_deterministically_for_a_seed() -> None:
    corpus = generate.sample("uid", 2500, seed=6)
    first, second = (train(corpus, QUICK, verbose=0).fusion for _ in range(2))
    assert first is not None and second is not None
    assert first.weights is not None and first.learning["learned"]
    assert first.weights == second.weights  # on a grid of quarters: equal, not merely close
    assert first.learning["corruptions"] == second.learning["corruptions"]
    assert first.learning["log_loss"] == pytest.approx(second.learning["log_loss"], rel=1e-4)
    assert np.allclose(first.training_scores, second.training_scores, rtol=1e-5, atol=1e-9)


def test_learning_never_calls_the_benchmarks_anomaly_generators_nor_sees_their_output(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights are learned from corruptions of the autoencoder's held-out training rows, made by
    ``monitor.core.exposure`` alone: bench/quality's anomaly generators (``generate.anomalies`` and its
    corruptions, ``corpora.anomalies`` and its tasks) are never called, so none of their strings is seen."""
    corpus = generate.sample("serial", 2500, seed=9)

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("the fusion's learning called a generator of the benchmark's anomalies")

    monkeypatch.setattr(generate, "anomalies", forbidden)
    monkeypatch.setattr(corpora, "anomalies", forbidden)
    monkeypatch.setattr(corpora, "normal_test", forbidden)
    for name in generate.CORRUPTIONS:
        monkeypatch.setattr(generate, name, forbidden)
        monkeypatch.setitem(generate.CORRUPTIONS, name, forbidden)
    for tasks in corpora.TASKS.values():
        for kind, task in tasks.items():
            monkeypatch.setitem(tasks, kind, type(task)(forbidden, forbidden, task.doc))
    seen: list[tuple[list[str], dict[str, tuple[list[int], list[str]]]]] = []
    corrupt = exposure.corrupt

    def spy(strings: list[str], *args: object, **kwargs: object) -> dict[str, tuple[list[int], list[str]]]:
        made = corrupt(strings, *args, **kwargs)  # type: ignore[arg-type]
        seen.append((list(strings), made))
        return made

    monkeypatch.setattr(exposure, "corrupt", spy)
    bundle: Bundle = train(corpus, QUICK, verbose=0)
    assert bundle.fusion is not None and bundle.fusion.learning["learned"]
    [(strings, made)] = seen
    held_out = [corpus[i] for i in held_out_rows(len(corpus), QUICK.model)]
    assert strings == held_out  # the network's validation rows of the training data, and nothing else
    assert sum(len(texts) for _, texts in made.values()) == sum(bundle.fusion.learning["corruptions"].values())
    for sources, texts in made.values():
        assert all(0 <= i < len(held_out) for i in sources) and not set(texts) & set(corpus)
