"""MqttLink against a real mosquitto on loopback, observed by an external mosquitto_sub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.publish as mqtt_publish
import pytest

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.mqtt.errors import CredentialError
from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.payloads import AgentIdentity, build_alarm, build_alarm_active, build_status
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.outbox import Outbox
from agent.sinks.topics import Topics
from tests.support.broker import MosquittoBroker, MosquittoSub, TcpProxy, statuses, wait_until

REPO = Path(__file__).resolve().parents[2]
DEVICE = "dev1"
TOPICS = Topics.for_device(DEVICE)
# Length of the broker outage in the outage test (seconds); raise it for soak runs.
OUTAGE_S = float(os.environ.get("RAPP_TEST_OUTAGE_S", "3"))
MODEL = ModelRef("b1", "1")


def settings_for(port: int, **kw: Any) -> MqttSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "device_id": DEVICE,
        "keepalive": 5,
        "reconnect_min_delay": 0.1,
        "reconnect_max_delay": 0.5,
        "max_inflight": 8,
    }
    return MqttSettings(**{**base, **kw})


class Harness:
    """Builds links and alarm payloads; stops every link at the end of the test."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.ident = AgentIdentity.create(DEVICE, "0.1.0-test")
        self.links: list[MqttLink] = []
        self._n = 0

    def status(self, state: str) -> dict[str, Any]:
        return build_status(state, self.ident, outbox=self.outbox.stats())  # type: ignore[arg-type]

    def link(self, settings: MqttSettings, **kw: Any) -> MqttLink:
        # A long poll: every test then proves that puts, connects and PUBACKs wake the drain.
        link = MqttLink(settings, self.outbox, self.status, poll_interval=30.0, **kw)
        self.links.append(link)
        return link

    def put_alarms(self, count: int, robot: str = "r1") -> list[str]:
        """Raise/clear pairs from a real tracker; also updates the retained active state."""
        tracker = AlarmTracker(robot, AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
        ids = []
        while len(ids) < count:
            self._n += 1
            score = 5.0 if len(ids) % 2 == 0 else 0.0
            w = WindowInfo(
                1.7e9 + self._n,
                1.7e9 + self._n + 1,
                self._n * 10,
                self._n * 10 + 9,
                "P1",
                {"a1": 1.0, "a2": 0.5},
            )
            event = tracker.update(score, 1.0, w, MODEL)
            assert event is not None
            ids.append(
                self.outbox.put_json(
                    TOPICS.alarm(robot), build_alarm(event, device=DEVICE), kind="alarm"
                )
            )
            self.outbox.put_json(
                TOPICS.alarm_active(robot),
                build_alarm_active(DEVICE, robot, event),
                kind="alarm",
                retain=True,
            )
        return ids

    def close(self) -> None:
        for link in self.links:
            link.stop(drain_timeout=0.5, status_timeout=0.5)


@pytest.fixture
def harness(outbox: Outbox) -> Iterator[Harness]:
    h = Harness(outbox)
    try:
        yield h
    finally:
        h.close()


def alarm_ids(sub: MosquittoSub) -> list[str]:
    return [m.json()["id"] for m in sub.messages() if m.topic.endswith("/alarm")]


def is_alarm(m: Any) -> bool:
    return m.topic.endswith("/alarm")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_drains_outbox_and_payloads_validate(
    broker: MosquittoBroker,
    harness: Harness,
    validators: dict[str, jsonschema.protocols.Validator],
    protocol: str,
) -> None:
    ids = harness.put_alarms(6)
    harness.outbox.put_json(TOPICS.score("r1"), {"schema": "x"}, kind="telemetry", qos=0)
    with MosquittoSub(broker, [f"{TOPICS.base}/#"], protocol=protocol) as sub:
        link = harness.link(settings_for(broker.port, protocol=protocol))
        link.start()
        got = sub.wait_for(is_alarm, count=6)
        assert [m.json()["id"] for m in got] == ids, "delivered in outbox order"
        for m in got:
            validators["alarm"].validate(m.json())
        actives = sub.wait_for(lambda m: m.topic.endswith("/alarm/active"), count=6)
        for m in actives:
            validators["alarm_active"].validate(m.json())
        sub.wait_for(lambda m: m.topic == TOPICS.score("r1"))
        [status] = sub.wait_for(lambda m: m.topic == TOPICS.status)
        validators["status"].validate(status.json())
        assert status.json()["state"] == "online"
        wait_until(lambda: harness.outbox.stats().depth == 0, 10, message="outbox drained")
        stats = link.stats()
        assert stats.connected and stats.connects == 1
        assert stats.acked == 13 and stats.in_flight == 0 and stats.rejected == 0
    # retained messages: a late subscriber sees the current alarm state and status
    with MosquittoSub(broker, [TOPICS.alarm_active("r1"), TOPICS.status]) as late:
        msgs = late.wait_for(lambda m: m.retained, count=2)
        active = next(m.json() for m in msgs if m.topic == TOPICS.alarm_active("r1"))
        assert active["active"] is False and active["event_id"] == ids[-1]


def test_broker_outage_loses_no_alarm(broker: MosquittoBroker, harness: Harness) -> None:
    received_cmds: list[bytes] = []
    with MosquittoSub(broker, [TOPICS.alarm_filter]) as sub:
        link = harness.link(settings_for(broker.port))
        link.subscribe(TOPICS.ota_cmd, lambda _topic, payload: received_cmds.append(payload))
        link.start()
        before = harness.put_alarms(10)
        sub.wait_for(is_alarm, count=10)

        broker.stop()
        wait_until(lambda: not link.connected, 10, message="link notices the outage")
        during: list[str] = []
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:  # alarms keep coming while the broker is down
            during += harness.put_alarms(4, robot=f"r{len(during) % 3}")
            time.sleep(0.1)
        assert harness.outbox.stats().alarm >= len(during)
        broker.start()

        wait_until(lambda: harness.outbox.stats().depth == 0, 30, message="outbox drained")
        expected = set(before + during)
        got = sub.wait_for(lambda m: m.json()["id"] in expected, count=len(expected), timeout=30)
        # at-least-once: duplicates may occur, and are removable by id
        assert {m.json()["id"] for m in got} == expected
        assert link.stats().disconnects >= 1 and link.stats().connects >= 2

        # subscriptions come back after the reconnect (clean session)
        mqtt_publish.single(TOPICS.ota_cmd, b"ping", qos=1, hostname=broker.host, port=broker.port)
        wait_until(lambda: received_cmds == [b"ping"], 10, message="ota/cmd delivered")


def test_unacked_publish_stays_in_outbox_and_is_resent(
    broker: MosquittoBroker, harness: Harness
) -> None:
    """A disconnect before PUBACK must leave the row in the outbox; it is re-sent after
    reconnecting. The proxy plays a broker that never acknowledges."""
    proxy = TcpProxy(broker.port, mode="blackhole")
    try:
        with MosquittoSub(broker, [TOPICS.alarm_filter]) as sub:
            link = harness.link(settings_for(proxy.port, max_inflight=20))
            link.start()
            wait_until(lambda: link.connected, 10, message="connected to the blackhole")
            ids = harness.put_alarms(5)  # 5 events + 5 retained active states
            wait_until(
                lambda: all(i.encode() in proxy.swallowed_bytes() for i in ids),
                10,
                message="publishes sent to the blackhole",
            )
            # the retained active states follow their events on the wire: wait for all ten
            wait_until(lambda: link.stats().in_flight == 10, 10, message="all ten in flight")
            assert harness.outbox.stats().alarm == 10, "no PUBACK, so nothing may be deleted"

            proxy.mode = "forward"
            proxy.drop_connections()
            got = sub.wait_for(is_alarm, count=5, timeout=20)
            assert {m.json()["id"] for m in got} == set(ids)
            wait_until(lambda: harness.outbox.stats().depth == 0, 10, message="outbox drained")
    finally:
        proxy.close()


def test_sigkill_publishes_the_last_will(broker: MosquittoBroker, tmp_path: Path) -> None:
    with MosquittoSub(broker, [TOPICS.status]) as sub:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.procs",
                "link",
                str(tmp_path / "o.db"),
                broker.host,
                str(broker.port),
                DEVICE,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"CONNECTED"
            sub.wait_for(lambda m: m.json()["state"] == "online")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        [will] = sub.wait_for(lambda m: m.json()["state"] == "offline")
        assert will.json()["device"] == DEVICE
        assert statuses(sub.messages()) == ["online", "offline"]
    with MosquittoSub(broker, [TOPICS.status]) as late:
        [retained] = late.wait_for(lambda m: m.retained)
        assert retained.json()["state"] == "offline"


def test_clean_stop_publishes_stopped_and_no_will(
    broker: MosquittoBroker, harness: Harness
) -> None:
    with MosquittoSub(broker, [TOPICS.status, TOPICS.alarm_filter]) as sub:
        link = harness.link(settings_for(broker.port))
        link.start()
        sub.wait_for(lambda m: m.topic == TOPICS.status)
        ids = harness.put_alarms(4)
        assert link.stop(drain_timeout=10) is True
        assert harness.outbox.stats().depth == 0
        sub.wait_for(lambda m: m.topic == TOPICS.status and m.json()["state"] == "stopped")
        assert set(alarm_ids(sub)) == set(ids)
        # The broker has logged the disconnect before any will would be sent; a probe round
        # trip through the same broker then orders everything it published before our check.
        client_id = link.settings.effective_client_id
        wait_until(
            lambda: f"Client {client_id} disconnected" in broker.log_text(),
            10,
            message="broker logs the clean disconnect",
        )
        mqtt_publish.single("test-sync/marker", b"m", qos=1, hostname=broker.host, port=broker.port)
        sub._sync(5)
        assert statuses(m for m in sub.messages() if m.topic == TOPICS.status) == [
            "online",
            "stopped",
        ]
        assert link.stats().connected is False
    with MosquittoSub(broker, [TOPICS.status]) as late:
        [retained] = late.wait_for(lambda m: m.retained)
        assert retained.json()["state"] == "stopped"


def test_telemetry_bounded_while_disconnected(tmp_path: Path, broker: MosquittoBroker) -> None:
    limit = 20
    with Outbox.open(tmp_path / "o.db", telemetry_max_rows=limit) as box:
        h = Harness(box)
        # persistent session: the broker queues the alarms for it while it reconnects
        with MosquittoSub(broker, [f"{TOPICS.base}/#"]) as sub:
            broker.stop()
            try:
                link = h.link(settings_for(broker.port))
                link.start()
                tele = [
                    box.put_json(TOPICS.score("r1"), {"n": i}, kind="telemetry", qos=0)
                    for i in range(3 * limit)
                ]
                alarms = h.put_alarms(30)
                stats = box.stats()
                assert (stats.telemetry, stats.telemetry_dropped) == (limit, 2 * limit)
                assert stats.alarm == 60, "alarms are never dropped"
                broker.start()
                got = sub.wait_for(lambda m: m.topic.endswith("/alarm"), count=30, timeout=20)
                assert {m.json()["id"] for m in got} == set(alarms)
                wait_until(lambda: box.stats().depth == 0, 20, message="outbox drained")
                # exactly the newest `limit` telemetry rows went out; QoS 0 is not queued
                # for an offline subscriber, so the sub may have seen only some of them
                assert link.stats().acked == 60 + limit
                seen = {m.json()["id"] for m in sub.messages(TOPICS.score("r1"))}
                assert seen <= set(tele[-limit:]), "dropped telemetry must never be sent"
            finally:
                h.close()


def test_rejected_publish_is_kept_and_does_not_block_others(
    tmp_path: Path, outbox: Outbox, harness: Harness
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        f"topic read {TOPICS.base}/#\n"
        f"topic write {TOPICS.base}/status\n"
        f"topic write {TOPICS.base}/r1/#\n"
        "topic readwrite test-sync/#\n"
    )
    broker = MosquittoBroker(tmp_path / "acl-broker", extra_config=[f"acl_file {acl}"])
    broker.start()
    try:
        with MosquittoSub(broker, [TOPICS.alarm_filter]) as sub:
            forbidden = outbox.put_json(TOPICS.alarm("r2"), {"x": 1}, kind="alarm")
            allowed = harness.put_alarms(3, robot="r1")
            link = harness.link(settings_for(broker.port))
            link.start()
            got = sub.wait_for(is_alarm, count=3)
            assert [m.json()["id"] for m in got] == allowed
            wait_until(lambda: link.stats().rejected >= 1, 10, message="rejection counted")
            wait_until(lambda: outbox.stats().depth == 1, 10, message="the allowed drained")
            assert [m.id for m in outbox.next_batch(10)] == [forbidden]
            assert "rejected" in (link.stats().last_error or "")
            assert link.stats().held == 1
    finally:
        broker.kill()


def test_password_from_systemd_credential(tmp_path: Path, harness: Harness) -> None:
    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(pwfile), "agent", "s3cret"],
        check=True,
        capture_output=True,
    )
    pwfile.chmod(0o600)
    broker = MosquittoBroker(tmp_path / "auth-broker", extra_config=[f"password_file {pwfile}"])
    broker.start()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    try:
        ok = harness.link(
            settings_for(broker.port, username="agent", password_credential="mqtt-password"),
            environ={"CREDENTIALS_DIRECTORY": str(creds)},
        )
        ok.start()
        wait_until(lambda: ok.connected, 10, message="authenticated connect")
        (creds / "wrong").write_text("nope")
        bad = harness.link(
            settings_for(
                broker.port, username="agent", client_id="other", password_credential="wrong"
            ),
            environ={"CREDENTIALS_DIRECTORY": str(creds)},
        )
        bad.start()
        wait_until(
            lambda: "refused" in (bad.stats().last_error or ""), 10, message="bad password refused"
        )
        assert not bad.connected
        missing = harness.link(
            settings_for(broker.port, username="agent", password_credential="mqtt-password"),
            environ={},
        )
        with pytest.raises(CredentialError, match="CREDENTIALS_DIRECTORY"):
            missing.start()
    finally:
        broker.kill()


def test_payload_status_provider_failure_does_not_kill_the_link(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    calls: list[str] = []

    def flaky(state: str) -> dict[str, Any]:
        calls.append(state)
        if state == "online":
            raise RuntimeError("boom")
        return build_status(state, AgentIdentity.create(DEVICE, "x"))  # type: ignore[arg-type]

    link = MqttLink(settings_for(broker.port), outbox, flaky, poll_interval=0.1)
    link.start()
    try:
        wait_until(lambda: link.connected, 10, message="connected")
        msg_id = outbox.put_json(TOPICS.alarm("r1"), {"x": 1}, kind="alarm")
        wait_until(lambda: outbox.stats().depth == 0, 10, message="drained despite the bug")
        assert msg_id and "status payload" in (link.stats().last_error or "")
    finally:
        link.stop(drain_timeout=1)
    assert calls[:2] == ["offline", "online"]
