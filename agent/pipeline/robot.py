"""Per-robot processing stage: chunks → segments → model routes → scores → alarm decisions.

Pure computation, no I/O (except the optional capture of normal windows): the daemon's main
loop feeds it chunks from the source queue and hands the returned events and telemetry to the
sinks. Offline scoring and the benchmarks drive the same class. Its parts, one job each:

- :class:`~agent.core.features.StreamSegmenter` cuts the stream (physical units);
- :class:`~agent.pipeline.spans.SpanIndex` knows which frames and times a window spans;
- :class:`~agent.pipeline.routes.RouteTable` is the robot's model archive: a window whose
  frames carry a program id goes to the bundle serving it; a program no bundle serves is
  counted as unknown and never scored, so a product changeover cannot become an alarm storm;
  a window without a program id (-1) is matched to the nearest bundles by
  :mod:`agent.pipeline.membership`, only those score it, and it is anomalous only if every
  candidate says so (Π_i [s_i ≥ τ_i]: the candidate with the smallest s_i/τ_i takes it);
- each route's :class:`~agent.pipeline.alarms.AlarmTracker` decides raise and clear;
- :class:`~agent.pipeline.feedback.NormalFeedback` learns from clean windows only.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.features import Normalization, Segment, StreamSegmenter
from agent.core.scoring import Scorer, Scores
from agent.pipeline.alarms import AlarmEvent, AlarmSettings, ModelRef, WindowInfo
from agent.pipeline.drift import RobotDrift
from agent.pipeline.feedback import NormalFeedback, is_clean
from agent.pipeline.membership import select_candidates
from agent.pipeline.options import THRESHOLD_MODES, PipelineOptions
from agent.pipeline.routes import ModelRoute, RouteTable, Swap
from agent.pipeline.spans import SpanIndex
from agent.sources.base import SampleChunk

__all__ = [
    "THRESHOLD_MODES",
    "ModelRoute",
    "PipelineOptions",
    "PipelineResult",
    "PipelineStats",
    "RobotPipeline",
    "ScoredWindow",
    "Swap",
]

BATCH_LIMIT = 64


@dataclass(frozen=True)
class ScoredWindow:
    robot: str
    model: ModelRef
    program: int
    recon: float
    sap: float
    nap: float
    score: float
    threshold: float
    smoothed: float | None
    contributions: dict[str, float]
    window: WindowInfo
    latency_s: float  # reception of the newest sample → score available
    start: int  # index of the window's first sample in the robot's stream
    stop: int  # one past its last sample
    alarm_active: bool  # the alarm state after this window
    membership: float | None = None  # confidence when routed without a program id
    density: float | None = None  # bundles with a latent density (agent.core.density)
    combined: float | None = None


@dataclass
class PipelineStats:
    chunks: int = 0
    samples: int = 0
    windows: int = 0
    unrouted: int = 0  # windows no bundle scored: unknown program, or no model near
    unknown_program: int = 0  # … of those, windows whose program id no bundle serves
    membership_routed: int = 0  # windows without program id, routed by membership
    non_finite: int = 0
    events: int = 0


@dataclass
class PipelineResult:
    windows: list[ScoredWindow] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)


@dataclass(frozen=True)
class _Assignment:
    """Which route scored a segment, and where its scores are."""

    route: ModelRoute
    scores: Scores
    row: int
    membership: float | None = None


class RobotPipeline:
    """Segments a robot's stream with its bundles' spec and scores every window.

    All bundles of one robot share the input spec (channels, segmentation); each route
    normalizes segments with its own bundle's statistics, so a retrained bundle can replace or
    join the others over the air. Not thread-safe: one thread calls everything.
    """

    def __init__(
        self,
        robot: str,
        scorers: Sequence[Scorer],
        alarm_settings: AlarmSettings,
        options: PipelineOptions | None = None,
    ) -> None:
        if not scorers:
            raise ValueError(f"robot {robot!r}: no model to score with")
        first = scorers[0].bundle
        for other in scorers[1:]:
            if other.bundle.manifest.input != first.manifest.input:
                raise ValueError(
                    f"robot {robot!r}: bundles {first.bundle_id!r} and {other.bundle.bundle_id!r}"
                    " have different input specs; one robot's bundles must share channels and "
                    "segmentation"
                )
        self.robot = robot
        self.spec = first.manifest.input
        self.options = options or PipelineOptions()
        self.alarm_settings = alarm_settings
        self.routes = RouteTable([self._route(s) for s in scorers])
        self.drift = RobotDrift(self.options.drift)
        self.feedback = NormalFeedback(self.drift, self.options.capture)
        # Segments stay in physical units (per-channel affine normalization commutes with
        # the cycle resampling); each route normalizes them itself.
        identity = Normalization(
            mean=np.zeros(self.spec.n_channels, dtype=np.float32),
            std=np.ones(self.spec.n_channels, dtype=np.float32),
        )
        self.segmenter = StreamSegmenter(self.spec, identity)
        seg = self.spec.segmentation
        # Keep chunks that a pending segment may still start in: one segment's worth, or the
        # longest cycle, of samples back from the newest.
        keep = max(seg.length, seg.max_samples or 0, 1) * 2 + 10_000
        self.spans = SpanIndex(self.spec.sample_rate_hz, keep)
        self.stats = PipelineStats()

    @property
    def channels(self) -> tuple[str, ...]:
        return self.spec.channels

    @property
    def recent_normal(self) -> collections.deque[Segment]:
        """Recent normal and unrouted segments (raw), for the OTA gate."""
        return self.feedback.recent_normal

    # -- the stream ---------------------------------------------------------------------

    def process(self, chunk: SampleChunk) -> PipelineResult:
        self.stats.chunks += 1
        self.stats.samples += chunk.n
        self.spans.add(chunk)
        segments = self.segmenter.push(
            chunk.samples,
            chunk.cycle_start,
            chunk.program,
            gap_before=chunk.gap_before,
            missing_samples=chunk.missing_samples,
        )
        result = PipelineResult()
        for lo in range(0, len(segments), BATCH_LIMIT):
            batch = segments[lo : lo + BATCH_LIMIT]
            assigned = self._assign(batch)
            for i, seg in enumerate(batch):
                if i in assigned:
                    self._emit(seg, assigned[i], result)
        self.spans.forget_old()
        return result

    def close(self) -> None:
        """Write out captured windows still buffered (call at shutdown)."""
        self.feedback.close()

    def drift_summary(self) -> tuple[dict[str, float | None], bool]:
        """Drift indicators and the retraining-advised flag (for the status payload)."""
        return self.drift.summary()

    # -- the model archive (OTA and restarts) ------------------------------------------------

    def install(self, scorer: Scorer) -> Swap:
        """Serve ``scorer``: replace the route of the same bundle id, or add a new one, and
        drop the routes whose programs it serves (a merged bundle; see RouteTable).

        Returns what it replaced and superseded (to roll back to); an alarm active on a
        replaced route stays active on the new one. Raises ProgramConflictError when the
        bundle shares only some programs with another.
        """
        if scorer.bundle.manifest.input != self.spec:
            raise ValueError(
                f"robot {self.robot!r}: bundle {scorer.bundle.bundle_id!r} has a different "
                "input spec from the robot's other bundles"
            )
        route = self._route(scorer)
        swap = self.routes.swap_in(route)
        self.drift.forget(route.model.bundle_id)
        for old in swap.superseded:
            self.drift.forget(old.model.bundle_id)
        if swap.replaced is None or swap.superseded:
            self.drift.reset_membership()
        return swap

    def restore(self, swap: Swap) -> None:
        """Undo :meth:`install` (rollback): put back the replaced route, or stop serving a
        bundle that was new, and serve the superseded routes again.

        The alarm state carries on, not the state the routes were left in: an alarm active
        now (raised or carried over meanwhile) goes back to the route of the bundle that
        raised it if that one returns, else to the replaced route (else the first superseded
        one); the other returning routes hold none.
        """
        installed = swap.installed
        active = installed.tracker.active
        origin = active.model.bundle_id if active is not None else None
        heir = next((r for r in swap.superseded if r.model.bundle_id == origin), None)
        if heir is None and swap.replaced is None and swap.superseded:
            heir = swap.superseded[0]
        self.drift.forget(installed.model.bundle_id)
        if swap.replaced is not None:
            self.routes.put(swap.replaced)
            if heir is not None:
                swap.replaced.tracker.drop_episode()
        else:
            self.routes.pop(installed.model.bundle_id)
        for old in swap.superseded:
            self.drift.forget(old.model.bundle_id)
            self.routes.rejoin(old, takes_from=installed if old is heir else None)
        if swap.replaced is None or swap.superseded:
            self.drift.reset_membership()

    def resume_alarm(self, raised: AlarmEvent) -> None:
        """Hold an alarm raised before a restart until it clears (see RouteTable.resume)."""
        self.routes.resume(raised)

    def active_alarm(self) -> AlarmEvent | None:
        return self.routes.active_alarm()

    # -- internals ----------------------------------------------------------------------------

    def _route(self, scorer: Scorer) -> ModelRoute:
        return ModelRoute(self.robot, scorer, self.alarm_settings, self.options)

    def _unknown(self, seg: Segment, confidence_value: float | None = None) -> None:
        self.stats.unrouted += 1
        if seg.program >= 0:
            self.stats.unknown_program += 1
        self.drift.unknown(seg.program, confidence_value)
        self.feedback.unrouted(seg)

    def _assign(self, segments: list[Segment]) -> dict[int, _Assignment]:
        """Score a batch: by program id where the frames carry one, else by membership."""
        by_route: dict[int, list[int]] = {}
        pending: list[int] = []
        for i, seg in enumerate(segments):
            if seg.program < 0:
                pending.append(i)
                continue
            route = self.routes.for_program(seg.program)
            if route is None:
                self._unknown(seg)
            else:
                by_route.setdefault(self.routes.index(route), []).append(i)
        assigned: dict[int, _Assignment] = {}
        for r, rows in by_route.items():
            route = self.routes[r]
            scores = self._run(route, [segments[i] for i in rows])
            for k, i in enumerate(rows):
                assigned[i] = _Assignment(route, scores, k)
        if pending:
            assigned.update(self._by_membership(segments, pending))
        return assigned

    def _run(self, route: ModelRoute, batch: list[Segment]) -> Scores:
        return route.scorer.score_segments(
            [dataclasses.replace(s, samples=route.normalization.apply(s.samples)) for s in batch]
        )

    def _by_membership(self, segments: list[Segment], pending: list[int]) -> dict[int, _Assignment]:
        """Windows without program id: the nearest candidate models score; Π_i [s_i ≥ τ_i]."""
        raw = np.stack([segments[i].samples for i in pending])
        distance = np.full((len(pending), len(self.routes)), np.nan)
        for r, route in enumerate(self.routes):
            if route.membership is not None:
                distance[:, r] = route.membership.distance(raw)
        choices = select_candidates(distance, self.options.membership)
        scored: dict[int, tuple[Scores, dict[int, int]]] = {}
        for r, route in enumerate(self.routes):
            rows = [k for k, (cands, _) in enumerate(choices) if r in cands]
            if rows:
                scores = self._run(route, [segments[pending[k]] for k in rows])
                scored[r] = (scores, {k: j for j, k in enumerate(rows)})
        out: dict[int, _Assignment] = {}
        for k, i in enumerate(pending):
            candidates, conf = choices[k]
            if not candidates:
                self._unknown(segments[i], conf)
                continue
            best = min(candidates, key=lambda r: self._ratio(r, scored[r], k))
            scores, rows = scored[best]
            out[i] = _Assignment(self.routes[best], scores, rows[k], conf)
            self.stats.membership_routed += 1
        return out

    def _ratio(self, r: int, scored: tuple[Scores, dict[int, int]], k: int) -> float:
        """s_i / τ_i of route ``r`` for pending window ``k`` (inf for a non-finite score)."""
        scores, rows = scored
        route = self.routes[r]
        value = float(scores.get(route.score_name)[rows[k]])
        return value / route.current_threshold() if np.isfinite(value) else np.inf

    def _emit(self, seg: Segment, a: _Assignment, out: PipelineResult) -> None:
        route, scores, i = a.route, a.scores, a.row
        span = self.spans.window(seg.start, seg.stop)
        window = WindowInfo(
            start=span.start,
            end=span.end,
            seq_first=span.seq_first,
            seq_last=span.seq_last,
            program=str(seg.program) if seg.program >= 0 else None,
            contributions={
                name: float(v)
                for name, v in zip(self.channels, scores.contributions[i], strict=True)
            },
        )
        score = float(scores.get(route.score_name)[i])
        threshold = route.current_threshold()
        if not np.isfinite(score):
            self.stats.non_finite += 1
        was_active = route.tracker.active is not None
        event = route.tracker.update(score, threshold, window, route.model)
        self.stats.windows += 1
        active = route.tracker.active is not None
        smoothed = route.tracker.smoothed
        if is_clean(score, threshold, was_active, active):
            self.feedback.clean(route, seg, score, smoothed)
        self.drift.scored(active, a.membership)
        out.windows.append(
            ScoredWindow(
                robot=self.robot,
                model=route.model,
                program=seg.program,
                recon=float(scores.recon[i]),
                sap=float(scores.sap[i]),
                nap=float(scores.nap[i]),
                score=score,
                threshold=threshold,
                smoothed=smoothed,
                contributions=window.contributions,
                window=window,
                latency_s=time.monotonic() - span.received if span.received else 0.0,
                start=seg.start,
                stop=seg.stop,
                alarm_active=active,
                membership=a.membership,
                density=None if scores.density is None else float(scores.density[i]),
                combined=None if scores.combined is None else float(scores.combined[i]),
            )
        )
        if event is not None:
            self.stats.events += 1
            out.events.append(event)
