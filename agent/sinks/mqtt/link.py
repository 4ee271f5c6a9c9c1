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

Parts: :mod:`~agent.sinks.mqtt.client` builds the paho client, a
:class:`~agent.sinks.mqtt.tracker.PublishTracker` follows every publish until paho reports it
done, a :class:`~agent.sinks.mqtt.router.SubscriptionRouter` hands incoming messages to their
handlers, and a :class:`~agent.sinks.mqtt.worker.WakeableWorker` is the drain thread.

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
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.sinks.mqtt.client import build_client
from agent.sinks.mqtt.errors import MqttError
from agent.sinks.mqtt.payloads import StatusState, dumps
from agent.sinks.mqtt.router import MessageHandler, SubscriptionRouter
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.mqtt.tracker import LinkStats, Pending, PublishTracker
from agent.sinks.mqtt.worker import WakeableWorker
from agent.sinks.outbox import Outbox, OutboxError, OutboxMessage
from agent.sinks.topics import Topics

log = logging.getLogger(__name__)

StatusPayload = Callable[[StatusState], Mapping[str, Any]]
Phase = Literal["new", "started", "stopped"]

__all__ = ["LinkStats", "MessageHandler", "MqttLink", "StatusPayload"]


class MqttLink:
    """Owns one paho client and the drain thread; see the module docstring."""

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
        self._tracker = PublishTracker(outbox.ack)
        self._router = SubscriptionRouter()
        self._drain = WakeableWorker("mqtt-drain", self._drain_once, poll_interval, self._failed)
        self._client: mqtt.Client | None = None
        self._phase: Phase = "new"
        self._closing = False  # set by stop(): no new outbox publishes
        self._drained = False
        self._last_connect_failure = ""

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Read credentials, set the will and TLS, and start connecting in the background.

        Raises :class:`CredentialError` / :class:`MqttError` for problems that retrying cannot
        fix (unreadable password or TLS files). Broker unavailability is not an error: the
        link keeps retrying with backoff.
        """
        if self._phase != "new":
            raise MqttError("MqttLink.start(): a link can be started once")
        client = build_client(self.settings, self._environ)
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
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._drain.start()
        self.outbox.add_put_listener(self.wake)
        client.loop_start()
        self._phase = "started"

    def stop(self, drain_timeout: float = 10.0, status_timeout: float = 2.0) -> bool:
        """Drain, publish ``stopped``, disconnect cleanly (no will). Returns True if the
        outbox was empty at the end. Takes at most about drain_timeout + status_timeout.

        Rows not delivered in time stay in the outbox for the next start.
        """
        if self._phase == "stopped":
            return self._drained
        started, self._phase = self._phase == "started", "stopped"
        if not started:
            self._drained = self.outbox.stats().depth == 0
            return self._drained
        client = self._client
        assert client is not None
        self.outbox.remove_put_listener(self.wake)
        drained = self._wait_drained(time.monotonic() + max(0.0, drain_timeout))
        self._closing = True
        if self.connected:
            status = self._publish_status("stopped")
            if status is not None:
                status.done.wait(max(0.0, status_timeout))
        self._drain.stop(timeout=5.0)
        client.disconnect()
        client.loop_stop()
        self._tracker.on_stopped()
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
            self._drain.wake()
            time.sleep(min(0.05, remaining))

    # -- public helpers -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._tracker.connected

    def wake(self) -> None:
        """Wake the drain thread. Called automatically after every ``Outbox.put`` (the link
        registers itself as a put listener); the drain thread also polls."""
        self._drain.wake()

    def publish_status(self) -> bool:
        """Re-publish ``online`` status now (e.g. every 30 s). False if not connected."""
        if self._closing or not self.connected:
            return False
        return self._publish_status("online") is not None

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now and after every reconnect (sessions are clean). ``handler(topic,
        payload)`` runs on paho's network thread: hand work off, do not block."""
        self._router.subscribe(topic, handler, qos)
        if self.connected and self._client is not None:
            self._client.subscribe(topic, qos)

    def stats(self) -> LinkStats:
        return self._tracker.stats()

    # -- publishing -----------------------------------------------------------------------

    def _publish_status(self, state: StatusState) -> Pending | None:
        try:
            payload = dumps(self._status_payload(state))
        except Exception as err:  # a caller bug must not kill the network thread
            log.exception("mqtt: building the %s status payload failed", state)
            self._tracker.note_error(f"status payload: {err}")
            return None
        return self._publish(self.topics.status, payload, 1, True, None)

    def _publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, msg_id: str | None
    ) -> Pending | None:
        """Hand one message to paho and track its mid. None if paho did not take it."""
        client = self._client
        assert client is not None
        generation = self._tracker.generation
        info = client.publish(topic, payload, qos=qos, retain=retain)
        return self._tracker.track(info.mid, info.rc, msg_id, qos, generation)

    def _drain_once(self) -> None:
        while not self._closing:
            window = self._tracker.drain_window(self.settings.max_inflight)
            if window is None or window.room <= 0:
                return
            batch = self.outbox.next_batch(window.room, window.exclude)
            if not batch:
                return
            for msg in batch:
                if not self._publish_row(msg):
                    return

    def _publish_row(self, msg: OutboxMessage) -> bool:
        try:
            pending = self._publish(msg.topic, msg.payload, msg.qos, msg.retain, msg.id)
        except ValueError as err:  # paho refused the topic/payload: retrying will not help
            self._tracker.hold_refused(msg.id, f"message {msg.id} on {msg.topic!r} refused: {err}")
            log.error("mqtt: message %s on %r refused by the client: %s", msg.id, msg.topic, err)
            return True
        return pending is not None

    def _failed(self, err: Exception) -> None:
        log.exception("mqtt: drain failed")
        self._tracker.note_error(f"drain: {err}")

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
                self._tracker.note_error(f"connect refused: {reason_code}")
                log.warning(
                    "mqtt: %s:%s refused the connection: %s",
                    self.settings.host,
                    self.settings.port,
                    reason_code,
                )
                return
            self._tracker.on_connected(getattr(properties, "ReceiveMaximum", None))
            self._last_connect_failure = ""
            log.info("mqtt: connected to %s:%s", self.settings.host, self.settings.port)
            if not self._closing:
                self._publish_status("online")
                # A broker restarted without persistence forgot every retained message: send
                # the device's retained state (meta, alarm/active, ota/status) again.
                self.outbox.requeue_retained()
            for sub in self._router.subscriptions():
                client.subscribe(sub.topic_filter, sub.qos)
            self._drain.wake()
        except Exception:
            log.exception("mqtt: on_connect failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """Log why connecting failed, once per distinct reason (retries repeat it)."""
        try:
            reason = getattr(client, "last_connect_error", "") or "unknown reason"
            self._tracker.note_error(f"connect failed: {reason}")
            if reason != self._last_connect_failure:
                self._last_connect_failure = reason
                log.error(
                    "mqtt: cannot connect to %s:%s: %s; retrying with backoff",
                    self.settings.host,
                    self.settings.port,
                    reason,
                )
        except Exception:
            log.exception("mqtt: on_connect_fail failed")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        try:
            was_connected = self._tracker.on_disconnected(reason_code, closing=self._closing)
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
            if self._tracker.on_published(mid, reason_code):
                self._drain.wake()
        except Exception:
            log.exception("mqtt: on_publish failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for handler in self._router.route(message.topic):
            try:
                handler(message.topic, bytes(message.payload))
            except Exception:
                log.exception("mqtt: handler for %s failed", message.topic)
