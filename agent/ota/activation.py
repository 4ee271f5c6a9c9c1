"""Activation of a verified bundle: into the model store, swapped in on the main loop, on
probation.

The bundle is written to the model store (immutable ``<sha256>.rapp``) and ``staged`` is
reported; then the main loop — between two chunks, so the old model serves until then —
installs the route, writes the pointer in probation, reports ``active`` and starts the
probation. All of that on the main loop, before the next chunk is scored: a probation verdict
can only come after ``active`` was reported and recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.core.scoring import Scorer
from agent.ota.command import TransferCommand
from agent.ota.errors import OtaError
from agent.ota.hooks import OtaHooks
from agent.ota.host import Robots
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation_board import ProbationBoard
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog
from agent.pipeline.alarms import ModelRef
from agent.pipeline.routes import ProgramConflictError


class Activator:
    """Stores and swaps in a verified candidate (see the module docstring)."""

    def __init__(
        self,
        robots: Robots,
        store: ModelStore,
        done: DoneLog,
        reporter: OtaReporter,
        calls: MainLoopCalls,
        probations: ProbationBoard,
        hooks: OtaHooks,
        on_change: Callable[[], None],
    ) -> None:
        self.robots = robots
        self.store = store
        self.done = done
        self.reporter = reporter
        self.calls = calls
        self.probations = probations
        self.hooks = hooks
        self.on_change = on_change

    def activate(self, command: TransferCommand, robot: str, scorer: Scorer, data: bytes) -> None:
        """Store ``data`` and swap ``scorer`` in for ``robot`` (worker thread; waits for the
        main loop to run the swap and re-raises what it raised)."""
        ref = ModelRef(scorer.bundle.bundle_id, scorer.bundle.manifest.bundle_version)
        sha = self.store.put(robot, data)
        self.reporter.report(
            "staged", command.transfer_id, robot=robot, bundle=ref, warnings=scorer.bundle.warnings
        )
        self.hooks.reach("staged")
        self.calls.call(lambda: self._swap(command, robot, scorer, sha))

    def _swap(self, command: TransferCommand, robot: str, scorer: Scorer, sha: str) -> None:
        """Main loop: serve the candidate, write the pointer (probation), report ``active``."""
        runtime = self.robots[robot]
        manifest = scorer.bundle.manifest
        try:
            swap = runtime.install(self.hooks.on_activation(scorer))
        except ProgramConflictError as err:
            raise OtaError(f"robot {robot!r}: {err}") from err
        try:
            self.store.activate(
                robot, manifest.bundle_id, sha, manifest.bundle_version, command.transfer_id
            )
        except BaseException:
            runtime.restore(swap)
            raise
        self.on_change()
        self.done.record(command.transfer_id, "active")
        model = ModelRef(manifest.bundle_id, manifest.bundle_version)
        self.reporter.report(
            "active", command.transfer_id, robot=robot, bundle=model,
            previous=swap.replaced.model if swap.replaced is not None else None,
            replaces=[r.model for r in swap.superseded], warnings=scorer.bundle.warnings,
        )  # fmt: skip
        self.probations.start(robot, model, command.transfer_id, swap)
