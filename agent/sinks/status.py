"""The device's status and meta payloads, assembled on the main loop from snapshots.

The MQTT network thread publishes ``status`` (on connect, on a timer, at stop) but must never
read live pipeline or source objects, which the main loop mutates. So the main loop writes a
:class:`StatusSnapshot` of every robot into a :class:`StatusBoard` (one atomic reference swap)
and the MQTT thread builds payloads from the latest snapshot only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.pipeline.robot import RobotPipeline
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    BundleInfo,
    ChannelMeta,
    FrameCounters,
    RobotHealth,
    RobotMeta,
    StatusState,
    build_meta,
    build_status,
)
from agent.sinks.outbox import OutboxStats
from agent.sources.base import QueueStats, SourceStatus


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything ``status`` reports, frozen at one point of the main loop."""

    bundles: tuple[BundleInfo, ...] = ()
    robots: Mapping[str, RobotHealth] = field(default_factory=dict)


def bundle_infos(robot: str, pipeline: RobotPipeline) -> list[BundleInfo]:
    return [
        BundleInfo(
            robot=robot,
            bundle_id=route.model.bundle_id,
            version=route.model.version,
            programs=tuple(str(p) for p in sorted(route.programs)),
        )
        for route in pipeline.routes
    ]


def robot_health(pipeline: RobotPipeline, source: SourceStatus, queue: QueueStats) -> RobotHealth:
    """One robot's health: frame counters of its source, window counters, drift."""
    c = source.counters
    seg = pipeline.segmenter.stats
    stats = pipeline.stats
    drift, advised = pipeline.drift_summary()
    return RobotHealth(
        frames=FrameCounters(
            ok=c.get("frames_ok", c.get("samples", 0)),
            crc_errors=c.get("crc_errors", 0),
            sequence_gaps=c.get("sequence_gaps", 0),
            resyncs=c.get("resyncs", 0),
        ),
        alarm_active=pipeline.active_alarm() is not None,
        windows={
            "scored": stats.windows,
            "gaps": seg.gaps,
            "skipped_gap": seg.skipped_gap,
            "interpolated": seg.interpolated,
            "skipped_nan": seg.skipped_nan,
            "skipped_cycle_length": seg.skipped_cycle_length,
            "unrouted": stats.unrouted,
            "unknown_program": stats.unknown_program,
            "membership_routed": stats.membership_routed,
            "non_finite": stats.non_finite,
            "queue_dropped": queue.dropped,
            "source_connected": int(source.connected),
            "reconnects": c.get("reconnects", 0),
        },
        drift=drift,
        retraining_advised=advised,
    )


def robot_meta(
    robot: str, pipeline: RobotPipeline, source_kind: str, bundles: list[BundleInfo]
) -> RobotMeta:
    spec = pipeline.spec
    return RobotMeta(
        robot=robot,
        sample_rate_hz=spec.sample_rate_hz,
        channels=[
            ChannelMeta(name, unit) for name, unit in zip(spec.channels, spec.units, strict=True)
        ],
        bundles=bundles,
        source=source_kind,
    )


class StatusBoard:
    """The latest snapshot (main loop writes, any thread reads) and the status payload."""

    def __init__(
        self, identity: AgentIdentity, outbox_stats: Callable[[], OutboxStats | None]
    ) -> None:
        self._identity = identity
        self._outbox_stats = outbox_stats
        self._lock = threading.Lock()
        self._snapshot = StatusSnapshot()

    @property
    def snapshot(self) -> StatusSnapshot:
        with self._lock:
            return self._snapshot

    def update(self, snapshot: StatusSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def status_payload(self, state: StatusState) -> dict[str, Any]:
        """For the MQTT thread: the last snapshot plus the outbox's own (thread-safe) stats."""
        snap = self.snapshot
        return build_status(
            state,
            self._identity,
            bundles=snap.bundles,
            outbox=self._outbox_stats(),
            robots=snap.robots,
        )

    def meta_payload(self, robots: list[RobotMeta]) -> dict[str, Any]:
        return build_meta(self._identity, robots)
