"""Model archive: routing by program id, membership without it, Π rule, isolated install."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.robot import PipelineOptions, PipelineResult, RobotPipeline
from agent.pipeline.routes import ProgramConflictError
from agent.pipeline.thresholds import DynamicSettings
from agent.sources.base import SampleChunk
from tests.support.fixtures.archive import ripple
from tests.support.synthetic import currents

SETTINGS = AlarmSettings(alpha=0.3, k=3, n=5)


class Feeder:
    """Streams arrays into a pipeline in 500-sample chunks, keeping stream positions."""

    def __init__(self, pipeline: RobotPipeline) -> None:
        self.pipeline = pipeline
        self.position = 0

    def feed(self, x: np.ndarray, program: int) -> PipelineResult:
        """Feed ``x`` after a sequence gap: no window spans two feeds' unrelated signals."""
        out = PipelineResult()
        for lo in range(0, len(x), 500):
            part = x[lo : lo + 500]
            n = len(part)
            result = self.pipeline.process(
                SampleChunk(
                    samples=part,
                    cycle_start=None,
                    program=np.full(n, program, dtype=np.int64),
                    seq_first=self.position,
                    seq_last=self.position + n - 1,
                    wall_time=1e9 + (self.position + n) / 1000.0,
                    received_monotonic=time.monotonic(),
                    gap_before=lo == 0,
                )
            )
            self.position += n
            out.windows += result.windows
            out.events += result.events
        return out


def foreign(n: int, seed: int) -> np.ndarray:
    """Another 'program': the same arm with a different load pattern over the axes."""
    return np.ascontiguousarray(currents(n, seed=seed)[:, ::-1] * 1.5)


def test_a_program_no_bundle_serves_is_reported_not_alarmed(scorers):
    pipeline = RobotPipeline("r1", [scorers[1]], SETTINGS)
    feeder = Feeder(pipeline)
    normal = feeder.feed(currents(3000, seed=5), program=1)
    assert normal.windows and not normal.events
    other = feeder.feed(foreign(8000, seed=6), program=7)
    assert other.windows == [] and other.events == [], "an unknown program is never scored"
    assert pipeline.stats.unknown_program == pipeline.stats.unrouted > 64
    drift, advised = pipeline.drift_summary()
    assert drift["unknown_program_share"] > 0.5
    assert drift["last_unknown_program"] == 7.0
    assert advised, "mostly unknown windows: retraining (a model for program 7) is advised"


def test_membership_routes_windows_without_program_ids(scorers):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    feeder = Feeder(pipeline)
    normal = feeder.feed(currents(4000, seed=7), program=-1)
    assert normal.windows and not normal.events
    assert pipeline.stats.membership_routed == len(normal.windows)
    assert all(w.membership is not None for w in normal.windows)
    fault = feeder.feed(ripple(currents(6000, seed=9)), program=-1)
    raises = [e for e in fault.events if e.kind == "raise"]
    assert raises, "a fault on a known program still raises without program ids"
    assert raises[0].contributions[0].channel == "J2"
    assert pipeline.stats.unrouted == 0


def test_windows_no_model_is_near_are_unknown_not_an_alarm_storm(scorers):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    feeder = Feeder(pipeline)
    feeder.feed(currents(2000, seed=7), program=-1)
    other = feeder.feed(foreign(12000, seed=8), program=-1)
    n_other = pipeline.stats.unrouted + len(other.windows)
    assert pipeline.stats.unrouted >= 0.9 * n_other, "no model is near: unknown"
    assert len([e for e in other.events if e.kind == "raise"]) <= 1, "no alarm storm"
    assert pipeline.stats.unknown_program == 0, "no program id: not an unknown *program*"
    drift, advised = pipeline.drift_summary()
    assert drift["membership_confidence"] < 0.5 and advised


