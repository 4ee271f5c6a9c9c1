"""Probation after a swap: watch the new model's first windows, then commit or roll back.

Runs on the main loop (it sees every scored window as it is produced). The verdict comes as
early as it is certain:

- any non-finite score (NaN/inf) or a scoring error → roll back at once;
- more alarmed windows (score ≥ threshold) than ``max_alarm_rate`` allows over the whole
  probation → roll back as soon as that count is exceeded;
- after ``windows`` windows: median latency above ``max_latency_s`` → roll back; else commit;
- after ``max_s`` seconds with fewer windows and no failure → commit: a bundle for a program
  that has not run since the swap cannot be judged on data, and probation must end (the
  verdict says how many windows it saw).

A restart during probation is decided at start-up (``agent/ota/startup.py``): the bundle was
not proven, so it is rolled back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.pipeline.alarms import ModelRef
from agent.pipeline.robot import ScoredWindow, Swap


@dataclass
class Verdict:
    committed: bool
    reason: str = ""


@dataclass
class Probation:
    robot: str
    model: ModelRef
    transfer_id: str
    swap: Swap  # what the swap replaced and superseded, restored on a rollback
    windows: int
    max_alarm_rate: float
    max_latency_s: float
    max_s: float = 600.0
    started: float = field(default_factory=time.monotonic)
    seen: int = 0
    alarmed: int = 0
    latencies: list[float] = field(default_factory=list)

    def observe(self, scored: Iterable[ScoredWindow]) -> Verdict | None:
        """Feed the robot's newly scored windows; a verdict once probation is decided."""
        for w in scored:
            if w.model.bundle_id != self.model.bundle_id or self.seen >= self.windows:
                continue
            self.seen += 1
            if not math.isfinite(w.score):
                return Verdict(
                    False, f"non-finite score ({w.score}) at probation window {self.seen}"
                )
            if w.score >= w.threshold:
                self.alarmed += 1
            self.latencies.append(w.latency_s)
            allowed = self.max_alarm_rate * self.windows
            if self.alarmed > allowed:
                return Verdict(
                    False,
                    f"{self.alarmed} windows above threshold within {self.seen} probation "
                    f"windows (limit {self.max_alarm_rate:.1%} of {self.windows})",
                )
        if self.seen < self.windows:
            return None
        latencies = sorted(self.latencies)
        median = latencies[len(latencies) // 2] if latencies else 0.0
        if median > self.max_latency_s:
            return Verdict(
                False, f"median latency {median:.3f} s above the {self.max_latency_s:g} s limit"
            )
        return Verdict(True)

    def expired(self, now: float | None = None) -> Verdict | None:
        """Commit when ``max_s`` passed without a failure (see the module docstring)."""
        if (time.monotonic() if now is None else now) - self.started < self.max_s:
            return None
        return Verdict(True, f"probation time ({self.max_s:g} s) over after {self.seen} window(s)")

    def error(self, err: BaseException) -> Verdict:
        return Verdict(False, f"scoring error during probation: {err}")
