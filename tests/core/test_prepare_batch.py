"""Preparing a batch at once gives, for every string, exactly what preparing it alone gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.prepare import Preparer
from monitor.core.prepare_settings import PrepareSettings
from monitor.devtools import generate

CORPUS = {fmt: generate.sample(fmt, 3000, seed=2) for fmt in ("serial", "uid", "residues", "plate")}
HOSTILE = ["", "-", "--__--", "AB", "ab-12-CD-34-EF-56-GH-78-IJ-90-KL", "usr--1--", "-usr-1-", "Zürich-7",
           "ÄÖÜ äöü", "日本-123", "a\x00b", "\x00", "AB\x00", "\ud800AB", "x" * 300, "AB-" * 2000, "A-" * 300,
           "9" * 60, "usr-" + "1" * 40 + "-FR", " AB 12 ", "AB12" * 20, "İstanbul-34", "ß-1"]


def reference(preparer: Preparer, sequences: list[str]) -> np.ndarray:
    if preparer.settings.encoding == "bag":
        return preparer._bag_one_by_one(sequences)
    return np.array([preparer._indices_of(s) for s in sequences], dtype=np.int64).reshape(len(sequences), -1)


def same(preparer: Preparer, sequences: list[str]) -> None:
    at_once = preparer._batch.indices(sequences)
    expected = reference(preparer, sequences)
    for i, sequence in enumerate(sequences):
        assert np.array_equal(at_once[i], expected[i]), sequence


PREPARERS = {
    "serial": PrepareSettings(),
    "uid": PrepareSettings(),
    "residues": PrepareSettings(),
    "plate": PrepareSettings(),
    "uid-lowercase": PrepareSettings(lowercase=True),
    "uid-short": PrepareSettings(length=2),
    "serial-chars": PrepareSettings(tokenize="chars", length=4),
    "uid-dash-class": PrepareSettings(separator_pattern=r"[-]+"),
    "uid-not-a-class": PrepareSettings(separator_pattern=r"-|_"),
    "uid-bag": PrepareSettings(encoding="bag"),
    "serial-chars-bag": PrepareSettings(encoding="bag", tokenize="chars"),
}


@pytest.fixture(scope="module", params=sorted(PREPARERS))
def preparer(request: pytest.FixtureRequest) -> Preparer:
    name = request.param
    return Preparer.fit(CORPUS[name.split("-")[0]], PREPARERS[name])


def test_generated_formats_and_hostile_strings_prepare_alike(preparer: Preparer) -> None:
    mixed = [s for corpus in CORPUS.values() for s in corpus[:300]]
    same(preparer, mixed + HOSTILE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("-_ .AZaz09"), max_size=70),
                min_size=1, max_size=40))
def test_random_strings_prepare_alike(sequences: list[str]) -> None:
    for name in ("uid", "serial-chars", "uid-bag", "uid-lowercase"):
        same(FITTED[name], sequences)


FITTED = {name: Preparer.fit(CORPUS[name.split("-")[0]], value) for name, value in PREPARERS.items()}


def test_the_encoding_through_the_memo_equals_the_one_by_one_path() -> None:
    preparer = Preparer.fit(CORPUS["uid"])
    batch = CORPUS["uid"][:500] + HOSTILE + CORPUS["uid"][:50]
    dense = np.zeros((len(batch), preparer.width), dtype=np.float32)
    for row, indices in enumerate(reference(preparer, batch)):
        dense[row, indices] = 1.0
    assert np.array_equal(preparer.encode(batch), dense)
    assert np.array_equal(preparer.encode(batch), dense)  # again, every row from the memo


def test_without_a_writable_cache_the_loops_are_compiled_anew_not_refused(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # numba refuses ``cache=True`` where no cache directory can be written (a read-only image, no home): the
    # service must start all the same. Running as root here, no directory can be made unwritable: numba is
    # told it has no place for its cache instead.
    from numba.core import caching

    from monitor.core.compiled import compiled

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def twice(x: int) -> int:
        return 2 * x

    assert compiled(twice)(21) == 42
    assert "not cached" in caplog.text
