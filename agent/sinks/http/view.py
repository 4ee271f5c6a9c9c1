"""The one object the endpoint's threads read: a frozen view, published by the main loop.

The main loop mutates pipelines and sources without locks, so the HTTP threads must never
touch them. About once a second the main loop builds :class:`AgentFacts` (from the freshly
refreshed :class:`~agent.sinks.status.StatusBoard` snapshot and a few thread-safe counters),
adds the :class:`~agent.sinks.http.recorder.Recorded` aggregates, and swaps the result into
the :class:`ViewBoard` (one reference under a lock). Everything served comes from that view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.pipeline.alarms import AlarmEvent
from agent.sinks.http.recorder import Recorded
from agent.sinks.outbox import Outbox, OutboxError, OutboxStats
from agent.sinks.status import StatusSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentFacts:
    """What the main loop knows that the status snapshot does not carry.

    alarms: each robot's active alarm (its raise event), None when clear.
    broker_connected: None when the agent has no ``[mqtt]`` section.
    ota: the last OTA status payload of this process, if any step was reported.
    ota_refusals: ignored OTA commands and chunks this run, by kind.
    """

    status: StatusSnapshot
    alarms: Mapping[str, AlarmEvent | None] = field(default_factory=dict)
    broker_connected: bool | None = None
    outbox: OutboxStats | None = None
    ota: Mapping[str, Any] | None = None
    ota_refusals: Mapping[str, int] = field(default_factory=dict)


def outbox_stats(outbox: Outbox | None) -> OutboxStats | None:
    """The outbox's stats for the view; a failed read leaves them out of this one view
    instead of stopping the main loop over a monitoring page."""
    if outbox is None:
        return None
    try:
        return outbox.stats()
    except OutboxError as err:
        log.warning("http: outbox stats unavailable: %s", err)
        return None


@dataclass(frozen=True)
class EndpointView:
    facts: AgentFacts
    recorded: Recorded
    published: float  # time.monotonic() of the swap
    published_wall: float  # time.time() of the swap


class ViewBoard:
    """The latest view (main loop writes, HTTP threads read), and whether the agent stops."""

    def __init__(self, robots: tuple[str, ...]) -> None:
        self.robots = robots  # the configured robot ids, fixed for this agent
        self.opened = time.monotonic()
        self._lock = threading.Lock()
        self._view: EndpointView | None = None
        self._stopping = False

    @property
    def view(self) -> EndpointView | None:
        with self._lock:
            return self._view

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def publish(self, facts: AgentFacts, recorded: Recorded) -> None:
        view = EndpointView(facts, recorded, time.monotonic(), time.time())
        with self._lock:
            self._view = view

    def mark_stopping(self) -> None:
        with self._lock:
            self._stopping = True

    def age(self) -> float:
        """Seconds since the last publish (since the board was opened, before the first)."""
        view = self.view
        return time.monotonic() - (view.published if view is not None else self.opened)