def test_a_window_is_anomalous_only_if_every_candidate_says_so(scorers):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    strict = pipeline.routes[1]
    strict.threshold = 1e-12  # this model calls everything anomalous …
    feeder = Feeder(pipeline)
    result = feeder.feed(currents(4000, seed=10), program=-1)
    assert not result.events, "… but the other candidate says normal: no alarm"
    assert {w.model.bundle_id for w in result.windows} == {"p1"}
    pipeline.routes[0].threshold = 1e-12  # now every candidate says anomalous
    result = feeder.feed(currents(4000, seed=11), program=-1)
    assert [e.kind for e in result.events][:1] == ["raise"]


def test_installing_a_bundle_for_a_new_program_touches_no_other_route(scorers):
    pipeline = RobotPipeline("r1", [scorers[1]], SETTINGS)
    feeder = Feeder(pipeline)
    feeder.feed(ripple(currents(4000, seed=12)), program=1)
    route = pipeline.routes[0]
    assert route.tracker.active is not None, "program 1 is in alarm"
    before = (route.tracker, route.tracker.stats(), route.tracker.smoothed, route.threshold)
    swap = pipeline.install(scorers[2])
    assert swap.replaced is None and not swap.superseded
    assert pipeline.routes[0] is route
    assert before == (route.tracker, route.tracker.stats(), route.tracker.smoothed, route.threshold)
    result = feeder.feed(currents(4000, seed=13), program=2)
    assert {w.model.bundle_id for w in result.windows} == {"p2"}
    assert not result.events
    assert route.tracker.stats() == before[1], "program-2 windows never reach program 1's route"


def test_replacing_or_rolling_back_a_route_in_alarm_keeps_one_alarm_episode(scorers):
    pipeline = RobotPipeline("r1", [scorers[1]], SETTINGS)
    feeder = Feeder(pipeline)
    raised = feeder.feed(ripple(currents(4000, seed=12)), program=1).events
    assert [e.kind for e in raised] == ["raise"]
    swap = pipeline.install(scorers[1])  # an OTA update of the same bundle id
    old = swap.replaced
    assert old is not None and pipeline.routes[0] is not old
    assert pipeline.routes[0].tracker.active == raised[0], "the alarm survives the swap"
    cleared = feeder.feed(currents(6000, seed=14), program=1).events
    assert [(e.kind, e.raise_id) for e in cleared] == [("clear", raised[0].id)]
    pipeline.restore(swap)  # rollback after the clear
    assert pipeline.routes[0] is old and old.tracker.active is None
    assert not feeder.feed(currents(3000, seed=15), program=1).events, "no second clear"


def _served(pipeline: RobotPipeline) -> list[tuple[str, tuple[int, ...]]]:
    return [(r.model.bundle_id, tuple(sorted(r.programs))) for r in pipeline.routes]


def test_a_merged_bundle_supersedes_its_members_and_a_rollback_brings_them_back(
    scorers, merged_scorers
):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    feeder = Feeder(pipeline)
    member_2 = pipeline.routes[1]
    swap = pipeline.install(merged_scorers["p1"])  # merged under member 1's id
    assert _served(pipeline) == [("p1", (1, 2))]
    assert swap.replaced is not None and swap.replaced.programs == {1}
    assert swap.superseded == [member_2]
    windows = feeder.feed(currents(3000, seed=21), program=2).windows
    assert windows and {w.model.bundle_id for w in windows} == {"p1"}, "p2 scores no more"
    assert member_2.tracker.stats().windows == 0
    pipeline.restore(swap)
    assert _served(pipeline) == [("p1", (1,)), ("p2", (2,))]
    assert pipeline.routes[1] is member_2
    windows = feeder.feed(currents(3000, seed=22), program=2).windows
    assert {w.model.bundle_id for w in windows} == {"p2"}


def test_a_merged_bundle_under_a_new_id_supersedes_all_members_and_rolls_back(
    scorers, merged_scorers
):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    before = list(pipeline.routes)
    swap = pipeline.install(merged_scorers["p12"])
    assert _served(pipeline) == [("p12", (1, 2))] and swap.replaced is None
    assert swap.superseded == before
    pipeline.restore(swap)
    assert list(pipeline.routes) == before


