"""Records per format in a window: exact and order-independent while the formats fit, bounded when they do not."""

from __future__ import annotations

import json
import zlib
from collections import Counter

import numpy as np
import pytest

from monitor.hourly.format_counts import FormatCounts

Record = tuple[str, str]  # (format, sequence)


def records(n: int, formats: int, zipf: float, seed: int) -> list[Record]:
    """``n`` records over ``formats`` formats, format ``i`` with probability proportional to 1 / (i + 1) ** zipf;
    sequences drawn from a small range per format, so that they repeat."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, formats + 1) ** zipf
    drawn = rng.choice(formats, size=n, p=p / p.sum())
    return [(f"F{f:04d}", f"S{f}-{rng.integers(40)}") for f in drawn.tolist()]


def hashes_of(sequences: list[str]) -> np.ndarray:
    return np.array([zlib.crc32(s.encode()) for s in sequences], dtype=np.uint64)


def add(counts: FormatCounts, batch: list[Record], rng: np.random.Generator | None = None,
        hashes: dict[str, int] | None = None) -> None:
    """Add ``batch``, listing its formats in a shuffled order (with ``rng``); ``hashes``: overrides per text."""
    names = sorted({f for f, _ in batch})
    if rng is not None:
        names = [names[i] for i in rng.permutation(len(names))]
    index = {name: i for i, name in enumerate(names)}
    sequences = [s for _, s in batch]
    text_hashes = hashes_of(sequences) if hashes is None else np.array([hashes[s] for s in sequences], np.uint64)
    counts.add(np.array([index[f] for f, _ in batch], dtype=np.int64), names, sequences, text_hashes)


def parts_of(data: list[Record], parts: int, batches: int, seed: int) -> list[list[list[Record]]]:
    """The records shuffled, dealt into ``parts`` partitions of ``batches`` batches of uneven sizes."""
    rng = np.random.default_rng(seed)
    shuffled = [data[i] for i in rng.permutation(len(data))]
    cuts = np.sort(rng.choice(np.arange(1, len(data)), parts * batches - 1, replace=False))
    chunks = [shuffled[a:b] for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(data)])]
    return [chunks[p * batches:(p + 1) * batches] for p in range(parts)]


def summarised(parts: list[list[list[Record]]], slots: int, examples: int, seed: int) -> FormatCounts:
    """Each part's batches added to its own summary, then the parts merged in a shuffled order: one after the
    other for even seeds, pairwise as a tree for odd ones."""
    rng = np.random.default_rng(seed)
    summaries = []
    for batches in parts:
        part = FormatCounts(slots, examples)
        for batch in batches:
            add(part, batch, rng)
        summaries.append(part)
    summaries = [summaries[i] for i in rng.permutation(len(summaries))]
    while len(summaries) > 1:
        if seed % 2:
            summaries = [_merged(*summaries[i:i + 2]) for i in range(0, len(summaries), 2)]
        else:
            summaries = [_merged(*summaries[:2]), *summaries[2:]]
    return summaries[0]


def _merged(first: FormatCounts, second: FormatCounts | None = None) -> FormatCounts:
    merged = first.copy()
    if second is not None:
        merged.merge(second)
    return merged


def bottom(data: list[Record], name: str, k: int) -> list[str]:
    """The ``k`` distinct sequences of format ``name`` with the smallest (hash, sequence)."""
    distinct = {s for f, s in data if f == name}
    return [s for _, s in sorted((zlib.crc32(s.encode()), s) for s in distinct)[:k]]


def test_counts_are_exact_and_the_summary_is_the_same_in_any_order_when_the_formats_fit() -> None:
    data = records(3_000, 40, 1.0, seed=0)
    truth = Counter(f for f, _ in data)
    summaries = [summarised(parts_of(data, 4, 5, seed), 64, 3, seed) for seed in range(6)]
    first = summaries[0]
    assert all(s == first for s in summaries[1:])  # counts, errors, floor and examples
    assert {name: first.count(name) for name in truth} == dict(truth) and len(first) == len(truth)
    assert first.total == 3_000 and first.floor == 0 and all(first.error(name) == 0 for name in truth)
    assert all(first.examples(name) == bottom(data, name, 3) for name in truth)


def test_heavy_hitters_are_kept_within_their_bounds_in_every_order_with_many_more_formats_than_slots() -> None:
    data = records(40_000, 2_000, 1.1, seed=1)
    truth = Counter(f for f, _ in data)
    heavy = {name for name, n in truth.items() if n > len(data) / 32}
    assert 3 <= len(heavy) < 32 and len(truth) > 1_000
    kept_sets = set()
    for seed in range(6):
        counts = summarised(parts_of(data, 4, 6, seed), 32, 3, seed)
        kept = [name for name, _ in counts.top(len(counts))]
        kept_sets.add(frozenset(kept))
        assert len(kept) == 32 and heavy <= set(kept) and counts.total == len(data)
        assert 0 < counts.floor <= len(data) / 32 and sum(counts.count(name) for name in kept) <= len(data)
        for name in kept:
            assert counts.count(name) - counts.error(name) <= truth[name] <= counts.count(name)
            assert counts.error(name) <= counts.floor and counts.count(name) >= counts.floor
        assert all(n <= counts.floor for name, n in truth.items() if name not in kept)
    assert len(kept_sets) > 1  # the light formats kept do depend on the order: the bounds are what holds


def above_running_share_everywhere(parts: list[list[list[Record]]], slots: int) -> set[str]:
    """Formats that, in every part, after every batch, have more than (the part's records so far) / slots records
    (so they are in each part's first batch): no summary can evict them, so they are never estimated."""
    qualified: set[str] | None = None
    for batches in parts:
        seen, so_far = Counter(), 0
        for batch in batches:
            seen.update(f for f, _ in batch)
            so_far += len(batch)
            above = {name for name, n in seen.items() if n > so_far / slots}
            qualified = above if qualified is None else qualified & above
    return qualified or set()


def test_heavy_hitters_above_their_running_share_in_every_part_are_counted_exactly_in_every_order() -> None:
    data = records(40_000, 2_000, 1.1, seed=2)
    truth = Counter(f for f, _ in data)
    tested: set[str] = set()
    for seed in range(6):
        parts = parts_of(data, 4, 6, seed)
        exact = above_running_share_everywhere(parts, 32)
        assert len(exact) >= 2  # the head of the Zipf stream (a small first batch may leave some out)
        tested |= exact
        counts = summarised(parts, 32, 3, seed)
        for name in exact:
            assert counts.error(name) == 0 and counts.count(name) == truth[name]
            assert counts.examples(name) == bottom(data, name, 3)  # error 0: none of its records was lost
    assert tested == {name for name, n in truth.items() if n > len(data) / 32}  # each heavy hitter, some order


def test_examples_are_the_smallest_hash_distinct_sequences_whatever_the_split() -> None:
    # Many repeats, and hash collisions among the smallest: "S0-5" and "S0-7" share hash 1, "S0-9" and "S0-1" 2.
    data = [(f"F{i % 3}", f"S{i % 3}-{(i * 7) % 10}") for i in range(600)]
    hashes = {s: zlib.crc32(s.encode()) for _, s in data} | {"S0-5": 1, "S0-7": 1, "S0-9": 2, "S0-1": 2}
    expected = {f: [s for _, s in sorted((hashes[s], s) for s in {t for g, t in data if g == f})[:4]]
                for f in ("F0", "F1", "F2")}
    assert expected["F0"] == ["S0-5", "S0-7", "S0-1", "S0-9"]
    results = []
    for seed, (splits, batches) in enumerate([(1, 1), (3, 4), (3, 4), (2, 6), (5, 2)]):
        rng = np.random.default_rng(seed)
        parts = []
        for rows in np.array_split(rng.permutation(len(data)), splits):
            part = FormatCounts(8, 4)
            for chunk in np.array_split(rows, batches):
                add(part, [data[i] for i in chunk], rng, hashes)
            parts.append(part)
        merged = parts[0].copy()
        for part in parts[1:]:
            merged.merge(part)
        results.append(merged)
        for f, sequences in expected.items():
            assert merged.examples(f) == sequences and len(set(merged.examples(f))) == 4
    assert all(r == results[0] for r in results) and results[0].examples("F9") == []


def test_an_evicted_format_loses_its_examples_and_collects_again_when_it_comes_back() -> None:
    counts = FormatCounts(slots=2, examples=2)
    add(counts, [("A", f"a{i}") for i in range(5)] + [("B", f"b{i}") for i in range(5)] + [("C", "c0")])
    assert counts.top(3) == [("A", 5), ("B", 5)] and counts.floor == 1 and counts.examples("C") == []
    add(counts, [("C", f"c{i}") for i in range(1, 11)])  # C had at most the floor, 1, before: as error
    assert counts.top(3) == [("C", 11), ("A", 5)] and counts.error("C") == 1 and counts.floor == 5
    assert counts.examples("C") == bottom([("C", f"c{i}") for i in range(1, 11)], "C", 2)
    assert counts.count("B") == 0 and counts.error("B") == 0 and counts.examples("B") == []


def test_each_step_is_commutative_and_ignores_the_order_of_the_names_of_a_batch() -> None:
    data = records(5_000, 300, 1.0, seed=3)
    parts = parts_of(data, 2, 3, seed=4)
    one, two = summarised(parts[:1], 16, 3, seed=5), summarised(parts[1:], 16, 3, seed=6)
    assert _merged(one, two) == _merged(two, one) and _merged(one, two).floor > 0
    for batch in parts[0]:
        listed, shuffled = FormatCounts(16, 3), FormatCounts(16, 3)
        add(listed, batch)
        add(shuffled, batch, np.random.default_rng(7))
        assert listed == shuffled and listed.floor > 0


def test_a_summary_round_trips_exactly_through_json() -> None:
    counts = summarised(parts_of(records(5_000, 300, 1.0, seed=8), 3, 2, seed=9), 16, 3, seed=9)
    counts.add(np.array([0, 0]), ["ÄÖ-\ud800"], ["Ä9\ud800", "Ö1"], np.array([2 ** 64 - 1, 2 ** 63], np.uint64))
    restored = FormatCounts.from_dict(json.loads(json.dumps(counts.to_dict())))
    assert restored == counts and repr(restored) == repr(counts) and restored.floor > 0
    restored.merge(counts)
    assert restored != counts and restored.total == 2 * counts.total


def test_top_orders_by_count_then_name_and_shares_sum_to_the_kept_fraction() -> None:
    counts = FormatCounts(slots=3, examples=1)
    add(counts, [("b", "1")] * 4 + [("a", "2")] * 4 + [("d", "3")] * 2 + [("c", "4")] * 2 + [("e", "5")])
    assert counts.top(5) == [("a", 4), ("b", 4), ("c", 2)] and counts.top(1) == [("a", 4)] and counts.top(0) == []
    assert counts.floor == 2 and len(counts) == 3  # d lost the tie with c by name
    shares = counts.shares()
    assert shares == {"a": 4 / 13, "b": 4 / 13, "c": 2 / 13}
    assert sum(shares.values()) == pytest.approx(sum(counts.count(n) for n in shares) / counts.total)
    assert FormatCounts().shares() == {} and FormatCounts().top(3) == []


def test_a_copy_is_independent_of_its_original() -> None:
    counts = FormatCounts(4, 2)
    add(counts, [("A", "a1"), ("B", "b1")])
    twin = counts.copy()
    add(twin, [("A", "a0")])
    assert twin != counts and counts.count("A") == 1 and twin.count("A") == 2


@pytest.mark.parametrize("make", [
    lambda: FormatCounts(slots=0),
    lambda: FormatCounts(slots=2.5),  # type: ignore[arg-type]
    lambda: FormatCounts(examples=-1),
    lambda: FormatCounts().add(np.array([0, 0]), ["A"], ["a"], np.array([1], np.uint64)),
    lambda: FormatCounts().add(np.array([0]), ["A"], ["a", "b"], np.array([1, 2], np.uint64)),
    lambda: FormatCounts().add(np.array([[0]]), ["A"], ["a"], np.array([1], np.uint64)),
    lambda: FormatCounts().add(np.array([1]), ["A"], ["a"], np.array([1], np.uint64)),
    lambda: FormatCounts().add(np.array([-1]), ["A"], ["a"], np.array([1], np.uint64)),
    lambda: FormatCounts().add(np.array([0.0]), ["A"], ["a"], np.array([1], np.uint64)),
    lambda: FormatCounts().add(np.array([0]), ["A"], ["a"], np.array([-1])),
    lambda: FormatCounts().add(np.array([0]), ["A"], ["a"], np.array([0.5])),
    lambda: FormatCounts().add(np.array([0, 1]), ["A", "A"], ["a", "b"], np.array([1, 2], np.uint64)),
    lambda: FormatCounts(8).merge(FormatCounts(16)),
    lambda: FormatCounts(8, 1).merge(FormatCounts(8, 2)),
    lambda: FormatCounts().top(-1),
    lambda: FormatCounts.from_dict({**FormatCounts(1).to_dict(), "formats": {
        "A": {"count": 1, "error": 0, "examples": []}, "B": {"count": 1, "error": 0, "examples": []}}}),
])
def test_bad_arguments_raise_value_error_naming_the_problem(make: object) -> None:
    with pytest.raises(ValueError, match=r"must|cannot"):
        make()  # type: ignore[operator]
