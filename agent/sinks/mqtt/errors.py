"""Exception family of the MQTT subsystem (settings, credentials, payloads, link)."""

from __future__ import annotations

from agent.core.errors import AgentError, AgentInputError, AgentRuntimeError, ConfigError


class MqttError(AgentError):
    """Base class of every error raised by :mod:`agent.sinks.mqtt`."""


class MqttSettingsError(MqttError, ConfigError):
    """Invalid MQTT settings (the ``[mqtt]`` table); the message names the key, the bad value
    and the fix."""


class CredentialError(MqttError, AgentInputError):
    """The MQTT password (file or systemd credential) or a TLS file cannot be used."""


class PayloadError(MqttError, AgentRuntimeError, ValueError):
    """A payload cannot be built from the given values."""
