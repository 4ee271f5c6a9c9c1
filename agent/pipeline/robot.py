"""Per-robot processing stage: chunks → segments → scores → alarm decisions.

Pure computation, no I/O (except the optional capture of normal windows for retraining):
the daemon feeds it chunks from the source queue and hands the returned events and telemetry
to the outbox. Offline scoring and tests drive the same class.

Model archive (SPEC §10): a window whose frames carry a program id goes to the bundle serving
that program; a program no bundle serves is counted as unknown (status, drift) and never
scored, so a product changeover cannot turn into an alarm storm. A window without a program id
(-1) is matched to the nearest bundles by :mod:`agent.pipeline.membership`; only those candidates
score it, and it is anomalous only if every candidate says so (Π_i [s_i ≥ τ_i]): the window
goes to the candidate with the smallest s_i/τ_i. A window no candidate is near is unknown.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.bundle.manifest import calibration_quantiles
from agent.core.features import Normalization, Segment, StreamSegmenter
from agent.core.scoring import Scorer, Scores
from agent.pipeline.alarms import AlarmEvent, AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.pipeline.drift import DriftSettings, RobotDrift, WindowCapture
from agent.pipeline.membership import MembershipModel, MembershipSettings, confidence
from agent.pipeline.thresholds import DynamicSettings, DynamicThreshold
from agent.sources.base import SampleChunk

THRESHOLD_MODES = ("fixed", "dynamic")

BATCH_LIMIT = 64
RECENT_NORMAL_LIMIT = 256  # segments kept for OTA's "score recent normal data" gate


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


@dataclass(frozen=True)
class PipelineOptions:
    """Operational options of a robot (agent config ``[robots.alarm]`` / ``[robots.drift]``).

    threshold: "fixed" (the bundle's calibrated threshold) or "dynamic" (Telemanom-style,
    :mod:`agent.pipeline.thresholds`, learned only from clean windows). capture: optional on-disk
    capture of recent normal windows for retraining.
    """

    threshold: str = "fixed"
    dynamic: DynamicSettings = field(default_factory=DynamicSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    capture: WindowCapture | None = None

    def __post_init__(self) -> None:
        if self.threshold not in THRESHOLD_MODES:
            raise ValueError(
                f"threshold = {self.threshold!r}: choose one of {', '.join(THRESHOLD_MODES)}"
            )


@dataclass
class PipelineResult:
    windows: list[ScoredWindow] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)


@dataclass
class _ChunkSpan:
    first_index: int
    last_index: int
    seq_first: int
    seq_last: int
    wall_time: float
    received: float


class ModelRoute:
    """One bundle of a robot with its scorer, alarm tracker and threshold.

    Routes share nothing: installing, replacing or removing one leaves the others' trackers,
    thresholds and drift statistics as they were.
    """

    def __init__(
        self,
        robot: str,
        scorer: Scorer,
        settings: AlarmSettings,
        options: PipelineOptions | None = None,
    ) -> None:
        options = options or PipelineOptions()
        manifest = scorer.bundle.manifest
        self.scorer = scorer
        self.programs = frozenset(manifest.programs)
        self.model = ModelRef(manifest.bundle_id, manifest.bundle_version)
        self.normalization = scorer.bundle.normalization
        self.score_name = manifest.alarm.score
        self.threshold = float(scorer.thresholds[self.score_name])  # calibrated
        self.tracker = AlarmTracker(robot, settings)
        self.dynamic = (
            DynamicThreshold(self.threshold, options.dynamic)
            if options.threshold == "dynamic"
            else None
        )
        self.membership = MembershipModel.of(scorer.bundle)
        self.calibration = calibration_quantiles(scorer.artifact, self.score_name)

    def serves(self, program: int) -> bool:
        return not self.programs or program in self.programs

    def current_threshold(self) -> float:
        """The threshold the next window is judged against (calibrated or dynamic)."""
        return self.dynamic.current() if self.dynamic is not None else self.threshold


class RobotPipeline:
    """Segments a robot's stream with its bundle's spec and scores every window.

    All bundles of one robot must share the input spec (channels, segmentation); a window is
    routed to the bundle serving its program id (SPEC §10's model archive), or to the bundle
    that declares no programs.
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
        self.routes = [ModelRoute(robot, s, alarm_settings, self.options) for s in scorers]
        self.drift = RobotDrift(self.options.drift)
        # Segments stay in physical units; each route normalizes with its own bundle's
        # statistics, so a retrained bundle can replace or join the others over the air.
        # (Per-channel affine normalization commutes with the cycle resampling.)
        identity = Normalization(
            mean=np.zeros(self.spec.n_channels, dtype=np.float32),
            std=np.ones(self.spec.n_channels, dtype=np.float32),
        )
        self.segmenter = StreamSegmenter(self.spec, identity)
        self.stats = PipelineStats()
        self.alarm_settings = alarm_settings
        # Raw segments scored below threshold while no alarm was active, and segments of
        # programs no bundle serves yet: the data an OTA candidate is checked against before
        # it may serve (never a window that raised an alarm).
        self.recent_normal: collections.deque[Segment] = collections.deque(
            maxlen=RECENT_NORMAL_LIMIT
        )
        self._spans: collections.deque[_ChunkSpan] = collections.deque()
        self._position = 0

    @property
    def channels(self) -> tuple[str, ...]:
        return self.spec.channels

    def process(self, chunk: SampleChunk) -> PipelineResult:
        self.stats.chunks += 1
        self.stats.samples += chunk.n
        span = _ChunkSpan(
            self._position,
            self._position + chunk.n - 1,
            chunk.seq_first,
            chunk.seq_last,
            chunk.wall_time,
            chunk.received_monotonic,
        )
        self._spans.append(span)
        self._position += chunk.n
        segments = self.segmenter.push(
            chunk.samples, chunk.cycle_start, chunk.program, gap_before=chunk.gap_before
        )
        result = PipelineResult()
        for lo in range(0, len(segments), BATCH_LIMIT):
            self._score(segments[lo : lo + BATCH_LIMIT], result)
        self._forget_spans()
        return result

    def install(self, scorer: Scorer) -> ModelRoute | None:
        """Serve ``scorer``: replace the route of the same bundle id, or add a new one.

        Returns the replaced route (to roll back to), None when the bundle is new (a new
        program joins the archive; other routes are untouched). An alarm active on the
        replaced route stays active on the new one. Call from the thread that calls
        :meth:`process`.
        """
        if scorer.bundle.manifest.input != self.spec:
            raise ValueError(
                f"robot {self.robot!r}: bundle {scorer.bundle.bundle_id!r} has a different "
                "input spec from the robot's other bundles"
            )
        route = ModelRoute(self.robot, scorer, self.alarm_settings, self.options)
        self.drift.forget(route.model.bundle_id)
        for i, old in enumerate(self.routes):
            if old.model.bundle_id == route.model.bundle_id:
                route.tracker.take_over(old.tracker)
                self.routes[i] = route
                return old
        self.routes.append(route)
        self.drift.reset_membership()
        return None

    def restore(self, route: ModelRoute) -> None:
        """Put back a route returned by :meth:`install` (rollback), with the alarm state of
        the route it replaces (raised or cleared meanwhile), not the state it was left in."""
        self.drift.forget(route.model.bundle_id)
        for i, current in enumerate(self.routes):
            if current.model.bundle_id == route.model.bundle_id:
                route.tracker.take_over(current.tracker)
                self.routes[i] = route
                return
        self.routes.append(route)

    def resume_alarm(self, raised: AlarmEvent) -> None:
        """Hold an alarm raised before a restart on the route of the model that raised it
        (the first route if that model is no longer served)."""
        if not self.routes:
            return
        route = next(
            (r for r in self.routes if r.model.bundle_id == raised.model.bundle_id),
            self.routes[0],
        )
        route.tracker.resume(raised)

    def remove(self, bundle_id: str) -> ModelRoute | None:
        """Stop serving ``bundle_id`` (rollback of a bundle that was new)."""
        self.drift.forget(bundle_id)
        for i, current in enumerate(self.routes):
            if current.model.bundle_id == bundle_id:
                return self.routes.pop(i)
        return None

    def close(self) -> None:
        """Write out captured windows still buffered (call at shutdown)."""
        if self.options.capture is not None:
            self.options.capture.flush()

    def drift_summary(self) -> tuple[dict[str, float | None], bool]:
        """Drift indicators and the retraining-advised flag (for the status payload)."""
        return self.drift.summary()

    def _route(self, program: int) -> ModelRoute | None:
        for route in self.routes:
            if route.programs and program in route.programs:
                return route
        return next((r for r in self.routes if not r.programs), None)

    def _unknown(self, seg: Segment, confidence_value: float | None = None) -> None:
        self.stats.unrouted += 1
        if seg.program >= 0:
            self.stats.unknown_program += 1
        self.drift.unknown(seg.program, confidence_value)
        self.recent_normal.append(seg)

    def _score(self, segments: list[Segment], result: PipelineResult) -> None:
        # plan[i] = (route, scores, row, membership confidence) for every scored segment
        plan: dict[int, tuple[ModelRoute, Scores, int, float | None]] = {}
        by_route: dict[int, list[int]] = {}
        pending: list[int] = []
        for i, seg in enumerate(segments):
            if seg.program < 0:
                pending.append(i)
                continue
            route = self._route(seg.program)
            if route is None:
                self._unknown(seg)
                continue
            by_route.setdefault(id(route), []).append(i)
        for route in self.routes:
            rows = by_route.get(id(route))
            if rows:
                scores = self._run(route, [segments[i] for i in rows])
                for k, i in enumerate(rows):
                    plan[i] = (route, scores, k, None)
        if pending:
            plan.update(self._by_membership(segments, pending))
        for i, seg in enumerate(segments):
            if i in plan:
                route, scores, row, conf = plan[i]
                self._emit(route, seg, scores, row, conf, result)

    def _run(self, route: ModelRoute, batch: list[Segment]) -> Scores:
        return route.scorer.score_segments(
            [dataclasses.replace(s, samples=route.normalization.apply(s.samples)) for s in batch]
        )

    def _by_membership(
        self, segments: list[Segment], pending: list[int]
    ) -> dict[int, tuple[ModelRoute, Scores, int, float | None]]:
        """Windows without program id: nearest candidate models score; Π_i [s_i ≥ τ_i]."""
        settings = self.options.membership
        raw = np.stack([segments[i].samples for i in pending])
        n_routes = len(self.routes)
        distance = np.full((len(pending), n_routes), np.nan)
        for r, route in enumerate(self.routes):
            if route.membership is not None:
                distance[:, r] = route.membership.distance(raw)
        candidates: list[list[int]] = []
        confidences: list[float | None] = []
        for k, i in enumerate(pending):
            known = [r for r in range(n_routes) if np.isfinite(distance[k, r])]
            unknown_stats = [r for r in range(n_routes) if r not in known]
            near = sorted(
                (r for r in known if distance[k, r] <= settings.max_distance),
                key=lambda r: distance[k, r],
            )[: settings.max_candidates]
            ordered = sorted(distance[k, known].tolist())
            conf = confidence(ordered, settings.max_distance) if known else None
            chosen = near + unknown_stats
            if not chosen:
                self._unknown(segments[i], conf)
            candidates.append(chosen)
            confidences.append(conf)
        out: dict[int, tuple[ModelRoute, Scores, int, float | None]] = {}
        scored: dict[int, tuple[Scores, dict[int, int]]] = {}
        for r, route in enumerate(self.routes):
            rows = [k for k, c in enumerate(candidates) if r in c]
            if rows:
                scores = self._run(route, [segments[pending[k]] for k in rows])
                scored[r] = (scores, {k: j for j, k in enumerate(rows)})
        for k, i in enumerate(pending):
            if not candidates[k]:
                continue
            best, best_ratio = None, np.inf
            for r in candidates[k]:
                scores, rows = scored[r]
                route = self.routes[r]
                value = float(scores.get(route.score_name)[rows[k]])
                ratio = value / route.current_threshold() if np.isfinite(value) else np.inf
                if best is None or ratio < best_ratio:
                    best, best_ratio = r, ratio
            assert best is not None
            scores, rows = scored[best]
            out[i] = (self.routes[best], scores, rows[k], confidences[k])
            self.stats.membership_routed += 1
        return out

    def _emit(
        self,
        route: ModelRoute,
        seg: Segment,
        scores: Scores,
        i: int,
        membership: float | None,
        out: PipelineResult,
    ) -> None:
        window = self._window_info(seg, scores.contributions[i])
        score = float(scores.get(route.score_name)[i])
        threshold = route.current_threshold()
        if not np.isfinite(score):
            self.stats.non_finite += 1
        was_active = route.tracker.active is not None
        event = route.tracker.update(score, threshold, window, route.model)
        self.stats.windows += 1
        active = route.tracker.active is not None
        clean = np.isfinite(score) and score < threshold and not active and not was_active
        smoothed = route.tracker.smoothed
        if clean:
            self.recent_normal.append(seg)
            self.drift.add_score(route.model.bundle_id, route.calibration, score)
            if self.options.capture is not None:
                self.options.capture.add(seg.samples, seg.start, seg.program)
            # Never learn from a window that raised, sat in an alarm, or crossed the threshold.
            if route.dynamic is not None and smoothed is not None and smoothed < threshold:
                route.dynamic.learn(smoothed)
        self.drift.scored(active, membership)
        newest = self._span_of(seg.stop - 1)
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
                latency_s=time.monotonic() - newest.received if newest else 0.0,
                start=seg.start,
                stop=seg.stop,
                alarm_active=active,
                membership=membership,
            )
        )
        if event is not None:
            self.stats.events += 1
            out.events.append(event)

    def _window_info(self, seg: Segment, shares: np.ndarray) -> WindowInfo:
        first, last = self._span_of(seg.start), self._span_of(seg.stop - 1)
        rate = self.spec.sample_rate_hz
        end = last.wall_time - (last.last_index - (seg.stop - 1)) / rate if last else time.time()
        return WindowInfo(
            start=end - (seg.stop - 1 - seg.start) / rate,
            end=end,
            seq_first=first.seq_first if first else 0,
            seq_last=last.seq_last if last else 0,
            program=str(seg.program) if seg.program >= 0 else None,
            contributions={name: float(v) for name, v in zip(self.channels, shares, strict=True)},
        )

    def _span_of(self, index: int) -> _ChunkSpan | None:
        for span in reversed(self._spans):
            if span.first_index <= index <= span.last_index:
                return span
        return None

    def _forget_spans(self) -> None:
        # Keep chunks that a pending segment may still start in: one segment's worth, or the
        # longest cycle, of samples back from the newest.
        seg = self.spec.segmentation
        keep = max(seg.length, seg.max_samples or 0, 1) * 2 + 10_000
        while self._spans and self._spans[0].last_index < self._position - keep:
            self._spans.popleft()
