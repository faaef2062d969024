"""Format signatures: readable, stable, bounded, and the same one by one or a batch at a time."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monitor.core.signature import EMPTY, FormatReader, signature
from monitor.devtools import corpora, generate


@pytest.mark.parametrize(("text", "expected"), [
    ("AB121E", "AA999A"),
    ("DN176", "AA999"),
    ("KQ4411", "AA9999"),
    ("usr-104512-DE", "aaa-9{6}-AA"),
    ("PHE-SER-CYS", "AAA-AAA-AAA"),
    ("GX 567 FR 2", "AA 999 AA 9"),
    ("2024-03-17", "9999-99-99"),
    ("j.smith@example.org", "a.a{5}@a{7}.aaa"),
    ("v1.12.3", "a9.99.9"),
    ("4111111111111111", "9{16}"),
    ("3f2a9c1e-4b7d-11ee-be56-0242ac120002", "[9a]{8}-[9a]{4}-[9a]{4}-[9a]{4}-[9a]{12}"),
    ("3f2a9c1e-4b7d-1111-be56-0242ac120002", "[9a]{8}-[9a]{4}-[9a]{4}-[9a]{4}-[9a]{12}"),
    ("aGVsbG8gd29ybGQ", "[9Aa]{15}"),
    ("Straße 12", "[AaL]{6} 99"),
    ("-----", "-{5}"),
    ("a\tb", "a~a"),
    ("", EMPTY),
    ("Connection from 10.2.3.4 closed after 123ms, user alice retried 3 times",
     "[Aa]+ a+ 9+.9+.9+.9+ a+ a+ [9a]+, a+ a+ a+ 9+ a+"),
])
def test_signatures_of_representative_strings(text: str, expected: str) -> None:
    assert signature(text) == expected


def test_one_template_of_free_text_has_one_format_whatever_its_words_and_numbers() -> None:
    lines = [f"Connection from 10.{a}.{b}.{c} closed after {ms}ms, user {user} retried {n} times"
             for a, b, c, ms, user, n in [(2, 3, 4, 5, "al", 1), (200, 13, 94, 12345, "bartholomew", 17)]]
    assert signature(lines[0]) == signature(lines[1])


def test_very_long_text_is_cut_after_a_bounded_number_of_tokens() -> None:
    words = " ".join(f"w{i}" for i in range(500))
    assert signature(words) == " ".join(["[9a]+"] * 24) + " …"


def test_a_batch_gives_each_sequence_the_signature_it_has_alone() -> None:
    rng = random.Random(4)
    alphabet = "aZ9-_ .é€\t\n/ßx" + "0123456789abcdef"  # a newline takes the one-by-one path
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(2_000)]
    generated = [s for fmt in generate.FORMATS for s in generate.sample(fmt, 300, seed=2)]
    logs = corpora.sample("logs", 300, seed=2)
    sequences = randoms + generated + logs
    reader = FormatReader(memo_limit=50)  # a small memo is cleared many times: still the same answers
    for chunk in (sequences[:700], sequences[700:], sequences):
        formats = reader.read(chunk)
        assert formats.of_each() == [signature(s) for s in chunk]
        assert len(set(formats.names)) == len(formats.names)  # each name once


def test_a_stream_of_unique_identifiers_has_few_formats() -> None:
    uids = generate.sample("uid", 5_000, seed=9)
    assert len(set(uids)) > 4_000
    assert FormatReader().read(uids).names == ["aaa-9{6}-AA"]


def test_an_empty_batch_has_no_formats() -> None:
    formats = FormatReader().read([])
    assert len(formats) == 0 and formats.names == [] and formats.ids.dtype == np.int32
