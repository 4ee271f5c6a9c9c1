"""MQTT side of the agent: settings, payload builders and the outbox-draining link.

Wiring (see each module's docstring)::

    settings = MqttSettings.from_table(Table(doc["mqtt"], "mqtt"), device_id, config_dir)
    ident = AgentIdentity.create(settings.device_id, agent.__version__)
    link = MqttLink(settings, outbox, lambda state: build_status(state, ident, ...))
    link.start(); ...; link.stop(drain_timeout=10)
"""

from agent.sinks.mqtt.errors import CredentialError, MqttError, MqttSettingsError, PayloadError
from agent.sinks.mqtt.link import LinkStats, MqttLink
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    BundleInfo,
    ChannelMeta,
    FrameCounters,
    RobotHealth,
    RobotMeta,
    ScoreStream,
    build_alarm,
    build_alarm_active,
    build_meta,
    build_ota_status,
    build_status,
    dumps,
    load_schema,
)
from agent.sinks.mqtt.settings import MqttSettings, TlsSettings, resolve_password

__all__ = [
    "AgentIdentity",
    "BundleInfo",
    "ChannelMeta",
    "CredentialError",
    "FrameCounters",
    "LinkStats",
    "MqttError",
    "MqttLink",
    "MqttSettings",
    "MqttSettingsError",
    "PayloadError",
    "RobotHealth",
    "RobotMeta",
    "ScoreStream",
    "TlsSettings",
    "build_alarm",
    "build_alarm_active",
    "build_meta",
    "build_ota_status",
    "build_status",
    "dumps",
    "load_schema",
    "resolve_password",
]
