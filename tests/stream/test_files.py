from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.stream.files import InputRow, open_output, read_rows, read_sequences


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