def test_a_bundle_sharing_only_some_programs_is_refused_and_changes_nothing(
    scorers, merged_scorers
):
    pipeline = RobotPipeline("r1", [merged_scorers["p12"]], SETTINGS)
    before = list(pipeline.routes)
    with pytest.raises(ProgramConflictError, match=r"'p23'.*'p12'.*rapp-export merge"):
        pipeline.install(merged_scorers["p23"])
    assert list(pipeline.routes) == before


def test_an_alarm_on_a_superseded_member_is_cleared_by_the_merged_bundle(scorers, merged_scorers):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    feeder = Feeder(pipeline)
    raised = feeder.feed(ripple(currents(4000, seed=23)), program=2).events
    assert [(e.kind, e.model.bundle_id) for e in raised] == [("raise", "p2")]
    pipeline.install(merged_scorers["p1"])
    assert pipeline.active_alarm() == raised[0], "the member's alarm moves to the merged route"
    cleared = feeder.feed(currents(6000, seed=24), program=2).events
    assert [(e.kind, e.raise_id) for e in cleared] == [("clear", raised[0].id)]


def test_rolling_back_a_merge_gives_an_active_alarm_back_to_the_member_that_raised_it(
    scorers, merged_scorers
):
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2]], SETTINGS)
    feeder = Feeder(pipeline)
    raised = feeder.feed(ripple(currents(4000, seed=23)), program=2).events
    swap = pipeline.install(merged_scorers["p1"])
    pipeline.restore(swap)
    p1, p2 = pipeline.routes
    assert p1.tracker.active is None and p2.tracker.active == raised[0], "one episode, its own"
    cleared = feeder.feed(currents(6000, seed=24), program=2).events
    assert [(e.kind, e.raise_id) for e in cleared] == [("clear", raised[0].id)]


def test_at_start_a_bundle_covered_by_another_is_not_served(scorers, merged_scorers, caplog):
    """The config still lists the members of a merged bundle the model store serves."""
    pipeline = RobotPipeline("r1", [scorers[1], scorers[2], merged_scorers["p12"]], SETTINGS)
    assert _served(pipeline) == [("p12", (1, 2))]
    assert "bundle 'p2' (programs 2) is not served" in caplog.text
    same = RobotPipeline("r1", [merged_scorers["p12"], merged_scorers["p1"]], SETTINGS)
    assert _served(same) == [("p1", (1, 2))], "same programs: the later one serves"


def test_dynamic_threshold_never_learns_from_alarm_windows(scorers):
    options = PipelineOptions(
        threshold="dynamic", dynamic=DynamicSettings(history=64, min_history=8, refit_every=4)
    )
    pipeline = RobotPipeline("r1", [scorers[1]], SETTINGS, options)
    route = pipeline.routes[0]
    assert route.dynamic is not None
    learned: list[float] = []
    original = route.dynamic.learn

    def spy(value: float) -> None:
        assert route.tracker.active is None, "learned from a window that raised or was in alarm"
        assert value < route.current_threshold()
        learned.append(value)
        original(value)

    route.dynamic.learn = spy  # type: ignore[method-assign]
    feeder = Feeder(pipeline)
    normal = feeder.feed(currents(6000, seed=14), program=1)
    fault = feeder.feed(ripple(currents(6000, seed=15)), program=1)
    assert route.dynamic.fits > 0, "enough clean history to refit"
    assert any(e.kind == "raise" for e in fault.events), "the fault still raises"
    in_alarm = sum(w.alarm_active for w in fault.windows)
    assert in_alarm > 0
    assert len(learned) <= len(normal.windows) + len(fault.windows) - in_alarm
    assert all(w.threshold == route.current_threshold() or w.threshold > 0 for w in fault.windows)
