"""OtaManager: the agent's one handle on over-the-air updates.

The daemon calls it at four points, all on the main loop thread except the installer's own
worker:

- ``scorers_for(robot, configured)`` while building each robot at start: applies the model
  store's pointer (agent/ota/startup.py);
- ``start(link, robots)`` after the robots exist: subscribes to the device's and its groups'
  command topics and the chunk topics, starts the worker;
- ``run_pending()`` and ``observe(robot, result)`` / ``process_failed(robot, err)`` from
  ``Agent.step``: run the worker's requests (snapshot, swap) between chunks and judge
  probation on every scored window;
- ``stop()`` at shutdown.

It sees the daemon only through agent/ota/host.py and gets only OTA's slice of the
configuration; :meth:`OtaManager.open` reads the on-disk state. Commands must be signed by a
``[trust] keys`` key (agent/ota/authenticate.py); with ``allow_unsigned`` the start-up log
says that anyone on the broker can command updates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.core.bundle import TrustPolicy
from agent.core.scoring import Scorer
from agent.models import ScorerSettings
from agent.ota.activation import Activator
from agent.ota.authenticate import CommandAuthenticator
from agent.ota.fetch import UrlFetcher
from agent.ota.gate import RecentNormalGate
from agent.ota.hooks import OtaHooks
from agent.ota.host import Robots, Subscriber
from agent.ota.installer import Installer
from agent.ota.intake import IntakeParts, NeedRequests, TransferIntake
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation_board import ProbationBoard
from agent.ota.refusals import Refusals
from agent.ota.settings import OtaSettings
from agent.ota.startup import InstalledBundles
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog
from agent.ota.verify import Verifier
from agent.ota.versions import ServingVersions
from agent.pipeline.robot import PipelineResult
from agent.sinks.outbox import Outbox
from agent.sinks.topics import Topics

log = logging.getLogger("agent.ota")


class OtaManager:
    def __init__(
        self,
        settings: OtaSettings,
        *,
        state_dir: Path,
        device_id: str,
        scoring: ScorerSettings,
        policy: TrustPolicy,
        topics: Topics,
        outbox: Outbox | None,
        done: DoneLog,
        hooks: OtaHooks | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.scoring = scoring
        self.device_id = device_id
        self.topics = topics
        self.hooks = hooks or OtaHooks()
        self.store = ModelStore(state_dir)
        self.staging_root = Path(state_dir) / "ota" / "staging"
        self.done = done
        self.reporter = OtaReporter(device_id, topics, outbox)
        self.needs = NeedRequests(device_id, topics.ota_need, outbox)
        self.calls = MainLoopCalls()
        self.installed = InstalledBundles(self.store, policy, scoring, self.reporter, done)
        self.versions = ServingVersions(self.store)
        self.refusals_seen = Refusals()
        self.probations: ProbationBoard | None = None
        self.installer: Installer | None = None
        self.bundles_changed = False  # the daemon re-publishes meta when set

    @classmethod
    def open(
        cls,
        settings: OtaSettings,
        *,
        state_dir: Path,
        device_id: str,
        scoring: ScorerSettings,
        policy: TrustPolicy,
        topics: Topics,
        outbox: Outbox | None,
        hooks: OtaHooks | None = None,
    ) -> OtaManager:
        """The manager of the agent whose state lives in ``state_dir`` (reads ``done.json``)."""
        return cls(
            settings,
            state_dir=state_dir,
            device_id=device_id,
            scoring=scoring,
            policy=policy,
            topics=topics,
            outbox=outbox,
            done=DoneLog.load(Path(state_dir) / "ota" / "done.json"),
            hooks=hooks,
        )

    def _changed(self) -> None:
        self.bundles_changed = True

    # -- start-up ---------------------------------------------------------------------------

    def scorers_for(self, robot: str, configured: Sequence[Scorer]) -> list[Scorer]:
        """The robot's scorers after applying the model store (agent/ota/startup.py)."""
        self.versions.note_configured(robot, configured)
        return self.installed.scorers_for(robot, configured)

    def start(self, link: Subscriber | None, robots: Robots) -> None:
        """Subscribe to OTA topics and start the worker (needs MQTT and ``[ota] enabled``)."""
        if link is None or not self.settings.enabled:
            return
        if self.policy.allow_unsigned:
            log.warning(
                "ota: [trust] allow_unsigned = true: unsigned update commands are accepted, "
                "so anyone who can publish on the broker can push bundles to this device"
            )
        self.probations = ProbationBoard(
            self.settings, robots, self.store, self.done, self.reporter, self._changed
        )
        self.installer = self._installer(robots, self.probations)
        intake = self.installer.intake
        topics = self.topics
        link.subscribe(topics.ota_chunk_filter, intake.on_chunk)
        link.subscribe(topics.ota_cmd, intake.on_command)
        for group in self.settings.groups:
            link.subscribe(topics.group_ota_cmd(group), intake.on_command)
        self.installer.start()

    def _installer(self, robots: Robots, probations: ProbationBoard) -> Installer:
        halt = threading.Event()
        s = self.settings
        parts = IntakeParts(
            auth=CommandAuthenticator(self.policy, self.device_id, s.groups),
            versions=self.versions,
            fetcher=UrlFetcher(s.file_url_root, s.url_timeout_s),
            refusals=self.refusals_seen,
        )
        intake = TransferIntake(
            s, self.staging_root, self.done, self.reporter, self.needs, self.hooks, parts
        )
        gate = RecentNormalGate(s, robots, self.calls, halt)
        verifier = Verifier(
            s, self.policy, self.scoring, robots, gate, self.reporter, self.hooks, self.versions
        )
        activator = Activator(
            robots,
            self.store,
            self.done,
            self.reporter,
            self.calls,
            probations,
            self.hooks,
            self._changed,
        )
        return Installer(intake, verifier, activator, probations, halt)

    def stop(self) -> None:
        if self.installer is not None:
            self.installer.stop()
            log.info("ota: ignored messages this run: %s", self.refusals_seen.summary())

    def refusals(self) -> dict[str, int]:
        """How many commands / chunks were ignored this run, by kind (agent/ota/refusals.py)."""
        return self.refusals_seen.counts()

    # -- main loop --------------------------------------------------------------------------

    def run_pending(self) -> int:
        """Run the worker's requests and end probations whose time is over (main loop)."""
        ran = self.calls.run_pending()
        if self.probations is not None:
            self.probations.expire()
        return ran

    def observe(self, robot: str, result: PipelineResult) -> None:
        if self.probations is not None:
            self.probations.observe(robot, result.windows)

    def process_failed(self, robot: str, err: BaseException) -> bool:
        """A robot's pipeline raised. True if a bundle in probation was rolled back for it."""
        return self.probations is not None and self.probations.fail(robot, err)

    def status(self) -> dict[str, Any] | None:
        """The last OTA step this process reported (for the agent status payload)."""
        return self.reporter.last
