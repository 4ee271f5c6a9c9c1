"""The ``[sparkplug]`` table: the Sparkplug B edge node's ids and how often it sends data.

Off by default. The edge node connects to the broker of ``[mqtt]`` (same host, port, TLS and
credentials) with a client id of its own, so enabling it without that section is a
configuration error. Reading never touches the file system.

Usage::

    settings = SparkplugSettings.from_table(Table(doc["sparkplug"], "sparkplug"), "cell7",
                                            broker=True)
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.errors import ConfigError
from agent.core.tables import Table, identifier, in_range

DEFAULT_GROUP = "rapp"


def _client_id(value: str) -> str | None:
    return None if value and "\x00" not in value else "must be a non-empty client id"


@dataclass(frozen=True, slots=True)
class SparkplugSettings:
    """enabled: run the edge node. group_id / edge_node_id: the topic levels
    ``spBv1.0/<group_id>/…/<edge_node_id>`` (edge_node_id defaults to agent.device_id; robots
    are its devices). client_id: of the edge node's own MQTT connection, default
    ``<mqtt client id>-spb``. data_interval_s: score updates of one robot are sent at most this
    often (alarm changes at once, health with every status refresh)."""

    enabled: bool = False
    group_id: str = DEFAULT_GROUP
    edge_node_id: str = ""
    client_id: str | None = None
    data_interval_s: float = 1.0

    @classmethod
    def from_table(cls, t: Table, device_id: str, *, broker: bool) -> SparkplugSettings:
        """Read the table; ``broker`` says whether the config has an ``[mqtt]`` section."""
        settings = cls(
            enabled=t.get("enabled", bool, False, fix="enabled = true"),
            group_id=t.get(
                "group_id", str, DEFAULT_GROUP, check=identifier, fix='e.g. group_id = "hall3"'
            ),
            edge_node_id=t.get(
                "edge_node_id", str, device_id, check=identifier, fix="omit it: agent.device_id"
            ),
            client_id=t.get("client_id", str, None, check=_client_id, fix="omit it"),
            data_interval_s=t.get("data_interval_s", float, 1.0, check=in_range(0.0, 3600)),
        )
        t.done()
        if settings.enabled and not broker:
            raise ConfigError(
                f"{t.key('enabled')} = true: the edge node connects to the [mqtt] broker, and "
                "there is no [mqtt] section; add [mqtt] host = … (or set enabled = false)"
            )
        return settings
