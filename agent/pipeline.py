"""Per-robot processing stage: chunks → segments → scores → alarm decisions.

Pure computation, no I/O: the daemon feeds it chunks from the source queue and hands the
returned events and telemetry to the outbox. Offline scoring and tests drive the same class.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.alarms import AlarmEvent, AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.features import Normalization, Segment, StreamSegmenter
from agent.scoring import Scorer
from agent.sources.base import SampleChunk

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


@dataclass
class PipelineStats:
    chunks: int = 0
    samples: int = 0
    windows: int = 0
    unrouted: int = 0  # windows of a program no bundle serves
    non_finite: int = 0
    events: int = 0


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
    """One bundle of a robot with its scorer and alarm tracker."""

    def __init__(self, robot: str, scorer: Scorer, settings: AlarmSettings) -> None:
        manifest = scorer.bundle.manifest
        self.scorer = scorer
        self.programs = frozenset(manifest.programs)
        self.model = ModelRef(manifest.bundle_id, manifest.bundle_version)
        self.normalization = scorer.bundle.normalization
        self.score_name = manifest.alarm.score
        self.threshold = float(scorer.thresholds[self.score_name])
        self.tracker = AlarmTracker(robot, settings)

    def serves(self, program: int) -> bool:
        return not self.programs or program in self.programs


class RobotPipeline:
    """Segments a robot's stream with its bundle's spec and scores every window.

    All bundles of one robot must share the input spec (channels, segmentation); a window is
    routed to the bundle serving its program id (SPEC §10's model archive), or to the bundle
    that declares no programs.
    """

    def __init__(
        self, robot: str, scorers: Sequence[Scorer], alarm_settings: AlarmSettings
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
        self.routes = [ModelRoute(robot, s, alarm_settings) for s in scorers]
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
        program joins the archive; other routes are untouched). Call from the thread that
        calls :meth:`process`.
        """
        if scorer.bundle.manifest.input != self.spec:
            raise ValueError(
                f"robot {self.robot!r}: bundle {scorer.bundle.bundle_id!r} has a different "
                "input spec from the robot's other bundles"
            )
        route = ModelRoute(self.robot, scorer, self.alarm_settings)
        for i, old in enumerate(self.routes):
            if old.model.bundle_id == route.model.bundle_id:
                self.routes[i] = route
                return old
        self.routes.append(route)
        return None

    def restore(self, route: ModelRoute) -> None:
        """Put back a route returned by :meth:`install` (rollback)."""
        for i, current in enumerate(self.routes):
            if current.model.bundle_id == route.model.bundle_id:
                self.routes[i] = route
                return
        self.routes.append(route)

    def remove(self, bundle_id: str) -> ModelRoute | None:
        """Stop serving ``bundle_id`` (rollback of a bundle that was new)."""
        for i, current in enumerate(self.routes):
            if current.model.bundle_id == bundle_id:
                return self.routes.pop(i)
        return None

    def _route(self, program: int) -> ModelRoute | None:
        for route in self.routes:
            if route.programs and program in route.programs:
                return route
        return next((r for r in self.routes if not r.programs), None)

    def _score(self, segments: list[Segment], result: PipelineResult) -> None:
        by_route: dict[int, list[Segment]] = {}
        for seg in segments:
            route = self._route(seg.program)
            if route is None:
                self.stats.unrouted += 1
                self.recent_normal.append(seg)
                continue
            by_route.setdefault(id(route), []).append(seg)
        for route in self.routes:
            batch = by_route.get(id(route))
            if batch:
                self._score_route(route, batch, result)

    def _score_route(self, route: ModelRoute, batch: list[Segment], out: PipelineResult) -> None:
        scores = route.scorer.score_segments(
            [dataclasses.replace(s, samples=route.normalization.apply(s.samples)) for s in batch]
        )
        chosen = scores.get(route.score_name)
        now = time.monotonic()
        for i, seg in enumerate(batch):
            window = self._window_info(seg, scores.contributions[i])
            score = float(chosen[i])
            if not np.isfinite(score):
                self.stats.non_finite += 1
            event = route.tracker.update(score, route.threshold, window, route.model)
            self.stats.windows += 1
            if np.isfinite(score) and score < route.threshold and route.tracker.active is None:
                self.recent_normal.append(seg)
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
                    threshold=route.threshold,
                    smoothed=route.tracker.smoothed,
                    contributions=window.contributions,
                    window=window,
                    latency_s=now - newest.received if newest else 0.0,
                    start=seg.start,
                    stop=seg.stop,
                    alarm_active=route.tracker.active is not None,
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
