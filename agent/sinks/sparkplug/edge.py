"""The Sparkplug B edge node: one MQTT connection of its own, births, data on change, death.

Why a second connection: NDEATH must be the will of the connection that sent NBIRTH, and the
agent's main connection already has its will (``status`` = ``offline``); one connection has
one will. This one reuses ``[mqtt]`` (host, port, TLS, credentials) with its own client id.

Per connect (paho's network thread, ``on_connect``): subscribe to NCMD, then NBIRTH (seq 0,
the bdSeq of this connection's will) and one DBIRTH per robot, then register the next bdSeq's
NDEATH as the will of the next connect and store that bdSeq. Afterwards the main loop's
observations become DDATA: score metrics at most every ``data_interval_s`` per robot, alarm
changes at once, health with every status refresh — only metrics whose value changed.
Nothing is queued while disconnected: the next births carry the current values. An NCMD
with ``Node Control/Rebirth`` = true repeats the births (same bdSeq, seq from 0). At
:meth:`stop` the node dies explicitly: MQTT 5 disconnects with reason "disconnect with will
message" (the broker publishes the registered NDEATH), MQTT 3.1.1 publishes NDEATH and then
disconnects. A killed agent's NDEATH comes from the broker, as its will.

Every BIRTH and DATA is QoS 0 and not retained; NDEATH is QoS 1, not retained (the
specification's rules). One lock orders the sequence numbers: births and data from the two
threads never interleave.

Usage::

    edge = SparkplugEdge.open(settings, mqtt_settings, ("r1",), "0.1.0", state_dir)
    edge.follow(publisher, active_alarm); edge.start()
    edge.observe_health(snapshot.robots)   # main loop, with every status refresh
    edge.stop()
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.pipeline.alarms import AlarmEvent
from agent.pipeline.robot import ScoredWindow
from agent.sinks.mqtt.client import build_client
from agent.sinks.mqtt.payloads import RobotHealth
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.publisher import ResultPublisher
from agent.sinks.sparkplug.codec import SparkplugCodec
from agent.sinks.sparkplug.errors import SparkplugPayloadError
from agent.sinks.sparkplug.metrics import MetricTable, SparkplugPayload
from agent.sinks.sparkplug.payloads import (
    DEVICE_METRICS,
    SEQ_MODULO,
    alarm_values,
    device_payload,
    health_values,
    node_birth,
    node_death,
    rebirth_requested,
    window_values,
)
from agent.sinks.sparkplug.sequence import BDSEQ_MODULO, FILE_NAME, read_bdseq, store_bdseq
from agent.sinks.sparkplug.settings import SparkplugSettings
from agent.sinks.sparkplug.topics import SparkplugTopics

log = logging.getLogger(__name__)

ClientFactory = Callable[[MqttSettings], mqtt.Client]
ActiveAlarm = Callable[[str], AlarmEvent | None]
WILL_DISCONNECT = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")


def edge_connection(settings: SparkplugSettings, mqtt_settings: MqttSettings) -> MqttSettings:
    """``[mqtt]`` with the edge node's client id (two clients with one id evict each other)."""
    client_id = settings.client_id or f"{mqtt_settings.effective_client_id}-spb"
    return dataclasses.replace(mqtt_settings, client_id=client_id)


