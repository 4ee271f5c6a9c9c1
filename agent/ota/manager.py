"""OtaManager: the agent's one handle on over-the-air updates.

The daemon calls it at four points, all on the main loop thread except the installer's own
worker:

- ``scorers_for(robot, configured)`` while building each robot at start: applies the model
  store's pointer (an installed bundle overrides the configured bundle of the same id, a new
  bundle id joins the robot's archive), rolls back a bundle left in probation by a crash or
  kill, and falls back to the previous (or configured) bundle if the active one no longer
  loads — reporting each of these on ``ota/status``;
- ``start(link)`` after the robots exist: subscribes to the device's and its groups' command
  topics and the chunk topics, starts the worker;
- ``run_pending()`` and ``observe(robot, result)`` / ``process_failed(robot, err)`` from
  ``Agent.step``: run the worker's requests (snapshot, swap) between chunks and judge
  probation on every scored window;
- ``stop()`` at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.core.bundle import BundleError, TrustPolicy, load_bundle
from agent.core.scoring import Scorer, ScoringError, open_scorer
from agent.ota.errors import StoreError
from agent.ota.installer import Installer
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation import Probation, Verdict
from agent.ota.status import OtaReporter
from agent.ota.store import PROBATION, ModelStore, PointerEntry
from agent.ota.transfer import DoneLog
from agent.pipeline.alarms import ModelRef
from agent.pipeline.robot import PipelineResult

log = logging.getLogger("agent.ota")
RESTART_REASON = "the agent restarted during probation; the new bundle was not proven"


class OtaManager:
    def __init__(self, agent: Any, config: AgentConfig, policy: TrustPolicy) -> None:
        self.agent = agent
        self.config = config
        self.policy = policy
        self.store = ModelStore(config.agent.state_dir)
        self.reporter = OtaReporter(config.agent.device_id, agent.sinks.topics, agent.sinks.outbox)
        self.calls = MainLoopCalls()
        self.probations: dict[tuple[str, str], Probation] = {}
        self.done = DoneLog(Path(config.agent.state_dir) / "ota" / "done.json")
        self.installer: Installer | None = None
        self.bundles_changed = False  # the daemon re-publishes meta when set

    def _changed(self) -> None:
        self.bundles_changed = True

    # -- start-up ---------------------------------------------------------------------------

    def scorers_for(self, robot: str, configured: Sequence[Scorer]) -> list[Scorer]:
        """The robot's scorers after applying the model store (see the module docstring)."""
        scorers = list(configured)
        try:
            entries = self.store.pointer(robot)
        except StoreError as err:
            log.error("ota: %s; serving the configured bundles", err)
            return scorers
        for bundle_id, entry in entries.items():
            scorer = self._load_installed(robot, bundle_id, entry, scorers[0])
            if scorer is None:
                continue
            for i, current in enumerate(scorers):
                if current.bundle.bundle_id == bundle_id:
                    scorers[i] = scorer
                    break
            else:
                scorers.append(scorer)
        return scorers

    def _load_installed(
        self, robot: str, bundle_id: str, entry: PointerEntry | None, reference: Scorer
    ) -> Scorer | None:
        if entry is not None and entry.state == PROBATION:
            self._rolled_back_at_start(robot, bundle_id, entry, RESTART_REASON)
            entry = self.store.pointer(robot).get(bundle_id)
        while entry is not None:
            path = self.store.path(robot, entry.active)
            try:
                bundle = load_bundle(path, self.policy)
                if bundle.bundle_id != bundle_id:
                    raise BundleError(f"holds bundle {bundle.bundle_id!r}, not {bundle_id!r}")
                if bundle.manifest.input != reference.bundle.manifest.input:
                    raise BundleError("its input spec differs from the robot's configured bundle")
                agent = self.config.agent
                scorer = open_scorer(bundle, agent.backend, agent.precision, agent.threads)
            except (BundleError, ScoringError) as err:
                reason = f"installed bundle {path.name} failed to load at start: {err}"
                log.error("ota: robot %s: %s", robot, reason)
                self._rolled_back_at_start(robot, bundle_id, entry, reason)
                entry = self.store.pointer(robot).get(bundle_id)
                continue
            log.info(
                "ota: robot %s serves installed %s v%s (%s)",
                robot,
                bundle_id,
                bundle.manifest.bundle_version,
                entry.state,
            )
            return scorer
        return None

    def _rolled_back_at_start(
        self, robot: str, bundle_id: str, entry: PointerEntry, reason: str
    ) -> None:
        restored = self.store.rollback(robot, bundle_id)
        tid = entry.transfer_id or "startup"
        previous = ModelRef(bundle_id, restored.version or "?") if restored else None
        self.reporter.report(
            "rolled_back",
            tid,
            robot=robot,
            bundle=ModelRef(bundle_id, entry.version or "?"),
            previous=previous,
            reason=reason,
        )
        if entry.transfer_id:
            self.done.record(entry.transfer_id, "rolled_back", reason)

    def start(self, link: Any) -> None:
        """Subscribe to OTA topics and start the worker (needs MQTT and ``[ota] enabled``)."""
        if link is None or not self.config.ota.enabled:
            return
        self.installer = Installer(
            self.agent,
            self.config,
            self.policy,
            self.store,
            self.reporter,
            self.calls,
            self.probations,
            self.done,
            self._changed,
        )
        topics = self.agent.topics
        link.subscribe(topics.ota_chunk_filter, self.installer.on_chunk)
        link.subscribe(topics.ota_cmd, self.installer.on_command)
        for group in self.config.ota.groups:
            link.subscribe(topics.group_ota_cmd(group), self.installer.on_command)
        self.installer.start()

    def stop(self) -> None:
        if self.installer is not None:
            self.installer.stop()

    # -- main loop --------------------------------------------------------------------------

    def run_pending(self) -> int:
        """Run the worker's requests and end probations whose time is over (main loop)."""
        ran = self.calls.run_pending()
        for key, probation in list(self.probations.items()):
            verdict = probation.expired()
            if verdict is not None:
                self._decide(key, probation, verdict)
        return ran

    def observe(self, robot: str, result: PipelineResult) -> None:
        for key, probation in list(self.probations.items()):
            if key[0] == robot and result.windows:
                verdict = probation.observe(result.windows)
                if verdict is not None:
                    self._decide(key, probation, verdict)

    def process_failed(self, robot: str, err: BaseException) -> bool:
        """A robot's pipeline raised. True if a bundle in probation was rolled back for it."""
        handled = False
        for key, probation in list(self.probations.items()):
            if key[0] == robot:
                self._decide(key, probation, probation.error(err))
                handled = True
        return handled

    def _decide(self, key: tuple[str, str], probation: Probation, verdict: Verdict) -> None:
        del self.probations[key]
        self._changed()
        robot, bundle_id = key
        tid = probation.transfer_id
        if verdict.committed:
            if verdict.reason:
                log.info("ota %s: %s", tid, verdict.reason)
            self.store.commit(robot, bundle_id)
            self.done.record(tid, "committed")
            previous = probation.previous_route.model if probation.previous_route else None
            self.reporter.report(
                "committed", tid, robot=robot, bundle=probation.model, previous=previous
            )
            return
        pipeline = self.agent.robots[robot].pipeline
        if probation.previous_route is not None:
            pipeline.restore(probation.previous_route)
        else:
            pipeline.remove(bundle_id)
        self.store.rollback(robot, bundle_id)
        self.done.record(tid, "rolled_back", verdict.reason)
        self.reporter.report(
            "rolled_back",
            tid,
            robot=robot,
            bundle=probation.model,
            previous=probation.previous_route.model if probation.previous_route else None,
            reason=verdict.reason,
        )

    def status(self) -> dict[str, Any] | None:
        """The last OTA step this process reported (for the agent status payload)."""
        return self.reporter.last
