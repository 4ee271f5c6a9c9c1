"""Exception family of the Sparkplug B edge node."""

from __future__ import annotations

from agent.core.errors import AgentError, AgentInputError, ConfigError


class SparkplugError(AgentError):
    """Base class of every error raised by :mod:`agent.sinks.sparkplug`."""


class SparkplugUnavailableError(SparkplugError, ConfigError):
    """``[sparkplug]`` is enabled but the protobuf runtime it encodes with is not installed."""


class SparkplugPayloadError(SparkplugError, AgentInputError, ValueError):
    """Bytes that are not a Sparkplug B payload, or a value a metric cannot carry."""
