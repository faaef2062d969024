"""Ranking figures agree with scikit-learn's, ties included; thresholds flag as scoring flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.core.evaluation import auroc, average_precision, evaluate, precision_at_k

scores_and_labels = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.5, 2.0]) | st.floats(0, 10), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda labels: 0 < sum(labels) < len(labels))))


@settings(deadline=None, max_examples=300)
@given(scores_and_labels)
def test_auroc_and_average_precision_equal_scikit_learns(data: tuple[list[float], list[int]]) -> None:
    scores, labels = np.array(data[0]), np.array(data[1])
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_precision_at_k_counts_anomalies_among_the_highest_scores() -> None:
    labels, scores = np.array([0, 1, 0, 1, 1]), np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    assert precision_at_k(labels, scores) == pytest.approx(2 / 3)
    assert precision_at_k(labels, scores, k=1) == 0.0


def test_ranking_needs_both_kinds() -> None:
    with pytest.raises(ValueError, match="both"):
        auroc(np.zeros(3), np.ones(3))


def test_operating_points_flag_errors_above_each_quantile_of_the_training_errors() -> None:
    training = np.linspace(0, 1, 1001)
    normal, anomalies = np.array([0.1, 0.5, 0.96, 0.999]), np.array([0.97, 0.995, 2.0])
    result = evaluate(normal, anomalies, training, bundle_quantile=0.99, quantiles=(0.95,))
    assert [p.quantile for p in result.points] == [0.95, 0.99]
    at_99 = result.at_bundle_threshold
    assert at_99.threshold == pytest.approx(0.99)
    assert (at_99.true_negatives, at_99.false_positives, at_99.false_negatives, at_99.true_positives) == (3, 1, 1, 2)
    assert at_99.normal_flag_rate == 0.25 and at_99.recall == pytest.approx(2 / 3) and at_99.precision == 2 / 3
    assert result.to_dict()["points"][1]["recall"] == pytest.approx(2 / 3)


def test_without_anomalies_only_flag_rates_are_given() -> None:
    result = evaluate(np.array([0.1, 0.2, 0.9]), np.array([]), np.linspace(0, 1, 101), bundle_quantile=0.5)
    assert result.auroc is None and result.average_precision is None and result.precision_at_k is None
    assert result.at_bundle_threshold.normal_flag_rate == pytest.approx(1 / 3)
    assert result.to_dict()["points"][0]["recall"] is None
