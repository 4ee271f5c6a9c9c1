"""MqttLink: drains the outbox to the broker with at-least-once delivery, and keeps status.

Threads:

- paho's network thread (``loop_start``) connects, reconnects with exponential backoff
  (``reconnect_delay_set``), and runs the callbacks below;
- one drain thread publishes outbox rows, keeping at most ``max_inflight`` QoS 1 messages
  awaiting PUBACK. It wakes on :meth:`wake`, on every PUBACK, on connect, and every
  ``poll_interval`` seconds otherwise.

Delivery rule: an outbox row is deleted (``Outbox.ack``) only in ``on_publish`` for its mid,
i.e. after the broker's PUBACK (for QoS 0 telemetry: after it was written to the socket, which
is all QoS 0 offers). If the connection drops first, paho keeps the QoS 1 message and re-sends
it after reconnecting (with DUP set), and its PUBACK then deletes the row. If the process dies,
the row is still in the outbox and is sent again after restart — hence at-least-once, and the
``id`` in every payload for de-duplication.

Status: the last will is ``offline`` (retained, QoS 1) on ``<root>/<device>/status``; every
successful connect publishes ``online`` (retained) before draining; :meth:`stop` drains, then
publishes ``stopped`` (retained) and disconnects cleanly, so the broker does not send the will.
Status payloads come from the caller's ``status_payload(state)`` callable (see
``agent.sinks.mqtt.payloads.build_status``); they bypass the outbox because only the latest status
matters.

Usage::

    link = MqttLink(settings, outbox, lambda state: build_status(state, ident, ...))
    link.start()                      # returns at once; connects in the background
    outbox.put_json(...)              # the link is woken by the put and drains at once
    link.stop(drain_timeout=10.0)     # at SIGTERM
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.sinks.mqtt.errors import CredentialError, MqttError
from agent.sinks.mqtt.payloads import StatusState, dumps
from agent.sinks.mqtt.settings import MqttSettings, resolve_password
from agent.sinks.outbox import Outbox, OutboxError, OutboxMessage
from agent.sinks.topics import Topics

log = logging.getLogger(__name__)

StatusPayload = Callable[[StatusState], Mapping[str, Any]]
MessageHandler = Callable[[str, bytes], None]

# Publishes that the broker rejected (MQTT 5 PUBACK reason >= 0x80, e.g. "not authorized")
# are not deleted; they are retried after this long instead of blocking the queue.
REJECTED_RETRY_S = 30.0


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Connection state and counters since :meth:`MqttLink.start`."""

    connected: bool
    connects: int
    disconnects: int
    published: int
    acked: int
    rejected: int
    in_flight: int
    held: int
    last_error: str | None


@dataclass(slots=True)
class _Pending:
    """A publish handed to paho and not yet confirmed by on_publish."""

    msg_id: str | None  # outbox id; None for direct (status) publishes
    qos: int
    generation: int  # connection generation at publish time (QoS 0 dies with its connection)
    done: threading.Event
    failed: bool = False


