"""OTA transfer protocol (command, chunks, resume) and the agent's on-disk staging area.

Protocol (topics under the root, default ``rapp/v1``; every JSON message is UTF-8):

- The pusher publishes a **command** (QoS 1, retained) on ``<root>/<device>/ota/cmd`` or
  ``<root>/group/<group>/ota/cmd``: target, transfer id, bundle id and version, size, sha256,
  chunk size, the sha256 of every chunk, an optional ``url``, the rollback flag and an expiry,
  signed with the release key (fields and signed bytes: agent/ota/command.py). The agent acts
  only on a command that is signed by a ``[trust] keys`` key (unsigned ones only with
  ``allow_unsigned``), unexpired and addressed to it (agent/ota/authenticate.py); it ignores
  every other one without publishing anything. With a ``url`` (``https://``, ``http://``, or
  ``file://`` under ``[ota] file_url_root``; agent/ota/fetch.py) the device downloads the
  file instead and ``chunks`` may be empty.
- **Chunks** are raw bytes on ``<root>/_transfer/<transfer_id>/<index>`` (QoS 1; ``_`` cannot
  start a device id, so the level never collides with a device). Anyone on the broker can
  publish there, so a chunk whose length or sha256 differs from the signed command's is
  ignored (counted) and asked for again; it never ends the transfer.
- The device publishes **need** messages on ``<root>/<device>/ota/need``
  (``{"transfer_id": …, "missing": [indices]}``) whenever chunks are missing and nothing
  arrived for ``need_interval_s``. The pusher answers by publishing those chunks again. This
  one mechanism covers an agent that reconnects, an agent that was SIGKILLed and restarted
  (received chunks are on disk, so only the missing ones are asked for) and a broker restart
  without persistence (nothing retained survives; the device keeps asking, the pusher keeps
  serving until every target reports a final state or its timeout).

Staging: ``<state_dir>/ota/staging/<transfer_id>/`` holds ``command.json`` and one file per
verified chunk (``chunks/<index>``, written atomically), so a restart resumes exactly where
the previous process stopped. Completed transfer ids are remembered in
``<state_dir>/ota/done.json`` so a retained command re-delivered after a restart is not
installed twice.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from agent.core.atomic import write_atomic
from agent.ota.command import TransferCommand, parse_command, sha256_hex, valid_transfer_id
from agent.ota.errors import TransferError

DONE_KEEP = 64


class Staging:
    """Received chunks of one transfer, persisted so a restarted agent resumes the download."""

    def __init__(self, directory: Path, command: TransferCommand, have: set[int]) -> None:
        self.command = command
        self.dir = directory
        self._chunks = directory / "chunks"
        self._have = set(have)

    @classmethod
    def create(cls, root: Path, command: TransferCommand) -> Staging:
        """A new, empty staging directory for ``command`` (its ``command.json`` written)."""
        directory = Path(root) / command.transfer_id
        (directory / "chunks").mkdir(parents=True, exist_ok=True)
        write_atomic(directory / "command.json", json.dumps(command.to_json()).encode())
        return cls(directory, command, set())

    @classmethod
    def resume(cls, root: Path, command: TransferCommand) -> Staging:
        """The staging directory a previous process left for ``command``, with its chunks."""
        directory = Path(root) / command.transfer_id
        held = {int(p.name) for p in (directory / "chunks").glob("*") if p.name.isdigit()}
        return cls(directory, command, held & set(range(command.n_chunks)))

    @classmethod
    def open(cls, root: Path, command: TransferCommand) -> Staging:
        """Resume ``command``'s staging directory if it exists, else create it."""
        if (Path(root) / command.transfer_id / "command.json").is_file():
            return cls.resume(root, command)
        return cls.create(root, command)

    @classmethod
    def resume_all(cls, root: Path) -> list[Staging]:
        """Every unfinished transfer left by a previous process (unreadable ones removed)."""
        out = []
        for directory in sorted(Path(root).glob("*")) if Path(root).is_dir() else []:
            try:
                command = parse_command((directory / "command.json").read_bytes())
            except (OSError, TransferError):
                shutil.rmtree(directory, ignore_errors=True)
                continue
            out.append(cls.resume(root, command))
        return out

    def missing(self) -> list[int]:
        return [i for i in range(self.command.n_chunks) if i not in self._have]

    @property
    def received_bytes(self) -> int:
        return sum(self.command.chunk_length(i) for i in self._have)

    def add(self, index: int, data: bytes) -> bool:
        """Store chunk ``index`` after checking its length and hash; False if already held.

        :class:`TransferError` for a chunk out of range, of the wrong length or hash: the
        intake ignores that copy (any broker client can publish one) and asks again.
        """
        cmd = self.command
        if not 0 <= index < cmd.n_chunks:
            raise TransferError(f"chunk {index}: out of range (the bundle has {cmd.n_chunks})")
        if index in self._have:
            return False
        if len(data) != cmd.chunk_length(index):
            raise TransferError(
                f"chunk {index}: {len(data)} bytes, expected {cmd.chunk_length(index)} "
                "(truncated or tampered transfer)"
            )
        if sha256_hex(data) != cmd.chunks[index]:
            raise TransferError(f"chunk {index}: sha256 mismatch (tampered or corrupt chunk)")
        write_atomic(self._chunks / str(index), data)
        self._have.add(index)
        return True

    def assemble(self) -> bytes:
        """The whole file, checked against the command's size and sha256."""
        missing = self.missing()
        if missing:
            raise TransferError(f"transfer incomplete: {len(missing)} chunk(s) missing")
        data = b"".join((self._chunks / str(i)).read_bytes() for i in range(self.command.n_chunks))
        return check_whole(self.command, data)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def discard(root: Path, transfer_id: str) -> None:
        """Remove a transfer's staging directory if there is one."""
        if valid_transfer_id(transfer_id):
            shutil.rmtree(Path(root) / transfer_id, ignore_errors=True)


def check_whole(command: TransferCommand, data: bytes) -> bytes:
    if len(data) != command.size:
        raise TransferError(f"bundle is {len(data)} bytes, the command announced {command.size}")
    if sha256_hex(data) != command.sha256:
        raise TransferError("bundle sha256 differs from the command's (corrupt or tampered)")
    return data


class DoneLog:
    """Final states of recent transfers (``done.json``), so re-delivered commands are ignored."""

    def __init__(self, path: Path, items: list[list[str]] | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._items: list[list[str]] = list(items or [])[-DONE_KEEP:]

    @classmethod
    def load(cls, path: Path) -> DoneLog:
        """The log at ``path``; empty if the file is missing or unreadable."""
        try:
            raw = json.loads(Path(path).read_text())
            items = [list(map(str, x))[:3] for x in raw]
        except (OSError, ValueError, TypeError):
            items = []
        return cls(path, items)

    def get(self, transfer_id: str) -> tuple[str, str] | None:
        """(state, reason) of a finished transfer, None if unknown."""
        for tid, state, reason in reversed(self._items):
            if tid == transfer_id:
                return state, reason
        return None

    def record(self, transfer_id: str, state: str, reason: str = "") -> None:
        with self._lock:
            items = [x for x in self._items if x[0] != transfer_id]
            items.append([transfer_id, state, reason])
            self._items = items[-DONE_KEEP:]
            write_atomic(self.path, json.dumps(self._items).encode())
