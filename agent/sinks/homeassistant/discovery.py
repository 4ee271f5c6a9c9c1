"""Home Assistant MQTT discovery configs for the agent and its robots (pure builders).

Each robot becomes one Home Assistant device with three entities, all read from topics the
agent already publishes — discovery adds no state topics of its own:

- ``binary_sensor`` *Alarm* (device class ``problem``) from the retained ``<robot>/alarm/active``;
  the active raise (severity, since, model, contributions, …) becomes its attributes;
- ``sensor`` *Score*: the smoothed score the alarm compares with the threshold, from
  ``<robot>/score`` (raw score, window count, program and model as attributes);
- ``sensor`` *Threshold* (diagnostic), from the same score payloads.

The agent itself is a device too (a ``connectivity`` binary_sensor on ``status``), so every
robot device can name it as its ``via_device``. Every robot entity is available only while
``status`` says ``online``: ``stopped`` and the last will ``offline`` make them unavailable.

Topics: ``<prefix>/<component>/<node>/<object>/config`` with node ``<device>_<robot>`` for
robot entities and ``<device>`` for the agent's own; characters Home Assistant does not
allow in those levels become ``_``.

Usage::

    scope = DiscoveryScope("homeassistant", Topics.for_device("cell7"), "0.1.0", ("r1",))
    for topic, config in discovery_configs(scope).items(): ...  # retained, QoS 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.sinks.topics import Topics

MANUFACTURER = "rapp-edge"
ORIGIN = "rapp-agent"
ROBOT_MODEL = "RaPP motor-current monitor"
AGENT_MODEL = "rapp-agent"
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")

ONLINE_TEMPLATE = "{{ 'online' if value_json.state == 'online' else 'offline' }}"
ALARM_STATE_TEMPLATE = "{{ 'ON' if value_json.active else 'OFF' }}"
ALARM_ATTRIBUTES_TEMPLATE = "{{ (value_json.alarm or {}) | tojson }}"
SCORE_TEMPLATE = "{{ value_json.smoothed }}"  # null renders "None": Home Assistant's unknown
THRESHOLD_TEMPLATE = "{{ value_json.threshold }}"
SCORE_ATTRIBUTES_TEMPLATE = (
    "{{ {'score': value_json.score, 'max_score': value_json.max_score, "
    "'windows': value_json.windows, 'program': value_json.program, "
    "'model': value_json.model} | tojson }}"
)
CONNECTED_TEMPLATE = "{{ 'ON' if value_json.state == 'online' else 'OFF' }}"


@dataclass(frozen=True, slots=True)
class DiscoveryScope:
    """What the configs describe: the discovery prefix, the agent's topics and version, and
    the robot ids of the running configuration."""

    prefix: str
    topics: Topics
    agent_version: str
    robots: tuple[str, ...]


def discovery_id(*parts: str) -> str:
    """``parts`` joined by ``_`` with every character outside ``[A-Za-z0-9_-]`` replaced, as
    Home Assistant requires of node and object ids."""
    return _NOT_IN_ID.sub("_", "_".join(parts))


def config_topic(prefix: str, component: str, node: str, obj: str) -> str:
    return f"{prefix}/{component}/{node}/{obj}/config"


def agent_device(scope: DiscoveryScope) -> dict[str, Any]:
    device = scope.topics.device
    return {
        "identifiers": [discovery_id("rapp", device)],
        "name": device,
        "manufacturer": MANUFACTURER,
        "model": AGENT_MODEL,
        "sw_version": scope.agent_version,
    }


def robot_device(scope: DiscoveryScope, robot: str) -> dict[str, Any]:
    device = scope.topics.device
    return {
        "identifiers": [discovery_id("rapp", device, robot)],
        "name": f"{device} {robot}",
        "manufacturer": MANUFACTURER,
        "model": ROBOT_MODEL,
        "sw_version": scope.agent_version,
        "via_device": discovery_id("rapp", device),
    }


def _origin(scope: DiscoveryScope) -> dict[str, str]:
    return {"name": ORIGIN, "sw_version": scope.agent_version}


def _availability(scope: DiscoveryScope) -> dict[str, Any]:
    return {
        "availability_topic": scope.topics.status,
        "availability_template": ONLINE_TEMPLATE,
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def agent_configs(scope: DiscoveryScope) -> dict[str, dict[str, Any]]:
    """The agent's own device: connected while ``status`` is ``online``."""
    device = scope.topics.device
    node = discovery_id(device)
    return {
        config_topic(scope.prefix, "binary_sensor", node, "connected"): {
            "name": "Connected",
            "unique_id": discovery_id("rapp", device, "connected"),
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": scope.topics.status,
            "value_template": CONNECTED_TEMPLATE,
            "qos": 1,
            "device": agent_device(scope),
            "origin": _origin(scope),
        }
    }


def robot_configs(scope: DiscoveryScope, robot: str) -> dict[str, dict[str, Any]]:
    """Alarm, score and threshold of one robot."""
    topics, device = scope.topics, scope.topics.device
    node = discovery_id(device, robot)
    common = {
        "device": robot_device(scope, robot),
        "origin": _origin(scope),
        **_availability(scope),
    }
    score_topic = topics.score(robot)
    return {
        config_topic(scope.prefix, "binary_sensor", node, "alarm"): {
            "name": "Alarm",
            "unique_id": discovery_id("rapp", device, robot, "alarm"),
            "device_class": "problem",
            "state_topic": topics.alarm_active(robot),
            "value_template": ALARM_STATE_TEMPLATE,
            "json_attributes_topic": topics.alarm_active(robot),
            "json_attributes_template": ALARM_ATTRIBUTES_TEMPLATE,
            "qos": 1,
            **common,
        },
        config_topic(scope.prefix, "sensor", node, "score"): {
            "name": "Score",
            "unique_id": discovery_id("rapp", device, robot, "score"),
            "state_class": "measurement",
            "suggested_display_precision": 3,
            "icon": "mdi:chart-bell-curve",
            "state_topic": score_topic,
            "value_template": SCORE_TEMPLATE,
            "json_attributes_topic": score_topic,
            "json_attributes_template": SCORE_ATTRIBUTES_TEMPLATE,
            **common,
        },
        config_topic(scope.prefix, "sensor", node, "threshold"): {
            "name": "Threshold",
            "unique_id": discovery_id("rapp", device, robot, "threshold"),
            "state_class": "measurement",
            "suggested_display_precision": 3,
            "entity_category": "diagnostic",
            "icon": "mdi:format-vertical-align-top",
            "state_topic": score_topic,
            "value_template": THRESHOLD_TEMPLATE,
            **common,
        },
    }


def discovery_configs(scope: DiscoveryScope) -> dict[str, dict[str, Any]]:
    """Every config of the scope by topic: the agent's first, then each robot's."""
    configs = agent_configs(scope)
    for robot in scope.robots:
        configs.update(robot_configs(scope, robot))
    return configs
