"""The agent's installed-model store: immutable bundle files plus one pointer file per robot.

Layout under ``<state_dir>/models/<robot>/``:

- ``<sha256>.rapp`` — bundles as received, named by their hash, written once atomically and
  never modified (a file either is complete and matches its name, or does not exist);
- ``pointer.json`` — for each bundle id installed over the air::

      {"bundles": {"<bundle_id>": {"active": "<sha256>", "previous": "<sha256>" | null,
                                   "state": "probation" | "committed",
                                   "version": "...", "transfer_id": "...",
                                   "previous_version": "..."}}}

  ``previous: null`` means "whatever the config file names for that bundle id" (or nothing, for
  a bundle id that joined the robot's archive over the air).

The swap is one ``write_atomic`` of the pointer (temp file, fsync, rename, fsync of the
directory): a kill before the rename leaves the old pointer, after it the new one — both name
complete files, so the agent always comes up with a loadable model. The bundle files are
verified again when loaded at start (signature, hashes), so a damaged disk is caught, reported
and answered by falling back to the previous bundle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from agent.core.atomic import write_atomic
from agent.ota.errors import StoreError
from agent.ota.transfer import sha256_hex

POINTER = "pointer.json"
PROBATION = "probation"
COMMITTED = "committed"


@dataclass(frozen=True)
class PointerEntry:
    active: str
    previous: str | None
    state: str
    version: str = ""
    transfer_id: str = ""
    previous_version: str = ""  # so a rollback still knows the version it serves


class ModelStore:
    """Reads and updates ``<state_dir>/models``; every change is one atomic pointer write."""

    def __init__(self, state_dir: Path | str) -> None:
        self.root = Path(state_dir) / "models"

    def robot_dir(self, robot: str) -> Path:
        return self.root / robot

    def path(self, robot: str, sha: str) -> Path:
        return self.robot_dir(robot) / f"{sha}.rapp"

    def put(self, robot: str, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its sha256."""
        sha = sha256_hex(data)
        target = self.path(robot, sha)
        if not target.is_file() or sha256_hex(target.read_bytes()) != sha:
            write_atomic(target, data)
        return sha

    def robots(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / POINTER).is_file())

    def files(self, robot: str) -> list[Path]:
        return sorted(self.robot_dir(robot).glob("*.rapp"))

    def pointer(self, robot: str) -> dict[str, PointerEntry]:
        path = self.robot_dir(robot) / POINTER
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {bid: PointerEntry(**entry) for bid, entry in raw["bundles"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StoreError(
                f"{path}: unreadable model pointer ({err}); remove it to fall back to the "
                "bundles named in the config"
            ) from err

    def _write(self, robot: str, entries: dict[str, PointerEntry]) -> None:
        body = {"bundles": {bid: asdict(e) for bid, e in sorted(entries.items())}}
        write_atomic(self.robot_dir(robot) / POINTER, json.dumps(body, indent=1).encode())

    def activate(
        self, robot: str, bundle_id: str, sha: str, version: str, transfer_id: str
    ) -> PointerEntry:
        """Point ``bundle_id`` at ``sha`` in probation, keeping the current one as previous."""
        if not self.path(robot, sha).is_file():
            raise StoreError(f"{self.path(robot, sha)}: not in the store; put() it first")
        entries = self.pointer(robot)
        current = entries.get(bundle_id)
        previous = current.active if current is not None else None
        previous_version = current.version if current is not None else ""
        if current is not None and previous == sha:  # re-installing: keep the older fallback
            previous, previous_version = current.previous, current.previous_version
        entry = PointerEntry(sha, previous, PROBATION, version, transfer_id, previous_version)
        entries[bundle_id] = entry
        self._write(robot, entries)
        return entry

    def commit(self, robot: str, bundle_id: str, retire: Sequence[str] = ()) -> PointerEntry | None:
        """Commit ``bundle_id`` and, in the same pointer write, drop the entries of the bundle
        ids in ``retire`` (bundles it superseded); then delete the files nothing refers to."""
        entries = self.pointer(robot)
        entry = entries.get(bundle_id)
        if entry is None:
            return None
        for retired in retire:
            if retired != bundle_id:
                entries.pop(retired, None)
        entries[bundle_id] = replace(entry, state=COMMITTED)
        self._write(robot, entries)
        self.prune(robot)
        return entries[bundle_id]

    def rollback(self, robot: str, bundle_id: str) -> PointerEntry | None:
        """Make the previous bundle active again; None = back to the config's bundle (or none).

        The rolled-back-to entry is committed (it served before) and has no previous, so a
        second rollback returns to the configured bundle.
        """
        entries = self.pointer(robot)
        entry = entries.pop(bundle_id, None)
        if entry is None:
            return None
        restored = None
        if entry.previous is not None:
            restored = PointerEntry(
                entry.previous, None, COMMITTED, entry.previous_version, entry.transfer_id
            )
            entries[bundle_id] = restored
        self._write(robot, entries)
        return restored

    def prune(self, robot: str) -> None:
        """Delete bundle files no pointer entry refers to (active or previous)."""
        keep = set()
        for entry in self.pointer(robot).values():
            keep.add(entry.active)
            if entry.previous:
                keep.add(entry.previous)
        for path in self.files(robot):
            if path.stem not in keep:
                path.unlink(missing_ok=True)
