"""The consumer examples (examples/node-red-flow.json, examples/telegraf-rapp.conf) subscribe
to topics the agent publishes and read fields its payloads have, with the types they have."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    ScoreStream,
    build_alarm,
    build_alarm_active,
    build_status,
    dumps,
)
from agent.sinks.topics import Topics

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MODEL = ModelRef("kr16-p12", "3")
IDENT = AgentIdentity("cell7", "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)
TOPICS = Topics.for_device("cell7")
TELEGRAF_TYPES: dict[str, tuple[type, ...]] = {
    "float": (float, int),
    "int": (int,),
    "bool": (bool,),
    "string": (str,),
}


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    levels = topic.split("/")
    for i, part in enumerate(topic_filter.split("/")):
        if part == "#":
            return True
        if i >= len(levels) or part not in ("+", levels[i]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def decoded(payload: dict[str, Any]) -> dict[str, Any]:
    return json.loads(dumps(payload))


def published() -> dict[str, list[dict[str, Any]]]:
    """A real payload (or several) per topic, as a subscriber decodes them."""
    tracker = AlarmTracker("kr16", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    raised = tracker.update(3.0, 1.0, WindowInfo(1.7e9, 1.7e9 + 1, 0, 9, "2", {"J2": 1.0}), MODEL)
    cleared = tracker.update(0.1, 1.0, WindowInfo(1.7e9 + 2, 1.7e9 + 3, 10, 19, "2"), MODEL)
    assert raised is not None and cleared is not None
    score = ScoreStream(IDENT, "kr16", min_interval_s=0.0, clock=lambda: 0.0).offer(
        score=1.5,
        smoothed=1.2,
        threshold=1.0,
        window=WindowInfo(1.7e9, 1.7e9 + 1, 0, 9, "2"),
        model=MODEL,
        alarm_active=True,
    )
    assert score is not None
    return {
        TOPICS.alarm("kr16"): [decoded(build_alarm(e, device="cell7")) for e in (raised, cleared)],
        TOPICS.alarm_active("kr16"): [
            decoded(build_alarm_active("cell7", "kr16", e)) for e in (raised, cleared)
        ],
        TOPICS.status: [decoded(build_status(s, IDENT, now=1.7e9)) for s in ("online", "offline")],
        TOPICS.score("kr16"): [decoded(score)],
    }


def lookup(doc: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return KeyError(path)
        doc = doc[key]
    return doc


# -- Node-RED --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow() -> list[dict[str, Any]]:
    return json.loads((EXAMPLES / "node-red-flow.json").read_text())


def test_the_flow_is_wired_to_nodes_that_exist(flow: list[dict[str, Any]]) -> None:
    ids = {node["id"] for node in flow}
    assert len(ids) == len(flow), "node ids are unique"
    tab = next(n["id"] for n in flow if n["type"] == "tab")
    for node in flow:
        for output in node.get("wires", []):
            assert set(output) <= ids, node["id"]
        if node["type"] not in ("tab", "mqtt-broker"):
            assert node["z"] == tab, node["id"]
        if node["type"] == "mqtt in":
            assert node["broker"] in ids and node["datatype"] == "json"


def test_the_flow_subscribes_to_what_the_agent_publishes(flow: list[dict[str, Any]]) -> None:
    topics = published()
    subscriptions = [n for n in flow if n["type"] == "mqtt in"]
    assert subscriptions
    for node in subscriptions:
        hits = [t for t in topics if matches(node["topic"], t)]
        assert len(hits) == 1, (node["topic"], hits)
        if hits[0] != TOPICS.score("kr16"):
            assert node["qos"] == "1", "alarms, alarm state and status are QoS 1"


def test_the_flow_functions_read_fields_the_payloads_have(flow: list[dict[str, Any]]) -> None:
    """Each function names its message with one variable (`const alarm = msg.payload`);
    every `variable.field.field` it reads exists in one of that topic's payloads."""
    topics = published()
    nodes = {n["id"]: n for n in flow}
    for sub in (n for n in flow if n["type"] == "mqtt in"):
        topic = next(t for t in topics if matches(sub["topic"], t))
        code = nodes[sub["wires"][0][0]]["func"]
        var = re.search(r"const (\w+) = msg\.payload;", code)
        assert var, code
        paths = set(re.findall(rf"\b{var.group(1)}((?:\.\w+)+)", code))
        assert paths
        for path in paths:
            field = re.sub(r"\.length$", "", path).strip(".")  # a JS array's length
            found = [lookup(p, field) for p in topics[topic]]
            assert any(not isinstance(v, KeyError) for v in found), (topic, path)


# -- Telegraf --------------------------------------------------------------------------------


def test_telegraf_reads_existing_fields_with_their_types() -> None:
    config = tomllib.loads((EXAMPLES / "telegraf-rapp.conf").read_text())
    topics = published()
    consumers = config["inputs"]["mqtt_consumer"]
    assert len(consumers) == 2
    for consumer in consumers:
        (topic_filter,) = consumer["topics"]
        topic = next(t for t in topics if matches(topic_filter, t))
        (parsing,) = consumer["topic_parsing"]
        assert parsing["topic"] == topic_filter
        tags = parsing["tags"].split("/")
        levels = topic.split("/")
        assert len(tags) == len(levels)
        assert levels[tags.index("device")] == "cell7" and levels[tags.index("robot")] == "kr16"
        (parser,) = consumer["json_v2"]
        for field in parser["field"] + parser.get("tag", []):
            values = [lookup(p, field["path"]) for p in topics[topic]]
            present = [v for v in values if not isinstance(v, KeyError) and v is not None]
            assert present, (topic, field["path"])
            wanted = TELEGRAF_TYPES[field.get("type", "string")]
            for value in present:
                assert isinstance(value, wanted) and not (
                    isinstance(value, bool) and bool not in wanted
                ), (field["path"], value)
            if not field.get("optional"):
                assert all(v is not None and not isinstance(v, KeyError) for v in values)
        assert lookup(topics[topic][0], parser["timestamp_path"]).endswith("Z")
