"""A simulated stream (``monitor.devtools.simulate``) with the model retrained on the way: every so many hours
a candidate is trained on the samples of the windows judged normal, and the service's ``Promoter``
(``monitor.ops.lifecycle``) shadows it beside the model in use and decides; ``SimulatedService`` plays the
service's part, promoting an accepted candidate between two batches at the next window boundary. So the
verdicts across model changes are measured with the decision the live service takes.

``bench/detection.py --scenario retrain`` uses it; the tests run it with one-minute "hours".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.core.score import Scorer
from monitor.core.train import TrainSettings, train
from monitor.devtools.detection import Detection, verdict_levels
from monitor.devtools.simulate import Simulation, hourly_messages
from monitor.hourly.judge import HourlyJudge
from monitor.hourly.report import WindowReport
from monitor.hourly.sample import DEFAULT_SIZE
from monitor.hourly.shadow import ShadowReport
from monitor.ops.lifecycle import Promoter, settings_of
from monitor.records import Polled
from monitor.settings import CompareConfig, InputConfig, PromotionConfig
from monitor.stream.pipeline import RecordPipeline
from monitor.stream.sources import MemorySink


@dataclass(frozen=True)
class Retraining:
    """One retrain, at the start of simulated hour ``hour`` (every hour before it fed, its last window still
    open). ``corpus``: the sampled normal sequences the candidate was trained on (those there were, when
    skipped). ``candidate``: ``None`` when nothing was trained, there being fewer than ``min_records`` of them
    (``outcome`` "skipped"); otherwise ``outcome`` is the promoter's ("promoted", "promoted_unshadowed" or
    "refused", with its ``reasons``) and ``from_hour`` the first hour the candidate scored (``None`` unless
    promoted)."""

    hour: int
    corpus: int
    candidate: Scorer | None
    outcome: str
    reasons: tuple[str, ...] = ()
    from_hour: int | None = None

    @property
    def promoted(self) -> bool:
        return self.from_hour is not None


@dataclass(frozen=True)
class RetrainRun:
    """One stream run with retraining: every window's report, oldest first, and every retrain."""

    sim: Simulation
    settings: CompareConfig
    reports: list[WindowReport]
    retrainings: list[Retraining]

    @property
    def detection(self) -> Detection:
        return Detection.of(verdict_levels(self.reports, self.sim), self.sim.drift_from_hour)

    @property
    def learning_hours(self) -> int:
        """Hours judged ``learning`` after the first ``min_history`` hours of the stream (when a history
        should long be there): the hours a model change left without a baseline."""
        return sum(r.verdict == "learning" and self.sim.hour_of(r.start_ms) >= self.settings.min_history
                   for r in self.reports)

    @property
    def promoted(self) -> int:
        return sum(r.promoted for r in self.retrainings)

    @property
    def refused(self) -> int:
        return sum(r.outcome == "refused" for r in self.retrainings)

    def candidates(self) -> dict[int, Scorer]:
        """The candidate of each retrain that trained one, by hour (to offer the same ones to another run)."""
        return {r.hour: r.candidate for r in self.retrainings if r.candidate is not None}


