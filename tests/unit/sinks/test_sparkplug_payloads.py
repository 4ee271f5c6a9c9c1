"""What the edge node reports: births, deaths, device metrics, the metric table's report by
exception, topics and the ``[sparkplug]`` table."""

from __future__ import annotations

import math
import re

import pytest

from agent.config import parse_config
from agent.core.errors import ConfigError
from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.pipeline.robot import ScoredWindow
from agent.sinks.mqtt.payloads import FrameCounters, RobotHealth
from agent.sinks.sparkplug.errors import SparkplugPayloadError
from agent.sinks.sparkplug.metrics import DataType, Metric, MetricTable, SparkplugPayload
from agent.sinks.sparkplug.payloads import (
    DEVICE_METRICS,
    alarm_values,
    device_payload,
    health_values,
    node_birth,
    node_death,
    rebirth_requested,
    window_values,
)
from agent.sinks.sparkplug.settings import SparkplugSettings
from agent.sinks.sparkplug.topics import SparkplugTopics

MODEL = ModelRef("kr16-p12", "2024.05.1")
NOW = 1_700_000_000_000
DECLARED = dict(DEVICE_METRICS)


def scored(score: float, smoothed: float | None = None) -> ScoredWindow:
    w = WindowInfo(1.0, 2.0, 1, 2, None, {"J1": score})
    return ScoredWindow(
        robot="r1", model=MODEL, program=-1, recon=score, sap=score, nap=score, score=score,
        threshold=0.8, smoothed=smoothed, contributions={"J1": score}, window=w,
        latency_s=0.0, start=0, stop=32, alarm_active=False,
    )  # fmt: skip


def test_node_birth_has_seq_zero_bdseq_and_the_rebirth_control() -> None:
    birth = node_birth(bdseq=12, agent_version="0.1.0", now_ms=NOW)
    assert birth.seq == 0 and birth.timestamp_ms == NOW
    assert birth.metric("bdSeq") == Metric("bdSeq", DataType.INT64, 12, NOW)
    assert birth.metric("Node Control/Rebirth").value is False
    assert birth.metric("agent/version").value == "0.1.0"


def test_node_death_has_only_bdseq_and_no_seq() -> None:
    death = node_death(bdseq=3, now_ms=NOW)
    assert death.seq is None and death.values() == {"bdSeq": 3}


def test_device_payload_seq_wraps_at_256() -> None:
    assert device_payload(256, (), NOW).seq == 0
    assert device_payload(255, (), NOW).seq == 255


def test_window_alarm_and_health_values_are_all_declared_metrics() -> None:
    raised = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1)).update(
        3.0, 1.0, WindowInfo(1.0, 2.0, 1, 2), MODEL
    )
    health = RobotHealth(
        frames=FrameCounters(ok=10, crc_errors=1, sequence_gaps=2, resyncs=3),
        windows={"scored": 5, "queue_dropped": 0, "source_connected": 1, "reconnects": 4},
        retraining_advised=True,
    )
    values = {**window_values(scored(0.5, 0.4)), **alarm_values(raised), **health_values(health)}
    assert set(values) == set(DECLARED)
    assert values["smoothed"] == 0.4 and values["threshold"] == 0.8
    assert values["model/bundle_id"] == "kr16-p12"
    assert values["alarm/active"] is True and values["alarm/raise_id"] == raised.id
    assert values["alarm/severity"] in ("warning", "critical")
    assert values["health/frames_ok"] == 10 and values["health/windows_scored"] == 5
    assert values["health/source_connected"] is True
    assert values["health/unknown_program"] is None, "a counter the status lacks stays null"
    assert alarm_values(None) == {"alarm/active": False, "alarm/severity": "", "alarm/raise_id": ""}


def test_a_birth_declares_every_metric_null_until_known() -> None:
    table = MetricTable(DEVICE_METRICS)
    birth = table.birth(NOW)
    assert [m.name for m in birth] == [n for n, _ in DEVICE_METRICS]
    assert all(m.value is None and m.timestamp_ms == NOW for m in birth)
    assert not table.has_changes


