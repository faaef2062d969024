from __future__ import annotations

import pytest

from monitor.devtools import generate


@pytest.mark.parametrize("fmt", list(generate.FORMATS))
def test_samples_are_valid_and_repeatable(fmt: str) -> None:
    first = generate.sample(fmt, 300, seed=9)
    assert first == generate.sample(fmt, 300, seed=9)
    assert all(generate.is_valid(fmt, s) for s in first)
    assert len(set(first)) > 50


@pytest.mark.parametrize("fmt", list(generate.FORMATS))
def test_anomalies_are_never_valid_sequences_of_the_format(fmt: str) -> None:
    for kind in generate.ANOMALY_KINDS:
        for s in generate.anomalies(fmt, kind, 50, set()):
            assert not generate.is_valid(fmt, s), (kind, s)


def test_impossible_combinations_keep_a_familiar_shape() -> None:
    normal_shapes = {generate.shape_key(s) for s in generate.sample("serial", 5000)}
    broken = generate.anomalies("serial", "impossible_combination", 100, set())
    assert len(broken) == 100
    assert all(generate.shape_key(s) in normal_shapes for s in broken)
