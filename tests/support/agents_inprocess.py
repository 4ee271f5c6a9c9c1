"""Shared helpers: run the agent in-process to learn which alarms a recording must raise."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jsonschema

from agent.config import load_config
from agent.daemon import Agent
from agent.sdnotify import SdNotifier

SCHEMAS = Path(__file__).resolve().parents[2] / "agent" / "schemas"


def expected_events(config_path: Path) -> list[tuple[str, int, int]]:
    """(kind, seq_first, seq_last) of every alarm event the agent raises on this config's
    replay — computed by the agent itself, in-process, without MQTT.

    The replay runs as fast as the pipeline takes it (speed 0, which loses nothing): events
    are numbered by chunk and window, not by the clock, so the pace the test's own agent
    replays at does not change them, and a 20 s recording is not waited out twice."""
    config = load_config(config_path)
    robots = tuple(
        dataclasses.replace(r, source=dataclasses.replace(r.source, speed=0.0))
        if hasattr(r.source, "speed")
        else r
        for r in config.robots
    )
    config = dataclasses.replace(config, mqtt=None, robots=robots)
    agent = Agent(config, notifier=SdNotifier(None))
    events = []
    agent.start()
    assert agent.publisher is not None
    agent.publisher.event_observers.append(
        lambda e: events.append((e.kind, e.seq_first, e.seq_last))
    )
    deadline = time.monotonic() + 120
    while not agent.all_sources_finished() and time.monotonic() < deadline:
        agent.run(until=time.monotonic() + 0.2)
    agent.stop()
    return events


def validate(payload: dict, schema_name: str) -> None:
    schema = json.loads((SCHEMAS / f"{schema_name}.json").read_text())
    jsonschema.validate(payload, schema)


def alarm_key(payload: dict) -> tuple[str, int, int]:
    return (payload["kind"], payload["seq"]["first"], payload["seq"]["last"])
