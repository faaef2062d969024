from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from monitor.cli import SCORE_COLUMNS, main
from monitor.devtools import generate


def test_train_score_and_rank_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "serials.txt"
    corpus.write_text("\n".join(generate.sample("serial", 3000, seed=11)) + "\n\n")
    model = tmp_path / "model"
    assert main(["train", "--input", str(corpus), "--model", str(model), "--epochs", "5"]) == 0
    assert "saved bundle" in capsys.readouterr().out

    today = tmp_path / "today.txt"
    today.write_bytes(b"AB121E\n\nPHE-SER-CYS\nDN\xff17\nDN176\n")
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", str(model), "--input", str(today), "--output", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(SCORE_COLUMNS)
    assert [r["line"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["problem"] for r in rows] == ["", "empty line", "", "invalid UTF-8 at byte 2", ""]
    assert rows[2]["abnormal"] == "true" and rows[2]["explanation"]
    assert rows[0]["abnormal"] == "false" and not rows[0]["explanation"]
    assert "scored 3 of 5 lines" in capsys.readouterr().err

    assert main(["rank", "--model", str(model), "AB121E", "9 ER 223 ABCDSED"]) == 0
    printed = capsys.readouterr().out
    assert "'9 ER 223 ABCDSED'" in printed and "ABNORMAL" in printed and "why:" in printed


def test_score_reads_a_jsonl_field(tmp_path: Path, bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text('{"serial": "AB121E"}\n{"other": 1}\n')
    assert main(["score", "--model", str(bundle_dir), "--input", str(source), "--column", "serial"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].endswith("no field 'serial'")


def test_a_missing_model_exits_3_with_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--model", str(tmp_path / "none"), "AB1"]) == 3
    assert "monitor train" in capsys.readouterr().err


def test_an_unknown_column_exits_2_naming_the_columns(tmp_path: Path, bundle_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,serial\n1,AB121E\n")
    assert main(["score", "--model", str(bundle_dir), "--input", str(source), "--column", "sku"]) == 2
    assert "its columns are 'id', 'serial'" in capsys.readouterr().err


def test_training_on_one_distinct_value_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "same.txt"
    corpus.write_text("AB121E\n" * 100)
    assert main(["train", "--input", str(corpus), "--model", str(tmp_path / "m")]) == 2
    assert "one distinct value" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_damaged_bundle_exits_3_naming_the_file(tmp_path: Path, bundle_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "preparation.json").write_text("{}")
    assert main(["rank", "--model", str(copy), "AB1"]) == 3
    assert "preparation.json does not match the checksum" in capsys.readouterr().err


def test_generate_writes_the_requested_count(tmp_path: Path) -> None:
    out = tmp_path / "uids.txt"
    assert main(["generate", "--format", "uid", "-n", "25", "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 25 and all(generate.is_valid("uid", s) for s in lines)


@pytest.mark.slow
def test_demo_prints_the_most_abnormal_sequences_with_reasons(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    assert main(["demo", "--rows", "2000", "--formats", "serial", "--chart", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "most abnormal" in out and "flagged" in out and "%)" in out
    assert "first critical hour" in out and (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_refuses_a_state_file_of_other_settings_with_exit_4(tmp_path: Path, bundle_dir: Path) -> None:
    import subprocess
    import sys

    import yaml

    from monitor.app import state_identity
    from monitor.settings import config_from_dict
    from monitor.stream.state import StateStore

    settings = {"model": {"path": str(bundle_dir)}, "state": {"path": str(tmp_path / "state.sqlite")},
                "metrics": {"enabled": False}, "kafka": {"bootstrap_servers": ["127.0.0.1:9"]}}
    StateStore(tmp_path / "state.sqlite", state_identity(config_from_dict(settings, environ={}))).close()
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump({**settings, "window": {"length_seconds": 600}}))
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert "window_length_ms: the file has 3600000, the configuration 600000" in done.stderr
