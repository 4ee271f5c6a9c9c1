"""JSON payload builders for every topic, matching the schemas in ``agent/schemas/*.json``.

Each builder returns a plain dict (serialize with :func:`dumps`, or queue it with
``Outbox.put_json``). Every payload carries ``schema`` (name and version), ``id`` (unique;
the outbox uses it as the message id, so subscribers can drop redeliveries), ``device`` and
``ts`` (UTC, RFC 3339 with milliseconds). JSON has no NaN: non-finite numbers become ``null``
where the schema allows it and are an error elsewhere.

Number types are part of the contract: counts, sequence numbers and byte sizes are JSON
integers; program ids are strings (as in the frames' program id, ``"3"``); every other number
(scores, thresholds, ratios, shares, drift indicators, ages) is rounded to
:data:`SIGNIFICANT_DIGITS` significant digits — a float32 model's scores carry no more, and
subscribers get ``0.123457`` instead of ``0.12345678912345678``.

Usage::

    ident = AgentIdentity.create("cell7", agent_version="0.1.0")
    box.put_json(topics.alarm(ev.robot), build_alarm(ev, device=ident.device), kind="alarm")
    box.put_json(topics.alarm_active(ev.robot), build_alarm_active(ident.device, ev.robot, ev),
                 kind="alarm", retain=True)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal

from agent.pipeline.alarms import (
    AlarmEvent,
    ChannelContribution,
    ModelRef,
    WindowInfo,
    new_event_id,
)
from agent.sinks.mqtt.errors import PayloadError
from agent.sinks.outbox import OutboxStats

StatusState = Literal["online", "stopped", "offline"]
OtaState = Literal[
    "received",
    "downloading",
    "verifying",
    "staged",
    "active",
    "committed",
    "rejected",
    "rolled_back",
]
SCHEMA_NAMES = ("alarm", "alarm_active", "score", "status", "meta", "ota_status")
SIGNIFICANT_DIGITS = 6
# Drift indicators (agent/pipeline/drift.py reports every one as a float) that are counts or
# program ids; the rest are measurements and get SIGNIFICANT_DIGITS.
DRIFT_COUNTS = frozenset({"recent_windows", "windows"})
DRIFT_PROGRAMS = frozenset({"last_unknown_program"})


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a payload, e.g. ``load_schema("alarm")``."""
    if name not in SCHEMA_NAMES:
        raise PayloadError(f"schema {name!r}: unknown; one of {list(SCHEMA_NAMES)}")
    text = resources.files("agent").joinpath("schemas", f"{name}.json").read_text("utf-8")
    return json.loads(text)


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; refuses NaN/inf (not JSON) instead of writing ``NaN``."""
    try:
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as err:
        raise PayloadError(f"payload is not serializable as JSON: {err}") from err


def iso_utc(t: float) -> str:
    """Unix seconds -> ``2024-05-01T12:00:00.123Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rounded(x: float) -> float:
    """``x`` at :data:`SIGNIFICANT_DIGITS` significant digits (finite ``x`` only)."""
    return float(f"{float(x):.{SIGNIFICANT_DIGITS}g}")


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else rounded(x)


def _finite(name: str, x: float) -> float:
    if not math.isfinite(x):
        raise PayloadError(f"{name} = {x!r}: must be finite")
    return rounded(x)


def _drift_entry(key: str, value: float | None) -> float | int | str | None:
    if value is None or not math.isfinite(value):
        return None
    if key in DRIFT_COUNTS:
        return int(value)
    if key in DRIFT_PROGRAMS:
        return str(int(value))
    return rounded(value)


def _model(model: ModelRef) -> dict[str, str]:
    return {"bundle_id": model.bundle_id, "version": model.version}


def _contributions(items: Sequence[ChannelContribution]) -> list[dict[str, Any]]:
    return [
        {
            "channel": c.channel,
            "value": _finite("contribution value", c.value),
            "share": rounded(min(max(c.share, 0.0), 1.0)),
        }
        for c in items
    ]


def _envelope(schema: str, device: str, now: float | None, msg_id: str | None) -> dict[str, Any]:
    return {
        "schema": schema,
        "id": msg_id or new_event_id(),
        "device": device,
        "ts": iso_utc(time.time() if now is None else now),
    }


# -- identity -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who is publishing: fixed for the life of one agent process."""

    device: str
    agent_version: str
    boot_id: str
    started: float

    @classmethod
    def create(cls, device: str, agent_version: str) -> AgentIdentity:
        """New identity with a fresh random boot id and ``started`` = now."""
        return cls(device, agent_version, new_event_id(), time.time())


