"""The exporter's error family (below the agent family's root, agent.core.errors).

Imports nothing heavy, so every `rapp-export` command — even `--help` and `keygen` in an
install without torch — can catch it.
"""

from __future__ import annotations

from agent.core.errors import AgentInputError, AgentRuntimeError


class ExportError(AgentRuntimeError, RuntimeError):
    """Training, export, quantization or bundle building failed; the message says why."""


class ExportInputError(ExportError, AgentInputError):
    """The exporter was given input it cannot use (a file, a flag); exit code 2."""


class MissingExtraError(ExportInputError):
    """A command needs an optional dependency that is not installed; names the extra."""
