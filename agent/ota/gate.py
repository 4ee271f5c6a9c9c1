"""The recent-normal gate: a candidate must fit the robot's own recent normal windows.

The candidate scores the robot's recent windows that did not alarm (of the programs it
serves), normalized with its own statistics; any non-finite score, or an alarm rate above
``max_normal_alarm_rate``, rejects it. If fewer than ``min_recent_windows`` are available the
worker waits up to ``gate_wait_s`` for more, then gates on what there is (a new program may
simply not have run yet) — probation still guards the swap — and says so in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from agent.core.features import Segment
from agent.core.scoring import Scorer
from agent.ota.errors import OtaError
from agent.ota.host import Robots
from agent.ota.mainloop import MainLoopCalls
from agent.ota.settings import OtaSettings

log = logging.getLogger("agent.ota")
WAIT_STEP_S = 0.5


class RecentNormalGate:
    """Runs on the worker thread; the snapshot of recent windows is taken on the main loop."""

    def __init__(
        self, settings: OtaSettings, robots: Robots, calls: MainLoopCalls, halt: threading.Event
    ) -> None:
        self.settings = settings
        self.robots = robots
        self.calls = calls
        self.halt = halt

    def check(
        self, transfer_id: str, robot: str, scorer: Scorer, deadline: float | None = None
    ) -> None:
        """Raise :class:`OtaError` if ``scorer`` does not fit ``robot``'s recent windows;
        waits for more windows until ``deadline`` (monotonic) at the latest."""
        segments = self._segments(transfer_id, robot, scorer, deadline)
        if not segments:
            return
        norm = scorer.bundle.normalization
        scores = scorer.score_segments(
            [dataclasses.replace(s, samples=norm.apply(s.samples)) for s in segments]
        )
        name = scorer.bundle.manifest.alarm.score
        values = scores.get(name)
        if not np.isfinite(values).all():
            raise OtaError(
                f"non-finite {name} scores on {int((~np.isfinite(values)).sum())} of "
                f"{len(values)} recent normal windows"
            )
        rate = float((values >= scorer.thresholds[name]).mean())
        limit = self.settings.max_normal_alarm_rate
        if rate > limit:
            raise OtaError(
                f"alarms on {rate:.1%} of {len(values)} recent normal windows (limit "
                f"{limit:.1%}); the model does not fit this robot"
            )
        log.info(
            "ota %s: gate passed on %d recent normal windows (%.1f%% above threshold)",
            transfer_id,
            len(values),
            100 * rate,
        )

    def _segments(
        self, transfer_id: str, robot: str, scorer: Scorer, deadline: float | None
    ) -> list[Segment]:
        """The recent normal windows of the programs ``scorer`` serves, waiting for enough."""
        runtime = self.robots[robot]
        programs = set(scorer.bundle.manifest.programs)

        def snapshot() -> list[Segment]:
            return [s for s in runtime.recent_normal() if not programs or s.program in programs]

        want = self.settings.min_recent_windows
        until = time.monotonic() + self.settings.gate_wait_s
        if deadline is not None:
            until = min(until, deadline)
        segments = self.calls.call(snapshot)
        while len(segments) < want and time.monotonic() < until:
            if self.halt.wait(WAIT_STEP_S):
                raise OtaError("agent stopping")
            segments = self.calls.call(snapshot)
        if len(segments) < want:
            log.warning(
                "ota %s: only %d recent normal window(s) for the gate (want %d); relying on "
                "probation",
                transfer_id,
                len(segments),
                want,
            )
        return segments
