"""A candidate model judged beside the current one on the history's samples (arithmetic models, as in
``test_model_change``: the comparison needs only versions, thresholds and errors)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from monitor.hourly.judge import HourlyJudge
from monitor.hourly.shadow import shadow
from monitor.hourly.timeline import HOUR_MS
from monitor.settings import CompareConfig, PromotionConfig
from tests.hourly.test_model_change import DRIFT, ScaledModel, run


class BlindModel(ScaledModel):
    """A model that learned the drifted format: it sees nothing wrong with it."""

    def errors(self, sequences: Sequence[str]) -> np.ndarray:
        return super().errors([s.replace(DRIFT, "N") for s in sequences])


class TightModel(ScaledModel):
    """A model whose threshold flags ten times the share its quantile promises."""

    def __init__(self, version: str, scale: float) -> None:
        super().__init__(version, scale)
        normal = self.errors([f"N{i}" for i in range(20_000)])
        self.threshold = float(np.quantile(normal, 0.90))


class LooseModel(ScaledModel):
    """A model whose threshold is above every normal sequence's error: it flags none of the normal hours."""

    def __init__(self, version: str, scale: float) -> None:
        super().__init__(version, scale)
        self.threshold = float(self.errors([f"N{i}" for i in range(20_000)]).max() * 1.01)


@pytest.fixture(scope="module")
def judge() -> HourlyJudge:
    """40 hours under v1 (24 learning, 12 normal), the last four with a drift (critical)."""
    judge = HourlyJudge(HOUR_MS, 0, CompareConfig())
    reports = run(40, {0: ScaledModel("v1", 1.0)}, drift_from=36, judge=judge, records=1500)
    assert [r.verdict for r in reports[24:]] == ["normal"] * 12 + ["critical"] * 4
    return judge


def test_a_candidate_on_another_scale_that_judges_the_hours_alike_is_promoted(judge: HourlyJudge) -> None:
    report = shadow(judge.histories, ScaledModel("v1", 1.0), ScaledModel("v2", 5.0), 0.01, CompareConfig(),
                    PromotionConfig())
    assert report.promote and report.outcome == "promoted" and report.reasons == ()
    assert report.normal_kept() == (12, 12) and len(report.windows) == 40
    assert report.flagged_kept() == (4, 4)
    assert report.flag_rate == pytest.approx(0.01, abs=0.005)
    assert "PROMOTED" in report.render()


def test_a_candidate_blind_to_the_flagged_hours_is_refused_unless_they_are_accepted(judge: HourlyJudge) -> None:
    current, blind = ScaledModel("v1", 1.0), BlindModel("v-blind", 1.0)
    report = shadow(judge.histories, current, blind, 0.01, CompareConfig(), PromotionConfig())
    assert not report.promote and report.outcome == "refused"
    assert report.flagged_kept() == (0, 4)
    assert any("no longer flag 4 of 4 hours" in reason for reason in report.reasons)
    assert "refused: it would no longer flag" in report.render()

    accepted = judge.history_copies()
    for entry in accepted["t"].entries[36:]:
        accepted["t"].accept(entry.start_ms)
    report = shadow(accepted, current, blind, 0.01, CompareConfig(), PromotionConfig())
    assert report.promote and report.flagged_kept() == (0, 0)


def test_a_candidate_flagging_far_more_than_the_current_model_is_refused(judge: HourlyJudge) -> None:
    report = shadow(judge.histories, ScaledModel("v1", 1.0), TightModel("v-tight", 1.0), 0.01, CompareConfig(),
                    PromotionConfig())
    assert not report.promote and report.flag_rate > 0.05
    assert report.current_flag_rate == pytest.approx(0.01, abs=0.005)
    [reason] = report.reasons
    assert "where the current model flags 0.96%" in reason and "promotion.max_flag_rate_ratio 3" in reason
    # Judged against the current model: beside one that flags as much, it is no reason to refuse.
    alike = shadow(judge.histories, TightModel("v-tight", 1.0), TightModel("v-tight-2", 5.0), 0.01,
                   CompareConfig(), PromotionConfig())
    assert alike.flag_rate > 0.05 and alike.promote


def test_a_candidate_flagging_nothing_where_the_current_model_flags_nothing_is_not_refused_for_it(
        judge: HourlyJudge) -> None:
    report = shadow(judge.histories, LooseModel("v1", 1.0), LooseModel("v2", 5.0), 0.01, CompareConfig(),
                    PromotionConfig())
    assert report.flag_rate == 0 and report.current_flag_rate == 0
    assert report.promote and report.reasons == ()


def test_the_flag_rate_allowed_has_the_threshold_quantile_as_a_floor(judge: HourlyJudge) -> None:
    """The current model flags nothing: a candidate flagging about its quantile's 1 % passes, one flagging ten
    times that (more than 3 x the 1 % floor) does not."""
    current = LooseModel("v1", 1.0)
    passed = shadow(judge.histories, current, ScaledModel("v2", 1.0), 0.01, CompareConfig(), PromotionConfig())
    assert passed.current_flag_rate == 0 and passed.flag_rate > 0 and passed.promote
    assert passed.allowed_flag_rate(PromotionConfig()) == pytest.approx(0.03)
    refused = shadow(judge.histories, current, TightModel("v-tight", 1.0), 0.01, CompareConfig(), PromotionConfig())
    assert not refused.promote and "where the current model flags 0.00%" in refused.reasons[0]


def test_with_too_few_windows_to_compare_the_candidate_is_promoted_unshadowed() -> None:
    judge = HourlyJudge(HOUR_MS, 0, CompareConfig())
    run(10, {0: ScaledModel("v1", 1.0)}, drift_from=99, judge=judge, records=200)
    report = shadow(judge.histories, ScaledModel("v1", 1.0), ScaledModel("v2", 2.0), 0.01, CompareConfig(),
                    PromotionConfig())
    assert report.promote and report.outcome == "promoted_unshadowed" and not report.shadowed
