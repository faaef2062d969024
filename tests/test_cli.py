from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.commands.score import SCORE_COLUMNS
from monitor.devtools import generate


def test_train_score_and_rank_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "serials.txt"
    corpus.write_text("\n".join(generate.sample("serial", 3000, seed=11)) + "\n\n")
    model = tmp_path / "model"
    assert main(["train", "--input", str(corpus), "--model", str(model), "--epochs", "5"]) == 0
    trained = capsys.readouterr().out
    assert "saved bundle" in trained and "signals of the fused score (weight, share): format " in trained

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
    assert (rows[0]["format"], rows[2]["format"]) == ("AA999A", "AAA-AAA-AAA")
    assert float(rows[0]["format_share"]) > 0.1 and float(rows[2]["format_share"]) == 0.0
    assert rows[2]["explanation"].startswith("format AAA-AAA-AAA never seen in training; ")
    assert float(rows[2]["score"]) > float(rows[0]["score"]) and float(rows[2]["error"]) > 0
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


@pytest.mark.parametrize(("damage", "fault"), [
    pytest.param(None, "is empty (0 bytes)", id="empty"),
    pytest.param("UPDATE checkpoint SET offsets = '[[\"events\", 0, -3]]'", "the offset of events[0] is -3",
                 id="negative-offset"),
    pytest.param("UPDATE checkpoint SET windows = '[]'", "windows is an array, not an object", id="windows-an-array"),
])
def test_run_refuses_an_empty_or_damaged_state_file_with_exit_4_and_leaves_it_untouched(
        tmp_path: Path, bundle_dir: Path, damage: str | None, fault: str) -> None:
    import sqlite3
    import subprocess
    import sys
    from contextlib import closing

    import yaml

    from monitor.app import state_identity
    from monitor.settings import config_from_dict
    from monitor.stream.state import Checkpoint, StateStore

    path = tmp_path / "state.sqlite"
    settings = {"model": {"path": str(bundle_dir)}, "state": {"path": str(path)}, "metrics": {"enabled": False},
                "kafka": {"bootstrap_servers": ["127.0.0.1:9"]}}
    if damage is None:
        path.touch()  # `: > state.sqlite`
    else:
        with closing(StateStore(path, state_identity(config_from_dict(settings, environ={})))) as state:
            state.save(Checkpoint({("events", 0): 6000}, saved_at_ms=1))
        with closing(sqlite3.connect(path)) as db:
            db.execute(damage)
            db.commit()
    before = path.read_bytes()
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert f"error: {path}" in done.stderr and fault in done.stderr and "left untouched" in done.stderr
    assert path.read_bytes() == before


def test_score_keeps_an_existing_output_when_the_input_is_wrong(tmp_path: Path, bundle_dir: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "keep.csv"
    keep.write_text("line,sequence\n1,AB121E\n")
    assert main(["score", "--model", str(bundle_dir), "--input", str(tmp_path / "todya.txt"),
                 "--output", str(keep)]) == 2
    assert keep.read_text() == "line,sequence\n1,AB121E\n"
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["score", "--input"], ["evaluate", "--normal"]])
def test_a_missing_input_is_named_before_the_model_is_loaded(command: list[str], tmp_path: Path,
                                                            bundle_dir: Path) -> None:
    from tests.test_layering import run_cli_probe

    said, loaded = run_cli_probe([command[0], "--model", str(bundle_dir), command[1], "todya.txt"], tmp_path)
    assert "input file todya.txt does not exist" in said and loaded == [], said


