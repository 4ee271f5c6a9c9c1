"""Exception family of the MQTT subsystem (settings, credentials, payloads, link)."""

from __future__ import annotations


class MqttError(Exception):
    """Base class of every error raised by :mod:`agent.sinks.mqtt`."""


class MqttSettingsError(MqttError, ValueError):
    """Invalid MQTT settings; the message names the key, the bad value and the fix."""


class CredentialError(MqttError):
    """The MQTT password (file or systemd credential) or a TLS file cannot be used."""


class PayloadError(MqttError, ValueError):
    """A payload cannot be built from the given values."""
