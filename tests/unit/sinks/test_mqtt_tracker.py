"""PublishTracker: a row is acked only on its completion; races and rejections are absorbed."""

from __future__ import annotations

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.sinks.mqtt.tracker import REJECTED_RETRY_S, PublishTracker
from agent.sinks.outbox import OutboxError

OK = MQTTErrorCode.MQTT_ERR_SUCCESS
NO_CONN = MQTTErrorCode.MQTT_ERR_NO_CONN
QUEUE_SIZE = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
PUBACK = ReasonCode(PacketTypes.PUBACK, "Success")
REFUSED = ReasonCode(PacketTypes.PUBACK, "Not authorized")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(acked: list[str], clock: Clock | None = None) -> PublishTracker:
    t = PublishTracker(acked.append, clock=clock or Clock())
    t.on_connected(None)
    return t


def test_row_is_acked_on_completion_only() -> None:
    acked: list[str] = []
    t = tracker(acked)
    pending = t.track(1, OK, "row1", 1, t.generation)
    assert pending is not None and not pending.done.is_set()
    assert acked == [] and t.stats().in_flight == 1
    assert t.on_published(1, PUBACK) is True
    assert acked == ["row1"] and pending.done.is_set()
    stats = t.stats()
    assert (stats.published, stats.acked, stats.in_flight) == (1, 1, 0)


def test_completion_before_registration_is_applied_at_registration() -> None:
    acked: list[str] = []
    t = tracker(acked)
    generation = t.generation
    assert t.on_published(7, PUBACK) is False, "nothing tracked yet"
    pending = t.track(7, OK, "row7", 1, generation)
    assert pending is not None and pending.done.is_set()
    assert acked == ["row7"] and t.stats().in_flight == 0


def test_paho_refusals_are_not_tracked() -> None:
    t = tracker([])
    assert t.track(1, QUEUE_SIZE, "row", 1, t.generation) is None
    assert t.track(2, NO_CONN, "row", 0, t.generation) is None, "QoS 0 is not stored by paho"
    assert t.stats().in_flight == 0 and t.stats().published == 0
    stored = t.track(3, NO_CONN, "row", 1, t.generation)
    assert stored is not None, "QoS 1 is re-sent by paho after reconnecting"


def test_qos0_dies_with_its_connection_and_qos1_survives() -> None:
    t = tracker([])
    qos0 = t.track(1, OK, "tele", 0, t.generation)
    qos1 = t.track(2, OK, "alarm", 1, t.generation)
    assert qos0 is not None and qos1 is not None
    assert t.on_disconnected("gone", closing=False) is True
    assert qos0.done.is_set() and not qos1.done.is_set()
    assert t.stats().in_flight == 1 and t.stats().disconnects == 1
    assert t.stats().last_error == "disconnected: gone"
    stale = t.generation - 1
    assert t.track(3, OK, "tele2", 0, stale) is None, "published on the connection just lost"


def test_rejected_row_is_held_then_retried() -> None:
    acked: list[str] = []
    clock = Clock()
    t = tracker(acked, clock)
    pending = t.track(1, OK, "row", 1, t.generation)
    t.on_published(1, REFUSED)
    assert pending is not None and pending.failed and acked == []
    window = t.drain_window(10)
    assert window is not None and window.exclude == {"row"} and window.room == 10
    assert t.stats().held == 1 and "rejected" in (t.stats().last_error or "")
    clock.now += REJECTED_RETRY_S
    window = t.drain_window(10)
    assert window is not None and window.exclude == set() and t.stats().held == 0


def test_refused_row_is_held_for_good() -> None:
    clock = Clock()
    t = tracker([], clock)
    t.hold_refused("bad", "message bad refused")
    clock.now += 1e9
    window = t.drain_window(4)
    assert window is not None and "bad" in window.exclude
    assert t.stats().rejected == 1


def test_drain_window_counts_in_flight_rows_and_receive_maximum() -> None:
    t = PublishTracker(lambda _id: None)
    assert t.drain_window(8) is None, "nothing goes out while disconnected"
    t.on_connected(5)  # the broker's Receive Maximum; 2 slots stay free for status
    t.track(1, OK, "a", 1, t.generation)
    t.track(2, OK, None, 1, t.generation)  # a status publish does not use a row slot
    window = t.drain_window(8)
    assert window is not None and (window.room, window.exclude) == (2, {"a"})


def test_failed_ack_keeps_the_row_and_records_the_error() -> None:
    def ack(_msg_id: str) -> None:
        raise OutboxError("disk full")

    t = PublishTracker(ack)
    t.on_connected(None)
    pending = t.track(1, OK, "row", 1, t.generation)
    t.on_published(1, PUBACK)
    assert pending is not None and pending.done.is_set()
    assert t.stats().acked == 0 and t.stats().last_error == "disk full"
