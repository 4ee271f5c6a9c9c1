"""Home Assistant discovery configs: topics, devices, availability, and templates that turn
the agent's real payloads into the states Home Assistant shows (rendered with Jinja2, the
template engine Home Assistant uses)."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.homeassistant.discovery import (
    DiscoveryScope,
    discovery_configs,
    discovery_id,
    robot_configs,
)
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    ScoreStream,
    build_alarm_active,
    build_status,
    dumps,
)
from agent.sinks.topics import Topics

TOPICS = Topics.for_device("cell7")
SCOPE = DiscoveryScope("homeassistant", TOPICS, "0.1.0", ("r1", "r2"))
IDENT = AgentIdentity("cell7", "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)
MODEL = ModelRef("kr16-p12", "2024.05.1")
ALARM = "homeassistant/binary_sensor/cell7_r1/alarm/config"
SCORE = "homeassistant/sensor/cell7_r1/score/config"
THRESHOLD = "homeassistant/sensor/cell7_r1/threshold/config"
CONNECTED = "homeassistant/binary_sensor/cell7/connected/config"


def render(template: str, payload: dict[str, Any]) -> str:
    """What Home Assistant does with a value template: ``value_json`` is the parsed payload."""
    doc = json.loads(dumps(payload))  # as a subscriber receives it
    return jinja2.Environment().from_string(template).render(value_json=doc, value=json.dumps(doc))


def raised_event():
    tracker = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    window = WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199, None, {"J2": 2.0})
    event = tracker.update(3.0, 1.0, window, MODEL)
    assert event is not None and event.kind == "raise"
    return event


def test_topics_are_one_config_per_entity_with_the_agent_first() -> None:
    configs = discovery_configs(SCOPE)
    assert next(iter(configs)) == CONNECTED
    assert set(configs) == {
        CONNECTED,
        ALARM,
        SCORE,
        THRESHOLD,
        "homeassistant/binary_sensor/cell7_r2/alarm/config",
        "homeassistant/sensor/cell7_r2/score/config",
        "homeassistant/sensor/cell7_r2/threshold/config",
    }
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_the_prefix_is_the_configured_one() -> None:
    scope = DiscoveryScope("ha/site1", TOPICS, "0.1.0", ("r1",))
    assert all(t.startswith("ha/site1/") for t in discovery_configs(scope))


def test_robot_entities_read_the_agents_own_topics() -> None:
    configs = robot_configs(SCOPE, "r1")
    alarm, score, threshold = configs[ALARM], configs[SCORE], configs[THRESHOLD]
    assert alarm["device_class"] == "problem"
    assert alarm["state_topic"] == alarm["json_attributes_topic"] == "rapp/v1/cell7/r1/alarm/active"
    assert score["state_topic"] == threshold["state_topic"] == "rapp/v1/cell7/r1/score"
    assert score["state_class"] == threshold["state_class"] == "measurement"
    assert threshold["entity_category"] == "diagnostic"
    for config in configs.values():
        assert config["availability_topic"] == "rapp/v1/cell7/status"
        assert config["origin"] == {"name": "rapp-agent", "sw_version": "0.1.0"}


def test_each_robot_is_a_device_via_the_agent_device() -> None:
    configs = discovery_configs(SCOPE)
    agent = configs[CONNECTED]["device"]
    r1, r2 = (
        configs[ALARM]["device"],
        configs["homeassistant/sensor/cell7_r2/score/config"]["device"],
    )
    assert agent["identifiers"] == ["rapp_cell7"]
    assert r1["identifiers"] == ["rapp_cell7_r1"] and r2["identifiers"] == ["rapp_cell7_r2"]
    assert r1["via_device"] == r2["via_device"] == agent["identifiers"][0]
    assert r1["name"] == "cell7 r1" and r1["sw_version"] == "0.1.0"
    assert {"manufacturer", "model"} <= set(r1)
    # entities of one robot share one device block
    assert configs[SCORE]["device"] == configs[THRESHOLD]["device"] == r1


def test_alarm_state_and_attributes_from_alarm_active() -> None:
    config = robot_configs(SCOPE, "r1")[ALARM]
    idle = build_alarm_active("cell7", "r1", None)
    active = build_alarm_active("cell7", "r1", raised_event())
    assert render(config["value_template"], idle) == "OFF"
    assert render(config["value_template"], active) == "ON"
    assert json.loads(render(config["json_attributes_template"], idle)) == {}
    attributes = json.loads(render(config["json_attributes_template"], active))
    assert attributes["severity"] in ("warning", "critical")
    assert attributes["contributions"][0]["channel"] == "J2"


def test_availability_follows_status_online_stopped_offline() -> None:
    template = robot_configs(SCOPE, "r1")[ALARM]["availability_template"]
    states = {s: render(template, build_status(s, IDENT)) for s in ("online", "stopped", "offline")}
    assert states == {"online": "online", "stopped": "offline", "offline": "offline"}
    connected = discovery_configs(SCOPE)[CONNECTED]
    assert render(connected["value_template"], build_status("online", IDENT)) == "ON"
    assert render(connected["value_template"], build_status("offline", IDENT)) == "OFF"
    assert "availability_topic" not in connected, "the agent's own sensor shows it offline"


def score_payload(smoothed: float | None, threshold: float = 0.75) -> dict[str, Any]:
    stream = ScoreStream(IDENT, "r1", min_interval_s=0.0)
    payload = stream.offer(
        score=0.5,
        smoothed=smoothed,
        threshold=threshold,
        window=WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199, "3"),
        model=MODEL,
        alarm_active=False,
    )
    assert payload is not None
    return payload


def test_score_and_threshold_from_score_telemetry() -> None:
    configs = robot_configs(SCOPE, "r1")
    payload = score_payload(0.4321)
    assert float(render(configs[SCORE]["value_template"], payload)) == pytest.approx(0.4321)
    assert float(render(configs[THRESHOLD]["value_template"], payload)) == pytest.approx(0.75)
    attributes = json.loads(render(configs[SCORE]["json_attributes_template"], payload))
    assert attributes["score"] == pytest.approx(0.5)
    assert attributes["model"] == {"bundle_id": "kr16-p12", "version": "2024.05.1"}
    # no smoothed score yet: Home Assistant reads the string "None" as unknown
    assert render(configs[SCORE]["value_template"], score_payload(None)) == "None"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("cell7", "r1"), "cell7_r1"), (("cell.7:a", "arm-2"), "cell_7_a_arm-2")],
)
def test_node_and_object_ids_keep_to_the_characters_home_assistant_allows(parts, expected):
    assert discovery_id(*parts) == expected


def test_configs_serialize_as_json() -> None:
    for config in discovery_configs(SCOPE).values():
        assert json.loads(dumps(config)) == config
