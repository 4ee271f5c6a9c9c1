"""The signed commands waiting behind the active transfer: bounded, newest per bundle wins.

At most ``limit`` commands wait; one more is refused (the caller reports it). A command for
the same robot and bundle id as a waiting one with a newer version takes that one's place
(the older would be refused as not newer after the newer one is installed anyway), so a
queue of stale updates cannot delay the current one.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.ota.command import TransferCommand
from agent.ota.versions import is_newer


def supersedes(new: TransferCommand, old: TransferCommand) -> bool:
    """True if ``new`` replaces ``old``: same robot and bundle id, a newer version."""
    return (
        (new.robot, new.bundle_id) == (old.robot, old.bundle_id)
        and new.transfer_id != old.transfer_id
        and is_newer(new.version, old.version)
    )


class PendingQueue:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[TransferCommand] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[TransferCommand]:
        return iter(list(self._items))

    def __contains__(self, transfer_id: object) -> bool:
        return any(c.transfer_id == transfer_id for c in self._items)

    def pop(self) -> TransferCommand | None:
        return self._items.pop(0) if self._items else None

    def push_front(self, command: TransferCommand) -> None:
        """Queue ``command`` to begin next (it replaced the active transfer)."""
        self._items.insert(0, command)

    def resumed(self, command: TransferCommand) -> None:
        """Queue a command an earlier process had accepted (not counted against the limit)."""
        self._items.append(command)

    def admit(self, command: TransferCommand) -> tuple[list[TransferCommand], bool]:
        """Queue ``command``: (the waiting commands it superseded, whether it was queued)."""
        replaced = [c for c in self._items if supersedes(command, c)]
        if replaced:
            at = self._items.index(replaced[0])
            self._items = [c for c in self._items if c not in replaced]
            self._items.insert(at, command)
            return replaced, True
        if len(self._items) >= self.limit:
            return [], False
        self._items.append(command)
        return [], True
