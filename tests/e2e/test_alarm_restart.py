"""An alarm active when the agent dies stays one episode across the restart (real broker).

Without this the restarted agent would publish 'no alarm' as the retained state and never
send the clear: the dashboard's raise would dangle and a persisting fault would come back as
a second, unrelated alarm.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np

from tests.support.broker import MosquittoSub
from tests.support.fixtures.daemon import AgentProcess, write_config
from tests.support.synthetic import currents, write_csv

ALARM = "rapp/v1/ipc1/arm1/alarm"
ACTIVE = "rapp/v1/ipc1/arm1/alarm/active"


def ending_in_fault(path: Path, normal: int = 3000, fault: int = 4000) -> Path:
    x = currents(normal + fault, seed=21)
    t = np.arange(fault) / 1000.0
    x[normal:, 1] += 3.0 * np.sin(2 * np.pi * 40.0 * t)
    return write_csv(path, x)


def test_alarm_active_at_sigkill_is_cleared_after_restart_with_its_raise_id(
    tmp_path, broker, bundle_path, agent_processes
):
    state = tmp_path / "state"

    def config(recording: Path) -> Path:
        return write_config(
            tmp_path / "agent.toml",
            state_dir=state,
            bundle=bundle_path,
            source=f'kind = "replay"\nfile = "{recording}"\nspeed = 0\n',
            broker=broker,
        )

    with MosquittoSub(broker, ["rapp/v1/ipc1/arm1/#"]) as sub:
        first = AgentProcess(config(ending_in_fault(tmp_path / "fault.csv"))).start()
        agent_processes.append(first)
        raised = sub.wait_for(lambda m: m.topic == ALARM, timeout=60)[0].json()
        assert raised["kind"] == "raise"
        sub.wait_for(lambda m: m.topic == ACTIVE and m.json()["active"], timeout=30)
        first.signal(signal.SIGKILL)
        first.wait()
        seen = len(sub.messages())

        second = AgentProcess(config(write_csv(tmp_path / "ok.csv", currents(9000, seed=22))))
        agent_processes.append(second.start())
        cleared = sub.wait_for(
            lambda m: m.topic == ALARM and m.json()["kind"] == "clear", timeout=60
        )[0].json()
        assert cleared["raise_id"] == raised["id"], second.output()
        sub.wait_for(lambda m: m.topic == ACTIVE and m.json()["event_id"] == cleared["id"])
        after = sub.messages()[seen:]
        states = [m.json() for m in after if m.topic == ACTIVE]
        assert states[0]["active"] and states[0]["alarm"]["raise_id"] == raised["id"], (
            "the restarted agent re-states the alarm it inherited, not 'no alarm'"
        )
        assert not states[-1]["active"] and states[-1]["event_id"] == cleared["id"]
        # (a raise the first process sent but had not marked acked is sent again: same id)
        again = [m.json() for m in after if m.topic == ALARM and m.json()["id"] != raised["id"]]
        assert [e["kind"] for e in again] == ["clear"], "no second raise for the same episode"
        assert "was active when the agent stopped" in second.output()
