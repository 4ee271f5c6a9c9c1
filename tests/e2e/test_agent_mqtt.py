"""The agent process against a real mosquitto: alarms, status, last will, outages, kills."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time

import pytest

from tests.support.agents_inprocess import alarm_key, expected_events, validate
from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config

# The outage of the no-alarm-lost test lasts from the first alarm until every later one has been
# raised (into the outbox), at least RAPP_TEST_OUTAGE_S seconds when that is set (the replay is
# slowed so that its faults span it). Unset: double-speed replay, an outage of about 8 s, past
# the 5 s keepalive and through several reconnect attempts.
OUTAGE_S = float(os.environ.get("RAPP_TEST_OUTAGE_S", "0"))
ALARM_TOPIC = "rapp/v1/ipc1/arm1/alarm"


def is_alarm(m) -> bool:
    return m.topic == ALARM_TOPIC


def outboxed_alarm_ids(state) -> set[str]:
    with contextlib.closing(sqlite3.connect(state / "outbox.sqlite3")) as db:
        rows = db.execute("SELECT id FROM messages WHERE topic = ?", (ALARM_TOPIC,)).fetchall()
    return {r[0] for r in rows}


def status_is(state: str):
    return lambda m: m.topic == "rapp/v1/ipc1/status" and m.json()["state"] == state


def replay(file, speed: float) -> str:
    return f'kind = "replay"\nfile = "{file}"\nspeed = {speed}\n'


@pytest.mark.slow
def test_alarms_status_meta_and_scores_reach_a_real_subscriber(
    tmp_path, broker, bundle_path, episodes_csv, agent_processes
):
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=replay(episodes_csv, 4.0),
        broker=broker,
    )
    expected = expected_events(config)
    assert [k for k, _, _ in expected].count("raise") >= 3, expected
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        alarms = sub.wait_for(is_alarm, count=len(expected), timeout=60)
        for m in alarms:
            validate(m.json(), "alarm")
        assert sorted(alarm_key(m.json()) for m in alarms) == sorted(expected)
        raise_msg = next(m.json() for m in alarms if m.json()["kind"] == "raise")
        assert raise_msg["contributions"][0]["channel"] == "J2", "the ripple is on J2"
        status = sub.wait_for(status_is("online"))[0].json()
        validate(status, "status")
        meta = sub.wait_for(lambda m: m.topic == "rapp/v1/ipc1/meta")[0].json()
        validate(meta, "meta")
        scores = [m.json() for m in sub.messages("rapp/v1/ipc1/arm1/score")]
        assert len(scores) >= 3
        for s in scores:
            validate(s, "score")
        assert [s["seq"] for s in scores] == list(range(len(scores)))
        active = sub.wait_for(lambda m: m.topic == "rapp/v1/ipc1/arm1/alarm/active")
        validate(active[-1].json(), "alarm_active")
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
        sub.wait_for(status_is("stopped"))
        assert not sub.messages() or not [m for m in sub.messages() if status_is("offline")(m)]


@pytest.mark.slow
def test_broker_outage_loses_no_alarm(tmp_path, broker, bundle_path, episodes_csv, agent_processes):
    """Broker down while the faults after the first happen; every alarm arrives after
    reconnect."""
    speed = max(0.5, 20.0 / OUTAGE_S) if OUTAGE_S else 2.0  # the episodes must span the outage
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        bundle=bundle_path,
        source=replay(episodes_csv, speed),
        broker=broker,
    )
    expected = expected_events(config)
    with MosquittoSub(broker, ["rapp/v1/ipc1/arm1/alarm"]) as sub:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        sub.wait_for(is_alarm, count=1, timeout=60)
        broker.stop()
        down_since = time.monotonic()

        def delivered_ids() -> set[str]:
            # Distinct ids: a re-sent duplicate must not stand in for a missing alarm.
            return {m.json()["id"] for m in sub.messages(ALARM_TOPIC)}

        def all_raised() -> bool:
            return len(delivered_ids() | outboxed_alarm_ids(state)) >= len(expected)

        wait_until(all_raised, 90, interval=0.2, message="every alarm raised during the outage")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        broker.start()

        wait_until(
            lambda: len(delivered_ids()) >= len(expected),
            90,
            interval=0.2,
            message="every alarm after reconnect",
        )
        alarms = sub.messages(ALARM_TOPIC)
    by_id = {m.json()["id"]: m.json() for m in alarms}
    keys = [alarm_key(p) for p in by_id.values()]
    assert sorted(keys) == sorted(expected), "after de-duplication by id: each alarm once"


def test_sigkill_keeps_outboxed_alarms_and_last_will(
    tmp_path, broker, bundle_path, episodes_csv, agent_processes
):
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        bundle=bundle_path,
        source=replay(episodes_csv, 0),
        broker=broker,
    )
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        first = AgentProcess(config).start()
        agent_processes.append(first)
        sub.wait_for(status_is("online"), timeout=30)
        broker.stop()  # alarms now pile up in the outbox

        def outboxed_alarms() -> list[str]:
            with sqlite3.connect(state / "outbox.sqlite3") as db:
                rows = db.execute("SELECT id FROM messages WHERE kind = 'alarm'").fetchall()
            return [r[0] for r in rows]

        wait_until(lambda: len(outboxed_alarms()) >= 4, timeout=60)
        first.signal(signal.SIGKILL)
        first.wait()
        pending = set(outboxed_alarms())
        broker.start()
        # the broker kept the will from the killed session? it was down: no will then.
        second = AgentProcess(config).start()
        agent_processes.append(second)
        arrived = sub.wait_for(
            lambda m: m.topic.startswith("rapp/v1/ipc1/arm1/alarm") and m.json()["id"] in pending,
            count=len(pending),
            timeout=60,
        )
        assert {m.json()["id"] for m in arrived} == pending
        sub.wait_for(status_is("online"))
        second.signal(signal.SIGKILL)
        second.wait()
        sub.wait_for(status_is("offline"), timeout=60)  # last will, after keepalive expiry
