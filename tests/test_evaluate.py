"""The evaluate command: the same figures as the quality benchmark, charts written, clear errors."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.score import Scorer
from monitor.devtools import generate

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def quality_benchmark():  # bench/ is not a package: load bench/quality.py by its path
    spec = importlib.util.spec_from_file_location("quality", ROOT / "bench" / "quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str], list[str]]:
    folder = tmp_path_factory.mktemp("evaluate")
    normal = generate.sample("serial", 500, seed=41)
    anomalies = [a for kind in ("other_format", "extra_char", "case_change")
                 for a in generate.anomalies("serial", kind, 30, set(normal), seed=41)]
    (folder / "normal.txt").write_text("\n".join(normal) + "\n")
    (folder / "bad.txt").write_text("\n".join(anomalies) + "\n")
    return folder / "normal.txt", folder / "bad.txt", normal, anomalies


def test_evaluate_gives_the_quality_benchmarks_figures(labelled: tuple[Path, Path, list[str], list[str]],
                                                       bundle_dir: Path, serial_bundle: Bundle,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    normal_file, bad_file, normal, anomalies = labelled
    scorer = Scorer(serial_bundle)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
    fused, errors = scorer.score(normal + anomalies).fused, scorer.errors(normal + anomalies)
    for method, values, threshold in (("fused", fused, scorer.fused_threshold),
                                      ("autoencoder", errors, serial_bundle.threshold)):
        assert main(["evaluate", "--model", str(bundle_dir), "--normal", str(normal_file), "--anomalies",
                     str(bad_file), "--json", "--method", method]) == 0
        got = json.loads(capsys.readouterr().out)
        expected = quality_benchmark().evaluate(labels, values)
        assert got["auroc"] == pytest.approx(expected["auroc"], abs=1e-12)
        assert got["average_precision"] == pytest.approx(expected["ap"], abs=1e-12)
        assert got["precision_at_k"] == pytest.approx(expected["p_at_k"], abs=1e-12)
        assert (got["normal"], got["anomalies"]) == (500, len(anomalies))
        bundle_point = next(p for p in got["points"] if p["quantile"] == got["bundle_quantile"])
        assert bundle_point["threshold"] == pytest.approx(threshold)


def test_the_text_report_and_every_chart(labelled: tuple[Path, Path, list[str], list[str]], bundle_dir: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    normal_file, bad_file, _, _ = labelled
    assert main(["evaluate", "--model", str(bundle_dir), "--normal", str(normal_file), "--anomalies",
                 str(bad_file), "--report", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "confusion matrix" in out and "actual anomaly" in out
    charts = sorted((tmp_path / "report").iterdir())
    assert [c.name for c in charts] == ["confusion-matrix.png", "error-distributions.png", "precision-recall.png"]
    assert all(c.read_bytes()[:8] == PNG and c.stat().st_size > 5000 for c in charts)


def test_with_only_normal_data_it_gives_the_flag_rate(labelled: tuple[Path, Path, list[str], list[str]],
                                                      bundle_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    normal_file, _, _, _ = labelled
    assert main(["evaluate", "--model", str(bundle_dir), "--normal", str(normal_file), "--report",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "normal flagged" in out and "AUROC" not in out
    assert [c.name for c in tmp_path.iterdir()] == ["error-distributions.png"]


def test_train_report_draws_the_loss_and_the_training_scores_and_errors(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "serials.txt"
    corpus.write_text("\n".join(generate.sample("serial", 600, seed=3)) + "\n")
    assert main(["train", "--input", str(corpus), "--model", str(tmp_path / "m"), "--epochs", "3",
                 "--report", str(tmp_path / "report")]) == 0
    assert "chart:" in capsys.readouterr().out
    charts = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert charts == ["training-errors.png", "training-loss.png", "training-scores.png"]
    assert all((tmp_path / "report" / c).read_bytes()[:8] == PNG for c in charts)
    summary = json.loads((tmp_path / "m" / "bundle.json").read_text())["metadata"]["training_errors"]
    assert summary["min"] <= summary["median"] <= summary["p99"] <= summary["max"]


@pytest.mark.parametrize(("write", "message"), [
    (None, "does not exist"),
    ("", "is empty"),
    ("\n\n", "has no usable sequence (2 empty line)"),
])
def test_bad_inputs_exit_2_with_a_clear_message(bundle_dir: Path, tmp_path: Path, write: str | None,
                                                message: str, capsys: pytest.CaptureFixture[str]) -> None:
    normal = tmp_path / "normal.txt"
    if write is not None:
        normal.write_text(write)
    assert main(["evaluate", "--model", str(bundle_dir), "--normal", str(normal)]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_anomalies_file_is_refused(labelled: tuple[Path, Path, list[str], list[str]], bundle_dir: Path,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "none.txt").write_text("")
    assert main(["evaluate", "--model", str(bundle_dir), "--normal", str(labelled[0]), "--anomalies",
                 str(tmp_path / "none.txt")]) == 2
    assert "--anomalies" in capsys.readouterr().err


def test_train_prints_the_threshold_score_applies_and_the_errors_apart(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "serials.txt"
    corpus.write_text("\n".join(generate.sample("serial", 600, seed=3)) + "\n")
    assert main(["train", "--input", str(corpus), "--model", str(tmp_path / "m"), "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bundle = bundle_lib.load(tmp_path / "m")
    fused = Scorer(bundle).fused_threshold
    assert lines[1] == ("note: the best epoch is the --epochs limit (1): training stopped before it converged (the "
                        "validation loss was still falling); more --epochs may give a better model")
    assert "1 epochs (best: epoch 1, kept)" in lines[0]
    assert lines[2] == (f"threshold of the fused score (what score and rank flag by): {fused:.6g} = quantile 0.99 "
                        "of the training rows' fused scores")
    assert lines[3] == ("threshold of the reconstruction error (--method autoencoder; the hourly windows' "
                        f"above-threshold share): {bundle.threshold:.6g} = quantile 0.99 of the training rows' "
                        "reconstruction errors")
    assert lines[4] == f"signals of the fused score (weight, share): {bundle.fusion.weights_note()}"
    assert "(60 held-out rows: too few to learn from)" in lines[4]  # 600 rows: every signal weighs 1
    # The first threshold printed is the one score applies.
    today = tmp_path / "today.txt"
    today.write_text("\n".join(generate.sample("serial", 300, seed=5) + ["AB-121E", "ab121e", "PHE-SER-CYS"]) + "\n")
    assert main(["score", "--model", str(tmp_path / "m"), "--input", str(today), "--output",
                 str(tmp_path / "s.csv")]) == 0
    with (tmp_path / "s.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert any(r["abnormal"] == "true" for r in rows)
    assert all((r["abnormal"] == "true") == (float(r["score"]) > float(f"{fused:.6g}")) for r in rows)
