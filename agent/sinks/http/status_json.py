"""``/status.json``: what the status page shows, built from the published view.

One document per request: the agent, its readiness, each robot's last score against its
threshold and its active alarm, the most recent alarm events (newest first), the bundles
being served, the outbox and the last OTA step. Non-finite numbers become null (JSON has no
NaN); times are RFC 3339 UTC, as in the MQTT payloads.
"""

from __future__ import annotations

import math
from typing import Any

from agent.pipeline.alarms import AlarmEvent
from agent.sinks.http.health import readiness
from agent.sinks.http.recorder import LastWindow
from agent.sinks.http.view import EndpointView, ViewBoard
from agent.sinks.mqtt.payloads import AgentIdentity, RobotHealth, iso_utc


def _num(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def status_document(
    board: ViewBoard, identity: AgentIdentity, stall_after_s: float
) -> dict[str, Any]:
    ready = readiness(board, stall_after_s)
    doc: dict[str, Any] = {
        "device": identity.device,
        "agent_version": identity.agent_version,
        "started": iso_utc(identity.started),
        "ready": ready.ok,
        "not_ready": ready.body["not_ready"],
        "snapshot_age_s": round(board.age(), 3),
        "robots": [],
        "events": [],
        "bundles": [],
        "outbox": None,
        "mqtt_connected": None,
        "ota": None,
    }
    view = board.view
    if view is None:
        doc["robots"] = [{"id": robot} for robot in board.robots]
        return doc
    doc["updated"] = iso_utc(view.published_wall)
    doc["robots"] = [_robot(view, robot) for robot in board.robots]
    doc["events"] = [_event(e) for e in reversed(view.recorded.recent_events)]
    doc["bundles"] = [
        {"robot": b.robot, "bundle_id": b.bundle_id, "version": b.version,
         "programs": list(b.programs)}
        for b in view.facts.status.bundles
    ]  # fmt: skip
    doc["mqtt_connected"] = view.facts.broker_connected
    doc["ota"] = dict(view.facts.ota) if view.facts.ota is not None else None
    stats = view.facts.outbox
    if stats is not None:
        doc["outbox"] = {
            "alarm": stats.alarm,
            "event": stats.event,
            "telemetry": stats.telemetry,
            "telemetry_dropped": stats.telemetry_dropped,
            "disk_full": stats.storage is not None,
        }
    return doc


def _robot(view: EndpointView, robot: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": robot}
    last: LastWindow | None = view.recorded.last.get(robot)
    if last is not None:
        entry.update(
            score=_num(last.score),
            smoothed=_num(last.smoothed),
            threshold=_num(last.threshold),
            bundle_id=last.model.bundle_id,
            version=last.model.version,
            program=last.program if last.program >= 0 else None,
            last_window=iso_utc(last.end),
        )
    active = view.facts.alarms.get(robot)
    entry["alarm"] = None if active is None else _alarm(active)
    health: RobotHealth | None = view.facts.status.robots.get(robot)
    if health is not None:
        entry.update(
            frames_ok=int(health.frames.ok),
            crc_errors=int(health.frames.crc_errors),
            sequence_gaps=int(health.frames.sequence_gaps),
            windows_scored=int(health.windows.get("scored", 0)),
            source_connected=bool(health.windows.get("source_connected", 0)),
            retraining_advised=health.retraining_advised,
        )
    return entry


def _alarm(event: AlarmEvent) -> dict[str, Any]:
    return {
        "raise_id": event.id,
        "severity": event.severity,
        "since": iso_utc(event.span_start),
        "smoothed": _num(event.smoothed),
        "threshold": _num(event.threshold),
        "top_channel": event.contributions[0].channel if event.contributions else None,
    }


def _event(event: AlarmEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "ts": iso_utc(event.span_end),
        "robot": event.robot,
        "kind": event.kind,
        "severity": event.severity,
        "smoothed": _num(event.smoothed),
        "threshold": _num(event.threshold),
        "top_channel": event.contributions[0].channel if event.contributions else None,
        "reason": event.reason,
    }
