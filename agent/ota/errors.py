"""The OTA subsystem's one exception family.

Every refusal carries a short human ``reason`` that ends up verbatim in the retained
``ota/status`` payload (``rejected(reason)`` / ``rolled_back(reason)``) and in the log, so an
operator can tell what was wrong and what to do without reading agent logs on the box.
"""

from __future__ import annotations

from agent.core.errors import AgentRuntimeError


class OtaError(AgentRuntimeError, RuntimeError):
    """An update that cannot proceed; ``str(err)`` is the reason reported on ota/status."""


class TransferError(OtaError):
    """The transfer itself is bad: malformed command, chunk hash mismatch, incomplete, too big."""


class StoreError(OtaError):
    """The on-disk model store or its pointer file is unreadable or inconsistent."""


class CommandRefused(OtaError):
    """A command the agent does not act on at all (unsigned, wrongly signed, expired, not for
    this device): ignored and counted under ``kind``, never reported on ota/status."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