def test_score_refuses_to_write_over_its_input(tmp_path: Path, bundle_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "same.txt"
    same.write_text("AB121E\nDN176\n")
    assert main(["score", "--model", str(bundle_dir), "--input", str(same), "--output", str(same)]) == 2
    assert same.read_text() == "AB121E\nDN176\n" and "also the input" in capsys.readouterr().err


def test_generate_keeps_an_existing_output_when_its_arguments_are_wrong(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("old\n")
    assert main(["generate", "-n", "-5", "--output", str(keep)]) == 2
    assert keep.read_text() == "old\n"


def test_every_command_and_option_has_a_help_line_and_defaults_are_shown() -> None:
    import argparse

    from monitor.cli.parser import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        assert command.description, f"{name} has no description"
        shown = {action.dest for action in command._actions if action.help != argparse.SUPPRESS}
        for action in command._actions:
            if action.option_strings and action.dest != "help" and action.help == argparse.SUPPRESS:
                assert action.dest in shown, f"{name} {action.option_strings[0]} is hidden and no alias of a shown one"
            elif action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]}"
    train_help, score_help = commands.choices["train"].format_help(), commands.choices["score"].format_help()
    assert "(default: 750)" in train_help and "(default: positional)" in train_help
    assert "exit codes" in train_help and "exit codes" in score_help
    assert all(column in score_help for column in SCORE_COLUMNS)


def test_help_says_what_a_reader_needs_to_know() -> None:
    import argparse

    from monitor.cli.parser import build_parser

    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {name: " ".join(command.format_help().split()) for name, command in commands.choices.items()}
    assert "two runs without --seed write identical files (default: 0)" in helps["generate"]
    assert all(f"{fmt} (" in helps["generate"] for fmt in generate.FORMATS) and "others" not in helps["generate"]
    assert "--parts PARTS parts shown in each explanation" in helps["rank"] and "--top" not in helps["rank"]
    assert "(default: 0)" in helps["train"] and "(default: 0)" in helps["demo"]
    assert "demo-report/" in helps["demo"]
    assert "required unless --config sets state.store kafka" in helps["accept"]


def test_rank_still_takes_top_for_parts(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--model", str(bundle_dir), "--top", "1", "9 ER 223 ABCDSED"]) == 0
    [why] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("    why:")]
    assert why.count("%)") == 1, why


