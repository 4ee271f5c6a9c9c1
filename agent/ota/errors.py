"""The OTA subsystem's one exception family.

Every refusal carries a short human ``reason`` that ends up verbatim in the retained
``ota/status`` payload (``rejected(reason)`` / ``rolled_back(reason)``) and in the log, so an
operator can tell what was wrong and what to do without reading agent logs on the box.
"""

from __future__ import annotations


class OtaError(RuntimeError):
    """An update that cannot proceed; ``str(err)`` is the reason reported on ota/status."""


class TransferError(OtaError):
    """The transfer itself is bad: malformed command, chunk hash mismatch, incomplete, too big."""


class StoreError(OtaError):
    """The on-disk model store or its pointer file is unreadable or inconsistent."""
