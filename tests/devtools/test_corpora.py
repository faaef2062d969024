"""The mixed and log corpora: repeatable, weighted as documented, and anomalies that are never normal."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from monitor.devtools import corpora, corpus_mixed, generate


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_samples_are_valid_and_repeatable(corpus: str) -> None:
    first = corpora.sample(corpus, 500, seed=4)
    assert first == corpora.sample(corpus, 500, seed=4)
    assert first != corpora.sample(corpus, 500, seed=5)
    assert all(corpora.is_valid(corpus, s) for s in first)
    assert len(set(first)) > 300


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_families_are_told_apart(corpus: str) -> None:
    """Each family's strings are valid in that family only, so family shares can be counted."""
    rng = random.Random(1)
    for family in corpora.CORPORA[corpus]:
        for _ in range(50):
            text = family.make(rng)
            assert [f.name for f in corpora.CORPORA[corpus] if f.valid(text)] == [family.name], text


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_families_appear_in_roughly_their_weights(corpus: str) -> None:
    n = 40_000
    counts = Counter(corpora.family_of(corpus, s) for s in corpora.sample(corpus, n, seed=2))
    families = corpora.CORPORA[corpus]
    total = sum(f.weight for f in families)
    weights = [f.weight for f in families]
    assert max(weights) / min(weights) >= 500  # three orders of magnitude between common and rare
    for family in families:
        expected = n * family.weight / total
        # Binomial: within 5 standard deviations (plus one for the rarest).
        assert abs(counts[family.name] - expected) <= 5 * expected ** 0.5 + 1, (family.name, counts[family.name])


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_tasks_are_repeatable(corpus: str) -> None:
    for kind in corpora.ANOMALY_KINDS[corpus]:
        assert corpora.anomalies(corpus, kind, 30, set(), seed=3) == corpora.anomalies(corpus, kind, 30, set(), seed=3)
        assert corpora.normal_test(corpus, kind, 30, seed=3) == corpora.normal_test(corpus, kind, 30, seed=3)


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_every_anomaly_kind_gives_strings_that_are_not_normal(corpus: str) -> None:
    normal = set(corpora.sample(corpus, 20_000, seed=0))
    for kind in corpora.ANOMALY_KINDS[corpus]:
        normal_test = corpora.normal_test(corpus, kind, 1000, seed=1)
        assert all(corpora.is_valid(corpus, s) for s in normal_test), kind
        found = corpora.anomalies(corpus, kind, 200, normal | set(normal_test), seed=0)
        assert len(found) == 200, kind
        assert len(set(found)) > 150, kind
        assert not normal & set(found), kind
        assert not set(normal_test) & set(found), kind
        assert not any(corpora.is_valid(corpus, s) for s in found), kind


@pytest.mark.parametrize("corpus", list(corpora.CORPORA))
def test_char_edits_keep_the_shape_of_their_source(corpus: str) -> None:
    edit = {"mixed": corpora.char_edit_same_shape, "logs": corpora.misspelled_keyword}[corpus]
    rng = random.Random(7)
    edited = 0
    for source in corpora.sample(corpus, 500, seed=7):
        result = edit(source, rng)
        if result is None:
            continue
        edited += 1
        assert result != source
        assert len(result) == len(source)
        assert generate.shape_key(result) == generate.shape_key(source)
        assert corpora.signature(result) == corpora.signature(source)  # case kept too
        assert not corpora.is_valid(corpus, result)
    assert edited > 400


def test_char_edits_make_impossible_values() -> None:
    rng = random.Random(0)
    assert corpora.char_edit_same_shape("2024-03-17", rng) not in {None, "2024-03-17"}
    assert corpora.is_valid("mixed", "2024-02-29") and not corpora.is_valid("mixed", "2023-02-29")
    assert not corpora.is_valid("mixed", "2024-13-01")
    assert not corpora.is_valid("mixed", "10.256.1.1")
    assert not corpora.is_valid("mixed", "PHX-SER-CYS")
    assert not corpora.is_valid("mixed", "RET-2019-000123")  # returns exist only since 2021
    assert not corpora.is_valid("mixed", "+33 30 12345678")  # a German area code in France
    assert not corpora.is_valid("logs", "GXT /api/v1/users/8812 200 15ms")
    assert not corpora.is_valid("logs", "GET /api/v2/users/8812 200 15ms")  # no v2 endpoint for users


def test_unseen_shapes_are_unseen_and_rare_families_are_over_represented() -> None:
    shapes = corpora.known_signatures("mixed")
    assert not any(corpora.signature(s) in shapes
                   for s in corpora.anomalies("mixed", "rare_valid_vs_unseen", 200, set(), seed=0))
    rare = {f.name for f in corpus_mixed.MIXED_FAMILIES if f.weight < corpora.RARE_WEIGHT}
    test = corpora.normal_test("mixed", "rare_valid_vs_unseen", 2000, seed=0)
    share = sum(corpora.family_of("mixed", s) in rare for s in test) / len(test)
    assert 0.45 < share < 0.56


def test_foreign_formats_and_unseen_templates_are_outside_the_corpus() -> None:
    rng = random.Random(0)
    for make in corpora.FOREIGN_FORMATS.values():
        for _ in range(100):
            assert not corpora.is_valid("mixed", make(rng))
    for _ in range(500):
        assert not corpora.is_valid("logs", corpora.unseen_template(rng))


def test_field_type_changes_keep_the_template_words() -> None:
    rng = random.Random(0)
    for _ in range(50):
        result = corpora.field_type_change("Sent 47 bytes to 10.1.2.3", rng)
        assert result is not None and result.startswith("Sent ") and " bytes to " in result
        assert not corpora.is_valid("logs", result)
