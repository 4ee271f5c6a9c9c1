"""The example configs in examples/ stay valid as the config schema evolves."""

from __future__ import annotations

import re
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


# -- the files the examples name are the ones docs/install.md sets up ------------------------
# (tests/e2e/test_install_guide.py then runs `rapp-agent run --check` on each example after
# that setup, in a temporary root.)

INSTALL_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "install.md"


def documented_paths() -> list[re.Pattern[str]]:
    """The paths of the guide's "What goes where" table, ``<robot>`` as a wildcard."""
    rows = re.findall(r"^\| `(/[^`]+)` \|", INSTALL_GUIDE.read_text(), flags=re.M)
    assert len(rows) >= 8, rows
    return [
        re.compile(re.escape(row.rstrip("/")).replace(re.escape("<robot>"), r"[^/]+") + "/?")
        for row in rows
    ]


def named_files(path: Path) -> list[str]:
    config = load_config(path)
    files = [config.agent.state_dir, *config.trust.keys]
    if config.mqtt is not None:
        tls = config.mqtt.tls
        files += [str(config.mqtt.password_file or "")]
        if tls is not None:
            files += [str(getattr(tls, k) or "") for k in ("ca_file", "cert_file", "key_file")]
    for robot in config.robots:
        files += [b for b in robot.bundles if b != "default"]
        files += [str(robot.source.channel_map or "")]
    return [f for f in files if f.startswith(("/etc/", "/var/", "/opt/"))]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_file_an_example_names_is_set_up_by_the_install_guide(path):
    patterns = documented_paths()
    for name in named_files(path):
        assert any(p.fullmatch(name) for p in patterns), f"{path.name}: {name} is in no step"


def test_trust_keys_are_where_keygen_puts_them():
    # `rapp-export keygen --out release.key` writes release.key.pub; the guide copies it as is
    for path in EXAMPLES:
        for key in load_config(path).trust.keys:
            assert key.endswith(".key.pub"), (path.name, key)
