"""Which model scores which window: promotions at window boundaries, old models let go once their windows closed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitor.stream.models import ModelSchedule

HOUR = 3_600_000


class Named:
    def __init__(self, version: str) -> None:
        self.version = version


def schedule() -> tuple[ModelSchedule, Any, Any, Any]:
    v1, v2, v3 = Named("v1"), Named("v2"), Named("v3")
    models = ModelSchedule(v1, HOUR)  # type: ignore[arg-type]
    models.promote(v2, 2 * HOUR)  # type: ignore[arg-type]
    models.promote(v3, 5 * HOUR)  # type: ignore[arg-type]
    return models, v1, v2, v3


def test_each_window_has_the_model_in_use_when_it_started() -> None:
    models, v1, v2, v3 = schedule()
    assert [models.scorer_for(h * HOUR) for h in range(7)] == [v1, v1, v2, v2, v2, v3, v3]
    assert models.current is v3


def test_a_batch_is_split_by_the_model_of_each_records_window() -> None:
    models, v1, v2, v3 = schedule()
    times = np.array([HOUR + 5, 2 * HOUR, 6 * HOUR, HOUR - 1, 2 * HOUR - 1])
    groups = [(scorer, list(rows)) for scorer, rows in models.split(times)]
    assert groups == [(v1, [0, 3, 4]), (v2, [1]), (v3, [2])]
    assert models.split(np.array([7 * HOUR])) == [(v3, slice(None))]


def test_the_boundary_after_the_latest_event_and_a_promotion_off_a_boundary_is_refused() -> None:
    models, *_ = schedule()
    assert models.boundary_after(HOUR + 10) == 2 * HOUR and models.boundary_after(None) is None
    with pytest.raises(ValueError, match="window boundary"):
        models.promote(Named("v4"), HOUR + 1)  # type: ignore[arg-type]


def test_models_are_let_go_once_every_window_they_score_has_closed() -> None:
    models, v1, v2, v3 = schedule()
    models.retire(2 * HOUR - 1)
    assert [v for _, v in models.snapshot()] == ["v1", "v2", "v3"]
    models.retire(2 * HOUR)
    assert models.snapshot() == [[2 * HOUR, "v2"], [5 * HOUR, "v3"]]
    models.retire(9 * HOUR)
    assert models.snapshot() == [[5 * HOUR, "v3"]] and models.scorer_for(0) is v3


def test_a_promotion_from_the_first_window_replaces_every_model() -> None:
    models, *_ = schedule()
    v9 = Named("v9")
    models.promote(v9, None)  # type: ignore[arg-type]
    assert models.snapshot() == [[None, "v9"]]
