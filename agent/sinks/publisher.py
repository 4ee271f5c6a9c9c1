"""Output stage: pipeline results → outbox messages (alarms, active state, score telemetry).

Without an MQTT section the agent still runs (e.g. the demo without a broker): events are
logged and handed to observers, nothing is queued for a broker that will never drain it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from agent.pipeline.alarms import AlarmEvent
from agent.pipeline.robot import PipelineResult, ScoredWindow
from agent.sinks.mqtt.errors import PayloadError
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    ScoreStream,
    alarm_from_active,
    build_alarm,
    build_alarm_active,
    iso_utc,
)
from agent.sinks.outbox import Outbox, json_message
from agent.sinks.topics import Topics

log = logging.getLogger(__name__)

EventObserver = Callable[[AlarmEvent], None]
WindowObserver = Callable[[ScoredWindow], None]


class ResultPublisher:
    def __init__(
        self,
        identity: AgentIdentity,
        topics: Topics,
        outbox: Outbox | None,
        robots: tuple[str, ...],
        score_interval_s: float,
    ) -> None:
        self._identity = identity
        self._topics = topics
        self._outbox = outbox
        self._streams = {
            r: ScoreStream(identity, r, min_interval_s=score_interval_s) for r in robots
        }
        self.event_observers: list[EventObserver] = []
        self.window_observers: list[WindowObserver] = []

    def unfinished_alarms(self) -> dict[str, AlarmEvent]:
        """Alarms the previous process raised and never cleared, by robot, read from the
        ``alarm/active`` state it last queued. A state that cannot be read is logged and
        skipped: the robot then starts without an alarm, as before this was kept."""
        if self._outbox is None:
            return {}
        found: dict[str, AlarmEvent] = {}
        for robot in self._streams:
            raw = self._outbox.last_retained(self._topics.alarm_active(robot))
            if raw is None:
                continue
            try:
                raised = alarm_from_active(json.loads(raw), robot)
            except (ValueError, PayloadError) as err:
                log.warning("robot %s: last alarm state unreadable, starting clear: %s", robot, err)
                continue
            if raised is not None:
                log.warning(
                    "robot %s: alarm %s (raised %s) was active when the agent stopped; it stays "
                    "active until scores fall below the clear level",
                    robot,
                    raised.id,
                    iso_utc(raised.span_start),
                )
                found[robot] = raised
        return found

    def publish_initial_state(self, active: Callable[[str], AlarmEvent | None]) -> None:
        """Retained alarm state per robot at start: 'no alarm', or the alarm carried over."""
        if self._outbox is None:
            return
        for robot in self._streams:
            payload = build_alarm_active(self._identity.device, robot, active(robot))
            self._outbox.put_json(
                self._topics.alarm_active(robot), payload, kind="event", qos=1, retain=True
            )

    def publish(self, result: PipelineResult, alarm_active: Callable[[str], AlarmEvent | None]):
        for window in result.windows:
            for observer in self.window_observers:
                observer(window)
            if self._outbox is None:
                continue
            payload = self._streams[window.robot].offer(
                score=window.score,
                smoothed=window.smoothed,
                threshold=window.threshold,
                window=window.window,
                model=window.model,
                alarm_active=alarm_active(window.robot) is not None,
            )
            if payload is not None:
                self._outbox.put_json(
                    self._topics.score(window.robot), payload, kind="telemetry", qos=0
                )
        for event in result.events:
            log.warning(
                "alarm %s robot=%s severity=%s score=%.4g threshold=%.4g top=%s id=%s",
                event.kind,
                event.robot,
                event.severity,
                event.smoothed,
                event.threshold,
                event.contributions[0].channel if event.contributions else "-",
                event.id,
            )
            for observer in self.event_observers:
                observer(event)
            if self._outbox is None:
                continue
            # Another route of the robot may still hold an alarm; if none does, the state
            # names the clear that ended it.
            active = alarm_active(event.robot) or event
            # The event and the retained state in one transaction: the outbox write is the
            # durability point, and no kill can leave one without the other (an alarm raised
            # and delivered, but never cleared after a restart).
            self._outbox.put_many(
                [
                    json_message(
                        self._topics.alarm(event.robot),
                        build_alarm(event, device=self._identity.device),
                        kind="alarm",
                    ),
                    json_message(
                        self._topics.alarm_active(event.robot),
                        build_alarm_active(self._identity.device, event.robot, active),
                        kind="alarm",
                        retain=True,
                    ),
                ]
            )
