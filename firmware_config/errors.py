"""The firmware_config family's exception root and its two branches (exit 2 vs 1).

firmware_config never imports the agent, so it has its own root; the branches mean the same
as the agent's: :class:`FirmwareInputError` is bad input (a channel map, bytes, a simulator
option) → exit 2, :class:`FirmwareRuntimeError` a failure while running → exit 1.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_INPUT = 2


class FirmwareError(Exception):
    """Root of every error raised on purpose by firmware_config/."""


class FirmwareInputError(FirmwareError, ValueError):
    """Bad input: the message names the file or value and the fix."""


class FirmwareRuntimeError(FirmwareError, RuntimeError):
    """A failure while running (a port that fails, a write that does not complete)."""


def exit_code(err: BaseException) -> int:
    return EXIT_INPUT if isinstance(err, FirmwareInputError) else EXIT_FAILURE
