"""A broker restarted without its persistence forgot every retained message; the agent sends
its retained state (meta, alarm/active) again on reconnect, so a late subscriber still sees it."""

from __future__ import annotations

import signal

from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config


def _retained(broker, topic: str) -> list:
    with MosquittoSub(broker, [topic]) as late:
        wait_until(lambda: any(m.retained for m in late.messages(topic)), timeout=20)
        return [m for m in late.messages(topic) if m.retained]


def test_meta_and_alarm_state_are_retained_again_after_the_broker_lost_them(
    tmp_path, broker, bundle_path, episodes_csv, agent_processes
) -> None:
    source = f'kind = "replay"\nfile = "{episodes_csv}"\nloop = true'
    config = write_config(
        tmp_path / "agent.toml", state_dir=tmp_path / "state", bundle=bundle_path,
        source=source, broker=broker,
    )  # fmt: skip
    with MosquittoSub(broker, ["rapp/v1/#"]) as live:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        wait_until(lambda: live.messages("rapp/v1/ipc1/meta"), timeout=60)
    assert _retained(broker, "rapp/v1/ipc1/meta")
    broker.stop()
    for saved in broker.workdir.glob("*.db"):
        saved.unlink()  # a broker without persistence: every retained message is gone
    broker.start()
    with MosquittoSub(broker, ["rapp/v1/ipc1/status"]) as live:
        wait_until(lambda: any(m.json()["state"] == "online" for m in live.messages()), 60)
    meta = _retained(broker, "rapp/v1/ipc1/meta")
    active = _retained(broker, "rapp/v1/ipc1/arm1/alarm/active")
    assert meta[-1].json()["robots"][0]["robot"] == "arm1"
    assert active[-1].json()["robot"] == "arm1"
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0, agent.output()
