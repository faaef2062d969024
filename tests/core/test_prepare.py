from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.prepare import Preparer, shape_of
from monitor.core.prepare_settings import PrepareSettings
from monitor.errors import ConfigError, InputError

RESIDUES = ["PHE-SER-CYS", "GLN-ARG-SER", "ALA-GLY-LEU", "SER-PHE-GLY"] * 50
SERIALS = ["AB121E", "AB323F", "DN176", "DN555", "KQ1234"] * 40


def test_shape_maps_letters_by_case_and_digits_and_keeps_other_characters() -> None:
    assert shape_of("AB-12c/x") == "AA-99a/a"


def test_separator_split_keeps_leading_and_trailing_separators() -> None:
    p = Preparer.fit(RESIDUES)
    assert p.split("PHE-SER") == (["PHE", "SER"], ["", "-", ""])
    assert p.split("-PHE SER/") == (["PHE", "SER"], ["-", " ", "/"])
    assert p.split("") == ([], ["", ""])


def test_default_pattern_splits_all_common_separators() -> None:
    p = Preparer.fit(RESIDUES)
    assert p.split("GX 567 FR").tokens == ["GX", "567", "FR"]
    assert p.split("AB_12/C").tokens == ["AB", "12", "C"]


def test_auto_picks_characters_for_strings_without_separators_and_separators_otherwise() -> None:
    assert Preparer.fit(SERIALS).mode == "chars"
    assert Preparer.fit(RESIDUES).mode == "separators"


def test_case_is_kept_by_default_and_folded_on_request() -> None:
    assert Preparer.fit(RESIDUES).split("Phe-ser").tokens == ["Phe", "ser"]
    folded = Preparer.fit(RESIDUES, PrepareSettings(lowercase=True))
    assert folded.split("Phe-SER").tokens == ["phe", "ser"]


def test_length_comes_from_the_training_distribution_unless_given() -> None:
    corpus = ["A-B-C"] * 95 + ["A-B-C-D-E-F"] * 5
    assert Preparer.fit(corpus, PrepareSettings(length_quantile=0.9)).length == 3
    assert Preparer.fit(corpus, PrepareSettings(length=5)).length == 5


def test_every_step_and_channel_sets_exactly_one_feature() -> None:
    p = Preparer.fit(RESIDUES)
    x = p.encode(["PHE-SER-CYS", "XXX", "PHE-SER-CYS-ALA-GLY-LEU", ""])
    assert x.shape == (4, p.width)
    assert np.all(x.sum(axis=1) == p.steps * len(p.channels))


def test_positional_encoding_sees_order_and_bag_does_not() -> None:
    corpus = ["AB 12", "CD 34", "AB 34", "CD 12"] * 20
    positional = Preparer.fit(corpus)
    bag = Preparer.fit(corpus, PrepareSettings(encoding="bag"))
    assert not np.array_equal(*positional.encode(["AB 12", "12 AB"]))
    assert np.array_equal(*bag.encode(["AB 12", "12 AB"]))


def test_unknown_tokens_take_the_out_of_vocabulary_slot() -> None:
    p = Preparer.fit(RESIDUES, PrepareSettings(vocabulary_size=4))  # pad, oov and two tokens
    assert len(p.vocabulary) == 2
    x = p.encode(["TRP-SER-CYS"])
    assert x.sum() == p.steps * len(p.channels)  # still one feature per group: the OOV one


def test_extra_length_beyond_the_kept_tokens_changes_the_encoding() -> None:
    p = Preparer.fit(RESIDUES)
    assert p.length == 3
    base, longer = p.encode(["PHE-SER-CYS", "PHE-SER-CYS-ALA-GLY"])
    assert not np.array_equal(base, longer)


def test_round_trip_through_a_plain_dict_encodes_identically() -> None:
    p = Preparer.fit(RESIDUES)
    q = Preparer.from_dict(p.to_dict())
    sample = ["PHE-SER-CYS", "ZZZ", "ala-gly", "PHE SER CYS ALA"]
    assert np.array_equal(p.encode(sample), q.encode(sample))


def test_describe_names_the_parts_of_the_sequence() -> None:
    p = Preparer.fit(RESIDUES)
    errors = np.zeros(p.width)
    errors[p.active_features(["PHE-XYZ-CYS"])[0][1]] = 1.0  # the token feature of position 2
    assert p.describe("PHE-XYZ-CYS", errors, top=1) == [("token 2 'XYZ'", 1.0)]


def test_describe_leaves_out_parts_worth_nothing() -> None:
    p = Preparer.fit(RESIDUES)
    errors = np.zeros(p.width)
    errors[p.active_features(["PHE-XYZ-CYS"])[0][1]] = 1.0
    assert len(p.describe("PHE-XYZ-CYS", errors, top=5)) == 1  # the other four parts carry 0%


def test_describe_keeps_extra_tokens_apart() -> None:
    p = Preparer.fit(RESIDUES)
    errors = np.ones(p.width)
    names = [name for name, _ in p.describe("PHE-SER-CYS-ALA-GLY", errors, top=p.width)]
    assert "extra tokens 'ALA GLY'" in names


@pytest.mark.parametrize("field,value", [("tokenize", "words"), ("encoding", "tfidf"), ("vocabulary_size", 2),
                                         ("length", 0), ("separator_pattern", "(")])
def test_bad_settings_are_rejected_with_the_field_named(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        PrepareSettings(**{field: value})


def test_an_empty_corpus_is_an_input_error() -> None:
    with pytest.raises(InputError, match="empty"):
        Preparer.fit([])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_any_text_encodes_to_one_feature_per_group(texts: list[str]) -> None:
    for p in (_RESIDUE_PREPARER, _SERIAL_PREPARER):
        x = p.encode(texts)
        assert x.shape == (len(texts), p.width)
        assert np.all(x.sum(axis=1) == p.steps * len(p.channels))


_RESIDUE_PREPARER = Preparer.fit(RESIDUES)
_SERIAL_PREPARER = Preparer.fit(SERIALS)


def test_remembered_encodings_equal_fresh_ones() -> None:
    p = Preparer.fit(RESIDUES)
    batch = ["PHE-SER-CYS", "XXX", "PHE-SER-CYS", "ala-gly"]
    first = p.encode(batch)
    assert np.array_equal(p.encode(batch), first)  # from the memo
    p.forget()
    assert np.array_equal(p.encode(batch), first)
