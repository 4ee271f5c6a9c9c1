"""The ``[homeassistant]`` table: whether to publish MQTT discovery, and under which prefix.

Off by default. Discovery goes to the broker of ``[mqtt]``, so enabling it without that
section is a configuration error. Reading never touches the file system.

Usage::

    settings = HomeAssistantSettings.from_table(Table(doc["homeassistant"], "homeassistant"),
                                                broker=True)
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.sinks.topics import TopicError, validate_root

DEFAULT_PREFIX = "homeassistant"


def _topic_prefix(value: str) -> str | None:
    try:
        validate_root(value)
    except TopicError as err:
        return f"not a usable topic prefix ({err})"
    return None


@dataclass(frozen=True, slots=True)
class HomeAssistantSettings:
    """enabled: publish retained discovery configs for the agent and each robot.
    discovery_prefix: Home Assistant's discovery prefix (its MQTT integration setting)."""

    enabled: bool = False
    discovery_prefix: str = DEFAULT_PREFIX

    @classmethod
    def from_table(cls, t: Table, *, broker: bool) -> HomeAssistantSettings:
        """Read the table; ``broker`` says whether the config has an ``[mqtt]`` section."""
        settings = cls(
            enabled=t.get("enabled", bool, False, fix="enabled = true"),
            discovery_prefix=t.get(
                "discovery_prefix",
                str,
                DEFAULT_PREFIX,
                check=_topic_prefix,
                fix=f'e.g. discovery_prefix = "{DEFAULT_PREFIX}"',
            ),
        )
        t.done()
        if settings.enabled and not broker:
            raise ConfigError(
                f"{t.key('enabled')} = true: discovery is published to the [mqtt] broker, and "
                "there is no [mqtt] section; add [mqtt] host = … (or set enabled = false)"
            )
        return settings
