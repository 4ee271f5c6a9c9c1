"""Whether a parsed command may be acted on at all: signed, unexpired, addressed to us.

A command must carry an Ed25519 signature by a key of ``[trust] keys`` over its canonical
bytes (agent/ota/command.py), an ``expires`` time still in the future and a ``target`` that is
this device or one of its ``[ota] groups``. Only with ``[trust] allow_unsigned = true`` is an
unsigned command accepted (old setups; a rollback still needs a signature, and a target or
expiry it carries is still checked). Anything else raises :class:`CommandRefused`: the intake
counts and drops it and publishes nothing, so a stranger on the broker learns nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from agent.core.bundle import TrustPolicy
from agent.core.bundle.loader import trusted_signer
from agent.ota.command import TransferCommand
from agent.ota.errors import CommandRefused


class CommandAuthenticator:
    def __init__(
        self,
        policy: TrustPolicy,
        device: str,
        groups: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.device = device
        self.groups = frozenset(groups)
        self.clock = clock

    def check(self, command: TransferCommand, *, resumed: bool = False) -> None:
        """Raise :class:`CommandRefused` unless ``command`` may be acted on. ``resumed``: a
        command accepted by an earlier process (its expiry no longer matters)."""
        signed = self._check_signature(command)
        self._check_target(command, signed)
        if not resumed:
            self._check_expiry(command, signed)

    def _check_signature(self, command: TransferCommand) -> bool:
        """True if a trusted key signed it; False for an unsigned command the policy allows."""
        policy = self.policy
        if command.signature is not None and policy.trusted_keys:
            if trusted_signer(command.signed_bytes(), command.signature, policy) is None:
                raise CommandRefused(
                    "bad_signature",
                    f"command {command.transfer_id}: signature does not verify against any "
                    "[trust] keys key",
                )
            return True
        if not policy.allow_unsigned:
            raise CommandRefused(
                "unsigned",
                f"command {command.transfer_id}: "
                + ("unsigned" if command.signature is None else "no [trust] keys to check it")
                + "; sign pushes with `rapp-export push --key` (or set [trust] allow_unsigned)",
            )
        if command.rollback:
            raise CommandRefused(
                "unsigned",
                f"command {command.transfer_id}: a rollback needs a signed command",
            )
        return False

    def _check_target(self, command: TransferCommand, signed: bool) -> None:
        target = command.target
        if target is None:
            if signed:
                raise CommandRefused(
                    "not_for_me", f"command {command.transfer_id}: names no target"
                )
            return
        mine = (target.kind == "device" and target.id == self.device) or (
            target.kind == "group" and target.id in self.groups
        )
        if not mine:
            raise CommandRefused(
                "not_for_me",
                f"command {command.transfer_id}: for {target.kind} {target.id!r}, not this "
                f"device ({self.device!r}, groups {sorted(self.groups)})",
            )

    def _check_expiry(self, command: TransferCommand, signed: bool) -> None:
        if command.expires is None:
            if signed:
                raise CommandRefused("expired", f"command {command.transfer_id}: carries no expiry")
            return
        now = self.clock()
        if now > command.expires:
            raise CommandRefused(
                "expired",
                f"command {command.transfer_id}: expired at {command.expires} (device clock "
                f"{int(now)})",
            )