class SparkplugEdge:
    """See the module docstring. Build with :meth:`open`; the constructor does no I/O."""

    def __init__(
        self,
        settings: SparkplugSettings,
        connection: MqttSettings,
        codec: SparkplugCodec,
        robots: Sequence[str],
        agent_version: str,
        bdseq_path: Path,
        *,
        client_factory: ClientFactory = build_client,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.topics = SparkplugTopics(settings.group_id, settings.edge_node_id)
        self._codec = codec
        self._agent_version = agent_version
        self._bdseq_path = bdseq_path
        self._client_factory = client_factory
        self._clock = clock
        self._monotonic = monotonic
        self._tables = {robot: MetricTable(DEVICE_METRICS) for robot in robots}
        self._last_data = dict.fromkeys(robots, 0.0)
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._seq = 0
        self._will_bdseq = 0
        self._birth_bdseq: int | None = None
        self._connected = False
        self._born = False
        self._stopping = False

    @classmethod
    def open(
        cls,
        settings: SparkplugSettings,
        mqtt_settings: MqttSettings,
        robots: Sequence[str],
        agent_version: str,
        state_dir: Path,
    ) -> SparkplugEdge:
        """Raises :class:`SparkplugUnavailableError` when protobuf is not installed."""
        return cls(
            settings,
            edge_connection(settings, mqtt_settings),
            SparkplugCodec.load(),
            robots,
            agent_version,
            Path(state_dir) / FILE_NAME,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def follow(self, publisher: ResultPublisher, active_alarm: ActiveAlarm) -> None:
        """Observe the publisher's windows and alarm events; take each robot's alarm state
        now (an alarm carried over from the previous run is active from the start)."""
        publisher.window_observers.append(self.observe_window)
        publisher.event_observers.append(
            lambda event: self.observe_alarm(event.robot, active_alarm(event.robot))
        )
        for robot in self._tables:
            self.observe_alarm(robot, active_alarm(robot))

    def start(self) -> None:
        """Register the NDEATH will and start connecting in the background. Raises
        :class:`CredentialError` for unreadable password or TLS files."""
        self._will_bdseq = read_bdseq(self._bdseq_path)
        client = self._client_factory(self.connection)
        client.will_set(self.topics.ndeath, self._death(self._will_bdseq), qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        c = self.connection
        if c.protocol == "5":
            client.connect_async(c.host, c.port, keepalive=c.keepalive, clean_start=True)
        else:
            client.connect_async(c.host, c.port, keepalive=c.keepalive)
        self._client = client
        client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish the death (see the module docstring) and disconnect."""
        client = self._client
        if client is None or self._stopping:
            return
        with self._lock:
            self._stopping = True
            self._born = False
            connected = self._connected
            bdseq = self._birth_bdseq
        if connected and self.connection.protocol == "5":
            client.disconnect(reasoncode=WILL_DISCONNECT)
        else:
            if connected and bdseq is not None:
                info = client.publish(self.topics.ndeath, self._death(bdseq), qos=1, retain=False)
                _wait(info, timeout)
            client.disconnect()
        client.loop_stop()
        log.info("sparkplug: edge node %s stopped", self.topics.edge_node_id)

    # -- observations (main loop) -----------------------------------------------------------

    def observe_window(self, window: ScoredWindow) -> None:
        with self._lock:
            table = self._tables.get(window.robot)
            if table is None:
                return
            table.update(window_values(window), self._now_ms())
            if self._monotonic() - self._last_data[window.robot] >= self.settings.data_interval_s:
                self._send_changes(window.robot)

    def observe_alarm(self, robot: str, active: AlarmEvent | None) -> None:
        with self._lock:
            table = self._tables.get(robot)
            if table is not None:
                table.update(alarm_values(active), self._now_ms())
                self._send_changes(robot)

    def observe_health(self, robots: Mapping[str, RobotHealth]) -> None:
        with self._lock:
            now = self._now_ms()
            for robot, health in robots.items():
                table = self._tables.get(robot)
                if table is not None:
                    table.update(health_values(health), now)
            for robot in self._tables:  # also score updates held back by data_interval_s
                self._send_changes(robot)

    # -- sending (lock held) ------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _death(self, bdseq: int) -> bytes:
        return self._codec.encode(node_death(bdseq, self._now_ms()))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_MODULO
        return self._seq

    def _send(self, topic: str, payload: SparkplugPayload) -> None:
        assert self._client is not None
        info = self._client.publish(topic, self._codec.encode(payload), qos=0, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug(
                "sparkplug: %s not sent (%s); the next birth carries its values", topic, info.rc
            )

    def _send_births(self) -> None:
        assert self._birth_bdseq is not None
        now = self._now_ms()
        self._seq = 0
        self._send(self.topics.nbirth, node_birth(self._birth_bdseq, self._agent_version, now))
        for robot, table in self._tables.items():
            self._send(
                self.topics.dbirth(robot), device_payload(self._next_seq(), table.birth(now), now)
            )
            self._last_data[robot] = self._monotonic()
        self._born = True

    def _send_changes(self, robot: str) -> None:
        table = self._tables[robot]
        if not self._born or not table.has_changes:
            return  # before the birth: the birth will carry the values
        now = self._now_ms()
        self._send(
            self.topics.ddata(robot), device_payload(self._next_seq(), table.changes(now), now)
        )
        self._last_data[robot] = self._monotonic()

    # -- paho callbacks (network thread; must never raise) --------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                log.warning("sparkplug: the broker refused the edge connection: %s", reason_code)
                return
            # before the birth, so that a host's rebirth request right after it is not missed
            client.subscribe(self.topics.ncmd, qos=1)
            with self._lock:
                if self._stopping:
                    return
                self._connected = True
                self._birth_bdseq = self._will_bdseq
                self._send_births()
                self._will_bdseq = (self._birth_bdseq + 1) % BDSEQ_MODULO
                # the will of the *next* connect; this connection's will stays as registered
                client.will_set(
                    self.topics.ndeath, self._death(self._will_bdseq), qos=1, retain=False
                )
                born = self._birth_bdseq
            store_bdseq(self._bdseq_path, self._will_bdseq)
            log.info(
                "sparkplug: edge node %s/%s born (bdSeq %d, %d device(s))",
                self.topics.group_id,
                self.topics.edge_node_id,
                born,
                len(self._tables),
            )
        except Exception:
            log.exception("sparkplug: on_connect failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            was_connected, self._connected, self._born = self._connected, False, False
            stopping = self._stopping
        if was_connected and not stopping:
            log.warning("sparkplug: connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            command = self._codec.decode(bytes(message.payload))
        except SparkplugPayloadError as err:
            log.warning("sparkplug: ignoring an unreadable command on %s: %s", message.topic, err)
            return
        try:
            if not rebirth_requested(command):
                return
            with self._lock:
                if self._connected and not self._stopping:
                    log.info("sparkplug: rebirth requested")
                    self._send_births()
        except Exception:
            log.exception("sparkplug: handling %s failed", message.topic)


def _wait(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as err:  # not queued, or the connection went away
        log.debug("sparkplug: NDEATH not confirmed: %s", err)
