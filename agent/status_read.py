"""`rapp-agent status`: what an agent last reported, read from the broker or its state dir.

- **Broker** (the config's ``[mqtt]`` table): subscribe to the device's retained topics —
  ``status``, ``meta``, ``ota/status`` and every ``<robot>/alarm/active`` — collect what the
  broker holds, and disconnect. The broker sends retained messages right after a SUBACK; a
  second SUBSCRIBE is answered after them, so its SUBACK marks "everything retained arrived"
  without waiting for a timeout. The client id is a fresh one: the agent's own would make the
  broker drop the running agent's connection.
- **State dir** (``--state-dir``): without a broker, or with the agent stopped. The outbox
  (agent/sinks/outbox.py) keeps the last payload queued with ``retain`` per topic — ``meta``,
  the alarm states, ``ota/status`` — plus the queue depth and its counters; the model store
  keeps the bundles installed over the air. The periodic ``status`` payload itself is never
  stored (it is built from live counters), so frame and window counters are broker-only.
  The database is opened read-only: a running agent keeps writing to it undisturbed.

Payloads are told apart by their ``schema`` field, not by topic, so retained messages of other
integrations kept in the same outbox (e.g. Home Assistant discovery) are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.errors import AgentInputError, AgentRuntimeError
from agent.ota.admin import model_inventory
from agent.sinks.mqtt.client import build_client
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.topics import Topics

OUTBOX_FILE = "outbox.sqlite3"
MODELS_DIR = "models"
DEFAULT_TIMEOUT_S = 3.0
STATUS, META, ALARM_ACTIVE, OTA_STATUS = (
    "rapp/status/v1",
    "rapp/meta/v1",
    "rapp/alarm_active/v1",
    "rapp/ota_status/v1",
)


class StatusUnavailable(AgentRuntimeError):
    """The broker cannot be reached, or holds no status of this device."""


class NotAStateDir(AgentInputError):
    """``--state-dir`` names a directory without any agent state."""


@dataclass
class DeviceStatus:
    """What one agent last reported. ``status`` is the retained status payload (broker only);
    ``outbox`` and ``models`` come from a state dir only."""

    source: str
    device: str | None = None
    status: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    ota: dict[str, Any] | None = None
    outbox: dict[str, Any] | None = None
    models: dict[str, Any] | None = None

    def take(self, payload: dict[str, Any]) -> None:
        """File one retained payload under its kind (unknown schemas are ignored)."""
        schema = payload.get("schema")
        if schema == STATUS:
            self.status = payload
        elif schema == META:
            self.meta = payload
        elif schema == OTA_STATUS:
            self.ota = payload
        elif schema == ALARM_ACTIVE and isinstance(payload.get("robot"), str):
            self.alarms[payload["robot"]] = payload
        else:
            return
        if self.device is None and isinstance(payload.get("device"), str):
            self.device = payload["device"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _decoded(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


# -- from the broker ------------------------------------------------------------------------


class _RetainedCollector:
    """paho callbacks: subscribe on connect, collect, finish at the barrier's SUBACK."""

    def __init__(self, topics: Topics, into: DeviceStatus) -> None:
        self.filters = [
            topics.status,
            topics.meta,
            topics.ota_status,
            f"{topics.base}/+/alarm/active",
        ]
        self.barrier = f"{topics.base}/_status-barrier/{uuid.uuid4().hex}"
        self.into = into
        self.done = threading.Event()
        self.refused = ""
        self._first_mid: int | None = None
        self._barrier_mid: int | None = None
        self._lock = threading.Lock()

    def on_connect(
        self, client: Any, _data: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self.done.set()
            return
        with self._lock:
            _, self._first_mid = client.subscribe([(f, 0) for f in self.filters])

    def on_subscribe(self, client: Any, _data: Any, mid: int, _codes: Any, _props: Any) -> None:
        with self._lock:
            if mid == self._first_mid:
                _, self._barrier_mid = client.subscribe(self.barrier, 0)
            elif mid == self._barrier_mid:
                self.done.set()

    def on_message(self, _client: Any, _data: Any, message: Any) -> None:
        payload = _decoded(message.payload)
        if payload is not None:
            self.into.take(payload)


def read_from_broker(
    settings: MqttSettings, topics: Topics, timeout_s: float = DEFAULT_TIMEOUT_S
) -> DeviceStatus:
    """The retained state of ``topics.device`` on the broker of ``settings``; raises
    :class:`StatusUnavailable` when it cannot be read within ``timeout_s``."""
    where = f"{settings.host}:{settings.port}"
    result = DeviceStatus(source=f"mqtt://{where}", device=topics.device)
    collector = _RetainedCollector(topics, result)
    reader = dataclasses.replace(settings, client_id=f"rapp-status-{uuid.uuid4().hex[:12]}")
    client = build_client(reader)
    client.on_connect = collector.on_connect
    client.on_subscribe = collector.on_subscribe
    client.on_message = collector.on_message
    client.connect_timeout = timeout_s
    deadline = time.monotonic() + timeout_s
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(2 * timeout_s)))
    except OSError as err:
        raise StatusUnavailable(f"cannot connect to the broker at {where}: {err}") from err
    client.loop_start()
    try:
        collector.done.wait(max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
    if collector.refused:
        raise StatusUnavailable(
            f"the broker at {where} refused the connection: {collector.refused}"
        )
    if result.status is None:
        raise StatusUnavailable(
            f"no retained status on {topics.status} at {where} within {timeout_s:g} s: the "
            "agent has not connected to this broker yet, or its device_id / topic_root differ; "
            "--state-dir reads the agent's local state instead"
        )
    return result


# -- from the state directory ---------------------------------------------------------------


def _read_outbox(path: Path, into: DeviceStatus) -> None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as err:
        raise StatusUnavailable(f"{path}: cannot open read-only: {err}") from err
    try:
        retained = conn.execute("SELECT payload FROM retained ORDER BY updated").fetchall()
        depth = dict(conn.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind").fetchall())
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        oldest = conn.execute("SELECT MIN(created) FROM messages").fetchone()[0]
    except sqlite3.Error as err:
        raise StatusUnavailable(f"{path}: not a readable agent outbox: {err}") from err
    finally:
        conn.close()
    for (raw,) in retained:
        payload = _decoded(bytes(raw))
        if payload is not None:
            into.take(payload)
    into.outbox = {
        "depth": {kind: int(depth.get(kind, 0)) for kind in ("alarm", "event", "telemetry")},
        "telemetry_dropped": int(counters.get("telemetry_dropped", 0)),
        "enqueued_total": int(counters.get("enqueued_total", 0)),
        "acked_total": int(counters.get("acked_total", 0)),
        "oldest_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 1),
    }


def read_from_state_dir(state_dir: Path) -> DeviceStatus:
    """What the agent with this ``state_dir`` last queued and installed; raises
    :class:`NotAStateDir` when the directory holds neither an outbox nor installed models."""
    outbox, models = state_dir / OUTBOX_FILE, state_dir / MODELS_DIR
    if not outbox.is_file() and not models.is_dir():
        raise NotAStateDir(
            f"{state_dir}: no agent state here (neither {OUTBOX_FILE} nor {MODELS_DIR}/); "
            "give the agent's [agent] state_dir"
        )
    result = DeviceStatus(source=str(state_dir))
    if outbox.is_file():
        _read_outbox(outbox, result)
    result.models = model_inventory(state_dir)
    return result
