"""The bundles on probation, and what each verdict does: commit, or roll the route back.

The board is the one owner of probation state. The activation step starts a probation on the
main loop right after the swap; the daemon's main-loop hooks (``OtaManager.observe`` …) feed
it every scored window; the worker only asks whether one is running (one update at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from agent.ota.host import Robots
from agent.ota.probation import Probation, Verdict
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog
from agent.pipeline.alarms import ModelRef
from agent.pipeline.robot import ScoredWindow, Swap

log = logging.getLogger("agent.ota")


class ProbationBoard:
    """Running probations by (robot, bundle id); every method runs on the main loop except
    :attr:`busy`."""

    def __init__(
        self,
        settings: OtaSettings,
        robots: Robots,
        store: ModelStore,
        done: DoneLog,
        reporter: OtaReporter,
        on_change: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.robots = robots
        self.store = store
        self.done = done
        self.reporter = reporter
        self.on_change = on_change
        self._running: dict[tuple[str, str], Probation] = {}

    @property
    def busy(self) -> bool:
        """True while any bundle is on probation (read by the worker thread)."""
        return bool(self._running)

    def start(self, robot: str, model: ModelRef, transfer_id: str, swap: Swap) -> None:
        s = self.settings
        self._running[(robot, model.bundle_id)] = Probation(
            robot=robot,
            model=model,
            transfer_id=transfer_id,
            swap=swap,
            windows=s.probation_windows,
            max_alarm_rate=s.probation_max_alarm_rate,
            max_latency_s=s.probation_max_latency_s,
            max_s=s.probation_max_s,
        )

    def expire(self) -> None:
        """End probations whose time is over."""
        for key, probation in list(self._running.items()):
            verdict = probation.expired()
            if verdict is not None:
                self._decide(key, probation, verdict)

    def observe(self, robot: str, windows: Sequence[ScoredWindow]) -> None:
        for key, probation in list(self._running.items()):
            if key[0] == robot and windows:
                verdict = probation.observe(windows)
                if verdict is not None:
                    self._decide(key, probation, verdict)

    def fail(self, robot: str, err: BaseException) -> bool:
        """The robot's pipeline raised: roll back its bundles on probation (True if any)."""
        handled = False
        for key, probation in list(self._running.items()):
            if key[0] == robot:
                self._decide(key, probation, probation.error(err))
                handled = True
        return handled

    def _decide(self, key: tuple[str, str], probation: Probation, verdict: Verdict) -> None:
        del self._running[key]
        self.on_change()
        robot, bundle_id = key
        tid = probation.transfer_id
        swap = probation.swap
        previous = swap.replaced.model if swap.replaced is not None else None
        superseded = [r.model for r in swap.superseded]
        if verdict.committed:
            if verdict.reason:
                log.info("ota %s: %s", tid, verdict.reason)
            # The superseded bundles leave the store with the commit (one pointer write), so
            # merging keeps the archive from growing; a kill before it rolls all back at start.
            self.store.commit(robot, bundle_id, retire=[m.bundle_id for m in superseded])
            self.done.record(tid, "committed")
            self.reporter.report(
                "committed", tid, robot=robot, bundle=probation.model, previous=previous,
                replaces=superseded,
            )  # fmt: skip
            return
        self.robots[robot].restore(swap)
        self.store.rollback(robot, bundle_id)
        self.done.record(tid, "rolled_back", verdict.reason)
        self.reporter.report(
            "rolled_back",
            tid,
            robot=robot,
            bundle=probation.model,
            previous=previous,
            reason=verdict.reason,
        )
