"""The OTA worker: receive → download → verify → stage → swap, then hand over to probation.

One worker thread per agent runs every step that is slow or touches the disk, so the scoring
loop never waits for an update. It drives three parts, one job each:

- :class:`~agent.ota.intake.TransferIntake` — commands, chunks, pending queue, timeouts, need
  requests; yields one complete, hash-checked file at a time;
- :class:`~agent.ota.verify.Verifier` — load, target robot, compatibility, canary, the
  recent-normal gate;
- :class:`~agent.ota.activation.Activator` — model store, swap on the main loop, probation.

It talks to the main loop only through :class:`~agent.ota.mainloop.MainLoopCalls` and
publishes every step through :class:`~agent.ota.status.OtaReporter`. Any failure before the
swap rejects the update with its reason and leaves the serving model untouched.
"""

from __future__ import annotations

import logging
import threading

from agent.ota.activation import Activator
from agent.ota.errors import OtaError
from agent.ota.intake import Delivery, TransferIntake
from agent.ota.probation_board import ProbationBoard
from agent.ota.verify import Verifier

log = logging.getLogger("agent.ota")


class Installer:
    """Owns the OTA worker thread of one agent (see the module docstring)."""

    def __init__(
        self,
        intake: TransferIntake,
        verifier: Verifier,
        activator: Activator,
        probations: ProbationBoard,
        halt: threading.Event,
    ) -> None:
        self.intake = intake
        self.verifier = verifier
        self.activator = activator
        self.probations = probations
        self._halt = halt
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ota-installer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._halt.set()
        self.intake.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        self.intake.resume()
        while not self._halt.is_set():
            try:
                self._iterate()
            except Exception as err:  # disk full, a bug: fail this update, keep the worker
                log.exception("ota: unexpected error")
                try:
                    self.intake.reject_active(f"agent error: {err}")
                except Exception:
                    log.exception("ota: could not report the error")
                    self.intake.drop_active()
                    self._halt.wait(1.0)

    def _iterate(self) -> None:
        # One update at a time, including its probation: a bundle is judged alone, and the
        # store's prune at commit never races a bundle being staged.
        delivery = self.intake.next(can_begin=not self.probations.busy)
        if delivery is not None:
            self._install(delivery)

    def _install(self, delivery: Delivery) -> None:
        command = delivery.command
        try:
            robot, scorer = self.verifier.verify(delivery)
            self.activator.activate(command, robot, scorer, delivery.data)
        except OtaError as err:
            if self._halt.is_set():  # stopping: keep the staging dir, resume after restart
                log.info("ota %s: interrupted by shutdown; resumes at start", command.transfer_id)
                return
            self.intake.reject(command, str(err), robot=command.robot)
            return
        self.intake.finished(delivery)
