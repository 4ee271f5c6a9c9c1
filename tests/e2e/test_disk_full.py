"""A real agent whose state disk fills up (tmpfs) while the broker is down: it keeps running,
holds the alarms in memory, reports `disk_full`, delivers every alarm once the broker is back,
writes them once space returns, and never re-publishes in a loop."""

from __future__ import annotations

import collections
import signal

import pytest

from tests.support.agents_inprocess import alarm_key, expected_events
from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config
from tests.support.full_disk import mounted_tmpfs


def _is_alarm(m) -> bool:
    return m.topic.endswith("/alarm")


def _status(sub: MosquittoSub) -> dict | None:
    online = [
        m.json() for m in sub.messages("rapp/v1/ipc1/status") if m.json()["state"] == "online"
    ]
    return online[-1] if online else None


@pytest.mark.slow
def test_disk_full_with_the_broker_down_loses_no_alarm(
    tmp_path, broker, bundle_path, episodes_csv, agent_processes
) -> None:
    with mounted_tmpfs(tmp_path / "state", size="8m") as disk:
        config = write_config(
            tmp_path / "agent.toml", state_dir=disk.root, bundle=bundle_path,
            source=f'kind = "replay"\nfile = "{episodes_csv}"\nspeed = 1.0', broker=broker,
        )  # fmt: skip
        expected = expected_events(config)
        with MosquittoSub(broker, ["rapp/v1/ipc1/#"]) as sub:
            agent = AgentProcess(config).start()
            agent_processes.append(agent)
            wait_until(lambda: _status(sub) is not None, timeout=60)
            broker.stop()
            disk.fill()
            wait_until(lambda: "the disk refuses writes" in agent.output(), timeout=60)
            wait_until(lambda: agent.output().count("alarm raise") >= 2, timeout=60)
            broker.start()
            alarms = sub.wait_for(_is_alarm, count=len(expected), timeout=90)
            wait_until(lambda: (s := _status(sub)) and s["outbox"]["disk_full"], timeout=30)
            full = _status(sub)["outbox"]["disk_full"]
            assert full["path"].endswith("outbox.sqlite3") and "full" in full["error"]
            disk.free()
            wait_until(lambda: (s := _status(sub)) and not s["outbox"]["disk_full"], timeout=30)
            assert agent.proc is not None and agent.proc.poll() is None, agent.output()
            counts = collections.Counter(m.topic for m in sub.messages())
            agent.signal(signal.SIGTERM)
            assert agent.wait(30) == 0, agent.output()
    by_id = {m.json()["id"]: m.json() for m in alarms}
    assert sorted(alarm_key(p) for p in by_id.values()) == sorted(expected)
    assert max(counts.values()) < 1000, f"a re-publish loop: {counts.most_common(3)}"
    assert "Traceback" not in agent.output()
