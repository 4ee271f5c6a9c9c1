"""The paho client the link drives: paho never queues more than the drain's window."""

from __future__ import annotations

from paho.mqtt.enums import MQTTErrorCode

from agent.sinks.mqtt.client import STATUS_SLOTS, build_client, paho_window
from agent.sinks.mqtt.settings import MqttSettings


def test_paho_store_is_bounded_by_the_in_flight_window() -> None:
    """paho's max_queued_messages 0 means unlimited: QoS 1 publishes made while disconnected
    would pile up inside paho. The bound refuses the first one beyond the window instead, and
    the drain leaves that row in the outbox."""
    settings = MqttSettings(host="127.0.0.1", device_id="d", max_inflight=3)
    client = build_client(settings, {})
    window = paho_window(settings)
    assert window == 3 + STATUS_SLOTS
    assert client.max_inflight_messages == window
    rcs = [client.publish("rapp/v1/d/x", b"p", qos=1).rc for _ in range(window + 2)]
    assert rcs[:window] == [MQTTErrorCode.MQTT_ERR_NO_CONN] * window, "stored for a reconnect"
    assert rcs[window:] == [MQTTErrorCode.MQTT_ERR_QUEUE_SIZE] * 2


def test_qos0_is_never_stored() -> None:
    client = build_client(MqttSettings(host="127.0.0.1", device_id="d", max_inflight=1), {})
    rcs = {client.publish("rapp/v1/d/s", b"p", qos=0).rc for _ in range(20)}
    assert rcs == {MQTTErrorCode.MQTT_ERR_NO_CONN}
