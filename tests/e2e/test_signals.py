"""Signals on a real agent: SIGHUP reloads (a bad new config keeps the old one serving),
SIGUSR1 is ignored, SIGTERM drains and publishes `stopped`."""

from __future__ import annotations

import signal
import time

from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config


def _online(sub: MosquittoSub) -> list[dict]:
    return [m.json() for m in sub.messages("rapp/v1/ipc1/status") if m.json()["state"] == "online"]


def _scores(sub: MosquittoSub) -> int:
    return len(sub.messages("rapp/v1/ipc1/arm1/score"))


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(
    tmp_path, broker, bundle_path, episodes_csv, agent_processes
) -> None:
    source = f'kind = "replay"\nfile = "{episodes_csv}"\nloop = true'
    config = write_config(
        tmp_path / "agent.toml", state_dir=tmp_path / "state", bundle=bundle_path,
        source=source, broker=broker,
    )  # fmt: skip
    good = config.read_text()
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        wait_until(lambda: _scores(sub) >= 3, timeout=60)

        agent.signal(signal.SIGUSR1)  # ignored: no stop, no crash
        config.write_text(good.replace('bundle = "', 'bundle = "/nonexistent/'))
        agent.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in agent.output(), timeout=60)
        before = _scores(sub)
        wait_until(lambda: _scores(sub) >= before + 3, timeout=30)  # still serving
        assert agent.proc is not None and agent.proc.poll() is None

        boots = {s["boot_id"] for s in _online(sub)}
        config.write_text(good.replace("status_interval_s = 1", "status_interval_s = 2"))
        agent.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in agent.output(), timeout=90)
        wait_until(lambda: {s["boot_id"] for s in _online(sub)} - boots, timeout=30)
        stopped = [m.json() for m in sub.messages("rapp/v1/ipc1/status")]
        assert any(s["state"] == "stopped" for s in stopped), "the old agent drained first"
        before = _scores(sub)
        wait_until(lambda: _scores(sub) >= before + 3, timeout=60)

        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0, agent.output()
        time.sleep(0.5)
    assert "Traceback" not in agent.output()
