"""The announcer against a real outbox: configs queued retained once, unchanged ones not
again, removed robots (and disabled discovery) cleared with empty retained payloads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.core.errors import ConfigError
from agent.sinks.homeassistant.announcer import RECORD_NAME, sync_discovery
from agent.sinks.homeassistant.settings import HomeAssistantSettings
from agent.sinks.mqtt.payloads import AgentIdentity
from agent.sinks.outbox import Outbox
from agent.sinks.topics import Topics

TOPICS = Topics.for_device("cell7")
IDENT = AgentIdentity("cell7", "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)
ON = HomeAssistantSettings(enabled=True)
R2_CONFIGS = {
    "homeassistant/binary_sensor/cell7_r2/alarm/config",
    "homeassistant/sensor/cell7_r2/score/config",
    "homeassistant/sensor/cell7_r2/threshold/config",
}


def drain(box: Outbox) -> list:
    """Everything queued, acked as a broker would."""
    batch = box.next_batch(1000)
    for m in batch:
        box.ack(m.id)
    return batch


def test_first_start_queues_every_config_retained_then_nothing_when_unchanged(
    outbox: Outbox, tmp_path: Path
) -> None:
    first = sync_discovery(ON, IDENT, TOPICS, ("r1", "r2"), outbox, tmp_path)
    queued = drain(outbox)
    assert len(first.published) == 7 and not first.removed
    assert {m.topic for m in queued} == set(first.published)
    assert all(m.retain and m.qos == 1 and m.kind == "event" for m in queued)
    payload = json.loads(queued[1].payload)
    assert payload["id"], "the outbox id travels in the payload, as for every retained state"
    assert json.loads((tmp_path / RECORD_NAME).read_text())["topics"] == sorted(first.published)

    again = sync_discovery(ON, IDENT, TOPICS, ("r1", "r2"), outbox, tmp_path)
    assert again.published == () and again.unchanged == 7
    assert drain(outbox) == []


def test_a_changed_config_is_queued_again(outbox: Outbox, tmp_path: Path) -> None:
    sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    drain(outbox)
    upgraded = AgentIdentity("cell7", "0.2.0", "x", 0.0)  # sw_version is in every config
    assert len(sync_discovery(ON, upgraded, TOPICS, ("r1",), outbox, tmp_path).published) == 4


def test_a_removed_robot_gets_empty_retained_configs(outbox: Outbox, tmp_path: Path) -> None:
    sync_discovery(ON, IDENT, TOPICS, ("r1", "r2"), outbox, tmp_path)
    drain(outbox)
    result = sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    assert set(result.removed) == R2_CONFIGS and result.published == ()
    queued = drain(outbox)
    assert {m.topic for m in queued} == R2_CONFIGS
    assert all(m.payload == b"" and m.retain for m in queued)
    assert outbox.last_retained(sorted(R2_CONFIGS)[0]) == b""
    # once removed, not removed again
    assert sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path).removed == ()


def test_a_new_prefix_moves_the_configs(outbox: Outbox, tmp_path: Path) -> None:
    sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    drain(outbox)
    moved = HomeAssistantSettings(enabled=True, discovery_prefix="ha")
    result = sync_discovery(moved, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    assert len(result.published) == 4 and len(result.removed) == 4
    assert all(t.startswith("ha/") for t in result.published)
    assert all(t.startswith("homeassistant/") for t in result.removed)


def test_disabling_removes_everything_announced_before(outbox: Outbox, tmp_path: Path) -> None:
    sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    drain(outbox)
    result = sync_discovery(HomeAssistantSettings(), IDENT, TOPICS, ("r1",), outbox, tmp_path)
    assert len(result.removed) == 4
    assert all(m.payload == b"" for m in drain(outbox))
    assert not (tmp_path / RECORD_NAME).exists()


def test_never_enabled_queues_nothing(outbox: Outbox, tmp_path: Path) -> None:
    off = HomeAssistantSettings()
    assert sync_discovery(off, IDENT, TOPICS, ("r1",), outbox, tmp_path).published == ()
    assert drain(outbox) == [] and not (tmp_path / RECORD_NAME).exists()


def test_an_unreadable_record_is_survived(outbox: Outbox, tmp_path: Path) -> None:
    (tmp_path / RECORD_NAME).write_text("{not json")
    result = sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    assert len(result.published) == 4 and result.removed == ()
    assert len(json.loads((tmp_path / RECORD_NAME).read_text())["topics"]) == 4


def test_configs_queued_while_the_broker_is_away_are_requeued_on_reconnect(
    outbox: Outbox, tmp_path: Path
) -> None:
    sync_discovery(ON, IDENT, TOPICS, ("r1",), outbox, tmp_path)
    first = {m.topic: m.id for m in drain(outbox)}
    assert outbox.requeue_retained() >= 4  # what the link does on every connect
    again = {m.topic: m.id for m in drain(outbox) if m.topic in first}
    assert again == first, "same payload, same id: subscribers drop the duplicate"


BASE = {
    "agent": {"device_id": "cell7"},
    "robots": [{"id": "r1", "bundle": "default", "source": {"kind": "simulator"}}],
}


def test_the_table_is_off_by_default_and_validated() -> None:
    assert parse_config(BASE).homeassistant == HomeAssistantSettings()
    doc = {**BASE, "mqtt": {"host": "broker"}, "homeassistant": {"enabled": True}}
    assert parse_config(doc).homeassistant == HomeAssistantSettings(enabled=True)
    prefixed = {**doc, "homeassistant": {"enabled": True, "discovery_prefix": "ha/site1"}}
    assert parse_config(prefixed).homeassistant.discovery_prefix == "ha/site1"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"enabled": True, "prefix": "x"}, "homeassistant.prefix: unknown key"),
        ({"discovery_prefix": "ha/#"}, "homeassistant.discovery_prefix = 'ha/#'"),
        ({"discovery_prefix": "/ha"}, "homeassistant.discovery_prefix = '/ha'"),
        ({"enabled": "yes"}, "homeassistant.enabled = 'yes': must be true or false"),
    ],
)
def test_bad_tables_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**BASE, "mqtt": {"host": "broker"}, "homeassistant": table})


def test_enabled_without_a_broker_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"homeassistant\.enabled = true: .*\[mqtt\]"):
        parse_config({**BASE, "homeassistant": {"enabled": True}})
