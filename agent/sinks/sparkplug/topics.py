"""Sparkplug B topic names: ``spBv1.0/<group_id>/<message type>/<edge_node_id>[/<device_id>]``."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "spBv1.0"


@dataclass(frozen=True, slots=True)
class SparkplugTopics:
    """Topics of one edge node; ids are validated by the settings (one topic level each)."""

    group_id: str
    edge_node_id: str

    def _node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{kind}/{self.edge_node_id}"

    @property
    def nbirth(self) -> str:
        return self._node("NBIRTH")

    @property
    def ndeath(self) -> str:
        return self._node("NDEATH")

    @property
    def ncmd(self) -> str:
        """Commands to the edge node (subscribed: rebirth requests)."""
        return self._node("NCMD")

    def dbirth(self, device: str) -> str:
        return f"{self._node('DBIRTH')}/{device}"

    def ddata(self, device: str) -> str:
        return f"{self._node('DDATA')}/{device}"
