"""The agent family's one exception root, and the two branches that decide the exit code.

Every error the agent, its library and the exporter raise on purpose derives from
:class:`AgentError`, through exactly one of:

- :class:`AgentInputError` — bad input or configuration: a file, value or bundle the user gave
  is wrong, and running again unchanged fails the same way. Exit code 2 (``EXIT_INPUT``); the
  systemd unit's ``RestartPreventExitStatus=2`` keeps systemd from restarting into it.
- :class:`AgentRuntimeError` — a failure while doing the work (a runtime that crashes, a disk
  that fails, an update that is refused). Exit code 1 (``EXIT_FAILURE``).

Each subsystem has its own family below these (``BundleError``, ``OtaError``, …); the CLIs
catch the root once (see docs/architecture.md, "Errors").
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_INPUT = 2


class AgentError(Exception):
    """Root of every error raised on purpose by agent/ and exporter/."""


class AgentInputError(AgentError):
    """Bad input or configuration; the message names the key or file, the value and the fix."""


class AgentRuntimeError(AgentError):
    """A failure while running; the message says what failed and, where known, why."""


class ConfigError(AgentInputError, ValueError):
    """An invalid agent configuration; the message says which key and how to fix it."""


def exit_code(err: BaseException) -> int:
    """2 for bad input or configuration, 1 for everything else."""
    return EXIT_INPUT if isinstance(err, AgentInputError) else EXIT_FAILURE
