"""The memo of per-string rows shared by encoding and scoring."""

from __future__ import annotations

import numpy as np

from monitor.core.row_memo import MEMO_PROBE_EVERY, MEMO_WINDOW, RowMemo


def test_the_memo_computes_each_distinct_string_once_and_stays_right_when_full() -> None:
    computed: list[str] = []

    def compute(batch: list[str]) -> np.ndarray:
        computed.extend(batch)
        return np.array([(len(s), ord(s[0])) for s in batch], dtype=np.int32).reshape(len(batch), 2)

    memo = RowMemo(capacity=4)
    expected = lambda batch: np.array([(len(s), ord(s[0])) for s in batch])  # noqa: E731
    assert np.array_equal(memo.rows(["a", "bb", "a"], compute), expected(["a", "bb", "a"]))
    assert computed == ["a", "bb", "a"]  # new strings are computed together, a repeat among them too
    assert np.array_equal(memo.rows(["bb", "ccc"], compute), expected(["bb", "ccc"]))
    assert computed == ["a", "bb", "a", "ccc"]  # "bb" came from the memo
    # Two new strings overflow a memo of four rows: it starts over and every row is still right.
    assert np.array_equal(memo.rows(["dddd", "a", "eeeee"], compute), expected(["dddd", "a", "eeeee"]))
    # A batch larger than the memo is computed without being remembered.
    batch = ["v", "ww", "xxx", "yyyy", "zzzzz"]
    assert np.array_equal(memo.rows(batch, compute), expected(batch))
    assert memo.rows([], compute).shape[0] == 0


def test_the_memo_is_skipped_on_a_stream_that_does_not_repeat_and_comes_back_when_it_does() -> None:
    computed: list[int] = []

    def compute(batch: list[str]) -> np.ndarray:
        computed.append(len(batch))
        return np.array([(len(s), ord(s[0])) for s in batch], dtype=np.int32).reshape(len(batch), 2)

    memo = RowMemo(capacity=10_000)
    unique = iter(f"u{i}" for i in range(100_000))
    for _ in range(MEMO_WINDOW):  # never a repeat: measured over a window of batches ...
        memo.rows([next(unique) for _ in range(50)], compute)
    assert memo.skipping  # ... then skipped: whole batches computed, nothing looked up or remembered
    size = len(memo._slots)
    repeats = [f"r{i}" for i in range(50)]
    for _ in range(MEMO_PROBE_EVERY - 1):
        assert np.array_equal(memo.rows(repeats, compute), np.array([(len(s), ord(s[0])) for s in repeats]))
    assert len(memo._slots) == size and memo.skipping
    memo.rows(repeats, compute)  # a probe: looks up (nothing found) and remembers
    assert memo.skipping
    for _ in range(MEMO_PROBE_EVERY):  # skipped again, until the next probe ...
        memo.rows(repeats, compute)
    assert not memo.skipping  # ... finds them: remembering again
    before = len(computed)
    memo.rows(repeats, compute)
    assert len(computed) == before  # every row from the memo


def test_the_memo_keeps_rows_of_its_own_type() -> None:
    memo = RowMemo(capacity=10, dtype=np.float64)
    errors = memo.rows(["a", "bb", "a"], lambda batch: np.array([[len(s) / 3] for s in batch]))
    assert errors.dtype == np.float64 and np.array_equal(errors[:, 0], [1 / 3, 2 / 3, 1 / 3])
