"""The charts: each a PNG of the requested pixel size; odd inputs draw too, a missing folder is refused."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from monitor import charts
from monitor.charts import (
    confusion_chart,
    error_distribution_chart,
    evaluation_charts,
    hourly_chart,
    precision_recall_chart,
    training_chart,
)
from monitor.core.evaluation import evaluate
from monitor.errors import InputError
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.settings import CompareConfig

HOUR_MS = 3_600_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reports(hours: int = 30, jump_from: int = 24) -> list[WindowReport]:
    """Hourly reports of made-up errors: learning, then normal hours, then a jump (critical)."""
    hourly = HourlyJudge(HOUR_MS, 0, CompareConfig(min_history=12))
    rng = np.random.default_rng(0)
    for hour in range(hours):
        errors = rng.lognormal(np.log(1e-3), 0.3, 200) * (20 if hour >= jump_from else 1)
        times = hour * HOUR_MS + np.linspace(0, HOUR_MS - 1, len(errors)).astype(np.int64)
        hourly.add(("t", 0), errors, np.ones(len(errors)), times, errors > 2e-3)
    return hourly.flush("v1")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has right after its signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_chart_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    drawn = reports()
    assert {r.verdict for r in drawn} >= {"learning", "normal", "critical"}
    path = hourly_chart(drawn, tmp_path / "charts" / "hourly.png", "made-up hours", marker_ms=24 * HOUR_MS,
                        marker_label="jump", size_px=(900, 400))
    assert path == tmp_path / "charts" / "hourly.png"
    assert path.stat().st_size > 10_000  # a drawn chart, not a blank canvas
    assert png_size(path) == (900, 400)


def test_minute_windows_and_a_single_report_draw_too(tmp_path: Path) -> None:
    hourly = HourlyJudge(60_000, 0, CompareConfig())
    hourly.add(("t", 0), np.array([0.0, 1e-3]), np.ones(2), np.array([0, 59_999]), np.zeros(2, bool))
    path = hourly_chart(hourly.flush("v1"), tmp_path / "one.png", "one minute")
    assert png_size(path) == (1200, 520)


def test_no_reports_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no window reports"):
        hourly_chart([], tmp_path / "none.png", "nothing")
    assert not (tmp_path / "none.png").exists()


def errors(seed: int = 0) -> dict[str, np.ndarray]:
    """Made-up reconstruction errors: normal ones around 1e-3, anomalies around 5e-2."""
    rng = np.random.default_rng(seed)
    return {"normal": rng.lognormal(np.log(1e-3), 1, 2000), "anomalies": rng.lognormal(np.log(5e-2), 1, 100)}


def drawn(path: Path, size: tuple[int, int]) -> None:
    """``path`` is a PNG of exactly ``size`` pixels with something drawn on it."""
    assert path.stat().st_size > 10_000  # a drawn chart, not a blank canvas
    assert png_size(path) == size


def test_the_training_chart_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    history = {"loss": [0.05, 0.01, 0.004, 0.003], "val_loss": [0.06, 0.012, 0.005, 0.006]}
    path = training_chart(history, tmp_path / "training.png", "made-up training")
    assert path == tmp_path / "training.png"
    drawn(path, (900, 500))
    drawn(training_chart(history, tmp_path / "small.png", "small", size_px=(640, 360), dpi=80), (640, 360))


@pytest.mark.parametrize("history", [
    {"loss": [0.05, 0.01], "val_loss": []},  # trained without a validation split
    {"loss": [0.05]},  # one epoch, no val_loss key
    {"loss": [0.05, float("inf"), 0.01], "val_loss": [float("nan"), float("nan"), float("nan")]},
    {"loss": [0.0, 0.0]},  # nothing positive for the log axis
])
def test_odd_training_histories_draw(tmp_path: Path, history: dict[str, list[float]]) -> None:
    drawn(training_chart(history, tmp_path / "odd.png", "odd"), (900, 500))


def test_the_error_distribution_chart_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    sets = errors()
    threshold = float(np.quantile(sets["normal"], 0.99))
    label = f"threshold {threshold:.4g} = quantile 0.99 of normal errors"
    path = error_distribution_chart(tmp_path / "errors.png", "made-up errors", sets, threshold, label)
    drawn(path, (900, 500))
    one_set = error_distribution_chart(tmp_path / "training.png", "training", {"training": sets["normal"]},
                                       threshold, label, size_px=(800, 450))
    drawn(one_set, (800, 450))


@pytest.mark.parametrize(("sets", "threshold"), [
    ({"one": np.array([2e-3])}, 1e-2),  # a set with a single value
    ({"equal": np.full(50, 2e-3)}, 2e-3),  # all errors equal, the threshold too
    ({"zeros": np.zeros(10), "empty": np.array([])}, 0.0),  # nothing positive, not even the threshold
    ({"normal": errors()["normal"], "broken": np.array([np.nan, np.inf, 0.0, 1e-3])}, float("nan")),
])
def test_odd_error_sets_draw(tmp_path: Path, sets: dict[str, np.ndarray], threshold: float) -> None:
    path = error_distribution_chart(tmp_path / "odd.png", "odd", sets, threshold, "threshold")
    drawn(path, (900, 500))


def test_no_errors_at_all_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no reconstruction errors"):
        error_distribution_chart(tmp_path / "none.png", "nothing", {"empty": np.array([])}, 1e-3, "threshold")
    assert not (tmp_path / "none.png").exists()


def test_the_precision_recall_chart_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    recall = np.array([1.0, 0.95, 0.91, 0.8, 0.5, 0.0])
    precision = np.array([0.05, 0.6, 0.97, 0.99, 1.0, 1.0])
    points = [("threshold q=0.95", 0.95, 0.6), ("threshold q=0.99", 0.91, 0.97)]
    path = precision_recall_chart(tmp_path / "pr.png", "made-up curve", recall, precision, 0.953, points)
    drawn(path, (700, 600))
    empty = precision_recall_chart(tmp_path / "empty.png", "no curve", np.array([]), np.array([]), float("nan"), [])
    assert png_size(empty) == (700, 600)


def test_the_confusion_chart_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    matrix = np.array([[1980, 20], [9, 91]])
    path = confusion_chart(tmp_path / "confusion.png", "made-up test set", matrix, "threshold 0.0115")
    drawn(path, (600, 560))
    drawn(confusion_chart(tmp_path / "wide.png", "wide", matrix, size_px=(900, 500)), (900, 500))


@pytest.mark.parametrize("matrix", [[[1980, 20], [0, 0]], [[0, 0], [0, 0]], [[0.0, 3.0], [1.0, 0.0]]])
def test_confusion_matrices_with_empty_rows_draw(tmp_path: Path, matrix: list[list[float]]) -> None:
    drawn(confusion_chart(tmp_path / "odd.png", "odd", np.array(matrix)), (600, 560))


def test_a_confusion_matrix_must_be_two_by_two(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2x2"):
        confusion_chart(tmp_path / "three.png", "three classes", np.eye(3))


@pytest.mark.parametrize("draw", [
    lambda path: training_chart({"loss": [0.1, 0.01]}, path, "t"),
    lambda path: error_distribution_chart(path, "t", errors(), 1e-2, "threshold"),
    lambda path: precision_recall_chart(path, "t", np.array([1.0, 0.0]), np.array([0.5, 1.0]), 0.75, []),
    lambda path: confusion_chart(path, "t", np.array([[9, 1], [2, 8]])),
], ids=["training", "errors", "precision-recall", "confusion"])
def test_a_missing_folder_is_an_input_error(tmp_path: Path, draw: object) -> None:
    with pytest.raises(InputError, match="does not exist"):
        draw(tmp_path / "missing" / "chart.png")  # type: ignore[operator]
    assert not (tmp_path / "missing").exists()


def test_a_failed_drawing_leaves_the_old_chart(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    path.write_bytes(b"old chart")
    with pytest.raises(ValueError):
        confusion_chart(path, "t", np.array([[1, 2]]))
    assert path.read_bytes() == b"old chart"


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every figure the charts module saves from here on, in order (saved as usual too)."""
    saved: list[object] = []
    save = charts._save  # noqa: SLF001 - the one place every chart goes through

    def keep(figure: object, path: Path) -> Path:
        saved.append(figure)
        return save(figure, path)

    monkeypatch.setattr(charts, "_save", keep)
    return saved


