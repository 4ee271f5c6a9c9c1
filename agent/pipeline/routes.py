"""A robot's model archive: one route per bundle, and how windows find theirs.

A window whose frames carry a program id goes to the bundle serving that program (or to the
bundle that declares no programs); a program no bundle serves is unknown and never scored.
Routes share nothing: installing, replacing or removing one leaves the others' trackers,
thresholds and statistics as they were, so a new program joins over the air without touching
the others.

Each program has one route. A bundle that serves every program of other bundles (a merged
bundle) supersedes them: it takes their place, and they stop scoring. A bundle that shares
some programs with another but not all of them is refused, as no rule could say which of the
two serves a shared program. At start the same rule resolves what the config and the model
store list together: a bundle whose programs another one also serves is not served when that
other serves more programs, or the same programs and comes later (installed over the air
after the config's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.core.bundle.manifest import calibration_quantiles
from agent.core.scoring import Scorer
from agent.pipeline.alarms import AlarmEvent, AlarmSettings, AlarmTracker, ModelRef
from agent.pipeline.membership import MembershipModel
from agent.pipeline.options import PipelineOptions
from agent.pipeline.thresholds import DynamicThreshold

log = logging.getLogger("agent.pipeline")


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

    def covers(self, other: ModelRoute) -> bool:
        """True when this route serves every program ``other`` serves (and ``other`` serves
        named programs: a bundle for every program is never covered)."""
        return bool(other.programs) and other.programs <= self.programs

    def describe(self) -> str:
        programs = ", ".join(str(p) for p in sorted(self.programs)) or "every program"
        return f"bundle {self.model.bundle_id!r} (programs {programs})"


class ProgramConflictError(ValueError):
    """A bundle shares some, but not all, programs with a bundle the robot serves."""


@dataclass
class Swap:
    """What installing a route changed: the route now serving, the route of the same bundle
    id it replaced (None when the bundle id is new) and the routes it superseded — all kept
    for a rollback."""

    installed: ModelRoute
    replaced: ModelRoute | None = None
    superseded: list[ModelRoute] = field(default_factory=list)


class RouteTable:
    """The routes of one robot, in order; replaced and restored by bundle id."""

    def __init__(self, routes: list[ModelRoute]) -> None:
        self._routes = _resolve(routes)

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

    def swap_in(self, route: ModelRoute) -> Swap:
        """Serve ``route`` (see :meth:`put`) and drop the routes it covers.

        An alarm active on a superseded route moves to ``route`` when ``route`` holds none,
        so the model now scoring that program also clears it. Raises
        :class:`ProgramConflictError` (the table unchanged) when ``route`` shares only part of
        another route's programs.
        """
        others = [r for r in self._routes if r.model.bundle_id != route.model.bundle_id]
        conflicts = [r for r in others if r.programs & route.programs and not route.covers(r)]
        if conflicts:
            names = "; ".join(r.describe() for r in conflicts)
            raise ProgramConflictError(
                f"{route.describe()} shares some programs with {names}; one bundle serves "
                "each program: push a bundle that serves all their programs (rapp-export "
                "merge), or a new version of the one serving them"
            )
        swap = Swap(route, replaced=self.put(route))
        for old in others:
            if route.covers(old):
                self._routes.remove(old)
                swap.superseded.append(old)
                held = old.tracker.active
                if held is not None and route.tracker.active is None:
                    route.tracker.take_over(old.tracker)
                elif held is not None:
                    log.warning(
                        "alarm %s of %s ends without a clear event: %s, which supersedes it, "
                        "holds alarm %s (one alarm per route)",
                        held.id, old.describe(), route.describe(), route.tracker.active.id,
                    )  # fmt: skip
        return swap

    def rejoin(self, route: ModelRoute, takes_from: ModelRoute | None = None) -> None:
        """Serve again a route superseded by a bundle that is rolled back, with the alarm
        state of ``takes_from`` (the rolled-back route leaving the table) or with none: an
        alarm it held went over to the superseding route, and whoever takes that one's place
        carries it on."""
        if takes_from is not None:
            route.tracker.take_over(takes_from.tracker)
        else:
            route.tracker.drop_episode()
        self._routes.append(route)

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


def _resolve(routes: list[ModelRoute]) -> list[ModelRoute]:
    """The routes that serve, applying the module docstring's rule to a start-up list."""
    kept = []
    for i, route in enumerate(routes):
        winner = next(
            (
                other
                for j, other in enumerate(routes)
                if j != i and other.covers(route) and (other.programs != route.programs or j > i)
            ),
            None,
        )
        if winner is None:
            kept.append(route)
        else:
            log.warning(
                "%s is not served: %s serves all its programs (remove it from the config)",
                route.describe(),
                winner.describe(),
            )
    for i, route in enumerate(kept):
        for other in kept[i + 1 :]:
            if route.programs & other.programs and not (route.covers(other) or other.covers(route)):
                log.warning(
                    "%s and %s share some programs: the first serves them (merge the two)",
                    route.describe(),
                    other.describe(),
                )
    return kept