# -- alarms ---------------------------------------------------------------------------------


def build_alarm(event: AlarmEvent, *, device: str, now: float | None = None) -> dict[str, Any]:
    """Payload for ``<robot>/alarm``; its id is the event id."""
    payload = _envelope("rapp/alarm/v1", device, now, event.id)
    payload.update(
        robot=event.robot,
        kind=event.kind,
        severity=event.severity,
        model=_model(event.model),
        program=event.program,
        score=_finite("score", event.score),
        smoothed=_finite("smoothed", event.smoothed),
        peak_smoothed=_finite("peak_smoothed", event.peak_smoothed),
        threshold=_finite("threshold", event.threshold),
        ratio=_finite("ratio", event.ratio),
        window={"start": iso_utc(event.span_start), "end": iso_utc(event.span_end)},
        seq={"first": int(event.seq_first), "last": int(event.seq_last)},
        contributions=_contributions(event.contributions),
    )
    if event.raise_id is not None:
        payload["raise_id"] = event.raise_id
    if event.reason is not None:
        payload["reason"] = event.reason
    return payload


def build_alarm_active(
    device: str, robot: str, event: AlarmEvent | None, *, now: float | None = None
) -> dict[str, Any]:
    """Payload for the retained ``<robot>/alarm/active``, from the latest event of the robot.

    ``event`` None gives the initial "no alarm" state (``event_id`` null). Each payload gets
    its own id (the event id already names the alarm message).
    """
    payload = _envelope("rapp/alarm_active/v1", device, now, None)
    if event is not None and event.robot != robot:
        raise PayloadError(f"alarm event of robot {event.robot!r} given for robot {robot!r}")
    alarm: dict[str, Any] | None = None
    if event is not None and event.kind == "raise":
        alarm = {
            "raise_id": event.id,
            "severity": event.severity,
            "since": iso_utc(event.span_start),
            "seq_first": int(event.seq_first),
            "model": _model(event.model),
            "program": event.program,
            "smoothed": _finite("smoothed", event.smoothed),
            "threshold": _finite("threshold", event.threshold),
            "contributions": _contributions(event.contributions),
        }
    payload.update(
        robot=robot,
        active=alarm is not None,
        event_id=None if event is None else event.id,
        alarm=alarm,
    )
    return payload


def alarm_from_active(doc: Mapping[str, Any], robot: str) -> AlarmEvent | None:
    """The raise event an ``alarm/active`` payload describes, or None if it holds no alarm.

    The inverse of :func:`build_alarm_active` as far as that payload goes: the raise id,
    severity, start, model, program, smoothed score, threshold and contributions. What it does
    not carry (the deciding window's end and last frame) is taken from the start.
    """
    try:
        if doc.get("schema") != "rapp/alarm_active/v1" or doc.get("robot") != robot:
            raise PayloadError(
                f"not an alarm_active/v1 payload of robot {robot!r}: "
                f"schema {doc.get('schema')!r}, robot {doc.get('robot')!r}"
            )
        alarm = doc.get("alarm")
        if not doc.get("active") or alarm is None:
            return None
        since = datetime.fromisoformat(str(alarm["since"]).replace("Z", "+00:00")).timestamp()
        smoothed = _finite("smoothed", float(alarm["smoothed"]))
        threshold = _finite("threshold", float(alarm["threshold"]))
        if threshold <= 0:
            raise PayloadError(f"threshold = {threshold!r}: must be > 0")
        severity = alarm["severity"]
        if severity not in ("warning", "critical"):
            raise PayloadError(f"severity = {severity!r}: must be warning or critical")
        contributions = tuple(
            ChannelContribution(str(c["channel"]), float(c["value"]), float(c["share"]))
            for c in alarm.get("contributions", [])
        )
        program = alarm.get("program")
        return AlarmEvent(
            id=str(alarm["raise_id"]),
            kind="raise",
            severity=severity,
            robot=robot,
            model=ModelRef(str(alarm["model"]["bundle_id"]), str(alarm["model"]["version"])),
            program=None if program is None else str(program),
            score=smoothed,
            smoothed=smoothed,
            peak_smoothed=smoothed,
            threshold=threshold,
            span_start=since,
            span_end=since,
            seq_first=int(alarm["seq_first"]),
            seq_last=int(alarm["seq_first"]),
            contributions=contributions,
        )
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PayloadError(f"alarm_active payload of robot {robot!r}: {err!r}") from err


# -- score telemetry ------------------------------------------------------------------------


