"""The human-readable form of `rapp-agent status`: a few summary lines and a table of robots.

Columns a source cannot know (frame and window counters from a state dir) show ``-``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agent.status_read import DeviceStatus

COLUMNS = (
    "ROBOT", "ALARM", "FRAMES OK", "CRC ERR", "SEQ GAPS", "WINDOWS", "NOT SCORED", "DRIFT KS",
    "BUNDLES",
)  # fmt: skip
NOT_SCORED = ("skipped_gap", "skipped_nan", "skipped_cycle_length", "unrouted", "non_finite")
MISSING = "-"


def _age(ts: object, now: float) -> str:
    if not isinstance(ts, str):
        return ""
    try:
        seconds = now - datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return ""
    if seconds < 120:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 7200:
        return f"{round(seconds / 60)} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{round(seconds / 86_400)} d ago"


def _headline(s: DeviceStatus, now: float) -> str:
    device = f"device {s.device or '?'}"
    meta = s.meta or {}
    if s.status is None:  # a state dir: the live state is only ever published
        parts = [f"{device}: local state (online state and counters are on the broker)"]
        if meta.get("agent_version"):
            parts.append(f"rapp-agent {meta['agent_version']}")
        if meta.get("ts"):
            parts.append(f"robots and bundles as of {meta['ts']} ({_age(meta['ts'], now)})")
        return "; ".join(parts)
    status = s.status
    parts = [f"{device}: {status.get('state', '?')}"]
    if status.get("agent_version"):
        parts.append(f"rapp-agent {status['agent_version']}")
    if status.get("started"):
        parts.append(f"started {status['started']}")
    if status.get("ts"):
        parts.append(f"reported {status['ts']} ({_age(status['ts'], now)})")
    return "; ".join(parts)


def _outbox_line(outbox: Mapping[str, Any] | None) -> str | None:
    if not outbox:
        return None
    depth = outbox.get("depth", {})
    queued = ", ".join(f"{depth.get(k, 0)} {k}" for k in ("alarm", "event", "telemetry"))
    line = f"outbox: {queued} queued; {outbox.get('telemetry_dropped', 0)} telemetry dropped"
    if outbox.get("oldest_age_s") is not None:
        line += f"; oldest queued {outbox['oldest_age_s']:g} s ago"
    return line


def _ota_line(ota: Mapping[str, Any] | None) -> str | None:
    if not ota:
        return None
    bundle = ota.get("bundle") or {}
    what = f" {bundle.get('bundle_id')} v{bundle.get('version')}" if bundle else ""
    robot = f" on {ota['robot']}" if ota.get("robot") else ""
    reason = f": {ota['reason']}" if ota.get("reason") else ""
    return f"ota: {ota.get('state')}{what}{robot} (transfer {ota.get('transfer_id')}){reason}"


def _alarm_cell(state: Mapping[str, Any] | None) -> str:
    if state is None:
        return MISSING
    alarm = state.get("alarm")
    if not state.get("active") or not isinstance(alarm, Mapping):
        return "clear"
    top = (alarm.get("contributions") or [{}])[0].get("channel")
    return f"{alarm.get('severity')} since {alarm.get('since')}" + (f" ({top})" if top else "")


def _bundles(robot: str, s: DeviceStatus) -> str:
    status_bundles = [b for b in (s.status or {}).get("bundles", []) if b.get("robot") == robot]
    meta_robot = next((r for r in (s.meta or {}).get("robots", []) if r.get("robot") == robot), {})
    bundles = status_bundles or meta_robot.get("bundles", [])
    cells = []
    for b in bundles:
        programs = f" [{','.join(b['programs'])}]" if b.get("programs") else ""
        cells.append(f"{b.get('bundle_id')} v{b.get('version')}{programs}")
    return "; ".join(cells) or MISSING


def _robot_row(robot: str, s: DeviceStatus) -> list[str]:
    health = (s.status or {}).get("robots", {}).get(robot)
    if health is None:
        counters = [MISSING] * 6
    else:
        frames, windows = health.get("frames", {}), health.get("windows", {})
        ks = (health.get("drift") or {}).get("ks")
        counters = [
            str(frames.get("ok", MISSING)),
            str(frames.get("crc_errors", MISSING)),
            str(frames.get("sequence_gaps", MISSING)),
            str(windows.get("scored", MISSING)),
            str(sum(int(windows.get(k, 0)) for k in NOT_SCORED)),
            MISSING if ks is None else f"{ks:.3g}",
        ]
    alarm = _alarm_cell(s.alarms.get(robot))
    if health is not None and alarm == MISSING:
        alarm = "active" if health.get("alarm_active") else "clear"
    return [robot, alarm, *counters, _bundles(robot, s)]


def robot_ids(s: DeviceStatus) -> list[str]:
    """Every robot any part of the report names, in a stable order."""
    names = list((s.status or {}).get("robots", {}))
    names += [r.get("robot") for r in (s.meta or {}).get("robots", [])]
    names += list(s.alarms) + list(s.models or {})
    return sorted({n for n in names if isinstance(n, str)})


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _model_lines(models: Mapping[str, Any] | None) -> list[str]:
    lines = []
    for robot, entry in sorted((models or {}).items()):
        for bundle_id, pointer in entry.get("installed", {}).items():
            lines.append(
                f"installed over the air: {robot} {bundle_id} v{pointer.get('version') or '?'} "
                f"({pointer.get('state')}, transfer {pointer.get('transfer_id') or '-'})"
            )
    return lines


def format_status(s: DeviceStatus, now: float | None = None) -> str:
    t = time.time() if now is None else now
    lines = [_headline(s, t), f"source: {s.source}"]
    lines += [x for x in (_outbox_line(s.outbox or (s.status or {}).get("outbox")),) if x]
    lines += [x for x in (_ota_line(s.ota),) if x]
    lines += _model_lines(s.models)
    robots = robot_ids(s)
    if robots:
        lines.append("")
        lines += table([list(COLUMNS), *(_robot_row(r, s) for r in robots)])
    else:
        lines.append("no robots reported")
    return "\n".join(lines)
