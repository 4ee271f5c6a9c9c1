"""The OTA worker: receive → download → verify → stage → swap, then hand over to probation.

One worker thread per agent runs every step that is slow or touches the disk, so the scoring
loop never waits for an update. It talks to the main loop only through
:class:`~agent.ota.mainloop.MainLoopCalls` (snapshot of recent normal windows, the swap) and
publishes every step through :class:`~agent.ota.status.OtaReporter`. Any failure before the
swap rejects the update with its reason and leaves the serving model untouched.

Verification, in order (cheap and most telling first):

1. size cap (``[ota] max_bundle_bytes``) — before a single chunk is accepted;
2. each chunk's length and sha256, then the whole file's size and sha256;
3. ``load_bundle`` with the agent's trust policy: signature against ``[trust] keys`` (an
   unsigned bundle only with ``allow_unsigned``), every file's sha256, the manifest schema,
   safe archive reading (no ``..``, absolute paths, links, oversized members), the minimum
   agent version;
4. the bundle id matches the command; the target robot exists (``robot`` of the command, or
   the manifest's robot id, or the device's only robot);
5. compatibility with the robot: the source delivers the bundle's channels, the sample rate
   matches, the input spec (segmentation, features) equals the robot's other bundles', and a
   ``schema_hash`` in the manifest's input section equals the channel map's;
6. the scorer opens on this device's backend and passes the golden canary;
7. the recent-normal gate: the candidate scores the robot's recent windows that did not alarm
   (the programs it serves), normalized with its own statistics; any non-finite score, or an
   alarm rate above ``max_normal_alarm_rate``, rejects it. If fewer than
   ``min_recent_windows`` are available the worker waits up to ``gate_wait_s`` for more, then
   gates on what there is (a new program may simply not have run yet) — probation still
   guards the swap — and says so in the log.

Then the bundle is written to the model store (immutable ``<sha256>.rapp``), ``staged`` is
reported, and the main loop swaps the route and writes the pointer in probation (``active``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import AgentConfig
from agent.core.bundle import Bundle, BundleError, Limits, TrustPolicy, load_bundle
from agent.core.bundle.archive import DEFAULT_MAX_MEMBER_BYTES
from agent.core.scoring import Scorer, ScoringError, open_scorer
from agent.models import ModelLoadError, column_selection
from agent.ota import failpoints
from agent.ota.errors import OtaError, TransferError
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation import Probation
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog, Staging, TransferCommand, check_whole, parse_command
from agent.pipeline.alarms import ModelRef, new_event_id
from agent.sinks.mqtt.payloads import iso_utc
from agent.sources.base import SourceError
from agent.sources.factory import channel_map_for

log = logging.getLogger("agent.ota")
POLL_S = 0.2
NEED_SCHEMA = "rapp/ota_need/v1"  # agent/schemas/ota_need.json


@dataclass
class _Active:
    staging: Staging
    last_progress: float
    last_need: float


class Installer:
    """Owns the OTA worker thread of one agent (see the module docstring)."""

    def __init__(
        self,
        agent: Any,  # agent.daemon.Agent (robots, config, topics, outbox)
        config: AgentConfig,
        policy: TrustPolicy,
        store: ModelStore,
        reporter: OtaReporter,
        calls: MainLoopCalls,
        probations: dict[tuple[str, str], Probation],
        done: DoneLog,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.agent = agent
        self.config = config
        self.ota = config.ota
        self.policy = policy
        self.store = store
        self.reporter = reporter
        self.calls = calls
        self.probations = probations
        self.staging_root = Path(config.agent.state_dir) / "ota" / "staging"
        self.done = done
        self.on_change = on_change
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._pending: list[TransferCommand] = []
        self._active: _Active | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- inputs (any thread) ----------------------------------------------------------------

    def on_command(self, topic: str, payload: bytes) -> None:
        if payload:  # an empty retained message clears a command; nothing to do
            self._events.put(("cmd", payload))

    def on_chunk(self, topic: str, payload: bytes) -> None:
        parts = topic.rsplit("/", 2)
        if len(parts) == 3 and parts[2].isdigit():
            self._events.put(("chunk", parts[1], int(parts[2]), payload))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ota-installer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._halt.set()
        self._events.put(("halt",))
        if self._thread is not None:
            self._thread.join(timeout)

    # -- worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        for staging in Staging.resume_all(self.staging_root):
            if self.done.get(staging.command.transfer_id) is not None:
                staging.remove()
                continue
            log.info("ota %s: resuming after restart", staging.command.transfer_id)
            self._pending.append(staging.command)
        while not self._halt.is_set():
            try:
                self._iterate()
            except Exception as err:  # disk full, a bug: fail this update, keep the worker
                log.exception("ota: unexpected error")
                try:
                    if self._active is not None:
                        self._reject(self._active.staging.command, f"agent error: {err}")
                except Exception:
                    log.exception("ota: could not report the error")
                    self._active = None
                    self._halt.wait(1.0)

    def _iterate(self) -> None:
        # One update at a time, including its probation: a bundle is judged alone, and the
        # store's prune at commit never races a bundle being staged.
        if self._active is None and self._pending and not self.probations:
            self._begin(self._pending.pop(0))
            return
        try:
            event = self._events.get(timeout=POLL_S)
        except queue.Empty:
            event = None
        if event is not None:
            self._handle(event)
        self._tick()

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "cmd":
            try:
                command = parse_command(event[1])
            except TransferError as err:
                log.warning("ota: ignoring a malformed command: %s", err)
                return
            tid = command.transfer_id
            known = self.done.get(tid)
            if known is not None:
                log.info("ota %s: already %s; ignoring the re-delivered command", tid, known[0])
                return
            if (self._active and self._active.staging.command.transfer_id == tid) or any(
                c.transfer_id == tid for c in self._pending
            ):
                return
            self._pending.append(command)
        elif kind == "chunk" and self._active is not None:
            _, tid, index, data = event
            staging = self._active.staging
            if tid != staging.command.transfer_id:
                return
            try:
                if staging.add(index, data):
                    self._active.last_progress = time.monotonic()
            except TransferError as err:
                self._reject(staging.command, str(err))
                return
            if not staging.missing():
                self._install_from_staging()

    def _tick(self) -> None:
        active = self._active
        if active is None:
            return
        now = time.monotonic()
        if now - active.last_progress > self.ota.transfer_timeout_s:
            missing = len(active.staging.missing())
            self._reject(
                active.staging.command,
                f"transfer incomplete: {missing} of {active.staging.command.n_chunks} chunk(s) "
                f"missing after {self.ota.transfer_timeout_s:g} s without progress",
            )
            return
        quiet = now - max(active.last_progress, active.last_need)
        if quiet >= self.ota.need_interval_s:
            active.last_need = now
            self._publish_need(active.staging)

    def _begin(self, command: TransferCommand) -> None:
        ref = ModelRef(command.bundle_id, command.version or "?")
        self.reporter.report(
            "received", command.transfer_id, robot=command.robot, bundle=ref,
            total_bytes=command.size, received_bytes=0,
        )  # fmt: skip
        if command.size > self.ota.max_bundle_bytes:
            self._reject(
                command,
                f"bundle is {command.size} bytes, over this device's limit of "
                f"{self.ota.max_bundle_bytes} ([ota] max_bundle_bytes)",
            )
            return
        if command.url is not None:
            self._install_from_url(command)
            return
        staging = Staging(self.staging_root, command)
        now = time.monotonic()
        self._active = _Active(staging, last_progress=now, last_need=now)
        failpoints.reach("downloading")
        self.reporter.report(
            "downloading", command.transfer_id, robot=command.robot, bundle=ref,
            received_bytes=staging.received_bytes, total_bytes=command.size,
        )  # fmt: skip
        if not staging.missing():
            self._install_from_staging()
        elif staging.received_bytes:  # resumed: ask for what is missing right away
            self._publish_need(staging)

    def _publish_need(self, staging: Staging) -> None:
        outbox = self.agent.outbox
        if outbox is None:
            return
        payload = {
            "schema": NEED_SCHEMA,
            "id": new_event_id(),
            "device": self.config.agent.device_id,
            "ts": iso_utc(time.time()),
            "transfer_id": staging.command.transfer_id,
            "missing": staging.missing(),
        }
        outbox.put_json(self.agent.topics.ota_need, payload, kind="telemetry", qos=0)

    def _install_from_url(self, command: TransferCommand) -> None:
        ref = ModelRef(command.bundle_id, command.version or "?")
        self.reporter.report(
            "downloading", command.transfer_id, robot=command.robot, bundle=ref,
            received_bytes=0, total_bytes=command.size,
        )  # fmt: skip
        try:
            context = ssl.create_default_context()  # verifies certificates and host names
            with urllib.request.urlopen(command.url, timeout=60, context=context) as response:
                data = response.read(self.ota.max_bundle_bytes + 1)
            data = check_whole(command, data)
        except (OSError, ValueError) as err:
            self._reject(command, f"download of {command.url} failed: {err}")
            return
        except TransferError as err:
            self._reject(command, str(err))
            return
        self._install(command, data, None)

    def _install_from_staging(self) -> None:
        assert self._active is not None
        staging = self._active.staging
        try:
            data = staging.assemble()
        except TransferError as err:
            self._reject(staging.command, str(err))
            return
        self._install(staging.command, data, staging)

    # -- verify, stage, swap --------------------------------------------------------------

    def _install(self, command: TransferCommand, data: bytes, staging: Staging | None) -> None:
        ref = ModelRef(command.bundle_id, command.version or "?")
        self.reporter.report(
            "verifying", command.transfer_id, robot=command.robot, bundle=ref,
            received_bytes=len(data), total_bytes=command.size,
        )  # fmt: skip
        failpoints.reach("verifying")
        try:
            robot, scorer = self._verify(command, data)
            ref = ModelRef(scorer.bundle.bundle_id, scorer.bundle.manifest.bundle_version)
            sha = self.store.put(robot, data)
            warnings = scorer.bundle.warnings
            self.reporter.report(
                "staged", command.transfer_id, robot=robot, bundle=ref, warnings=warnings
            )
            failpoints.reach("staged")
            self.calls.call(lambda: self._swap(command, robot, scorer, sha))
        except OtaError as err:
            if self._halt.is_set():  # stopping: keep the staging dir, resume after restart
                log.info("ota %s: interrupted by shutdown; resumes at start", command.transfer_id)
                return
            self._reject(command, str(err), robot=command.robot)
            return
        if staging is not None:
            staging.remove()
        self._active = None

    def _verify(self, command: TransferCommand, data: bytes) -> tuple[str, Scorer]:
        cap = self.ota.max_bundle_bytes
        try:
            bundle = load_bundle(data, self.policy, Limits(min(DEFAULT_MAX_MEMBER_BYTES, cap), cap))
        except BundleError as err:
            raise OtaError(f"invalid bundle: {err}") from err
        if bundle.bundle_id != command.bundle_id:
            raise OtaError(
                f"the bundle's id is {bundle.bundle_id!r} but the command announced "
                f"{command.bundle_id!r}"
            )
        robot = self._target_robot(command, bundle)
        self._check_compatible(robot, bundle)
        agent = self.config.agent
        try:
            scorer = open_scorer(bundle, agent.backend, agent.precision, agent.threads)
        except (ScoringError, BundleError) as err:
            raise OtaError(f"canary failed on this device: {err}") from err
        self._gate(command, robot, scorer)
        return robot, scorer

    def _target_robot(self, command: TransferCommand, bundle: Bundle) -> str:
        robots = self.agent.robots
        if command.robot is not None:
            if command.robot not in robots:
                raise OtaError(
                    f"robot {command.robot!r} is not on this device (it has {', '.join(robots)})"
                )
            return command.robot
        if bundle.manifest.robot in robots:
            return bundle.manifest.robot
        if len(robots) == 1:
            return next(iter(robots))
        raise OtaError(
            f"bundle is for robot {bundle.manifest.robot!r}, which is not on this device "
            f"({', '.join(robots)}); push with --robot"
        )

    def _check_compatible(self, robot: str, bundle: Bundle) -> None:
        runtime = self.agent.robots[robot]
        spec, want = bundle.manifest.input, runtime.pipeline.spec
        try:
            column_selection(runtime.source.channels, bundle)
        except ModelLoadError as err:
            raise OtaError(f"channel map mismatch: {err}") from err
        if spec.channels != want.channels:
            raise OtaError(
                f"channel map mismatch: bundle channels {list(spec.channels)}, robot {robot!r} "
                f"is scored on {list(want.channels)}"
            )
        if abs(spec.sample_rate_hz - want.sample_rate_hz) > 1e-6 * want.sample_rate_hz:
            raise OtaError(
                f"channel map mismatch: bundle expects {spec.sample_rate_hz:g} Hz, robot "
                f"{robot!r} samples at {want.sample_rate_hz:g} Hz"
            )
        if spec != want:
            raise OtaError(
                f"input spec mismatch: the bundle's segmentation/features differ from robot "
                f"{robot!r}'s ({spec.segmentation} vs {want.segmentation})"
            )
        declared = bundle.manifest.raw.get("input", {}).get("schema_hash")
        actual = None
        if declared is not None:
            try:
                channel_map = channel_map_for(self.config, runtime.config)
            except SourceError as err:
                raise OtaError(f"cannot read robot {robot!r}'s channel map: {err}") from err
            actual = channel_map.schema_hash if channel_map is not None else None
        if declared is not None and actual is not None and int(declared) != int(actual):
            raise OtaError(
                f"channel map mismatch: bundle schema hash {int(declared):#06x}, robot "
                f"{robot!r}'s channel map has {int(actual):#06x}"
            )

    def _gate(self, command: TransferCommand, robot: str, scorer: Scorer) -> None:
        pipeline = self.agent.robots[robot].pipeline
        programs = set(scorer.bundle.manifest.programs)

        def snapshot() -> list:
            segs = list(pipeline.recent_normal)
            return [s for s in segs if not programs or s.program in programs]

        deadline = time.monotonic() + self.ota.gate_wait_s
        segments = self.calls.call(snapshot)
        while len(segments) < self.ota.min_recent_windows and time.monotonic() < deadline:
            if self._halt.wait(0.5):
                raise OtaError("agent stopping")
            segments = self.calls.call(snapshot)
        if len(segments) < self.ota.min_recent_windows:
            log.warning(
                "ota %s: only %d recent normal window(s) for the gate (want %d); relying on "
                "probation",
                command.transfer_id,
                len(segments),
                self.ota.min_recent_windows,
            )
        if not segments:
            return
        norm = scorer.bundle.normalization
        scores = scorer.score_segments(
            [dataclasses.replace(s, samples=norm.apply(s.samples)) for s in segments]
        )
        name = scorer.bundle.manifest.alarm.score
        values = scores.get(name)
        if not np.isfinite(values).all():
            raise OtaError(
                f"non-finite {name} scores on {int((~np.isfinite(values)).sum())} of "
                f"{len(values)} recent normal windows"
            )
        rate = float((values >= scorer.thresholds[name]).mean())
        if rate > self.ota.max_normal_alarm_rate:
            raise OtaError(
                f"alarms on {rate:.1%} of {len(values)} recent normal windows (limit "
                f"{self.ota.max_normal_alarm_rate:.1%}); the model does not fit this robot"
            )
        log.info(
            "ota %s: gate passed on %d recent normal windows (%.1f%% above threshold)",
            command.transfer_id,
            len(values),
            100 * rate,
        )

    def _swap(self, command: TransferCommand, robot: str, scorer: Scorer, sha: str) -> None:
        """Main loop: serve the candidate, write the pointer (probation), report ``active``.

        All on the main loop, before the next chunk is scored: a probation verdict can only
        come after ``active`` was reported and recorded.
        """
        pipeline = self.agent.robots[robot].pipeline
        manifest = scorer.bundle.manifest
        replaced = pipeline.install(failpoints.on_activation(scorer))
        try:
            self.store.activate(
                robot, manifest.bundle_id, sha, manifest.bundle_version, command.transfer_id
            )
        except BaseException:
            if replaced is not None:
                pipeline.restore(replaced)
            else:
                pipeline.remove(manifest.bundle_id)
            raise
        self.on_change()
        self.done.record(command.transfer_id, "active")
        model = ModelRef(manifest.bundle_id, manifest.bundle_version)
        self.reporter.report(
            "active", command.transfer_id, robot=robot, bundle=model,
            previous=replaced.model if replaced is not None else None,
            warnings=scorer.bundle.warnings,
        )  # fmt: skip
        self.probations[(robot, manifest.bundle_id)] = Probation(
            robot=robot,
            model=model,
            transfer_id=command.transfer_id,
            previous_route=replaced,
            windows=self.ota.probation_windows,
            max_alarm_rate=self.ota.probation_max_alarm_rate,
            max_latency_s=self.ota.probation_max_latency_s,
            max_s=self.ota.probation_max_s,
        )

    def _reject(self, command: TransferCommand, reason: str, robot: str | None = None) -> None:
        ref = ModelRef(command.bundle_id, command.version or "?")
        self.reporter.report(
            "rejected", command.transfer_id, robot=robot or command.robot, bundle=ref,
            reason=reason,
        )  # fmt: skip
        self.done.record(command.transfer_id, "rejected", reason)
        if self._active is not None and self._active.staging.command.transfer_id == (
            command.transfer_id
        ):
            self._active.staging.remove()
            self._active = None
        else:
            Staging.discard(self.staging_root, command.transfer_id)
