"""At start-up, before a robot is built: apply the model store's pointer to its bundles.

An installed bundle overrides the configured bundle of the same id, a new bundle id joins
the robot's archive; a bundle left in probation by a crash or kill is rolled back (it was
not proven); an active bundle that no longer loads falls back to the previous (or
configured) one. Each of these is reported on ``ota/status``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agent.core.bundle import BundleError, TrustPolicy, load_bundle
from agent.core.scoring import Scorer, ScoringError
from agent.models import ScorerSettings
from agent.ota.errors import StoreError
from agent.ota.status import OtaReporter
from agent.ota.store import PROBATION, ModelStore, PointerEntry
from agent.ota.transfer import DoneLog
from agent.pipeline.alarms import ModelRef

log = logging.getLogger("agent.ota")
RESTART_REASON = "the agent restarted during probation; the new bundle was not proven"


class InstalledBundles:
    """Loads what the store says each robot serves (see the module docstring)."""

    def __init__(
        self,
        store: ModelStore,
        policy: TrustPolicy,
        scoring: ScorerSettings,
        reporter: OtaReporter,
        done: DoneLog,
    ) -> None:
        self.store = store
        self.policy = policy
        self.scoring = scoring
        self.reporter = reporter
        self.done = done

    def scorers_for(self, robot: str, configured: Sequence[Scorer]) -> list[Scorer]:
        """The robot's scorers after applying the model store."""
        scorers = list(configured)
        try:
            entries = self.store.pointer(robot)
        except StoreError as err:
            log.error("ota: %s; serving the configured bundles", err)
            return scorers
        for bundle_id, entry in entries.items():
            scorer = self._load(robot, bundle_id, entry, scorers[0])
            if scorer is None:
                continue
            for i, current in enumerate(scorers):
                if current.bundle.bundle_id == bundle_id:
                    scorers[i] = scorer
                    break
            else:
                scorers.append(scorer)
        return scorers

    def _load(
        self, robot: str, bundle_id: str, entry: PointerEntry | None, reference: Scorer
    ) -> Scorer | None:
        if entry is not None and entry.state == PROBATION:
            self._rolled_back(robot, bundle_id, entry, RESTART_REASON)
            entry = self.store.pointer(robot).get(bundle_id)
        while entry is not None:
            path = self.store.path(robot, entry.active)
            try:
                bundle = load_bundle(path, self.policy)
                if bundle.bundle_id != bundle_id:
                    raise BundleError(f"holds bundle {bundle.bundle_id!r}, not {bundle_id!r}")
                if bundle.manifest.input != reference.bundle.manifest.input:
                    raise BundleError("its input spec differs from the robot's configured bundle")
                scorer = self.scoring.open(bundle)
            except (BundleError, ScoringError) as err:
                reason = f"installed bundle {path.name} failed to load at start: {err}"
                log.error("ota: robot %s: %s", robot, reason)
                self._rolled_back(robot, bundle_id, entry, reason)
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

    def _rolled_back(self, robot: str, bundle_id: str, entry: PointerEntry, reason: str) -> None:
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
