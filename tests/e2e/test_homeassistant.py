"""Home Assistant discovery from a real agent through a real mosquitto: the retained configs
decode, their templates turn the agent's real payloads into the states Home Assistant would
show (the alarm flips ON and OFF during a replayed fault), and a robot removed by a SIGHUP
reload loses its configs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jinja2
import numpy as np

from tests.support.broker import Message, MosquittoBroker, MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config
from tests.support.synthetic import currents, write_csv

PREFIX = "homeassistant"
AGENT_CONFIG = f"{PREFIX}/binary_sensor/ipc1/connected/config"


def robot_configs(robot: str) -> dict[str, str]:
    node = f"ipc1_{robot}"
    return {
        "alarm": f"{PREFIX}/binary_sensor/{node}/alarm/config",
        "score": f"{PREFIX}/sensor/{node}/score/config",
        "threshold": f"{PREFIX}/sensor/{node}/threshold/config",
    }


def render(template: str, message: Message) -> str:
    return jinja2.Environment().from_string(template).render(value_json=message.json())


def fault_episode(path: Path, normal: int = 3000, fault: int = 4000, after: int = 6000) -> Path:
    """Normal currents, a 40 Hz ripple on J2 long enough to raise, then normal until it clears."""
    x = currents(normal + fault + after, seed=21)
    t = np.arange(fault) / 1000.0
    x[normal : normal + fault, 1] += 3.0 * np.sin(2 * np.pi * 40.0 * t)
    return write_csv(path, x)


def replay_source(recording: Path) -> str:
    return f'kind = "replay"\nfile = "{recording}"\nspeed = 2.0\n'


def second_robot(bundle: Path, recording: Path) -> str:
    return f'\n[[robots]]\nid = "arm2"\nbundle = "{bundle}"\n[robots.source]\n' + replay_source(
        recording
    )


def retained_configs(broker: MosquittoBroker, count: int) -> dict[str, dict]:
    """What a Home Assistant that connects now is told: the retained configs."""
    with MosquittoSub(broker, [f"{PREFIX}/#"]) as late:
        late.wait_for(lambda m: m.retained and bool(m.payload), count=count, timeout=15)
        messages = late.messages()
    assert all(m.retained for m in messages)
    return {m.topic: m.json() for m in messages if m.payload}


def test_discovery_states_and_removal_on_reload(tmp_path, broker, bundle_path, agent_processes):
    recording = fault_episode(tmp_path / "episode.csv")
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=replay_source(recording),
        broker=broker,
        extra="[homeassistant]\nenabled = true\n",
    )
    one_robot = config.read_text()
    config.write_text(one_robot + second_robot(bundle_path, recording))
    arm1, arm2 = robot_configs("arm1"), robot_configs("arm2")

    with MosquittoSub(broker, [f"{PREFIX}/#", "rapp/v1/ipc1/#"]) as sub:
        agent = AgentProcess(config).start()
        agent_processes.append(agent)
        sub.wait_for(lambda m: m.topic.startswith(f"{PREFIX}/"), count=7, timeout=60)
        configs = retained_configs(broker, count=7)
        assert set(configs) == {AGENT_CONFIG, *arm1.values(), *arm2.values()}

        alarm = configs[arm1["alarm"]]
        assert alarm["device_class"] == "problem"
        assert alarm["state_topic"] == "rapp/v1/ipc1/arm1/alarm/active"
        assert alarm["device"]["via_device"] == configs[AGENT_CONFIG]["device"]["identifiers"][0]
        assert alarm["availability_topic"] == "rapp/v1/ipc1/status"

        # the states Home Assistant derives from the agent's real payloads
        def alarm_states() -> list[str]:
            return [render(alarm["value_template"], m) for m in sub.messages(alarm["state_topic"])]

        wait_until(lambda: "ON" in alarm_states(), timeout=60, message="alarm ON")
        wait_until(
            lambda: "OFF" in alarm_states()[alarm_states().index("ON") :],
            timeout=60,
            message="alarm OFF after ON",
        )
        assert alarm_states()[0] == "OFF", "the retained initial state says no alarm"
        raised = next(m for m in sub.messages(alarm["state_topic"]) if m.json()["active"])
        attributes = json.loads(render(alarm["json_attributes_template"], raised))
        assert attributes["contributions"][0]["channel"] == "J2", "ripple is on J2"
        score, threshold = configs[arm1["score"]], configs[arm1["threshold"]]
        scores = sub.messages(score["state_topic"])
        assert scores, "score telemetry flows"
        values = [render(score["value_template"], m) for m in scores]
        assert any(v != "None" and float(v) > 0 for v in values)
        assert float(render(threshold["value_template"], scores[-1])) > 0
        statuses = sub.messages("rapp/v1/ipc1/status")
        assert render(alarm["availability_template"], statuses[-1]) == "online"

        # a reload without arm2 removes its entities: empty retained configs
        config.write_text(one_robot)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in agent.output(), timeout=90)
        sub.wait_for(lambda m: m.topic in arm2.values() and m.payload == b"", count=3)
        assert set(retained_configs(broker, count=4)) == {AGENT_CONFIG, *arm1.values()}
        assert "homeassistant: 0 discovery config(s) published, 3 removed" in agent.output()

        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0, agent.output()
        stopped = [m for m in sub.messages("rapp/v1/ipc1/status") if m.json()["state"] != "online"]
        assert stopped and render(alarm["availability_template"], stopped[-1]) == "offline"
    assert "Traceback" not in agent.output()
