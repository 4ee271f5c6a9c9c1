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
from pathlib import Path

import numpy as np

from agent import __version__
from agent.config import AgentConfig, ConfigError, RobotConfig
from agent.models import (
    ScorerCache,
    ScorerSettings,
    column_selection,
    load_robot_scorers,
    trust_policy,
)
from agent.ota.hooks import OtaHooks
from agent.ota.manager import OtaManager
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.capture import WindowCapture
from agent.pipeline.drift import DriftError, DriftSettings
from agent.pipeline.robot import PipelineOptions, RobotPipeline
from agent.runtime import RobotRuntime
from agent.sdnotify import SdNotifier, WatchdogGate
from agent.sinks.homeassistant.announcer import sync_discovery
from agent.sinks.http.server import HttpEndpoint
from agent.sinks.http.view import AgentFacts, outbox_stats
from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.payloads import AgentIdentity, BundleInfo, RobotHealth
from agent.sinks.outbox import Outbox
from agent.sinks.publisher import ResultPublisher
from agent.sinks.sparkplug.edge import SparkplugEdge
from agent.sinks.status import (
    StatusBoard,
    StatusSnapshot,
    bundle_infos,
    robot_health,
    robot_meta,
)
from agent.sinks.topics import Topics
from agent.sources.base import ChunkQueue, SampleChunk
from agent.sources.factory import build_source, channel_map_for

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.05


def pipeline_options(robot: RobotConfig) -> PipelineOptions:
    """Threshold mode, drift limits and the optional capture from the robot's tables."""
    d = robot.drift
    capture = None
    if d.capture_dir:
        try:
            capture = WindowCapture.open(
                d.capture_dir, d.capture_max_windows, max_bytes=int(d.capture_max_mb * 2**20)
            )
        except DriftError as err:
            raise ConfigError(f"robots[{robot.id}].drift.capture_dir: {err}") from err
    return PipelineOptions(
        threshold=robot.alarm.threshold,
        drift=DriftSettings(window=d.window, min_windows=d.min_windows, ks_limit=d.ks_limit),
        capture=capture,
    )


