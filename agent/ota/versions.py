"""Updates only move forward: a bundle must be newer than the one serving, unless a signed
rollback command says otherwise.

Versions are dotted integers compared number by number (1 < 2 < 10, 1.2 < 1.10; trailing
zeros do not count, so 1.0 == 1). What serves a robot's bundle id is the model store's
pointer if the bundle was installed over the air, else the configured bundle's version, else
nothing (a new bundle id joining the archive takes any version). Without this, replaying an
old, validly signed bundle would be a downgrade.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from agent.core.bundle import BundleError
from agent.core.bundle.archive import read_archive
from agent.core.bundle.manifest import MANIFEST_NAME
from agent.core.scoring import Scorer
from agent.ota.command import TransferCommand
from agent.ota.errors import OtaError, StoreError
from agent.ota.store import ModelStore

_DOTTED = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,7}$")
ROLLBACK_HINT = "a downgrade needs a signed rollback (rapp-export push --rollback)"


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.10"`` → ``(1, 10)``; :class:`OtaError` if ``text`` is not a dotted integer."""
    if not _DOTTED.match(text):
        raise OtaError(
            f"version {text!r} is not a dotted integer version (e.g. 3 or 1.10.2), so it "
            "cannot be ordered; rebuild the bundle with --bundle-version N"
        )
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def is_newer(version: str, than: str) -> bool:
    """True if both parse and ``version`` is the higher one."""
    try:
        return parse_version(version) > parse_version(than)
    except OtaError:
        return False


class ServingVersions:
    """What version serves each (robot, bundle id), and the forward-only check against it."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._configured: dict[tuple[str, str], str] = {}
        self._robots: list[str] = []

    def note_configured(self, robot: str, scorers: Sequence[Scorer]) -> None:
        """Remember the versions of the bundles the config gives ``robot`` (at start)."""
        self._robots.append(robot)
        for scorer in scorers:
            manifest = scorer.bundle.manifest
            self._configured[(robot, manifest.bundle_id)] = manifest.bundle_version

    def serving(self, robot: str, bundle_id: str) -> str | None:
        """The version ``robot`` serves for ``bundle_id``; None if it serves none."""
        try:
            entry = self.store.pointer(robot).get(bundle_id)
        except StoreError:
            entry = None  # start-up fell back to the configured bundles
        if entry is None:
            return self._configured.get((robot, bundle_id))
        return entry.version or self._file_version(robot, entry.active)

    def _file_version(self, robot: str, sha: str) -> str:
        """The version in an installed file's manifest (a pointer that did not record it)."""
        try:
            files = read_archive(self.store.path(robot, sha))
            return str(json.loads(files[MANIFEST_NAME])["bundle_version"])
        except (BundleError, KeyError, ValueError, TypeError):
            return ""

    def check_command(self, command: TransferCommand) -> None:
        """The check as far as the command tells (before downloading): its version parses
        and, if its robot is known (named, or the device's only one), is newer."""
        robot = command.robot
        if robot is None and len(self._robots) == 1:
            robot = self._robots[0]
        if robot is None:
            parse_version(command.version)
            return
        self.check(robot, command.bundle_id, command.version, command.rollback)

    def check(self, robot: str, bundle_id: str, version: str, rollback: bool) -> None:
        """Raise :class:`OtaError` unless ``version`` may replace what serves ``robot``."""
        new = parse_version(version)
        current = self.serving(robot, bundle_id)
        if rollback or current is None:
            return
        try:
            old = parse_version(current)
        except OtaError as err:
            raise OtaError(
                f"robot {robot!r} serves {bundle_id} version {current!r}, which is not a "
                f"dotted integer, so version {version} cannot be shown to be newer; "
                + ROLLBACK_HINT
            ) from err
        if new <= old:
            raise OtaError(
                f"version {version} of {bundle_id} is not newer than version {current} "
                f"serving on robot {robot!r}; " + ROLLBACK_HINT
            )
