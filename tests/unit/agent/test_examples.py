"""The example configs in examples/ stay valid as the config schema evolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("agent-*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_parses(path):
    config = load_config(path)
    assert config.robots
    assert config.agent.device_id


def test_there_are_examples_for_serial_mqtt_and_simulator():
    assert {p.name for p in EXAMPLES} >= {
        "agent-serial.toml",
        "agent-mqtt.toml",
        "agent-simulator.toml",
    }