def test_train_refuses_a_folder_that_is_not_a_bundle_before_training(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "serials.txt"
    corpus.write_text("\n".join(generate.sample("serial", 200, seed=1)))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    assert main(["train", "--input", str(corpus), "--model", str(tmp_path / "photos")]) == 2
    assert "is not a model bundle" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["cat.jpg"]


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_binary_or_empty_input_is_refused_saying_which(tmp_path: Path, bundle_dir: Path, command: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    binary, empty = tmp_path / "ls", tmp_path / "empty.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40)  # the start of a program
    empty.write_bytes(b"")
    model = ["--model", str(tmp_path / "m")] if command == "train" else ["--model", str(bundle_dir)]
    for path, said in ((binary, "is not text: a NUL byte at byte 7"), (empty, "is empty")):
        assert main([command, "--input", str(path), *model]) == 2
        out, err = capsys.readouterr()
        assert said in err and out == ""
    assert not (tmp_path / "m").exists()


def test_train_refuses_mostly_skipped_input_unless_allowed(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "mixed.txt"
    latin1 = [f"caf\xe9 {i}".encode("latin-1") for i in range(60)]  # text, but not UTF-8
    serials = [s.encode() for s in generate.sample("serial", 40, seed=2)]
    corpus.write_bytes(b"\n".join(latin1 + serials) + b"\n\n\n")
    model = tmp_path / "m"
    assert main(["train", "--input", str(corpus), "--model", str(model)]) == 2
    assert "60 of 100 lines that are not blank give no sequence (60 invalid UTF-8)" in capsys.readouterr().err
    assert not model.exists()
    assert main(["train", "--input", str(corpus), "--model", str(model), "--allow-skipped", "0.6",
                 "--epochs", "1"]) == 0
    assert main(["train", "--input", str(corpus), "--model", str(model), "--epochs", "1", "--allow-skipped"]) == 0
    assert "trained on 40 sequences" in capsys.readouterr().out
    assert json.loads((model / "bundle.json").read_text())["metadata"]["skipped_input_lines"] == 62


def test_a_csv_field_over_the_csv_modules_limit_is_scored_and_trained_on(tmp_path: Path, bundle_dir: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    big = "A" * 200_000  # the csv module's own limit is 131,072 characters
    rows = [f"{i},{serial}" for i, serial in enumerate(generate.sample("serial", 40, seed=5))]
    rows[3] = f"3,{big}"
    source = tmp_path / "ev_big.csv"
    source.write_text("id,invoice_id\n" + "\n".join(rows) + "\n")
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", str(bundle_dir), "--input", str(source), "--column", "invoice_id",
                 "--output", str(out)]) == 0
    with out.open() as handle:
        scored = list(csv.DictReader(handle))
    assert len(scored) == 40 and scored[3]["sequence"] == big and scored[3]["abnormal"] == "true"
    assert "scored 40 of 40 lines" in capsys.readouterr().err
    assert main(["train", "--input", str(source), "--column", "invoice_id", "--model", str(tmp_path / "m"),
                 "--epochs", "1"]) == 0
    assert "trained on 40 sequences" in capsys.readouterr().out


def test_train_on_a_folder_says_it_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--input", str(tmp_path), "--model", str(tmp_path / "m")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_rank_sorts_on_request_and_explains_only_abnormal_sequences(bundle_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    normal = generate.sample("serial", 2, seed=123)
    assert main(["rank", "--model", str(bundle_dir), "--sort", normal[0], "9 ER 223 ABCDSED", normal[1]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("'9 ER 223 ABCDSED'") and "ABNORMAL" in lines[0]
    assert lines[1].startswith("    why:") and "(0%)" not in lines[1]
    assert [line for line in lines if line.startswith("    why:")] == [lines[1]]


def test_a_threshold_quantile_overrides_the_bundles_threshold(tmp_path: Path, bundle_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    sequences = generate.sample("serial", 400, seed=99)
    source = tmp_path / "today.txt"
    source.write_text("\n".join(sequences) + "\n")

    def flagged(*extra: str) -> int:
        out = tmp_path / "scores.csv"
        assert main(["score", "--model", str(bundle_dir), "--input", str(source), "--output", str(out),
                     *extra]) == 0
        with out.open() as handle:
            return sum(row["abnormal"] == "true" for row in csv.DictReader(handle))

    assert flagged("--threshold-quantile", "0.5") > 5 * max(flagged(), 1)
    assert main(["rank", "--model", str(bundle_dir), "--threshold-quantile", "1.5", "AB1"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_tensorflow_start_up_lines_are_not_shown_unless_asked(bundle_dir: Path) -> None:
    import subprocess
    import sys

    quiet = subprocess.run([sys.executable, "-m", "monitor", "rank", "--model", str(bundle_dir), "AB121E"],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "oneDNN" not in quiet.stdout, quiet.stderr


def test_formats_lists_what_the_model_learned_with_shares_and_examples(bundle_dir: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats", "--model", str(bundle_dir), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("training sequences (bundle " + lines[0].split("(bundle ")[1])
    assert lines[1].startswith("signals of the fused score (weight, share): format ")
    assert "autoencoder" in lines[1] and "ngram" in lines[1] and "held-out training rows" in lines[1]
    assert lines[3].split()[2] == "AA999A" and lines[3].split()[0].endswith("%")
    assert generate.is_valid("serial", lines[3].split()[3].rstrip(","))
    assert lines[-1].endswith("more formats)")
    assert main(["formats", "--model", str(bundle_dir), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["counts"][0][0] == "AA999A" and sum(n for _, n in table["counts"]) == table["total"]
    assert set(table["weights"]) == {"format", "autoencoder", "ngram"}
    assert sum(table["weights"].values()) == pytest.approx(3)


def test_the_autoencoder_method_ranks_by_the_error_alone(tmp_path: Path, bundle_dir: Path) -> None:
    source = tmp_path / "today.txt"
    source.write_text("AB121E\nPHE-SER-CYS\nDN176\n")
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", str(bundle_dir), "--input", str(source), "--output", str(out),
                 "--method", "autoencoder"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["score"] for r in rows] == [r["error"] for r in rows]
