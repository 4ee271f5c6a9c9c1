"""Transfer intake: commands and chunks in, one complete and checked file at a time out.

Runs on the OTA worker thread (:class:`~agent.ota.installer.Installer`); the MQTT thread only
hands messages over through a bounded :class:`~agent.ota.inbox.Inbox`. A command is acted
on only if the authenticator accepts it (signed, unexpired, for this device:
agent/ota/authenticate.py); anything else is counted and dropped without a word on the
broker. An accepted command waits in the bounded :class:`~agent.ota.pending.PendingQueue`
(one update at a time; a re-delivered command of a finished or queued transfer is ignored; a
newer version for the same robot and bundle id supersedes a waiting or stalled older one).
Its chunks are staged on disk so a restart resumes the download; a chunk that does not match
the signed hashes is ignored and asked for again, the pusher is asked for missing chunks when
the transfer goes quiet, and the transfer gives up after ``transfer_timeout_s`` without a
valid chunk. Commands with a ``url`` are fetched instead (agent/ota/fetch.py). Before a file
is handed on, its size and sha256 are checked against the signed command. Every refusal of
an accepted command is reported ``rejected`` with its reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.ota.authenticate import CommandAuthenticator
from agent.ota.command import MAX_CHUNK_SIZE, MAX_COMMAND_BYTES, TransferCommand, parse_command
from agent.ota.errors import CommandRefused, OtaError, TransferError
from agent.ota.fetch import UrlFetcher
from agent.ota.hooks import OtaHooks
from agent.ota.inbox import Inbox
from agent.ota.pending import PendingQueue, supersedes
from agent.ota.refusals import Refusals
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.transfer import DoneLog, Staging
from agent.ota.versions import ServingVersions
from agent.pipeline.alarms import ModelRef, new_event_id
from agent.sinks.mqtt.payloads import iso_utc
from agent.sinks.outbox import Outbox

log = logging.getLogger("agent.ota")
POLL_S = 0.2
NEED_SCHEMA = "rapp/ota_need/v1"  # agent/schemas/ota_need.json
MAX_INDEX_DIGITS = 9


@dataclass(frozen=True)
class Delivery:
    """A transfer whose whole file arrived and matches the command's size and sha256."""

    command: TransferCommand
    data: bytes
    staging: Staging | None  # None: downloaded from the command's url


@dataclass
class _Active:
    staging: Staging
    last_progress: float
    last_need: float
    bad_chunks: int = 0
    first_bad: str = ""

    @property
    def command(self) -> TransferCommand:
        return self.staging.command


@dataclass(frozen=True)
class IntakeParts:
    """What the intake consults besides its settings: who may command it, what serves, how
    urls are fetched, where refusals are counted."""

    auth: CommandAuthenticator
    versions: ServingVersions
    fetcher: UrlFetcher
    refusals: Refusals


class NeedRequests:
    """Publishes ``ota/need``: the chunks a transfer still misses (no MQTT: nothing)."""

    def __init__(self, device: str, topic: str, outbox: Outbox | None) -> None:
        self.device = device
        self.topic = topic
        self.outbox = outbox

    def send(self, staging: Staging) -> None:
        if self.outbox is None:
            return
        payload = {
            "schema": NEED_SCHEMA,
            "id": new_event_id(),
            "device": self.device,
            "ts": iso_utc(time.time()),
            "transfer_id": staging.command.transfer_id,
            "missing": staging.missing(),
        }
        self.outbox.put_json(self.topic, payload, kind="telemetry", qos=0)


def _ref(command: TransferCommand) -> ModelRef:
    return ModelRef(command.bundle_id, command.version or "?")


