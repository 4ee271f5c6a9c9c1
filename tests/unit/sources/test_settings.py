"""Source settings: one class per kind through the registry, and the factory's builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.sources.base import ChunkQueue, SourceError
from agent.sources.factory import BUILDERS, build_source, channel_map_for
from agent.sources.replay_source import ReplaySource
from agent.sources.settings import (
    SOURCE_KINDS,
    MqttSourceSettings,
    ReplaySourceSettings,
    SerialSourceSettings,
    SimulatorSourceSettings,
    parse_source,
)
from agent.sources.simulator_source import SimulatorSource
from firmware_config.channel_map import builtin_map_path

BASE = Path("/etc/rapp-agent")


def parse(**data: Any):  # type: ignore[no-untyped-def]
    return parse_source(Table(data, "robots[0].source"), BASE)


def test_every_kind_is_registered_and_has_a_builder() -> None:
    assert list(SOURCE_KINDS) == ["serial", "mqtt", "replay", "simulator"]
    assert set(BUILDERS) == set(SOURCE_KINDS.values())
    assert all(cls.kind == kind for kind, cls in SOURCE_KINDS.items())


def test_each_kind_parses_into_its_class_with_paths_resolved() -> None:
    serial = parse(kind="serial", port="/dev/ttyUSB0", channel_map="map.toml")
    assert serial == SerialSourceSettings(port="/dev/ttyUSB0", channel_map=BASE / "map.toml")
    assert serial.baudrate == 921_600 and serial.queue_chunks == 1000
    mqtt = parse(kind="mqtt", topic="a/b", payload="json", channel_map="/m.toml")
    assert mqtt == MqttSourceSettings(topic="a/b", payload="json", channel_map=Path("/m.toml"))
    replay = parse(kind="replay", file="rec.csv", speed=0, loop=True, queue_chunks=10)
    assert replay == ReplaySourceSettings(
        file=BASE / "rec.csv", speed=0.0, loop=True, queue_chunks=10
    )
    simulator = parse(kind="simulator", seed=3, faults=["friction:J2:onset=60"])
    assert simulator == SimulatorSourceSettings(seed=3, faults=("friction:J2:onset=60",))
    assert simulator.kind == "simulator" and simulator.channel_map is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "usb"}, "robots[0].source.kind = 'usb': must be one of serial, mqtt, replay"),
        ({}, 'robots[0].source.kind is missing; e.g. kind = "serial"'),
        (
            {"kind": "replay", "file": "x", "baudrate": 9600},
            "robots[0].source.baudrate: not used by a replay source; allowed: file, speed, "
            "loop, queue_chunks",
        ),
        ({"kind": "replay", "file": "x", "baudratee": 1}, "baudratee: unknown key in"),
        ({"kind": "serial", "channel_map": "m"}, "robots[0].source.port is missing; a serial"),
        ({"kind": "serial", "port": "p"}, "robots[0].source.channel_map is missing; a serial"),
        ({"kind": "mqtt", "channel_map": "m"}, "robots[0].source.topic is missing; a mqtt"),
        ({"kind": "mqtt", "topic": "t"}, "robots[0].source.channel_map is missing; a mqtt"),
        ({"kind": "replay"}, "robots[0].source.file is missing; a replay source needs it"),
        ({"kind": "replay", "file": "x", "speed": 2000}, "speed = 2000.0: must be between 0"),
        ({"kind": "serial", "port": "p", "channel_map": "m", "baudrate": 10}, "baudrate = 10"),
        ({"kind": "mqtt", "topic": "t", "channel_map": "m", "payload": "xml"}, "payload = 'xml'"),
        ({"kind": "simulator", "program": 256}, "program = 256: must be between 0 and 255"),
        ({"kind": "simulator", "faults": [1]}, "faults = [1]: must be a list of strings"),
        ({"kind": "simulator", "queue_chunks": 5}, "queue_chunks = 5: must be between 10"),
    ],
)
def test_errors_name_key_value_and_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(**data)
    assert message in str(info.value)


def test_environment_checks(tmp_path: Path) -> None:
    missing = ReplaySourceSettings(file=tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"robots\[0\]\.source\.file = .*: no such file"):
        missing.check_environment("robots[0].source")
    port = SerialSourceSettings(port=str(tmp_path / "ttyNOPE"), channel_map=builtin_map_path())
    with pytest.raises(ConfigError, match="ttyNOPE': no such device"):
        port.check_environment("robots[0].source")
    SimulatorSourceSettings().check_environment("robots[0].source")  # nothing to check


def test_channel_map_for_uses_the_shipped_map_only_where_that_is_the_default() -> None:
    simulator = channel_map_for(SimulatorSourceSettings(), "arm1")
    assert simulator is not None and simulator.robot == "six_axis_arm"
    assert channel_map_for(ReplaySourceSettings(file=Path("/x.csv")), "arm1") is None
    broken = SerialSourceSettings(port="p", channel_map=Path("/nonexistent/map.toml"))
    with pytest.raises(SourceError, match=r"robots\[arm1\]\.source\.channel_map"):
        channel_map_for(broken, "arm1")


def test_build_source_dispatches_on_the_settings_class(tmp_path: Path) -> None:
    settings = SimulatorSourceSettings(seed=1)
    channel_map = channel_map_for(settings, "arm1")
    source = build_source(settings, channel_map, ChunkQueue(10), ("J1",), 1000.0, None)
    assert isinstance(source, SimulatorSource)
    csv = tmp_path / "rec.csv"
    csv.write_text("J1\n1\n2\n")
    replay = build_source(
        ReplaySourceSettings(file=csv), None, ChunkQueue(10), ("J1",), 1000.0, None
    )
    assert isinstance(replay, ReplaySource) and replay.channels == ("J1",)
    mqtt = MqttSourceSettings(topic="t", channel_map=builtin_map_path())
    with pytest.raises(SourceError, match="needs an \\[mqtt\\] section"):
        build_source(mqtt, channel_map, ChunkQueue(10), ("J1",), 1000.0, None)


def test_replay_open_reports_a_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"replay source: .*cannot read"):
        ReplaySource.open(tmp_path / "missing.csv", ("J1",), 1000.0, ChunkQueue(10))