def texts(figure: object) -> dict[str, object]:
    """The words of a saved figure: its first axes' title and labels, its legend, the figure's title."""
    axes = figure.axes[0]  # type: ignore[attr-defined]
    legend = axes.get_legend()
    return {"suptitle": figure.get_suptitle(), "title": axes.get_title(),  # type: ignore[attr-defined]
            "xlabel": axes.get_xlabel(), "legend": [t.get_text() for t in legend.get_texts()] if legend else []}


@pytest.mark.parametrize(("method", "plural", "axis", "training"), [
    ("fused", "Fused scores", "fused score (", "training rows' fused scores"),
    ("autoencoder", "Reconstruction errors", "reconstruction error (mean squared", "training rows' reconstruction errors"),
])
def test_the_evaluation_charts_name_the_score_they_plot(tmp_path: Path, figures: list[object], method: str,
                                                        plural: str, axis: str, training: str) -> None:
    sets = errors()
    training_scores = errors(seed=1)["normal"]
    result = evaluate(sets["normal"], sets["anomalies"], training_scores, 0.99)
    threshold = f"threshold {result.at_bundle_threshold.threshold:.3g} = quantile 0.99 of the {training}"
    written = evaluation_charts(tmp_path, SimpleNamespace(version="v7"), result, sets["normal"],  # type: ignore[arg-type]
                                sets["anomalies"], method=method)
    assert [p.name for p in written] == ["error-distributions.png", "precision-recall.png", "confusion-matrix.png"]
    distribution, precision_recall, confusion = (texts(f) for f in figures)
    assert distribution["title"] == f"{plural}, model v7" and distribution["xlabel"].startswith(axis)
    assert threshold in distribution["legend"]
    assert precision_recall["title"].startswith(f"Precision and recall by {plural.lower()}: ")
    assert confusion["suptitle"] == f"Confusion matrix by {plural.lower()}"
    assert confusion["title"] == f"model v7\n{threshold}"
    if method == "fused":  # nothing on the fused charts speaks of the error
        words = " ".join(str(v) for t in (distribution, precision_recall, confusion) for v in t.values())
        assert "error" not in words.lower()


def test_the_training_chart_says_when_the_best_epoch_is_the_epochs_limit(tmp_path: Path,
                                                                         figures: list[object]) -> None:
    still_falling = {"loss": [0.05, 0.01, 0.004, 0.003], "val_loss": [0.06, 0.012, 0.005, 0.004]}
    settled = {"loss": [0.05, 0.01, 0.004, 0.003], "val_loss": [0.06, 0.012, 0.005, 0.006]}
    training_chart(still_falling, tmp_path / "limit.png", "made-up training", epoch_limit=4)
    training_chart(settled, tmp_path / "settled.png", "made-up training", epoch_limit=4)
    training_chart(still_falling, tmp_path / "no-limit.png", "made-up training", epoch_limit=40)
    limit, settled_texts, no_limit = (texts(f) for f in figures)
    assert limit["title"] == ("made-up training\nthe best epoch is the --epochs limit (4): training stopped before "
                              "it converged")
    assert "best validation loss (epoch 4)" in limit["legend"]
    assert settled_texts["title"] == no_limit["title"] == "made-up training"
    assert "best validation loss (epoch 3)" in settled_texts["legend"]
