"""MqttLink with a scripted stand-in for paho's client: what the drain does with each answer.

The real broker behaviour is covered by tests/e2e/test_mqtt_link.py; here the client's return
codes and callbacks are driven by hand, so the cases that are hard to provoke with mosquitto
(paho refusing a publish because its store is full) are exercised deterministically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.sinks.mqtt import link as link_module
from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.outbox import Outbox
from tests.support.broker import wait_until

PUBACK = ReasonCode(PacketTypes.PUBACK, "Success")
CONNACK = ReasonCode(PacketTypes.CONNACK, "Success")


class ScriptedClient:
    """Records publishes and answers with ``rc``; the test fires the callbacks."""

    def __init__(self) -> None:
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self.published: list[tuple[int, str, bytes, int]] = []
        self.subscribed: list[tuple[str, int]] = []
        self.refused: list[str] = []  # topics of publishes answered with an error
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.on_message: Any = None
        self._mid = 0

    # the part of paho's API the link uses
    def will_set(self, *_args: Any, **_kw: Any) -> None: ...
    def connect_async(self, *_args: Any, **_kw: Any) -> None: ...
    def loop_start(self) -> None: ...
    def loop_stop(self) -> None: ...
    def disconnect(self) -> None: ...

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.append((topic, qos))

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        self._mid += 1
        info = mqtt.MQTTMessageInfo(self._mid)
        info.rc = self.rc
        if self.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.published.append((self._mid, topic, payload, qos))
        else:
            self.refused.append(topic)
        return info

    # the broker's side
    def connack(self) -> None:
        self.on_connect(self, None, None, CONNACK, None)

    def puback(self, mid: int) -> None:
        self.on_publish(self, None, mid, PUBACK, None)

    def deliver(self, topic: str, payload: bytes) -> None:
        message = mqtt.MQTTMessage(topic=topic.encode())
        message.payload = payload
        self.on_message(self, None, message)

    def rows(self) -> list[tuple[int, str]]:
        """(mid, outbox id) of the outbox rows published (status publishes left out)."""
        return [(mid, json.loads(p)["id"]) for mid, t, p, _q in self.published if "/r1/" in t]


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> ScriptedClient:
    scripted = ScriptedClient()
    monkeypatch.setattr(link_module, "build_client", lambda _settings, _environ: scripted)
    return scripted


@pytest.fixture
def link(client: ScriptedClient, outbox: Outbox) -> Iterator[MqttLink]:
    settings = MqttSettings(host="127.0.0.1", device_id="dev", max_inflight=2)
    mqtt_link = MqttLink(settings, outbox, lambda state: {"state": state}, poll_interval=0.05)
    mqtt_link.start()
    yield mqtt_link
    mqtt_link.stop(drain_timeout=0, status_timeout=0)


def put(outbox: Outbox, n: int = 1) -> list[str]:
    return [outbox.put_json("rapp/v1/dev/r1/alarm", {"n": i}, kind="alarm") for i in range(n)]


def test_row_refused_by_a_full_paho_store_stays_and_goes_out_later(
    client: ScriptedClient, link: MqttLink, outbox: Outbox
) -> None:
    client.connack()
    client.rc = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
    [row] = put(outbox)
    wait_until(lambda: "rapp/v1/dev/r1/alarm" in client.refused, 5, message="a refused try")
    # nothing is tracked or deleted
    assert link.stats().in_flight == 0 and outbox.stats().depth == 1
    client.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    link.wake()
    [(mid, sent)] = wait_until(client.rows, 5, message="published once paho has room")
    assert sent == row and link.stats().in_flight == 1 and outbox.stats().depth == 1
    client.puback(mid)
    assert outbox.stats().depth == 0 and link.stats().acked == 1


def test_drain_keeps_at_most_max_inflight_rows_in_paho(
    client: ScriptedClient, link: MqttLink, outbox: Outbox
) -> None:
    client.connack()
    rows = put(outbox, 5)
    wait_until(lambda: len(client.rows()) == 2, 5, message="the first window")
    assert link.stats().in_flight == 2
    first_mid = client.rows()[0][0]
    client.puback(first_mid)  # wakes the drain: one more goes out
    wait_until(lambda: len(client.rows()) == 3, 5, message="the next row after a PUBACK")
    assert [r for _m, r in client.rows()] == rows[:3]


def test_messages_are_routed_to_subscribed_handlers(client: ScriptedClient, link: MqttLink) -> None:
    got: list[tuple[str, bytes]] = []
    link.subscribe("rapp/v1/dev/ota/cmd", lambda t, p: got.append((t, p)))
    link.subscribe("rapp/v1/dev/ota/chunk/+", lambda t, p: got.append(("chunk", p)))
    assert client.subscribed == [], "not connected yet: subscribed at connect"
    client.connack()
    assert client.subscribed == [("rapp/v1/dev/ota/cmd", 1), ("rapp/v1/dev/ota/chunk/+", 1)]
    client.deliver("rapp/v1/dev/ota/cmd", b"go")
    client.deliver("rapp/v1/dev/ota/chunk/3", b"c3")
    client.deliver("rapp/v1/dev/other", b"x")
    assert got == [("rapp/v1/dev/ota/cmd", b"go"), ("chunk", b"c3")]
