"""OTA transfer protocol (command, chunks, resume) and the agent's on-disk staging area.

Protocol (topics under the root, default ``rapp/v1``; every JSON message is UTF-8):

- The pusher publishes a **command** (QoS 1, retained) on ``<root>/<device>/ota/cmd`` or
  ``<root>/group/<group>/ota/cmd``::

      {"schema": "rapp/ota_cmd/v1", "transfer_id": "...", "robot": "arm1" | null,
       "bundle_id": "...", "version": "...", "size": 123456, "sha256": "<64 hex>",
       "chunk_size": 65536, "chunks": ["<sha256 of chunk 0>", ...], "url": null | "https://…"}

  ``chunks`` lists the sha256 of every chunk, so each chunk is checked on arrival, before the
  whole-file hash. With a ``url`` (``file://`` or ``https://`` with certificate checks) the
  device downloads the file instead and ``chunks`` may be empty.
- **Chunks** are raw bytes on ``<root>/_transfer/<transfer_id>/<index>`` (QoS 1; ``_`` cannot
  start a device id, so the level never collides with a device).
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

import hashlib
import json
import re
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.atomic import write_atomic
from agent.ota.errors import TransferError

COMMAND_SCHEMA = "rapp/ota_cmd/v1"
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
DONE_KEEP = 64
_SHA = re.compile(r"^[0-9a-f]{64}$")
_TID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_hashes(data: bytes, chunk_size: int) -> list[str]:
    """sha256 of every ``chunk_size`` slice of ``data`` (the last one may be shorter)."""
    return [sha256_hex(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]


def chunk_count(size: int, chunk_size: int) -> int:
    return (size + chunk_size - 1) // chunk_size


@dataclass(frozen=True)
class TransferCommand:
    """A validated ``ota/cmd`` install command."""

    transfer_id: str
    robot: str | None
    bundle_id: str
    version: str
    size: int
    sha256: str
    chunk_size: int
    chunks: tuple[str, ...]
    url: str | None = None

    @property
    def n_chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def chunk_length(self, index: int) -> int:
        """Bytes chunk ``index`` must have (all full-size but the last)."""
        if index < self.n_chunks - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.n_chunks - 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": COMMAND_SCHEMA,
            "transfer_id": self.transfer_id,
            "robot": self.robot,
            "bundle_id": self.bundle_id,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
            "url": self.url,
        }

    @classmethod
    def for_bundle(
        cls,
        data: bytes,
        transfer_id: str,
        bundle_id: str,
        version: str,
        robot: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        url: str | None = None,
    ) -> TransferCommand:
        """The command announcing ``data`` (used by ``rapp-export push`` and tests)."""
        return cls(
            transfer_id=transfer_id,
            robot=robot,
            bundle_id=bundle_id,
            version=version,
            size=len(data),
            sha256=sha256_hex(data),
            chunk_size=chunk_size,
            chunks=tuple(chunk_hashes(data, chunk_size)),
            url=url,
        )


def _need(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransferError(f"ota command: {key} = {value!r} is missing or not a {kind.__name__}")
    return value


def parse_command(payload: bytes) -> TransferCommand:
    """Parse and validate an ``ota/cmd`` payload; :class:`TransferError` says what is wrong."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TransferError(f"ota command: not UTF-8 JSON ({err})") from err
    if not isinstance(obj, dict) or obj.get("schema") != COMMAND_SCHEMA:
        raise TransferError(f"ota command: schema must be {COMMAND_SCHEMA!r}")
    tid = _need(obj, "transfer_id", str)
    if not _TID.match(tid):
        raise TransferError(f"ota command: transfer_id = {tid!r}: use 1–64 letters/digits/._-")
    size = _need(obj, "size", int)
    chunk_size = _need(obj, "chunk_size", int)
    sha = _need(obj, "sha256", str)
    if size <= 0 or not 0 < chunk_size <= MAX_CHUNK_SIZE or not _SHA.match(sha):
        raise TransferError(
            f"ota command {tid}: size {size}, chunk_size {chunk_size} (≤ {MAX_CHUNK_SIZE}) and "
            "sha256 (64 lowercase hex) must be valid"
        )
    url = obj.get("url")
    chunks = obj.get("chunks") or []
    valid = isinstance(chunks, list) and all(isinstance(c, str) and _SHA.match(c) for c in chunks)
    if not valid:
        raise TransferError(f"ota command {tid}: chunks must be a list of sha256 hex strings")
    if url is None and len(chunks) != chunk_count(size, chunk_size):
        raise TransferError(
            f"ota command {tid}: {len(chunks)} chunk hashes for {size} bytes in "
            f"{chunk_size}-byte chunks (expected {chunk_count(size, chunk_size)})"
        )
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("file://", "https://"))
    ):
        raise TransferError(f"ota command {tid}: url = {url!r}: only file:// and https:// are used")
    robot = obj.get("robot")
    if robot is not None and not isinstance(robot, str):
        raise TransferError(f"ota command {tid}: robot = {robot!r} must be a string or null")
    return TransferCommand(
        transfer_id=tid,
        robot=robot,
        bundle_id=_need(obj, "bundle_id", str),
        version=str(obj.get("version", "")),
        size=size,
        sha256=sha,
        chunk_size=chunk_size,
        chunks=tuple(chunks),
        url=url,
    )


class Staging:
    """Received chunks of one transfer, persisted so a restarted agent resumes the download."""

    def __init__(self, root: Path, command: TransferCommand) -> None:
        self.command = command
        self.dir = Path(root) / command.transfer_id
        self._chunks = self.dir / "chunks"
        self._have: set[int] = set()
        if (self.dir / "command.json").is_file():
            self._have = {int(p.name) for p in self._chunks.glob("*") if p.name.isdigit()} & set(
                range(command.n_chunks)
            )
        else:
            self._chunks.mkdir(parents=True, exist_ok=True)
            write_atomic(self.dir / "command.json", json.dumps(command.to_json()).encode())

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
            out.append(cls(root, command))
        return out

    def missing(self) -> list[int]:
        return [i for i in range(self.command.n_chunks) if i not in self._have]

    @property
    def received_bytes(self) -> int:
        return sum(self.command.chunk_length(i) for i in self._have)

    def add(self, index: int, data: bytes) -> bool:
        """Store chunk ``index`` after checking its length and hash; False if already held.

        A chunk whose hash differs from the command's is not a transmission error (MQTT is
        reliable), it is tampering or a broken pusher: :class:`TransferError` ends the update.
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
        if _TID.match(transfer_id):
            shutil.rmtree(Path(root) / transfer_id, ignore_errors=True)


def check_whole(command: TransferCommand, data: bytes) -> bytes:
    if len(data) != command.size:
        raise TransferError(f"bundle is {len(data)} bytes, the command announced {command.size}")
    if sha256_hex(data) != command.sha256:
        raise TransferError("bundle sha256 differs from the command's (corrupt or tampered)")
    return data


class DoneLog:
    """Final states of recent transfers (``done.json``), so re-delivered commands are ignored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            raw = json.loads(self.path.read_text())
            self._items: list[list[str]] = [list(map(str, x))[:3] for x in raw][-DONE_KEEP:]
        except (OSError, ValueError, TypeError):
            self._items = []

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
