"""The /metrics collector: every catalogue metric from a published view, per robot."""

from __future__ import annotations

import math
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.pipeline.alarms import AlarmEvent, ChannelContribution, ModelRef, WindowInfo
from agent.pipeline.robot import ScoredWindow
from agent.sinks.http.collector import (
    CATALOGUE,
    DRIFT_METRICS,
    OTA_STATES,
    WINDOW_METRICS,
    AgentCollector,
)
from agent.sinks.http.recorder import LATENCY_BUCKETS_S, WindowRecorder
from agent.sinks.http.view import AgentFacts, ViewBoard
from agent.sinks.mqtt.payloads import AgentIdentity, BundleInfo, FrameCounters, RobotHealth
from agent.sinks.outbox import OutboxStats
from agent.sinks.spill import DiskTrouble
from agent.sinks.status import StatusSnapshot

ROOT = Path(__file__).resolve().parents[3]
IDENTITY = AgentIdentity("ipc1", "0.1.0", "01BOOT", 1_700_000_000.0)
MODEL = ModelRef("b1", "3")
STALL_S = 60.0


def scored_window(robot: str, score: float, threshold: float, latency_s: float) -> ScoredWindow:
    w = WindowInfo(1_700_000_100.0, 1_700_000_101.0, 10, 20, "1", {"J2": score})
    return ScoredWindow(
        robot=robot, model=MODEL, program=1, recon=score, sap=score, nap=score, score=score,
        threshold=threshold, smoothed=score * 0.9, contributions={"J2": score}, window=w,
        latency_s=latency_s, start=0, stop=32, alarm_active=score > threshold,
    )  # fmt: skip


def alarm_event(robot: str, kind: str = "raise", severity: str = "critical") -> AlarmEvent:
    return AlarmEvent(
        id="01RAISE", kind=kind, severity=severity, robot=robot, model=MODEL, program="1",  # type: ignore[arg-type]
        score=2.5, smoothed=2.0, peak_smoothed=2.2, threshold=1.0, span_start=1_700_000_090.0,
        span_end=1_700_000_101.0, seq_first=1, seq_last=20,
        contributions=(ChannelContribution("J2<script>", 1.0, 0.8),),
    )  # fmt: skip


def full_health() -> RobotHealth:
    return RobotHealth(
        frames=FrameCounters(ok=1000, crc_errors=2, sequence_gaps=3, resyncs=1),
        alarm_active=True,
        windows={key: i + 1 for i, key in enumerate(WINDOW_METRICS)},
        drift={key: 0.5 for key in DRIFT_METRICS} | {"last_unknown_program": None},
        retraining_advised=True,
    )


def full_facts(alarm: AlarmEvent | None) -> AgentFacts:
    status = StatusSnapshot(
        bundles=(BundleInfo("arm1", "b1", "3", ("1", "2")), BundleInfo("arm2", "b2", "1")),
        robots={"arm1": full_health(), "arm2": RobotHealth(windows={"source_connected": 1})},
    )
    outbox = OutboxStats(
        alarm=1, event=2, telemetry=30, telemetry_dropped=4, enqueued_total=100, acked_total=63,
        oldest_created=1_700_000_000.0, held=1, held_dropped=0,
        storage=DiskTrouble("/var/lib/rapp-agent", "disk full", 1_700_000_000.0, 0),
    )  # fmt: skip
    return AgentFacts(
        status=status,
        alarms={"arm1": alarm, "arm2": None},
        broker_connected=True,
        outbox=outbox,
        ota={"state": "staged", "transfer_id": "t1"},
        ota_refusals={"unsigned": 2},
    )


def full_board() -> ViewBoard:
    """A board whose view has every kind of value the collector exports."""
    board = ViewBoard(("arm1", "arm2"))
    recorder = WindowRecorder()
    for latency in (0.0005, 0.003, 0.003, 20.0):
        recorder.window(scored_window("arm1", 2.5, 1.0, latency))
    event = alarm_event("arm1")
    recorder.event(event)
    board.publish(full_facts(event), recorder.freeze())
    return board