def run_with_retraining(sim: Simulation, scorer: Scorer, settings: CompareConfig = CompareConfig(),
                        every_hours: int = 24, *, train_settings: TrainSettings | None = None,
                        max_records: int = 20_000, min_records: int = 10_000,
                        promotion: PromotionConfig = PromotionConfig(), sample_size: int = DEFAULT_SIZE,
                        candidates: Mapping[int, Scorer] | None = None, topic: str = "simulated") -> RetrainRun:
    """``sim`` through the record pipeline one hour per batch, as ``run`` does, starting with ``scorer`` and
    retraining at the start of every ``every_hours``-th hour, as the service's retrainer and promoter do:
    trained (``train_settings``; ``None``: those of the model in use) on the newest ``max_records`` sampled
    sequences of the windows judged normal (none when fewer than ``min_records``), shadowed on the windows'
    samples by the service's ``Promoter`` (``monitor.hourly.shadow``, ``promotion``) and, if it passes,
    promoted from the next window boundary. ``candidates``: offer these, by hour, instead of training (an
    hour without one is skipped), e.g. another run's ``RetrainRun.candidates()``. ``sample_size`` 0 keeps no
    samples: history is then never re-scored, and nothing can be shadowed (every candidate is promoted
    unseen)."""
    if every_hours < 1:
        raise ValueError(f"every_hours must be positive, got {every_hours}")
    judge = HourlyJudge(sim.hour_ms, 0, settings, sample_size)
    pipeline = RecordPipeline(scorer, judge, InputConfig(), MemorySink())
    service = SimulatedService(pipeline)
    promoter = Promoter(service, settings, promotion, None, None)  # no model copies, no decision files
    reports: list[WindowReport] = []
    retrainings: list[Retraining] = []
    for hour, messages in enumerate(hourly_messages(sim, topic)):
        if hour and hour % every_hours == 0:
            if candidates is None:
                candidate, corpus = _trained(pipeline, train_settings, max_records, min_records)
            else:
                candidate = candidates.get(hour)
                corpus = 0 if candidate is None else int(candidate.bundle.metadata.get("training_rows", 0))
            retrainings.append(_offer(promoter, service, sim, hour, candidate, corpus))
        reports += pipeline.process(Polled(messages, {(topic, 0): messages[-1].offset + 1})).reports
    return RetrainRun(sim, settings, reports + pipeline.flush(), retrainings)


def _trained(pipeline: RecordPipeline, train_settings: TrainSettings | None, max_records: int,
             min_records: int) -> tuple[Scorer | None, int]:
    """A candidate trained on the newest ``max_records`` sampled normal sequences (``None`` when there are
    fewer than ``min_records``, or none), and how many it was trained on."""
    corpus = [s for window in pipeline.judge.normal_samples() for s in window][-max_records:]
    if not corpus or len(corpus) < min_records:
        return None, len(corpus)
    return Scorer(train(corpus, train_settings or settings_of(pipeline.scorer.bundle), verbose=0)), len(corpus)


def _offer(promoter: Promoter, service: SimulatedService, sim: Simulation, hour: int, candidate: Scorer | None,
           corpus: int) -> Retraining:
    """``candidate`` considered by ``promoter`` and the decision applied, as the service's loop applies it
    between two batches: if it passed, it scores the windows from the next boundary on."""
    if candidate is None:
        return Retraining(hour, corpus, None, "skipped")
    promoter.consider(candidate)
    [(report, boundary)] = service.decide()
    return Retraining(hour, corpus, candidate, report.outcome, report.reasons,
                      None if boundary is None else sim.hour_of(boundary))


class SimulatedService:
    """The service's part in a model change (``monitor.stream.file_store.FileStore`` in ``monitor.stream.loop.StreamLoop``), in memory: ``Promoter``
    offers it each decision (``offer_decision``) and ``decide``, called between two batches as the service's
    loop does, promotes each accepted candidate at the next window boundary (``RecordPipeline.promote``).
    Nothing is recorded or checkpointed: the caller keeps what ``decide`` returns."""

    def __init__(self, pipeline: RecordPipeline) -> None:
        self.pipeline = pipeline
        self._decisions: list[tuple[Scorer | None, ShadowReport]] = []

    @property
    def scorer(self) -> Scorer:
        return self.pipeline.scorer

    def offer_decision(self, report: ShadowReport, scorer: Scorer | None) -> None:
        """A decision on a candidate model: when ``scorer`` is given, promoted by the next ``decide``."""
        self._decisions.append((scorer, report))

    def decide(self) -> list[tuple[ShadowReport, int | None]]:
        """Each decision offered since the last call, oldest first, with the boundary its candidate scores
        from (``None``: refused, or promoted before any event, over every window)."""
        decisions, self._decisions = self._decisions, []
        return [(report, None if scorer is None else self.pipeline.promote(scorer)) for scorer, report in decisions]

