"""``/healthz`` (liveness) and ``/readyz`` (readiness), judged from the published view only.

Liveness: the main loop published a view within ``stall_after_s`` (it does about once a
second while it runs, idle or not; before the first one the clock starts when the endpoint
opens, so loading bundles counts as alive). A failing liveness check means restarting the
agent may help. Readiness: live, not stopping, every robot has a bundle loaded and its
source open, and the broker is connected when ``[mqtt]`` is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.sinks.http.view import EndpointView, ViewBoard


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    body: dict[str, Any]


def liveness(board: ViewBoard, stall_after_s: float) -> Verdict:
    age = board.age()
    ok = age < stall_after_s
    return Verdict(
        ok,
        {
            "status": "ok" if ok else "stalled",
            "snapshot_age_s": round(age, 3),
            "stall_after_s": stall_after_s,
        },
    )


def readiness(board: ViewBoard, stall_after_s: float) -> Verdict:
    view = board.view
    checks: dict[str, bool | None] = dict.fromkeys(("main_loop", "bundles", "sources", "mqtt"))
    problems: list[str] = []
    if board.stopping:
        problems.append("agent: stopping")
    elif view is None:
        problems.append("agent: starting (loading bundles, opening sources)")
    else:
        age = board.age()
        checks["main_loop"] = age < stall_after_s
        if not checks["main_loop"]:
            problems.append(f"main loop: no progress for {age:.0f} s")
        problems += _robot_problems(view, board.robots, checks)
        if view.facts.broker_connected is not None:
            checks["mqtt"] = view.facts.broker_connected
            if not view.facts.broker_connected:
                problems.append("mqtt: broker not connected")
    return Verdict(not problems, {"ready": not problems, "checks": checks, "not_ready": problems})


def _robot_problems(
    view: EndpointView, robots: tuple[str, ...], checks: dict[str, bool | None]
) -> list[str]:
    status = view.facts.status
    loaded = {b.robot for b in status.bundles}
    problems = [f"bundles: none loaded for robot {r}" for r in robots if r not in loaded]
    checks["bundles"] = not problems
    closed = [
        f"sources: the source of robot {r} is not open"
        for r in robots
        if r not in status.robots or not status.robots[r].windows.get("source_connected")
    ]
    checks["sources"] = not closed
    return problems + closed
