"""The hourly chart: a PNG of the requested pixel size, drawn from window reports alone."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from monitor.devtools.chart import hourly_chart
from monitor.hourly.compare import CompareSettings
from monitor.hourly.judge import HourlyJudge, WindowReport

HOUR_MS = 3_600_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reports(hours: int = 30, jump_from: int = 24) -> list[WindowReport]:
    """Hourly reports of made-up errors: learning, then normal hours, then a jump (critical)."""
    hourly = HourlyJudge(HOUR_MS, 0, CompareSettings(min_history=12))
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
    hourly = HourlyJudge(60_000, 0, CompareSettings())
    hourly.add(("t", 0), np.array([0.0, 1e-3]), np.ones(2), np.array([0, 59_999]), np.zeros(2, bool))
    path = hourly_chart(hourly.flush("v1"), tmp_path / "one.png", "one minute")
    assert png_size(path) == (1200, 520)


def test_no_reports_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no window reports"):
        hourly_chart([], tmp_path / "none.png", "nothing")
    assert not (tmp_path / "none.png").exists()