def scrape(board: ViewBoard) -> dict[str, dict[tuple, float]]:
    """sample name → {sorted label items: value}, through the real exposition and parser."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(board, IDENTITY, STALL_S))
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_catalogue_metric_is_exported_from_a_full_view():
    samples = scrape(full_board())
    for spec in CATALOGUE:
        for name in spec.sample_names():
            assert name in samples, f"{name} missing from /metrics"


def test_per_robot_values_come_from_the_snapshot():
    m = scrape(full_board())
    arm1 = (("robot", "arm1"),)
    assert m["rapp_frames_received_total"][arm1] == 1000
    assert m["rapp_frames_crc_errors_total"][arm1] == 2
    assert m["rapp_frames_sequence_gaps_total"][arm1] == 3
    assert m["rapp_windows_scored_total"][arm1] == 1  # "scored" is the first windows key
    skipped = {dict(k)["reason"]: v for k, v in m["rapp_windows_skipped_total"].items()}
    assert set(skipped) == {"gap", "nan", "cycle_length", "unrouted"}
    assert m["rapp_score"][arm1] == 2.5
    assert m["rapp_score_threshold"][arm1] == 1.0
    assert math.isclose(m["rapp_score_smoothed"][arm1], 2.25)
    assert m["rapp_alarm_active"] == {arm1: 1.0, (("robot", "arm2"),): 0.0}
    raised = (("kind", "raise"), ("robot", "arm1"), ("severity", "critical"))
    assert m["rapp_alarm_events_total"][raised] == 1
    assert m["rapp_drift_ks"][arm1] == 0.5
    assert m["rapp_retraining_advised"][arm1] == 1
    assert m["rapp_score_last_window_timestamp_seconds"][arm1] == 1_700_000_101.0
    assert (("robot", "arm2"),) not in m["rapp_score"], "no window scored on arm2 yet"


def test_latency_histogram_buckets_are_cumulative():
    m = scrape(full_board())
    buckets = {dict(k)["le"]: v for k, v in m["rapp_window_latency_seconds_bucket"].items()}
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert buckets["0.001"] == 1 and buckets["0.005"] == 3 and buckets["10.0"] == 3
    assert buckets["+Inf"] == 4
    assert m["rapp_window_latency_seconds_count"][(("robot", "arm1"),)] == 4
    assert math.isclose(m["rapp_window_latency_seconds_sum"][(("robot", "arm1"),)], 20.0065)


def test_outbox_ota_broker_and_bundles():
    m = scrape(full_board())
    depth = {dict(k)["kind"]: v for k, v in m["rapp_outbox_messages"].items()}
    assert depth == {"alarm": 1, "event": 2, "telemetry": 30}
    assert m["rapp_outbox_telemetry_dropped_total"][()] == 4
    assert m["rapp_outbox_disk_full"][()] == 1
    assert m["rapp_outbox_oldest_message_age_seconds"][()] > 0
    states = {dict(k)["state"]: v for k, v in m["rapp_ota_state"].items()}
    assert set(states) == set(OTA_STATES) and states["staged"] == 1 and sum(states.values()) == 1
    assert m["rapp_ota_refusals_total"][(("kind", "unsigned"),)] == 2
    assert m["rapp_mqtt_connected"][()] == 1
    info = {dict(k)["bundle_id"]: dict(k) for k in m["rapp_bundle_info"]}
    assert info["b1"]["programs"] == "1,2" and info["b2"]["robot"] == "arm2"
    agent = dict(next(iter(m["rapp_agent_info"])))
    assert agent == {"device": "ipc1", "version": "0.1.0", "boot_id": "01BOOT"}
    assert m["rapp_agent_ready"][()] == 1


def test_before_the_first_snapshot_only_the_agent_metrics_are_exported():
    m = scrape(ViewBoard(("arm1",)))
    assert m["rapp_agent_ready"][()] == 0
    assert m["rapp_agent_start_time_seconds"][()] == IDENTITY.started
    assert not any(name.startswith(("rapp_frames", "rapp_score", "rapp_outbox")) for name in m)


def test_a_non_finite_score_is_exported_as_nan():
    board = ViewBoard(("arm1",))
    recorder = WindowRecorder()
    recorder.window(scored_window("arm1", float("nan"), 1.0, 0.001))
    board.publish(AgentFacts(StatusSnapshot()), recorder.freeze())
    assert math.isnan(scrape(board)["rapp_score"][(("robot", "arm1"),)])


def test_each_agent_has_its_own_registry():
    """Two collectors (two agents, e.g. across a reload) never share series."""
    first, second = full_board(), ViewBoard(("other",))
    assert "rapp_frames_received_total" in scrape(first)
    assert "rapp_frames_received_total" not in scrape(second)


def test_names_follow_the_prometheus_conventions():
    for spec in CATALOGUE:
        assert re.fullmatch(r"rapp_[a-z0-9_]+", spec.name), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert not spec.name.endswith("_info") or spec.kind in ("info", "gauge"), spec.name
        assert "robot" in spec.labels or not spec.name.startswith(("rapp_frames", "rapp_score"))
        assert spec.help.endswith("."), spec.name
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))


def test_docs_metrics_table_lists_exactly_the_catalogue():
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(rapp_[a-z0-9_]+)` \|", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted(s.name for s in CATALOGUE)
    for spec in CATALOGUE:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
        assert f"| {spec.kind} |" in row, row
