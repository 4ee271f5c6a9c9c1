"""What the outbox does when its disk refuses a write (full, read-only, failing).

A full state disk must not lose an alarm or stop the agent. While writes fail, the outbox
keeps serving from memory:

- alarms and events that could not be written are **held** here, in order, bounded by
  ``max_held`` (past it the oldest *event* goes first, an alarm only when nothing else is
  left, and every loss is counted); telemetry is dropped and counted (alarms before
  telemetry);
- a delivered message whose row cannot be deleted becomes a **tombstone**: it is never
  published again, and its delete is retried;
- every write is retried at most every ``retry_s``; once the disk takes writes again, the held
  messages go to disk in their original order and the tombstones are deleted.

The outbox reports the trouble (:class:`DiskTrouble`) in ``status``. SQLite errors that mean
"storage", not "bug": SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN.
"""

from __future__ import annotations

import collections
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

# primary result codes (the low byte of an extended code)
_STORAGE_CODES = {8: "read-only", 10: "I/O error", 13: "disk full", 14: "cannot open"}
DEFAULT_MAX_HELD = 10_000
DEFAULT_RETRY_S = 1.0


def storage_problem(err: BaseException) -> str | None:
    """'disk full', 'I/O error', … if ``err`` is the disk refusing a write, else None."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.strerror or str(err)
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(err, sqlite3.Error) and isinstance(code, int):
        return _STORAGE_CODES.get(code & 0xFF)
    return None


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass(frozen=True)
class DiskTrouble:
    """The current storage problem, for ``status``."""

    path: str
    error: str
    since: float
    free_bytes: int | None


@dataclass(frozen=True)
class HeldMessage:
    id: str
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class Spill:
    """Held messages, tombstones and the trouble state of one outbox (not thread-safe: the
    outbox calls it under its own lock)."""

    def __init__(
        self, path: Path, max_held: int = DEFAULT_MAX_HELD, retry_s: float = DEFAULT_RETRY_S
    ) -> None:
        self._path = path
        self._max_held = max_held
        self._retry_s = retry_s
        self.held: collections.OrderedDict[str, HeldMessage] = collections.OrderedDict()
        self.tombstones: set[str] = set()
        self.trouble: DiskTrouble | None = None
        self.permanent = False  # the outbox could not even be opened: memory only until restart
        self._last_try = 0.0
        self.telemetry_dropped = 0
        self.held_dropped = 0
        self.acked_from_memory = 0

    @property
    def active(self) -> bool:
        return self.trouble is not None or bool(self.held) or bool(self.tombstones)

    def note(self, problem: str) -> bool:
        """Record a refused write; True the first time (so the caller logs it once)."""
        first = self.trouble is None
        if first:
            self.trouble = DiskTrouble(
                str(self._path), problem, time.time(), free_bytes(self._path.parent)
            )
        self._last_try = time.monotonic()
        return first

    def due(self) -> bool:
        """Whether to try the disk again now (rate-limited while it refuses)."""
        if self.permanent:
            return False
        return self.active and time.monotonic() - self._last_try >= self._retry_s

    def tried(self) -> None:
        self._last_try = time.monotonic()

    def recovered(self) -> None:
        self.trouble = None

    def hold(self, message: HeldMessage) -> None:
        if message.kind == "telemetry":
            self.telemetry_dropped += 1
            return
        self.held[message.id] = message
        while len(self.held) > self._max_held:
            victim = next((m for m in self.held.values() if m.kind != "alarm"), None)
            victim = victim or next(iter(self.held.values()))
            del self.held[victim.id]
            self.held_dropped += 1

    def take_delivered(self, msg_id: str) -> bool:
        """A held message was acknowledged by the broker: it is done."""
        if self.held.pop(msg_id, None) is None:
            return False
        self.acked_from_memory += 1
        return True

    def last_retained(self, topic: str) -> bytes | None:
        for message in reversed(self.held.values()):
            if message.retain and message.topic == topic:
                return message.payload
        return None