class TransferIntake:
    """See the module docstring. ``on_command``/``on_chunk``/``wake`` from any thread, the
    rest from the worker thread only."""

    def __init__(
        self,
        settings: OtaSettings,
        staging_root: Path,
        done: DoneLog,
        reporter: OtaReporter,
        needs: NeedRequests,
        hooks: OtaHooks,
        parts: IntakeParts,
    ) -> None:
        self.settings = settings
        self.staging_root = Path(staging_root)
        self.done = done
        self.reporter = reporter
        self.needs = needs
        self.hooks = hooks
        self.parts = parts
        self.refusals = parts.refusals
        self.inbox = Inbox(parts.refusals)
        self.pending = PendingQueue(settings.max_pending)
        self._active: _Active | None = None

    # -- inputs (any thread) ----------------------------------------------------------------

    def on_command(self, topic: str, payload: bytes) -> None:
        if not payload:  # an empty retained message clears a command; nothing to do
            return
        if len(payload) > MAX_COMMAND_BYTES:
            self.refusals.note("malformed", f"a {len(payload)}-byte message on {topic}")
            return
        self.inbox.put(("cmd", payload), len(payload))

    def on_chunk(self, topic: str, payload: bytes) -> None:
        parts = topic.rsplit("/", 2)
        index = parts[-1]
        if len(parts) != 3 or not (index.isascii() and index.isdigit()):
            return
        if len(index) > MAX_INDEX_DIGITS or len(payload) > MAX_CHUNK_SIZE:
            self.refusals.note("bad_chunk", f"{len(payload)} bytes on {topic}")
            return
        self.inbox.put(("chunk", parts[1], int(index), payload), len(payload))

    def wake(self) -> None:
        """Return from a waiting :meth:`next` now (the worker is stopping)."""
        self.inbox.put(("halt",), control=True)

    # -- worker -------------------------------------------------------------------------------

    def resume(self) -> None:
        """Queue the unfinished transfers a previous process left in staging."""
        for staging in Staging.resume_all(self.staging_root):
            tid = staging.command.transfer_id
            if self.done.get(tid) is not None:
                staging.remove()
                continue
            try:
                self.parts.auth.check(staging.command, resumed=True)
            except CommandRefused as err:
                log.warning("ota %s: dropping the staged transfer: %s", tid, err)
                staging.remove()
                continue
            log.info("ota %s: resuming after restart", tid)
            self.pending.resumed(staging.command)

    def next(self, can_begin: bool) -> Delivery | None:
        """Take one step: begin the next pending transfer (if ``can_begin``) or handle one
        message and check timeouts; a :class:`Delivery` when a file is complete."""
        if self._active is None and can_begin:
            command = self.pending.pop()
            if command is not None:
                return self._begin(command)
        event = self.inbox.get(POLL_S)
        delivery = self._handle(event) if event is not None else None
        if delivery is not None:
            return delivery
        self._tick()
        return None

    def finished(self, delivery: Delivery) -> None:
        """The delivered file was installed: its staging is no longer needed."""
        if delivery.staging is not None:
            delivery.staging.remove()
        self._active = None

    def reject(self, command: TransferCommand, reason: str, robot: str | None = None) -> None:
        self.reporter.report(
            "rejected", command.transfer_id, robot=robot or command.robot, bundle=_ref(command),
            reason=reason,
        )  # fmt: skip
        self.done.record(command.transfer_id, "rejected", reason)
        if self._active is not None and self._active.command.transfer_id == command.transfer_id:
            self._active.staging.remove()
            self._active = None
        else:
            Staging.discard(self.staging_root, command.transfer_id)

    def reject_active(self, reason: str) -> None:
        """Reject the transfer being received, if there is one (an unexpected error)."""
        if self._active is not None:
            self.reject(self._active.command, reason)

    def drop_active(self) -> None:
        """Forget the transfer being received without reporting (reporting itself failed)."""
        self._active = None

    # -- commands -----------------------------------------------------------------------------

    def _handle(self, event: tuple[Any, ...]) -> Delivery | None:
        if event[0] == "cmd":
            self._on_command(event[1])
        elif event[0] == "chunk":
            return self._on_chunk(event[1], event[2], event[3])
        return None

    def _on_command(self, payload: bytes) -> None:
        try:
            command = parse_command(payload)
            self.parts.auth.check(command)
        except CommandRefused as err:
            self.refusals.note(err.kind, str(err))
            return
        except TransferError as err:
            self.refusals.note("malformed", str(err))
            return
        tid = command.transfer_id
        known = self.done.get(tid)
        if known is not None:
            self.refusals.note("repeated", f"command {tid}: already {known[0]}")
            return
        active = self._active
        if (active is not None and active.command.transfer_id == tid) or tid in self.pending:
            return  # the pusher re-published it (reconnect); nothing new
        self._admit(command)

    def _admit(self, command: TransferCommand) -> None:
        tid, version = command.transfer_id, command.version
        active = self._active
        if active is not None and supersedes(command, active.command):
            self.reject(active.command, f"superseded by transfer {tid} (version {version})")
            self.pending.push_front(command)
            return
        replaced, queued = self.pending.admit(command)
        for old in replaced:
            self.reject(old, f"superseded by transfer {tid} (version {version})")
        if queued:
            return
        limit = self.settings.max_pending
        self.refusals.note("queue_full", f"command {tid}: {limit} updates already waiting")
        if command.signature is not None:
            self.reject(
                command,
                f"{limit} updates are already waiting on this device ([ota] max_pending); "
                "push it again later",
            )

    # -- chunks -------------------------------------------------------------------------------

    def _on_chunk(self, tid: str, index: int, data: bytes) -> Delivery | None:
        active = self._active
        if active is None or tid != active.command.transfer_id:
            return None  # another device's transfer, or one that ended
        try:
            added = active.staging.add(index, data)
        except TransferError as err:
            # anyone on the broker can publish here: ignore this copy, ask for it again
            self.refusals.note("bad_chunk", f"transfer {tid}: {err}")
            active.bad_chunks += 1
            active.first_bad = active.first_bad or str(err)
            return None
        if added:
            active.last_progress = time.monotonic()
        return None if active.staging.missing() else self._assemble()

    def _tick(self) -> None:
        active = self._active
        if active is None:
            return
        now = time.monotonic()
        timeout = self.settings.transfer_timeout_s
        if now - active.last_progress > timeout:
            command = active.command
            missing = len(active.staging.missing())
            reason = (
                f"transfer incomplete: {missing} of {command.n_chunks} chunk(s) missing after "
                f"{timeout:g} s without progress"
            )
            if active.bad_chunks:
                reason += (
                    f"; ignored {active.bad_chunks} chunk(s) that did not match the signed "
                    f"command (first: {active.first_bad})"
                )
            self.reject(command, reason)
            return
        quiet = now - max(active.last_progress, active.last_need)
        if quiet >= self.settings.need_interval_s:
            active.last_need = now
            self.needs.send(active.staging)

    # -- beginning a transfer -----------------------------------------------------------------

    def _begin(self, command: TransferCommand) -> Delivery | None:
        self.reporter.report(
            "received", command.transfer_id, robot=command.robot, bundle=_ref(command),
            total_bytes=command.size, received_bytes=0,
        )  # fmt: skip
        try:
            self._check_acceptable(command)
        except OtaError as err:
            self.reject(command, str(err))
            return None
        if command.url is not None:
            return self._download(command)
        staging = Staging.open(self.staging_root, command)
        now = time.monotonic()
        self._active = _Active(staging, last_progress=now, last_need=now)
        self.hooks.reach("downloading")
        self.reporter.report(
            "downloading", command.transfer_id, robot=command.robot, bundle=_ref(command),
            received_bytes=staging.received_bytes, total_bytes=command.size,
        )  # fmt: skip
        if not staging.missing():
            return self._assemble()
        if staging.received_bytes:  # resumed: ask for what is missing right away
            self.needs.send(staging)
        return None

    def _check_acceptable(self, command: TransferCommand) -> None:
        """Size cap and version order, as far as the command tells (before any download)."""
        limit = self.settings.max_bundle_bytes
        if command.size > limit:
            raise OtaError(
                f"bundle is {command.size} bytes, over this device's limit of "
                f"{limit} ([ota] max_bundle_bytes)"
            )
        self.parts.versions.check_command(command)

    def _download(self, command: TransferCommand) -> Delivery | None:
        self.reporter.report(
            "downloading", command.transfer_id, robot=command.robot, bundle=_ref(command),
            received_bytes=0, total_bytes=command.size,
        )  # fmt: skip
        try:
            data = self.parts.fetcher.fetch(command)
        except TransferError as err:
            self.reject(command, str(err))
            return None
        return Delivery(command, data, None)

    def _assemble(self) -> Delivery | None:
        assert self._active is not None
        staging = self._active.staging
        try:
            data = staging.assemble()
        except TransferError as err:
            self.reject(staging.command, str(err))
            return None
        return Delivery(staging.command, data, staging)