def health_line(snapshot: StatusSnapshot) -> str:
    """One line of per-robot counters for the debug log."""
    parts = []
    for robot, h in snapshot.robots.items():
        parts.append(
            f"{robot} frames {h.frames.ok} (crc {h.frames.crc_errors}, gaps "
            f"{h.frames.sequence_gaps}), windows {h.windows.get('scored', 0)}, alarm "
            f"{'active' if h.alarm_active else 'clear'}"
        )
    return "; ".join(parts) or "no robots"


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        notifier: SdNotifier | None = None,
        ota_hooks: OtaHooks | None = None,
    ) -> None:
        self.config = config
        self.ota_hooks = ota_hooks or OtaHooks()  # test launchers inject failpoints here
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
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._last_status = 0.0
        a = config.agent
        self.scorer_settings = ScorerSettings(a.backend, a.precision, a.threads)
        self.ota: OtaManager | None = None
        self.http: HttpEndpoint | None = None
        self.sparkplug: SparkplugEdge | None = None
        self.status_board = StatusBoard(
            self.identity, lambda: self.outbox.stats() if self.outbox is not None else None
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        state = Path(self.config.agent.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if self.config.mqtt is not None:
            self.outbox = Outbox.open(
                state / "outbox.sqlite3",
                telemetry_max_rows=self.config.telemetry.telemetry_limit,
            )
            self.link = MqttLink(self.config.mqtt, self.outbox, self.status_board.status_payload)
            self.link.start()
        if self.config.http is not None:  # before the bundles load: /healthz answers meanwhile
            ids = tuple(r.id for r in self.config.robots)
            self.http = HttpEndpoint.open(self.config.http, self.identity, ids)
        policy = trust_policy(self.config.trust.keys, self.config.trust.allow_unsigned)
        self.ota = OtaManager.open(
            self.config.ota,
            state_dir=state,
            device_id=self.config.agent.device_id,
            scoring=self.scorer_settings,
            policy=policy,
            topics=self.topics,
            outbox=self.outbox,
            hooks=self.ota_hooks,
        )
        self.ota.calls.on_put = self._wake.set
        # Built aside and assigned at once: the MQTT thread reads self.robots for status.
        scorers = ScorerCache()  # robots serving the same bundle share one scorer
        self.robots = {
            robot.id: self._build_robot(robot, policy, scorers) for robot in self.config.robots
        }
        self.publisher = ResultPublisher(
            self.identity,
            self.topics,
            self.outbox,
            tuple(self.robots),
            self.config.telemetry.score_interval_s,
        )
        if self.http is not None:
            self.http.watch(self.publisher)
        if self.outbox is not None:
            self.outbox.put_json(
                self.topics.meta, self._meta_payload(), kind="event", qos=1, retain=True
            )
            for robot, raised in self.publisher.unfinished_alarms().items():
                self.robots[robot].pipeline.resume_alarm(raised)
            self.publisher.publish_initial_state(self._active_alarm)
            robot_ids = tuple(self.robots)
            sync_discovery(
                self.config.homeassistant, self.identity, self.topics, robot_ids, self.outbox, state
            )
        self._refresh_status()
        self.sparkplug = self._start_sparkplug(state)
        self.ota.start(self.link, self.robots)
        for runtime in self.robots.values():
            runtime.source.start()
        self.notifier.ready(f"scoring {len(self.robots)} robot(s)")
        log.info("ready: %s", ", ".join(self.robots))

    def _build_robot(self, robot: RobotConfig, policy, cache: ScorerCache) -> RobotRuntime:
        channel_map = channel_map_for(robot.source, robot.id)
        rate = channel_map.sample_rate_hz if channel_map is not None else None
        scorers = load_robot_scorers(robot.bundles, policy, rate, self.scorer_settings, cache)
        if self.ota is not None:  # bundles installed over the air override / join these
            scorers = self.ota.scorers_for(robot.id, scorers)
        first = scorers[0].bundle
        pipeline = RobotPipeline(
            robot.id,
            scorers,
            AlarmSettings.from_bundle(first.manifest.alarm, robot.alarm),
            pipeline_options(robot),
        )
        queue = ChunkQueue(robot.source.queue_chunks)
        queue.on_put = self._wake.set
        source = build_source(
            robot.source,
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
        return RobotRuntime(robot, pipeline, source, queue, columns, channel_map=channel_map)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        """Return from :meth:`run` so the caller can re-read the config (SIGHUP)."""
        self._reload.set()
        self._wake.set()

    def take_reload_request(self) -> bool:
        requested = self._reload.is_set()
        self._reload.clear()
        return requested

    def stop(self, drain_timeout: float = 10.0, *, reloading: bool = False) -> None:
        if reloading:
            self.notifier.reloading("reloading the configuration")
        else:
            self.notifier.stopping("draining")
        if self.http is not None:
            self.http.mark_stopping()  # /readyz fails from here on
        if self.ota is not None:
            self.ota.stop()
        for runtime in self.robots.values():
            runtime.source.stop()
        self._drain_queues()
        for runtime in self.robots.values():
            runtime.pipeline.close()  # buffered capture of normal windows, if configured
        self._refresh_status()  # the `stopped` status carries the final counters
        if self.sparkplug is not None:
            self.sparkplug.stop()  # NDEATH
        if self.link is not None:
            drained = self.link.stop(drain_timeout=drain_timeout)
            if not drained:
                log.warning("outbox not fully drained at stop; it is kept on disk for next start")
        if self.outbox is not None:
            self.outbox.close()
        if self.http is not None:
            self.http.close()

    def _start_sparkplug(self, state: Path) -> SparkplugEdge | None:
        """The Sparkplug B edge node, if enabled: it follows the publisher's windows and
        alarms and connects in the background (births on connect)."""
        mqtt = self.config.mqtt
        if not self.config.sparkplug.enabled or mqtt is None or self.publisher is None:
            return None
        edge = SparkplugEdge.open(
            self.config.sparkplug, mqtt, tuple(self.robots), __version__, state
        )
        edge.follow(self.publisher, self._active_alarm)
        edge.observe_health(self.status_board.snapshot.robots)
        edge.start()
        return edge

    # -- main loop ------------------------------------------------------------------------

    def run(self, until: float | None = None) -> None:
        """Process until :meth:`request_stop` or :meth:`request_reload` (or ``until``, a
        monotonic deadline)."""
        while not self._stop.is_set() and not self._reload.is_set():
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
            self._maybe_http()

    def step(self) -> bool:
        """Process every queued chunk once; True if anything was processed."""
        progressed = False
        if self.ota is not None:
            self.ota.run_pending()  # OTA worker requests (snapshot, swap) between chunks
        for runtime in self.robots.values():
            # only what is queued now: a source that keeps the queue full (an unpaced
            # simulator or replay) must not keep status and the watchdog waiting forever
            for _ in range(len(runtime.queue)):
                chunk = runtime.queue.get(timeout=0)
                if chunk is None:
                    break
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
        return self.robots[robot].pipeline.active_alarm()

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
            self._refresh_status()
            self.link.publish_status()
            if log.isEnabledFor(logging.DEBUG):  # log_level = "debug": a periodic heartbeat
                log.debug("status: %s", health_line(self.status_board.snapshot))
            if self.sparkplug is not None:
                self.sparkplug.observe_health(self.status_board.snapshot.robots)

    def _maybe_http(self) -> None:
        """About once a second: a fresh status snapshot and the facts the HTTP endpoint
        serves, built here on the main loop (its threads read only this copy)."""
        if self.http is None or not self.http.due():
            return
        self._refresh_status()
        self.http.publish(
            AgentFacts(
                status=self.status_board.snapshot,
                alarms={robot: self._active_alarm(robot) for robot in self.robots},
                broker_connected=None if self.link is None else self.link.connected,
                outbox=outbox_stats(self.outbox),
                ota=None if self.ota is None else self.ota.status(),
                ota_refusals={} if self.ota is None else self.ota.refusals(),
            )
        )

    # -- status and meta (assembled here, on the main loop) ---------------------------------

    def snapshot(self) -> StatusSnapshot:
        """Freeze what ``status`` reports; the MQTT thread only ever reads this copy."""
        bundles: list[BundleInfo] = []
        robots: dict[str, RobotHealth] = {}
        for robot, runtime in self.robots.items():
            bundles += bundle_infos(robot, runtime.pipeline)
            robots[robot] = robot_health(
                runtime.pipeline, runtime.source.status(), runtime.queue.stats
            )
        return StatusSnapshot(bundles=tuple(bundles), robots=robots)

    def health(self) -> dict[str, RobotHealth]:
        return dict(self.snapshot().robots)

    def _refresh_status(self) -> None:
        self.status_board.update(self.snapshot())

    def _meta_payload(self) -> dict:
        robots = [
            robot_meta(
                robot,
                runtime.pipeline,
                runtime.config.source.kind,
                bundle_infos(robot, runtime.pipeline),
            )
            for robot, runtime in self.robots.items()
        ]
        return self.status_board.meta_payload(robots)
