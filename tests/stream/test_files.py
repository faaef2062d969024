from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.stream.files import InputRow, check_skipped_share, open_output, read_rows, read_sequences


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_text_gives_one_row_per_line_and_says_what_was_wrong(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", b"AB121E\n\n   \nDN\xff176\r\nKQ4411")
    assert list(read_rows(path)) == [
        InputRow(1, "AB121E"), InputRow(2, None, "empty line"), InputRow(3, None, "empty line"),
        InputRow(4, None, "invalid UTF-8 at byte 2"), InputRow(5, "KQ4411")]


def test_csv_reads_the_named_column_and_reports_short_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b'id,serial\n1,AB121E\n2\n3,""\n4,"DN,176"\n')
    assert list(read_rows(path, column="serial")) == [
        InputRow(2, "AB121E"), InputRow(3, None, "only 1 cells; column 'serial' is cell 2"),
        InputRow(4, None, "field 'serial' is empty"), InputRow(5, "DN,176")]


def test_an_unknown_csv_column_lists_the_real_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"id,serial\n1,AB121E\n")
    with pytest.raises(InputError, match="no column 'sku'; its columns are 'id', 'serial'"):
        list(read_rows(path, column="sku"))


def test_jsonl_reports_broken_json_missing_fields_and_wrong_types(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'{"s": "AB1"}\n{"s": \n{"t": "x"}\n{"s": 5}\n[1]\n')
    rows = list(read_rows(path, column="s"))
    assert [r.sequence for r in rows] == ["AB1", None, None, None, None]
    assert rows[1].problem.startswith("not JSON")
    assert rows[2].problem == "no field 's'"
    assert rows[3].problem == "field 's' is int, not a string"
    assert rows[4].problem == "not a JSON object but list"


def test_structured_inputs_need_a_column_and_text_refuses_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--column"):
        list(read_rows(write(tmp_path, "in.jsonl", b"{}\n")))
    with pytest.raises(InputError, match="plain text"):
        list(read_rows(write(tmp_path, "in.txt", b"x\n"), column="s"))


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list(read_rows(tmp_path / "nope.txt"))


def test_read_sequences_splits_usable_and_rejected(tmp_path: Path) -> None:
    sequences, rejected = read_sequences(write(tmp_path, "in.txt", b"A1\n\nB2\n"))
    assert sequences == ["A1", "B2"]
    assert rejected == [InputRow(2, None, "empty line")]


def test_an_input_that_is_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        list(read_rows(tmp_path))


def test_a_csv_field_over_the_csv_modules_limit_is_read_as_a_long_text_line_is(tmp_path: Path) -> None:
    big = "A" * 200_000  # the csv module's own limit is 131,072 characters
    path = write(tmp_path, "in.csv", f"id,serial\n1,{big}\n2,AB121E\n".encode())
    assert list(read_rows(path, column="serial")) == [InputRow(2, big), InputRow(3, "AB121E")]
    assert list(read_rows(write(tmp_path, "in.txt", f"{big}\n".encode()))) == [InputRow(1, big)]


def test_a_csv_line_the_csv_module_cannot_read_is_a_row_with_its_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"id,serial\n1,AB\r121E\n2,\"DN\n")
    assert list(read_rows(path, column="serial")) == [
        InputRow(2, None, "not CSV: new-line character seen in unquoted field"), InputRow(3, "DN")]


def test_an_empty_file_is_refused_saying_it_is_empty(tmp_path: Path) -> None:
    for name in ("in.txt", "in.csv", "in.jsonl"):
        with pytest.raises(InputError, match="is empty"):
            read_rows(write(tmp_path, name, b""), column=None if name == "in.txt" else "s")


@pytest.mark.parametrize(("data", "why"), [
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "a NUL byte at byte 7"),
    ("AB121E\n".encode("utf-16"), "a NUL byte at byte 3"),
    (bytes(range(1, 256)) * 4, "61% of its first 1,020 characters"),  # no NUL, but mostly bytes no text has
])
def test_a_file_that_is_not_text_is_refused_before_any_row(tmp_path: Path, data: bytes, why: str) -> None:
    with pytest.raises(InputError, match=f"is not text: {why}"):
        read_rows(write(tmp_path, "in.txt", data))


def test_text_in_another_encoding_is_still_read_line_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", "AB121E\ncaf\xe9 au lait\n".encode("latin-1"))
    assert list(read_rows(path)) == [InputRow(1, "AB121E"), InputRow(2, None, "invalid UTF-8 at byte 3")]


def test_training_input_is_refused_when_more_than_the_share_of_lines_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    skipped = [InputRow(i, None, "invalid UTF-8 at byte 0") for i in range(6)]
    blank = [InputRow(i, None, "empty line") for i in range(100)]
    check_skipped_share(path, 5, skipped[:5] + blank, 0.5)  # blank lines are not counted
    with pytest.raises(InputError, match=r"6 of 11 lines that are not blank give no sequence \(6 invalid UTF-8\)"):
        check_skipped_share(path, 5, skipped, 0.5)
    check_skipped_share(path, 5, skipped, 1.0)
    with pytest.raises(InputError, match="no usable sequence"):
        check_skipped_share(path, 0, skipped, 1.0)


def test_output_is_written_whole_or_the_old_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "keep.csv"
    target.write_text("yesterday\n")
    with pytest.raises(KeyboardInterrupt):
        with open_output(target) as out:
            out.write("half of today")
            raise KeyboardInterrupt
    assert target.read_text() == "yesterday\n" and list(tmp_path.iterdir()) == [target]
    with open_output(target) as out:
        out.write("today\n")
    assert target.read_text() == "today\n" and list(tmp_path.iterdir()) == [target]


def test_writing_over_the_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("AB121E\n")
    with pytest.raises(InputError, match="also the input"):
        open_output(same, inputs=[same])
    assert same.read_text() == "AB121E\n"


def test_an_output_in_a_missing_folder_is_refused_with_the_folder_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_output(tmp_path / "nowhere" / "out.csv")
