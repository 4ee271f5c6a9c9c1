"""What OTA needs from the daemon, and nothing more.

The daemon hands OTA a mapping of robot id → :class:`OtaRobot` (its ``RobotRuntime`` objects,
agent/runtime.py) when OTA starts. Every member is used from the main loop thread only: the
worker reaches them through :class:`~agent.ota.mainloop.MainLoopCalls`, except the immutable
input spec, source channels and schema hash it reads while verifying.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from agent.core.features import FeatureSpec, Segment
from agent.core.scoring import Scorer
from agent.pipeline.robot import Swap

MessageHandler = Callable[[str, bytes], None]


class OtaRobot(Protocol):
    """One robot as OTA sees it: what a candidate must match, and its scorer routes."""

    @property
    def input_spec(self) -> FeatureSpec:
        """The input spec (channels, rate, segmentation, features) the robot is scored on."""
        ...

    @property
    def source_channels(self) -> tuple[str, ...]:
        """The channel names the robot's source delivers, in column order."""
        ...

    @property
    def schema_hash(self) -> int | None:
        """The channel map's schema hash; None when the source has no channel map."""
        ...

    def recent_normal(self) -> list[Segment]:
        """A snapshot of the recent windows that scored normal (main loop only)."""
        ...

    def install(self, scorer: Scorer) -> Swap:
        """Serve ``scorer``: what it replaced and superseded (raises
        ``agent.pipeline.routes.ProgramConflictError`` for a partial program overlap)."""
        ...

    def restore(self, swap: Swap) -> None:
        """Undo an :meth:`install` (rollback)."""
        ...


Robots = Mapping[str, OtaRobot]


class Subscriber(Protocol):
    """The MQTT link as OTA uses it: subscriptions that survive reconnects."""

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None: ...
