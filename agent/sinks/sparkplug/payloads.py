"""What the edge node reports, as Sparkplug B payloads (pure builders, no I/O).

The agent is the edge node; each robot is one of its devices. Node metrics (NBIRTH):
``bdSeq``, ``Node Control/Rebirth`` (false; a host sets it true in NCMD to ask for a rebirth)
and ``agent/version``. Device metrics (DBIRTH, then DDATA on change) — every one declared in
the birth, null until known:

======================  ========  ===========================================================
``score``               Double    score of the latest window
``smoothed``            Double    EWMA of the score: what the alarm compares with the threshold
``threshold``           Double    the alarm threshold in force
``model/bundle_id``     String    bundle that scored the latest window
``model/version``       String
``alarm/active``        Boolean   an alarm is raised
``alarm/severity``      String    ``warning`` / ``critical`` while active, else empty
``alarm/raise_id``      String    id of the active raise (as in the JSON ``alarm`` events)
``health/…``            UInt64    frames_ok, crc_errors, sequence_gaps, resyncs,
                                  windows_scored, unknown_program, queue_dropped, reconnects
``health/source_connected``     Boolean
``health/retraining_advised``   Boolean
======================  ========  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.pipeline.alarms import AlarmEvent
from agent.pipeline.robot import ScoredWindow
from agent.sinks.mqtt.payloads import RobotHealth
from agent.sinks.sparkplug.metrics import DataType, Metric, SparkplugPayload, Value, checked_value

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
AGENT_VERSION = "agent/version"
SEQ_MODULO = 256

_D, _S, _B, _U = DataType.DOUBLE, DataType.STRING, DataType.BOOLEAN, DataType.UINT64
SCORE_METRICS = (
    ("score", _D),
    ("smoothed", _D),
    ("threshold", _D),
    ("model/bundle_id", _S),
    ("model/version", _S),
)
ALARM_METRICS = (("alarm/active", _B), ("alarm/severity", _S), ("alarm/raise_id", _S))
# health metric -> (status section, key) of RobotHealth
_FRAME_COUNTERS = ("frames_ok", "crc_errors", "sequence_gaps", "resyncs")
_WINDOW_COUNTERS = {
    "windows_scored": "scored",
    "unknown_program": "unknown_program",
    "queue_dropped": "queue_dropped",
    "reconnects": "reconnects",
}
HEALTH_METRICS = (
    *((f"health/{name}", _U) for name in (*_FRAME_COUNTERS, *_WINDOW_COUNTERS)),
    ("health/source_connected", _B),
    ("health/retraining_advised", _B),
)
DEVICE_METRICS: tuple[tuple[str, DataType], ...] = (
    *SCORE_METRICS,
    *ALARM_METRICS,
    *HEALTH_METRICS,
)


def _metrics(
    declared: Sequence[tuple[str, DataType]], values: Mapping[str, Value], now_ms: int
) -> tuple[Metric, ...]:
    types = dict(declared)
    return tuple(
        Metric(n, types[n], checked_value(n, types[n], v), now_ms) for n, v in values.items()
    )


def node_birth(bdseq: int, agent_version: str, now_ms: int) -> SparkplugPayload:
    """NBIRTH: seq 0, the connection's bdSeq, the rebirth control and the agent version."""
    declared = ((BDSEQ, DataType.INT64), (REBIRTH, _B), (AGENT_VERSION, _S))
    values = {BDSEQ: bdseq, REBIRTH: False, AGENT_VERSION: agent_version}
    return SparkplugPayload(now_ms, _metrics(declared, values, now_ms), seq=0)


def node_death(bdseq: int, now_ms: int) -> SparkplugPayload:
    """NDEATH (the edge connection's will): only bdSeq, and no seq."""
    return SparkplugPayload(now_ms, _metrics(((BDSEQ, DataType.INT64),), {BDSEQ: bdseq}, now_ms))


def device_payload(seq: int, metrics: Sequence[Metric], now_ms: int) -> SparkplugPayload:
    """DBIRTH or DDATA: the metrics and the edge node's next sequence number."""
    return SparkplugPayload(now_ms, tuple(metrics), seq=seq % SEQ_MODULO)


def rebirth_requested(command: SparkplugPayload) -> bool:
    """Whether an NCMD asks for a rebirth (``Node Control/Rebirth`` = true)."""
    return any(m.name == REBIRTH and m.value is True for m in command.metrics)


def window_values(window: ScoredWindow) -> dict[str, Value]:
    return {
        "score": window.score,
        "smoothed": window.smoothed,
        "threshold": window.threshold,
        "model/bundle_id": window.model.bundle_id,
        "model/version": window.model.version,
    }


def alarm_values(active: AlarmEvent | None) -> dict[str, Value]:
    """The alarm metrics from the robot's active raise (None: no alarm)."""
    raised = active is not None and active.kind == "raise"
    return {
        "alarm/active": raised,
        "alarm/severity": active.severity if raised and active is not None else "",
        "alarm/raise_id": active.id if raised and active is not None else "",
    }


def health_values(health: RobotHealth) -> dict[str, Value]:
    f, w = health.frames, health.windows
    values: dict[str, Value] = {
        "health/frames_ok": f.ok,
        "health/crc_errors": f.crc_errors,
        "health/sequence_gaps": f.sequence_gaps,
        "health/resyncs": f.resyncs,
    }
    for metric, key in _WINDOW_COUNTERS.items():
        values[f"health/{metric}"] = w.get(key)
    connected = w.get("source_connected")
    values["health/source_connected"] = None if connected is None else bool(connected)
    values["health/retraining_advised"] = health.retraining_advised
    return values
