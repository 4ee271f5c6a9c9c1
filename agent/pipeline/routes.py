"""A robot's model archive: one route per bundle, and how windows find theirs.

A window whose frames carry a program id goes to the bundle serving that program (or to the
bundle that declares no programs); a program no bundle serves is unknown and never scored.
Routes share nothing: installing, replacing or removing one leaves the others' trackers,
thresholds and statistics as they were, so a new program joins over the air without touching
the others.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.core.bundle.manifest import calibration_quantiles
from agent.core.scoring import Scorer
from agent.pipeline.alarms import AlarmEvent, AlarmSettings, AlarmTracker, ModelRef
from agent.pipeline.membership import MembershipModel
from agent.pipeline.options import PipelineOptions
from agent.pipeline.thresholds import DynamicThreshold


class ModelRoute:
    """One bundle of a robot with its scorer, alarm tracker and threshold."""

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

    def current_threshold(self) -> float:
        """The threshold the next window is judged against (calibrated or dynamic)."""
        return self.dynamic.current() if self.dynamic is not None else self.threshold


class RouteTable:
    """The routes of one robot, in order; replaced and restored by bundle id."""

    def __init__(self, routes: list[ModelRoute]) -> None:
        self._routes = routes

    def __iter__(self) -> Iterator[ModelRoute]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __getitem__(self, index: int) -> ModelRoute:
        return self._routes[index]

    def index(self, route: ModelRoute) -> int:
        return self._routes.index(route)

    def for_program(self, program: int) -> ModelRoute | None:
        """The route serving ``program``, else the one serving every program, else None."""
        for route in self._routes:
            if route.programs and program in route.programs:
                return route
        return next((r for r in self._routes if not r.programs), None)

    def put(self, route: ModelRoute) -> ModelRoute | None:
        """Serve ``route``: it replaces the route of its bundle id (returned, with its alarm
        episode carried over) or joins the table (None)."""
        for i, old in enumerate(self._routes):
            if old.model.bundle_id == route.model.bundle_id:
                route.tracker.take_over(old.tracker)
                self._routes[i] = route
                return old
        self._routes.append(route)
        return None

    def pop(self, bundle_id: str) -> ModelRoute | None:
        for i, current in enumerate(self._routes):
            if current.model.bundle_id == bundle_id:
                return self._routes.pop(i)
        return None

    def resume(self, raised: AlarmEvent) -> None:
        """Hold an alarm raised before a restart on the route of the model that raised it
        (the first route if that model is no longer served)."""
        if not self._routes:
            return
        route = next(
            (r for r in self._routes if r.model.bundle_id == raised.model.bundle_id),
            self._routes[0],
        )
        route.tracker.resume(raised)

    def active_alarm(self) -> AlarmEvent | None:
        """The raise event of the robot's active alarm, if any route holds one."""
        return next((r.tracker.active for r in self._routes if r.tracker.active), None)