def test_data_carries_only_what_changed_since_last_sent() -> None:
    table = MetricTable(DEVICE_METRICS)
    table.birth(NOW)
    table.update(window_values(scored(0.5, 0.4)), NOW + 1)
    first = {m.name: m.value for m in table.changes(NOW + 2)}
    assert first == {
        "score": 0.5, "smoothed": 0.4, "threshold": 0.8,
        "model/bundle_id": "kr16-p12", "model/version": "2024.05.1",
    }  # fmt: skip
    table.update(window_values(scored(0.6, 0.4)), NOW + 3)
    assert [(m.name, m.value, m.timestamp_ms) for m in table.changes(NOW + 4)] == [
        ("score", 0.6, NOW + 3)
    ]
    # back to the value last sent: nothing due
    table.update({"score": 0.7}, NOW + 5)
    table.update({"score": 0.6}, NOW + 6)
    assert not table.has_changes and table.changes(NOW + 7) == ()


def test_table_values_are_typed_and_checked() -> None:
    table = MetricTable(DEVICE_METRICS)
    table.update({"score": math.nan, "health/frames_ok": 3.0, "alarm/active": 1}, NOW)
    values = {m.name: m.value for m in table.changes(NOW)}
    assert values == {"score": None, "health/frames_ok": 3, "alarm/active": True}
    with pytest.raises(SparkplugPayloadError, match="not declared"):
        table.update({"bogus": 1}, NOW)
    with pytest.raises(SparkplugPayloadError, match="not a UInt64"):
        table.update({"health/frames_ok": -1}, NOW)


def test_rebirth_is_requested_only_by_a_true_rebirth_metric() -> None:
    def command(value) -> SparkplugPayload:
        return SparkplugPayload(
            NOW, (Metric("Node Control/Rebirth", DataType.BOOLEAN, value, NOW),)
        )

    assert rebirth_requested(command(True))
    assert not rebirth_requested(command(False))
    assert not rebirth_requested(SparkplugPayload(NOW, ()))


def test_topics() -> None:
    topics = SparkplugTopics("hall3", "cell7")
    assert topics.nbirth == "spBv1.0/hall3/NBIRTH/cell7"
    assert topics.ndeath == "spBv1.0/hall3/NDEATH/cell7"
    assert topics.ncmd == "spBv1.0/hall3/NCMD/cell7"
    assert topics.dbirth("r1") == "spBv1.0/hall3/DBIRTH/cell7/r1"
    assert topics.ddata("r1") == "spBv1.0/hall3/DDATA/cell7/r1"


BASE = {
    "agent": {"device_id": "cell7"},
    "mqtt": {"host": "broker"},
    "robots": [{"id": "r1", "bundle": "default", "source": {"kind": "simulator"}}],
}


def test_the_table_is_off_by_default_and_names_the_edge_node_after_the_device() -> None:
    assert parse_config(BASE).sparkplug == SparkplugSettings()
    settings = parse_config({**BASE, "sparkplug": {"enabled": True}}).sparkplug
    assert settings == SparkplugSettings(enabled=True, group_id="rapp", edge_node_id="cell7")
    custom = {"enabled": True, "group_id": "hall3", "edge_node_id": "ipc-7",
              "client_id": "spb-7", "data_interval_s": 5}  # fmt: skip
    settings = parse_config({**BASE, "sparkplug": custom}).sparkplug
    assert (settings.group_id, settings.edge_node_id, settings.client_id) == (
        "hall3", "ipc-7", "spb-7",
    )  # fmt: skip
    assert settings.data_interval_s == 5.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"group_id": "hall/3"}, "sparkplug.group_id = 'hall/3': use 1–64 letters"),
        ({"edge_node_id": "a+b"}, "sparkplug.edge_node_id = 'a+b'"),
        ({"data_interval_s": -1}, "sparkplug.data_interval_s = -1.0: must be between"),
        ({"group": "x"}, "sparkplug.group: unknown key"),
    ],
)
def test_bad_tables_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**BASE, "sparkplug": table})


def test_enabled_without_a_broker_is_refused() -> None:
    doc = {k: v for k, v in BASE.items() if k != "mqtt"}
    with pytest.raises(ConfigError, match=r"sparkplug\.enabled = true: .*\[mqtt\]"):
        parse_config({**doc, "sparkplug": {"enabled": True}})
