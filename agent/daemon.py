"""The agent's lifecycle and main loop (Telegraf-style: sinks first, sources last).

start():  outbox → MQTT link (connects in the background) → bundles loaded and warmed up
          (canary) → pipelines → sources opened → READY=1.
run():    one thread takes chunks from the bounded source queues, runs each robot's
          pipeline, hands results to the publisher and pings the watchdog only on progress.
stop():   sources stopped → queued chunks processed → STOPPING=1 → outbox drained and
          ``stopped`` published → outbox closed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent import __version__
from agent.config import AgentConfig, ConfigError, RobotConfig, resolve
from agent.models import column_selection, load_robot_scorers, trust_policy
from agent.ota.manager import OtaManager
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.drift import DriftError, DriftSettings, WindowCapture
from agent.pipeline.robot import PipelineOptions, RobotPipeline
from agent.sdnotify import SdNotifier, WatchdogGate
from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    BundleInfo,
    ChannelMeta,
    FrameCounters,
    RobotHealth,
    RobotMeta,
    build_meta,
    build_status,
)
from agent.sinks.outbox import Outbox
from agent.sinks.publisher import ResultPublisher
from agent.sinks.topics import Topics
from agent.sources.base import ChunkQueue, SampleChunk, Source
from agent.sources.factory import build_source, channel_map_for

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.05


@dataclass
class RobotRuntime:
    config: RobotConfig
    pipeline: RobotPipeline
    source: Source
    queue: ChunkQueue
    columns: np.ndarray | None  # source column → bundle channel selection, None = identity


def alarm_settings(robot: RobotConfig, pipeline_defaults) -> AlarmSettings:
    """Bundle defaults, overridden by the robot's [robots.alarm] table."""
    o = robot.alarm
    return AlarmSettings(
        alpha=o.ewma_alpha if o.ewma_alpha is not None else pipeline_defaults.ewma_alpha,
        k=o.debounce_k if o.debounce_k is not None else pipeline_defaults.debounce_k,
        n=o.debounce_n if o.debounce_n is not None else pipeline_defaults.debounce_n,
        clear_ratio=(o.clear_ratio if o.clear_ratio is not None else pipeline_defaults.clear_ratio),
        clear_windows=o.clear_windows if o.clear_windows is not None else 5,
    )


def pipeline_options(config: AgentConfig, robot: RobotConfig) -> PipelineOptions:
    """Threshold mode, drift limits and the optional capture from the robot's tables."""
    d = robot.drift
    capture = None
    if d.capture_dir:
        try:
            capture = WindowCapture(resolve(config, d.capture_dir), d.capture_max_windows)
        except DriftError as err:
            raise ConfigError(f"robots[{robot.id}].drift.capture_dir: {err}") from err
    return PipelineOptions(
        threshold=robot.alarm.threshold,
        drift=DriftSettings(window=d.window, min_windows=d.min_windows, ks_limit=d.ks_limit),
        capture=capture,
    )


