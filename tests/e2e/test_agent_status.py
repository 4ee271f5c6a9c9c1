"""The real agent process publishes drift / membership in status and captures normal windows."""

from __future__ import annotations

import signal

from agent.pipeline.capture import load_capture
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoSub
from tests.support.fixtures.daemon import AgentProcess, write_config


def test_status_carries_drift_and_membership_and_capture_is_written(
    tmp_path, broker, episodes_csv, program_bundles, agent_processes
):
    bundle = tmp_path / "p1.rapp"
    bundle.write_bytes(program_bundles[1])
    capture = tmp_path / "capture"
    source = (
        f'kind = "replay"\nfile = "{episodes_csv}"\nspeed = 4.0\n'
        '[robots.alarm]\nthreshold = "dynamic"\n'
        f'[robots.drift]\nmin_windows = 8\ncapture_dir = "{capture}"\n'
        "capture_max_windows = 256\n"
    )
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle,
        source=source,
        broker=broker,
    )
    # the archive fixtures are fp32-only bundles (quick to build)
    config.write_text(config.read_text().replace('log_level = "info"', 'precision = "fp32"'))

    def drift_status(m) -> bool:
        if m.topic != "rapp/v1/ipc1/status" or m.json()["state"] != "online":
            return False
        robot = m.json()["robots"].get("arm1", {})
        return robot.get("windows", {}).get("membership_routed", 0) > 100 and "drift" in robot

    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        status = sub.wait_for(drift_status, timeout=60)[0].json()
        validate(status, "status")
        robot = status["robots"]["arm1"]
        drift = robot["drift"]
        for key in ("ks", "p50_ratio", "alarm_rate", "unknown_program_share"):
            assert key in drift, drift
        assert 0.0 < drift["membership_confidence"] <= 1.0
        assert drift["unknown_program_share"] == 0.0, "the replay's windows are all near p1"
        assert isinstance(drift["retraining_advised"], bool)
        assert robot["windows"]["unknown_program"] == 0
        alarms = sub.wait_for(lambda m: m.topic == "rapp/v1/ipc1/arm1/alarm", timeout=60)
        assert alarms[0].json()["contributions"][0]["channel"] == "J2", "ripple is on J2"
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    samples, programs = load_capture(capture)
    assert 0 < samples.shape[0] <= 256 and samples.shape[1:] == (32, 6)
    assert (programs == -1).all()