class ScoreStream:
    """Rate-limited, numbered score telemetry for one robot (``<robot>/score``).

    Call :meth:`offer` for every scored window; it returns a payload at most once per
    ``min_interval_s`` (the first window immediately), summarising the windows since the last
    payload (count, max score, time span). ``seq`` counts payloads 0, 1, 2, ... per robot and
    boot, so a subscriber can detect lost or dropped telemetry.
    """

    def __init__(
        self,
        identity: AgentIdentity,
        robot: str,
        *,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not math.isfinite(min_interval_s) or min_interval_s < 0:
            raise PayloadError(f"min_interval_s = {min_interval_s!r}: must be >= 0")
        self.identity = identity
        self.robot = robot
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._seq = 0
        self._last_emit: float | None = None
        self._windows = 0
        self._max: float | None = None
        self._start: float | None = None

    def offer(
        self,
        *,
        score: float,
        smoothed: float | None,
        threshold: float,
        window: WindowInfo,
        model: ModelRef,
        alarm_active: bool,
        now: float | None = None,
    ) -> dict[str, Any] | None:
        """Account one window; return a payload if one is due, else None."""
        self._windows += 1
        if math.isfinite(score):
            self._max = score if self._max is None else max(self._max, score)
        if self._start is None:
            self._start = window.start
        tick = self._clock()
        if self._last_emit is not None and tick - self._last_emit < self.min_interval_s:
            return None
        payload = _envelope("rapp/score/v1", self.identity.device, now, None)
        payload.update(
            robot=self.robot,
            boot_id=self.identity.boot_id,
            seq=self._seq,
            model=_model(model),
            program=window.program,
            threshold=_finite("threshold", threshold),
            score=_finite_or_none(score),
            smoothed=_finite_or_none(smoothed),
            max_score=_finite_or_none(self._max),
            windows=self._windows,
            window={"start": iso_utc(self._start), "end": iso_utc(window.end)},
            alarm_active=alarm_active,
        )
        self._seq += 1
        self._last_emit = tick
        self._windows, self._max, self._start = 0, None, None
        return payload


# -- status ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """A loaded model bundle, for status and meta."""

    robot: str
    bundle_id: str
    version: str
    programs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FrameCounters:
    """Input counters of one robot's source (every field only ever grows).

    ok: frames delivered to the pipeline — decoded, CRC-valid and matching the channel map
    (MQTT JSON: accepted payloads; simulator/replay: samples produced).
    crc_errors: frames rejected by their CRC.
    sequence_gaps: gap events — how many times data was lost before a delivered frame (a
    forward jump of the sequence number, or the first frame after a reconnect); each one
    starts a new run of windows. How many frames were lost is the source's
    ``missing_frames`` counter, not this one (firmware_config/sequence.py).
    resyncs: times bytes were discarded to get back in sync with the frame delimiters.
    """

    ok: int = 0
    crc_errors: int = 0
    sequence_gaps: int = 0
    resyncs: int = 0


@dataclass(frozen=True, slots=True)
class RobotHealth:
    """Per-robot health for the status payload.

    windows: free-form window counters, e.g. ``{"scored": 10, "skipped_nan": 1}``.
    drift: numeric drift indicators (e.g. score quantile ratios vs calibration), or None.
    """

    frames: FrameCounters = field(default_factory=FrameCounters)
    alarm_active: bool = False
    windows: Mapping[str, int] = field(default_factory=dict)
    drift: Mapping[str, float | None] | None = None
    retraining_advised: bool = False


def _outbox_entry(outbox: OutboxStats | None, now: float) -> dict[str, Any]:
    """Depth, drops, age of the oldest message and — while the state disk refuses writes —
    where, why and how much space is left (``disk_full``), so an operator sees it at once."""
    if outbox is None:
        return {"depth": {"alarm": 0, "event": 0, "telemetry": 0}, "telemetry_dropped": 0,
                "oldest_age_s": None, "held_in_memory": 0, "disk_full": None}  # fmt: skip
    oldest = (
        None if outbox.oldest_created is None else rounded(max(0.0, now - outbox.oldest_created))
    )
    storage = outbox.storage
    return {
        "depth": {"alarm": outbox.alarm, "event": outbox.event, "telemetry": outbox.telemetry},
        "telemetry_dropped": int(outbox.telemetry_dropped),
        "oldest_age_s": oldest,
        "held_in_memory": int(outbox.held),
        "disk_full": None
        if storage is None
        else {
            "path": storage.path,
            "error": storage.error,
            "since": iso_utc(storage.since),
            "free_bytes": storage.free_bytes,
        },
    }


def build_status(
    state: StatusState,
    identity: AgentIdentity,
    *,
    bundles: Sequence[BundleInfo] = (),
    outbox: OutboxStats | None = None,
    robots: Mapping[str, RobotHealth] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Payload for the retained ``status`` topic.

    For ``offline`` (the last will, fixed at connect time) only identity fields are included;
    ``online``/``stopped`` carry bundles, outbox and per-robot health.
    """
    if state not in ("online", "stopped", "offline"):
        raise PayloadError(f"status state {state!r}: must be online, stopped or offline")
    t = time.time() if now is None else now
    payload = _envelope("rapp/status/v1", identity.device, t, None)
    payload.update(state=state, agent_version=identity.agent_version, boot_id=identity.boot_id)
    if state == "offline":
        return payload
    outbox_entry = _outbox_entry(outbox, t)
    robot_entries: dict[str, Any] = {}
    for name, health in (robots or {}).items():
        entry: dict[str, Any] = {
            "frames": {
                "ok": int(health.frames.ok),
                "crc_errors": int(health.frames.crc_errors),
                "sequence_gaps": int(health.frames.sequence_gaps),
                "resyncs": int(health.frames.resyncs),
            },
            "alarm_active": health.alarm_active,
            "windows": {k: int(v) for k, v in health.windows.items()},
        }
        if health.drift is not None or health.retraining_advised:
            drift: dict[str, Any] = {k: _drift_entry(k, v) for k, v in (health.drift or {}).items()}
            drift["retraining_advised"] = health.retraining_advised
            entry["drift"] = drift
        robot_entries[name] = entry
    payload.update(
        started=iso_utc(identity.started),
        bundles=[
            {
                "robot": b.robot,
                "bundle_id": b.bundle_id,
                "version": b.version,
                "programs": list(b.programs),
            }
            for b in bundles
        ],
        outbox=outbox_entry,
        robots=robot_entries,
    )
    return payload


# -- meta -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelMeta:
    name: str
    unit: str
    axis: int | None = None


@dataclass(frozen=True, slots=True)
class RobotMeta:
    robot: str
    sample_rate_hz: float
    channels: Sequence[ChannelMeta]
    bundles: Sequence[BundleInfo] = ()
    source: str | None = None


def build_meta(
    identity: AgentIdentity, robots: Sequence[RobotMeta], *, now: float | None = None
) -> dict[str, Any]:
    """Payload for the retained ``meta`` topic."""
    entries = []
    for r in robots:
        entry: dict[str, Any] = {
            "robot": r.robot,
            "sample_rate_hz": _finite("sample_rate_hz", r.sample_rate_hz),
            "channels": [{"name": c.name, "unit": c.unit, "axis": c.axis} for c in r.channels],
            "bundles": [
                {"bundle_id": b.bundle_id, "version": b.version, "programs": list(b.programs)}
                for b in r.bundles
            ],
        }
        if r.source is not None:
            entry["source"] = r.source
        entries.append(entry)
    payload = _envelope("rapp/meta/v1", identity.device, now, None)
    payload.update(agent_version=identity.agent_version, robots=entries)
    return payload


# -- OTA ------------------------------------------------------------------------------------


def build_ota_status(
    device: str,
    state: OtaState,
    transfer_id: str,
    *,
    robot: str | None = None,
    bundle: ModelRef | None = None,
    previous: ModelRef | None = None,
    received_bytes: int | None = None,
    total_bytes: int | None = None,
    reason: str | None = None,
    now: float | None = None,
    warnings: Sequence[str] = (),
    replaces: Sequence[ModelRef] = (),
) -> dict[str, Any]:
    """Payload for the retained ``ota/status`` topic; ``reason`` is required for
    ``rejected`` and ``rolled_back``; ``replaces`` names the bundles a merged bundle
    supersedes."""
    if state in ("rejected", "rolled_back") and not reason:
        raise PayloadError(f"ota status {state!r} needs a reason")
    payload = _envelope("rapp/ota_status/v1", device, now, None)
    payload.update(state=state, transfer_id=transfer_id)
    if robot is not None:
        payload["robot"] = robot
    if bundle is not None:
        payload["bundle"] = _model(bundle)
    if previous is not None:
        payload["previous"] = _model(previous)
    if received_bytes is not None:
        payload["progress"] = {"received_bytes": received_bytes, "total_bytes": total_bytes}
    if reason:
        payload["reason"] = reason
    if warnings:
        payload["warnings"] = list(warnings)
    if replaces:
        payload["replaces"] = [_model(m) for m in replaces]
    return payload