class Agent:
    def __init__(self, config: AgentConfig, notifier: SdNotifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or SdNotifier.from_env()
        self.watchdog = WatchdogGate(self.notifier)
        self.identity = AgentIdentity.create(config.agent.device_id, __version__)
        self.topics = Topics.for_device(
            config.agent.device_id, config.mqtt.topic_root if config.mqtt else "rapp/v1"
        )
        self.outbox: Outbox | None = None
        self.link: MqttLink | None = None
        self.robots: dict[str, RobotRuntime] = {}
        self.publisher: ResultPublisher | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_status = 0.0
        self.ota: OtaManager | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        state = Path(self.config.agent.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if self.config.mqtt is not None:
            self.outbox = Outbox(
                state / "outbox.sqlite3",
                telemetry_max_rows=self.config.telemetry.telemetry_limit,
            )
            self.link = MqttLink(self.config.mqtt, self.outbox, self._status_payload)
            self.link.start()
        policy = trust_policy(self.config)
        self.ota = OtaManager(self, self.config, policy)
        self.ota.calls.on_put = self._wake.set
        # Built aside and assigned at once: the MQTT thread reads self.robots for status.
        self.robots = {robot.id: self._build_robot(robot, policy) for robot in self.config.robots}
        self.publisher = ResultPublisher(
            self.identity,
            self.topics,
            self.outbox,
            tuple(self.robots),
            self.config.telemetry.score_interval_s,
        )
        if self.outbox is not None:
            self.outbox.put_json(
                self.topics.meta, self._meta_payload(), kind="event", qos=1, retain=True
            )
            for robot, raised in self.publisher.unfinished_alarms().items():
                self.robots[robot].pipeline.resume_alarm(raised)
            self.publisher.publish_initial_state(self._active_alarm)
        self.ota.start(self.link)
        for runtime in self.robots.values():
            runtime.source.start()
        self.notifier.ready(f"scoring {len(self.robots)} robot(s)")
        log.info("ready: %s", ", ".join(self.robots))

    def _build_robot(self, robot: RobotConfig, policy) -> RobotRuntime:
        channel_map = channel_map_for(self.config, robot)
        rate = channel_map.sample_rate_hz if channel_map is not None else None
        scorers = load_robot_scorers(self.config, robot.bundles, policy, rate)
        if self.ota is not None:  # bundles installed over the air override / join these
            scorers = self.ota.scorers_for(robot.id, scorers)
        first = scorers[0].bundle
        pipeline = RobotPipeline(
            robot.id,
            scorers,
            alarm_settings(robot, first.manifest.alarm),
            pipeline_options(self.config, robot),
        )
        queue = ChunkQueue(robot.source.queue_chunks)
        queue.on_put = self._wake.set
        source = build_source(
            self.config,
            robot,
            channel_map,
            queue,
            first.manifest.input.channels,
            first.manifest.input.sample_rate_hz,
            self.link.subscribe if self.link is not None else None,
        )
        columns = column_selection(source.channels, first)
        identity = np.arange(len(source.channels))
        if len(columns) == len(identity) and (columns == identity).all():
            columns = None
        return RobotRuntime(robot, pipeline, source, queue, columns)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, drain_timeout: float = 10.0) -> None:
        self.notifier.stopping("draining")
        if self.ota is not None:
            self.ota.stop()
        for runtime in self.robots.values():
            runtime.source.stop()
        self._drain_queues()
        for runtime in self.robots.values():
            runtime.pipeline.close()  # buffered capture of normal windows, if configured
        if self.link is not None:
            drained = self.link.stop(drain_timeout=drain_timeout)
            if not drained:
                log.warning("outbox not fully drained at stop; it is kept on disk for next start")
        if self.outbox is not None:
            self.outbox.close()

    # -- main loop ------------------------------------------------------------------------

    def run(self, until: float | None = None) -> None:
        """Process until :meth:`request_stop` (or ``until``, a monotonic deadline)."""
        while not self._stop.is_set():
            if until is not None and time.monotonic() >= until:
                break
            self._wake.clear()
            progressed = self.step()
            if not progressed:
                if self._idle():
                    self.watchdog.idle_ok()
                self._wake.wait(IDLE_WAIT_S)
            self.watchdog.maybe_ping()
            self._maybe_status()

    def step(self) -> bool:
        """Process every queued chunk once; True if anything was processed."""
        progressed = False
        if self.ota is not None:
            self.ota.run_pending()  # OTA worker requests (snapshot, swap) between chunks
        for runtime in self.robots.values():
            while (chunk := runtime.queue.get(timeout=0)) is not None:
                self._process(runtime, chunk)
                progressed = True
        if progressed:
            self.watchdog.progress()
        if self.ota is not None and self.ota.bundles_changed:
            self.ota.bundles_changed = False
            if self.outbox is not None:
                self.outbox.put_json(
                    self.topics.meta, self._meta_payload(), kind="event", qos=1, retain=True
                )
        return progressed

    def all_sources_finished(self) -> bool:
        return all(r.source.finished() and not len(r.queue) for r in self.robots.values())

    def _process(self, runtime: RobotRuntime, chunk: SampleChunk) -> None:
        if runtime.columns is not None:
            chunk = dataclasses.replace(chunk, samples=chunk.samples[:, runtime.columns])
        try:
            result = runtime.pipeline.process(chunk)
        except Exception as err:
            # A bundle in probation that breaks scoring is rolled back; anything else is a bug.
            if self.ota is None or not self.ota.process_failed(runtime.config.id, err):
                raise
            log.exception("robot %s: scoring failed during OTA probation", runtime.config.id)
            return
        if self.ota is not None:
            self.ota.observe(runtime.config.id, result)
        assert self.publisher is not None
        self.publisher.publish(result, self._active_alarm)

    def _active_alarm(self, robot: str):
        for route in self.robots[robot].pipeline.routes:
            if route.tracker.active is not None:
                return route.tracker.active
        return None

    def _idle(self) -> bool:
        # Nothing is waiting to be processed, so not pinging would mean the *source* is
        # quiet (unplugged board, stopped robot) — restarting the agent cannot fix that, and
        # the source reports it in status. A queue with chunks and no progress is a stall.
        return all(not len(r.queue) for r in self.robots.values())

    def _drain_queues(self) -> None:
        self.step()

    def _maybe_status(self) -> None:
        if self.link is None:
            return
        now = time.monotonic()
        if now - self._last_status >= self.config.telemetry.status_interval_s:
            self._last_status = now
            self.link.publish_status()

    # -- payloads (called from the MQTT thread) -------------------------------------------

    def bundle_infos(self) -> list[BundleInfo]:
        infos = []
        for robot, runtime in self.robots.items():
            for route in runtime.pipeline.routes:
                infos.append(
                    BundleInfo(
                        robot=robot,
                        bundle_id=route.model.bundle_id,
                        version=route.model.version,
                        programs=tuple(str(p) for p in sorted(route.programs)),
                    )
                )
        return infos

    def health(self) -> dict[str, RobotHealth]:
        out = {}
        for robot, runtime in self.robots.items():
            src = runtime.source.status()
            c = src.counters
            seg = runtime.pipeline.segmenter.stats
            stats = runtime.pipeline.stats
            drift, advised = runtime.pipeline.drift_summary()
            out[robot] = RobotHealth(
                frames=FrameCounters(
                    ok=c.get("frames_ok", c.get("samples", 0)),
                    crc_errors=c.get("crc_errors", 0),
                    sequence_gaps=c.get("sequence_gaps", 0),
                    resyncs=c.get("resyncs", 0),
                ),
                alarm_active=self._active_alarm(robot) is not None,
                windows={
                    "scored": stats.windows,
                    "skipped_gap": seg.skipped_gap,
                    "skipped_nan": seg.skipped_nan,
                    "skipped_cycle_length": seg.skipped_cycle_length,
                    "unrouted": stats.unrouted,
                    "unknown_program": stats.unknown_program,
                    "membership_routed": stats.membership_routed,
                    "non_finite": stats.non_finite,
                    "queue_dropped": runtime.queue.stats.dropped,
                    "source_connected": int(src.connected),
                    "reconnects": c.get("reconnects", 0),
                },
                drift=drift,
                retraining_advised=advised,
            )
        return out

    def _status_payload(self, state):
        return build_status(
            state,
            self.identity,
            bundles=self.bundle_infos(),
            outbox=self.outbox.stats() if self.outbox is not None else None,
            robots=self.health(),
        )

    def _meta_payload(self):
        robots = []
        for robot, runtime in self.robots.items():
            spec = runtime.pipeline.spec
            robots.append(
                RobotMeta(
                    robot=robot,
                    sample_rate_hz=spec.sample_rate_hz,
                    channels=[
                        ChannelMeta(name, unit)
                        for name, unit in zip(spec.channels, spec.units, strict=True)
                    ],
                    bundles=[b for b in self.bundle_infos() if b.robot == robot],
                    source=runtime.config.source.kind,
                )
            )
        return build_meta(self.identity, robots)
