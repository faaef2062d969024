from __future__ import annotations

import numpy as np
import pytest

from monitor.core.bundle import Bundle
from monitor.core.score import Scorer, group_score
from monitor.devtools import generate


def test_group_score_is_the_weighted_mean_error() -> None:
    assert group_score(np.array([1.0, 3.0])) == 2.0
    assert group_score(np.array([1.0, 3.0]), np.array([3.0, 1.0])) == 1.5
    assert np.isnan(group_score(np.array([1.0]), np.array([0.0])))


def test_group_score_rejects_negative_weights_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        group_score(np.array([1.0, 2.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        group_score(np.array([1.0, 2.0]), np.array([1.0]))


def test_scores_are_aligned_and_flag_above_the_threshold(serial_bundle: Bundle) -> None:
    scorer = Scorer(serial_bundle)
    sequences = ["AB121E", "DN176", "usr-104512-DE", "ab121e"]
    scores = scorer.score(sequences)
    assert scores.errors.shape == scores.percentiles.shape == scores.flags.shape == (4,)
    assert np.array_equal(scores.flags, scores.errors > serial_bundle.threshold)
    assert np.all((scores.percentiles >= 0) & (scores.percentiles <= 100))


def test_foreign_and_broken_sequences_rank_above_normal_ones(serial_bundle: Bundle) -> None:
    scores = Scorer(serial_bundle).score(["AB121E", "KQ4411", "PHE-SER-CYS", "ab121e", "AB12-1E"])
    normal, broken = scores.errors[:2], scores.errors[2:]
    assert broken.min() > normal.max()
    assert np.all(scores.flags[2:])


def test_a_long_sequence_does_not_score_as_its_first_tokens(serial_bundle: Bundle) -> None:
    length = serial_bundle.preparer.length
    head = "AB121EFG"[:length]
    errors = Scorer(serial_bundle).errors([head, head + "9999999999"])
    assert errors[1] > errors[0]


def test_explanations_point_at_the_broken_part(serial_bundle: Bundle) -> None:
    [reasons] = Scorer(serial_bundle).explain(["AB1-21E"], top=3)
    assert len(reasons) == 3
    assert any("'-'" in part for part, _ in reasons)
    shares = [share for _, share in reasons]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0


def test_scoring_nothing_gives_empty_arrays(serial_bundle: Bundle) -> None:
    scores = Scorer(serial_bundle).score([])
    assert scores.errors.shape == (0,)


def test_a_scorer_for_another_thread_scores_alike_with_a_memo_of_its_own(serial_bundle: Bundle) -> None:
    scorer = Scorer(serial_bundle)
    other = scorer.for_another_thread()
    sequences = ["AB121E", "KQ4324", "9 ER 223 ABCDSED"]
    np.testing.assert_array_equal(other.errors(sequences), scorer.errors(sequences))
    assert other.version == scorer.version and other.threshold == scorer.threshold
    assert other.bundle.preparer is not scorer.bundle.preparer
    assert other.bundle.preparer._memo is not scorer.bundle.preparer._memo
    assert other._errors is not scorer._errors


def test_a_repeated_string_is_not_scored_again_and_keeps_its_error(serial_bundle: Bundle,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = Scorer(serial_bundle)
    batch = ["AB121E", "KQ4324", "AB121E", "usr-104512-DE"]
    first = scorer.errors(batch)
    assert first[0] == first[2]
    encoded: list[list[str]] = []
    active_features = serial_bundle.preparer.active_features
    monkeypatch.setattr(serial_bundle.preparer, "active_features",
                        lambda sequences: encoded.append(list(sequences)) or active_features(sequences))
    again = scorer.errors(["KQ4324", "DN176", "AB121E"])
    assert encoded == [["DN176"]]  # only the new string is prepared and reconstructed
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    scorer.forget()  # as cold as a new scorer: every string scored afresh, to within float rounding
    np.testing.assert_allclose(scorer.errors(batch), first, rtol=1e-6)
    assert encoded[-1] == batch


def test_a_strings_error_agrees_to_float32_rounding_whatever_batch_it_is_scored_in(serial_bundle: Bundle) -> None:
    """The model's float32 kernels, and so their rounding, depend on a batch's row count: a string's error
    differs in its last digits between a batch of one and a batch of thousands (seen up to 2e-5 relative;
    tests/tolerances.py holds figures from other batchings to that). Never more: the
    rows stay each string's own."""
    sequences = generate.sample("serial", 1_200, seed=4)
    whole = Scorer(serial_bundle).errors(sequences)
    for size in (1, 7, 100):
        scorer = Scorer(serial_bundle)
        parts = np.concatenate([scorer.errors(sequences[i:i + size]) for i in range(0, len(sequences), size)])
        np.testing.assert_allclose(parts, whole, rtol=1e-4)
    assert len(np.unique(whole)) > 100  # distinct strings, distinct errors: a row mixed up would show
