"""What an agent leaves retained — status, meta, an active alarm, an OTA state — built with the
agent's own payload builders, for the `rapp-agent status` tests (broker and state dir)."""

from __future__ import annotations

from typing import Any

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    BundleInfo,
    ChannelMeta,
    FrameCounters,
    RobotHealth,
    RobotMeta,
    build_alarm_active,
    build_meta,
    build_ota_status,
    build_status,
)
from agent.sinks.outbox import OutboxStats
from agent.sinks.topics import Topics

DEVICE, ROBOT, QUIET_ROBOT = "cell7", "kr16", "kr6"
MODEL = ModelRef("kr16-p12", "2024.05.1")
BUNDLES = (BundleInfo(ROBOT, "kr16-p12", "2024.05.1", ("12",)), BundleInfo(QUIET_ROBOT, "kr6", "3"))
IDENTITY = AgentIdentity(DEVICE, "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)
NOW = 1_700_000_200.0


def _raised_alarm():
    tracker = AlarmTracker(ROBOT, AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    window = WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199, None, {"J2": 2.0, "J3": 1.0})
    raised = tracker.update(3.0, 1.0, window, MODEL)
    assert raised is not None
    return raised


def retained_payloads(topics: Topics | None = None) -> dict[str, dict[str, Any]]:
    """Topic → payload, as the agent of :data:`DEVICE` would have left them."""
    t = topics or Topics.for_device(DEVICE)
    health = {
        ROBOT: RobotHealth(
            frames=FrameCounters(ok=120_000, crc_errors=3, sequence_gaps=1, resyncs=1),
            alarm_active=True,
            windows={"scored": 1875, "skipped_gap": 2, "skipped_nan": 1},
            drift={"ks": 0.21},
        ),
        QUIET_ROBOT: RobotHealth(frames=FrameCounters(ok=119_000), windows={"scored": 1860}),
    }
    outbox = OutboxStats(
        alarm=0,
        event=1,
        telemetry=7,
        telemetry_dropped=0,
        enqueued_total=90,
        acked_total=82,
        oldest_created=NOW - 4,
    )
    channels = [ChannelMeta(f"J{i}", "A") for i in range(1, 7)]
    return {
        t.status: build_status(
            "online", IDENTITY, bundles=BUNDLES, outbox=outbox, robots=health, now=NOW
        ),
        t.meta: build_meta(
            IDENTITY,
            [
                RobotMeta(ROBOT, 1000.0, channels, BUNDLES[:1], "serial"),
                RobotMeta(QUIET_ROBOT, 1000.0, channels, BUNDLES[1:], "serial"),
            ],
            now=NOW - 100,
        ),
        t.alarm_active(ROBOT): build_alarm_active(DEVICE, ROBOT, _raised_alarm(), now=NOW),
        t.alarm_active(QUIET_ROBOT): build_alarm_active(DEVICE, QUIET_ROBOT, None, now=NOW),
        t.ota_status: build_ota_status(
            DEVICE, "committed", "t1700000000-abcd", robot=ROBOT, bundle=MODEL, now=NOW - 50
        ),
    }