class MqttLink:
    """Owns one paho client; see the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        status_payload: StatusPayload,
        *,
        environ: Mapping[str, str] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.topics = Topics.for_device(settings.device_id, settings.topic_root)
        self._status_payload = status_payload
        self._environ = environ
        self._poll_interval = poll_interval

        self._client: mqtt.Client | None = None
        self._drain_thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._closing = False  # set by stop(): no new outbox publishes
        self._started = False
        self._stopped = False
        self._drained = False

        # Everything below is guarded by _track_lock. Lock order: paho's internal mutex ->
        # _track_lock -> the outbox lock. Nothing calls into paho while holding _track_lock.
        self._track_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._early: dict[int, ReasonCode | None] = {}  # on_publish ran before we registered
        self._held: dict[str, float] = {}  # msg_id -> monotonic time it may be retried
        self._generation = 0
        self._connected = False
        self._receive_max = 65535
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._connects = 0
        self._disconnects = 0
        self._published = 0
        self._acked = 0
        self._rejected = 0
        self._last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Read credentials, set the will and TLS, and start connecting in the background.

        Raises :class:`CredentialError` / :class:`MqttError` for problems that retrying cannot
        fix (unreadable password or TLS files). Broker unavailability is not an error: the
        link keeps retrying with backoff.
        """
        if self._started or self._stopped:
            raise MqttError("MqttLink.start(): a link can be started once")
        client = self._make_client()
        try:
            will = dumps(self._status_payload("offline"))
        except Exception as err:
            raise MqttError(f"status payload for the last will failed: {err}") from err
        client.will_set(self.topics.status, will, qos=1, retain=True)
        s = self.settings
        if s.protocol == "5":
            client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=True)
        else:
            client.connect_async(s.host, s.port, keepalive=s.keepalive)
        self._client = client
        self._drain_thread = threading.Thread(
            target=self._drain_loop, name="mqtt-drain", daemon=True
        )
        self._drain_thread.start()
        self.outbox.add_put_listener(self.wake)
        client.loop_start()
        self._started = True

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.effective_client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # MQTT 5 takes clean_start at connect instead. A clean session is right: the agent
            # only publishes, and undelivered messages live in the outbox, not in the broker.
            clean_session=None if v5 else True,
            reconnect_on_failure=True,
        )
        # paho must never queue on its own: our drain bounds the in-flight window (+ room
        # for status publishes).
        client.max_inflight_messages_set(s.max_inflight + 4)
        client.max_queued_messages_set(0)
        # paho annotates int but computes with any number; sub-second delays keep tests fast
        client.reconnect_delay_set(s.reconnect_min_delay, s.reconnect_max_delay)  # type: ignore[arg-type]
        if s.username is not None:
            client.username_pw_set(s.username, resolve_password(s, self._environ))
        if s.tls is not None:
            try:
                client.tls_set(
                    ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                    certfile=str(s.tls.cert_file) if s.tls.cert_file else None,
                    keyfile=str(s.tls.key_file) if s.tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError, ValueError) as err:
                raise CredentialError(
                    f"mqtt.tls: cannot load CA/certificate/key ({s.tls}): {err}; "
                    "fix: check the paths and that the files are PEM and readable"
                ) from err
            client.tls_insecure_set(s.tls.insecure)
        elif s.has_password:
            log.warning("mqtt: password authentication without TLS sends the password in clear")
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def stop(self, drain_timeout: float = 10.0, status_timeout: float = 2.0) -> bool:
        """Drain, publish ``stopped``, disconnect cleanly (no will). Returns True if the
        outbox was empty at the end. Takes at most about drain_timeout + status_timeout.

        Rows not delivered in time stay in the outbox for the next start.
        """
        if self._stopped:
            return self._drained
        self._stopped = True
        if not self._started:
            self._drained = self.outbox.stats().depth == 0
            return self._drained
        client = self._client
        assert client is not None
        self.outbox.remove_put_listener(self.wake)
        deadline = time.monotonic() + max(0.0, drain_timeout)
        drained = self._wait_drained(deadline)
        self._closing = True
        status = None
        if self.connected:
            status = self._publish_status("stopped")
            if status is not None:
                status.done.wait(max(0.0, status_timeout))
        self._halt.set()
        self._wake.set()
        if self._drain_thread is not None:
            self._drain_thread.join(timeout=5.0)
        client.disconnect()
        client.loop_stop()
        with self._track_lock:
            self._connected = False
        log.info("mqtt: stopped (outbox %s)", "drained" if drained else "not drained")
        self._drained = drained
        return drained

    def _wait_drained(self, deadline: float) -> bool:
        while True:
            try:
                empty = self.outbox.stats().depth == 0
            except OutboxError:
                return False
            if empty:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            time.sleep(min(0.05, remaining))

    # -- public helpers -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._track_lock:
            return self._connected

    def wake(self) -> None:
        """Wake the drain thread. Called automatically after every ``Outbox.put`` (the link
        registers itself as a put listener); the drain thread also polls."""
        self._wake.set()

    def publish_status(self) -> bool:
        """Re-publish ``online`` status now (e.g. every 30 s). False if not connected."""
        if self._closing or not self.connected:
            return False
        return self._publish_status("online") is not None

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now and after every reconnect (sessions are clean). ``handler(topic,
        payload)`` runs on paho's network thread: hand work off, do not block."""
        with self._track_lock:
            self._subscriptions[topic] = (qos, handler)
            connected = self._connected
        if connected and self._client is not None:
            self._client.subscribe(topic, qos)

    def stats(self) -> LinkStats:
        with self._track_lock:
            return LinkStats(
                connected=self._connected,
                connects=self._connects,
                disconnects=self._disconnects,
                published=self._published,
                acked=self._acked,
                rejected=self._rejected,
                in_flight=sum(1 for p in self._pending.values() if p.msg_id is not None),
                held=len(self._held),
                last_error=self._last_error,
            )

    # -- publishing -----------------------------------------------------------------------

    def _publish_status(self, state: StatusState) -> _Pending | None:
        try:
            payload = dumps(self._status_payload(state))
        except Exception as err:  # a caller bug must not kill the network thread
            log.exception("mqtt: building the %s status payload failed", state)
            self._note_error(f"status payload: {err}")
            return None
        return self._publish(self.topics.status, payload, 1, True, None)

    def _publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, msg_id: str | None
    ) -> _Pending | None:
        """Hand one message to paho and track its mid. None if paho did not take it."""
        client = self._client
        assert client is not None
        with self._track_lock:
            generation = self._generation
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            pass
        elif qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            pass  # paho queued it and sends it after reconnecting; on_publish will follow
        else:
            return None
        pending = _Pending(msg_id, qos, generation, threading.Event())
        with self._track_lock:
            if msg_id is not None:
                self._published += 1
            if info.mid in self._early:
                reason = self._early.pop(info.mid)
                self._complete(pending, reason)
            elif qos == 0 and generation != self._generation:
                return None  # its connection is gone and paho drops QoS 0 packets with it
            else:
                self._pending[info.mid] = pending
        return pending

    def _complete(self, pending: _Pending, reason: ReasonCode | None) -> None:
        """Called with _track_lock held, once per publish."""
        if reason is not None and reason.is_failure:
            self._rejected += 1
            pending.failed = True
            if pending.msg_id is not None:
                self._held[pending.msg_id] = time.monotonic() + REJECTED_RETRY_S
            self._last_error = f"broker rejected a publish: {reason}"
            log.warning("mqtt: broker rejected message %s: %s", pending.msg_id, reason)
        elif pending.msg_id is not None:
            try:
                self.outbox.ack(pending.msg_id)
                self._acked += 1
            except OutboxError as err:
                # The row stays and is re-sent later: a duplicate, never a loss.
                self._last_error = str(err)
                log.error("mqtt: %s", err)
        pending.done.set()

    def _drain_loop(self) -> None:
        while not self._halt.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._halt.is_set():
                return
            try:
                self._drain_once()
            except Exception as err:  # keep draining; the error is visible in stats/logs
                log.exception("mqtt: drain failed")
                self._note_error(f"drain: {err}")
                self._halt.wait(self._poll_interval)

    def _drain_once(self) -> None:
        while not self._closing:
            with self._track_lock:
                if not self._connected:
                    return
                now = time.monotonic()
                for msg_id in [m for m, t in self._held.items() if t <= now]:
                    del self._held[msg_id]
                exclude = {p.msg_id for p in self._pending.values() if p.msg_id is not None}
                room = min(self.settings.max_inflight, self._receive_max) - len(exclude)
                exclude.update(self._held)
            if room <= 0:
                return
            batch = self.outbox.next_batch(room, exclude)
            if not batch:
                return
            for msg in batch:
                if not self._publish_row(msg):
                    return

    def _publish_row(self, msg: OutboxMessage) -> bool:
        try:
            pending = self._publish(msg.topic, msg.payload, msg.qos, msg.retain, msg.id)
        except ValueError as err:  # paho refused the topic/payload: retrying will not help
            with self._track_lock:
                self._held[msg.id] = float("inf")
                self._rejected += 1
                self._last_error = f"message {msg.id} on {msg.topic!r} refused: {err}"
            log.error("mqtt: message %s on %r refused by the client: %s", msg.id, msg.topic, err)
            return True
        return pending is not None

    def _note_error(self, text: str) -> None:
        with self._track_lock:
            self._last_error = text

    # -- paho callbacks (network thread; must never raise) --------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        try:
            if reason_code.is_failure:
                self._note_error(f"connect refused: {reason_code}")
                log.warning(
                    "mqtt: %s:%s refused the connection: %s",
                    self.settings.host,
                    self.settings.port,
                    reason_code,
                )
                return
            receive_max = getattr(properties, "ReceiveMaximum", None)
            with self._track_lock:
                self._connected = True
                self._connects += 1
                # keep 2 slots of the broker's Receive Maximum for status publishes
                self._receive_max = max(1, receive_max - 2) if receive_max else 65535
                subscriptions = list(self._subscriptions.items())
            log.info("mqtt: connected to %s:%s", self.settings.host, self.settings.port)
            if not self._closing:
                self._publish_status("online")
            for topic, (qos, _handler) in subscriptions:
                client.subscribe(topic, qos)
            self._wake.set()
        except Exception:
            log.exception("mqtt: on_connect failed")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        try:
            with self._track_lock:
                was_connected = self._connected
                self._connected = False
                self._generation += 1
                if was_connected:
                    self._disconnects += 1
                # QoS 0 packets die with the connection (paho never reports them); QoS 1
                # stay pending: paho re-sends them after reconnecting.
                for mid in [m for m, p in self._pending.items() if p.qos == 0]:
                    self._pending.pop(mid).done.set()
                if was_connected and not self._closing:
                    # (a refused connect already recorded the more useful reason)
                    self._last_error = f"disconnected: {reason_code}"
            if was_connected and not self._closing:
                log.warning("mqtt: connection lost (%s); reconnecting with backoff", reason_code)
        except Exception:
            log.exception("mqtt: on_disconnect failed")

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        try:
            with self._track_lock:
                pending = self._pending.pop(mid, None)
                if pending is None:
                    self._early[mid] = reason_code
                    return
                self._complete(pending, reason_code)
            self._wake.set()
        except Exception:
            log.exception("mqtt: on_publish failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._track_lock:
            handlers = [
                h
                for pattern, (_qos, h) in self._subscriptions.items()
                if mqtt.topic_matches_sub(pattern, message.topic)
            ]
        for handler in handlers:
            try:
                handler(message.topic, bytes(message.payload))
            except Exception:
                log.exception("mqtt: handler for %s failed", message.topic)
