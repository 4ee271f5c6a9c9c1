"""ResultPublisher: pipeline results → outbox rows (alarm, retained state, telemetry)."""

from __future__ import annotations

import contextlib
import json

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.pipeline.robot import PipelineResult, ScoredWindow
from agent.sinks.mqtt.payloads import AgentIdentity
from agent.sinks.publisher import ResultPublisher
from agent.sinks.topics import Topics

MODEL = ModelRef("b", "1")
TOPICS = Topics.for_device("ipc1")


def _window(i: float, score: float) -> WindowInfo:
    return WindowInfo(i, i + 1, int(i), int(i), None, {"J1": score, "J2": 0.1})


def _scored(w: WindowInfo, score: float, active: bool) -> ScoredWindow:
    return ScoredWindow(
        robot="r1", model=MODEL, program=-1, recon=score, sap=score, nap=score, score=score,
        threshold=1.0, smoothed=score, contributions=dict(w.contributions), window=w,
        latency_s=0.0, start=int(w.start), stop=int(w.end), alarm_active=active,
    )  # fmt: skip


def _results(scores: list[float]) -> list[PipelineResult]:
    tracker = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    out = []
    for i, s in enumerate(scores):
        w = _window(float(i), s)
        event = tracker.update(s, 1.0, w, MODEL)
        out.append(
            PipelineResult([_scored(w, s, tracker.active is not None)], [event] if event else [])
        )
    return out


def _publisher(outbox, interval: float = 0.0) -> ResultPublisher:
    identity = AgentIdentity.create("ipc1", "0.0")
    return ResultPublisher(identity, TOPICS, outbox, ("r1",), interval)


def _rows(outbox) -> list:
    return outbox.next_batch(1000)


def test_raise_and_clear_queue_the_event_and_the_retained_state(outbox) -> None:
    pub = _publisher(outbox)
    active = {"r1": None}
    for result in _results([0.1, 5.0, 0.1]):
        for e in result.events:
            active["r1"] = e if e.kind == "raise" else None
        pub.publish(result, active.get)
    rows = [r for r in _rows(outbox) if r.kind == "alarm"]
    topics = [r.topic for r in rows]
    assert topics == [TOPICS.alarm("r1"), TOPICS.alarm_active("r1")] * 2
    raised, state, cleared, final = (json.loads(r.payload) for r in rows)
    assert (
        raised["kind"] == "raise" and state["active"] and state["alarm"]["raise_id"] == raised["id"]
    )
    assert cleared["kind"] == "clear" and cleared["raise_id"] == raised["id"]
    assert not final["active"] and final["event_id"] == cleared["id"]
    assert all(r.retain for r in rows[1::2]) and not any(r.retain for r in rows[0::2])


def test_unfinished_alarm_is_recovered_from_the_last_retained_state(outbox) -> None:
    pub = _publisher(outbox)
    result = _results([5.0])[0]
    pub.publish(result, lambda robot: result.events[0])
    recovered = _publisher(outbox).unfinished_alarms()
    assert recovered["r1"].id == result.events[0].id and recovered["r1"].kind == "raise"


def test_score_telemetry_is_rate_limited_and_observers_see_every_window(outbox) -> None:
    pub = _publisher(outbox, interval=3600.0)
    seen = []
    pub.window_observers.append(seen.append)
    for result in _results([0.1, 0.2, 0.3]):
        pub.publish(result, lambda robot: None)
    telemetry = [r for r in _rows(outbox) if r.kind == "telemetry"]
    assert len(seen) == 3
    assert len(telemetry) == 1 and telemetry[0].topic == TOPICS.score("r1")


def test_without_an_outbox_events_still_reach_observers() -> None:
    pub = _publisher(None)
    events = []
    pub.event_observers.append(events.append)
    for result in _results([5.0, 0.1]):
        pub.publish(result, lambda robot: None)
    assert [e.kind for e in events] == ["raise", "clear"]
    assert pub.unfinished_alarms() == {}


class _KilledMidTransaction(Exception):
    """Stands in for SIGKILL between the alarm row and its retained state."""


def test_a_kill_between_the_alarm_and_its_retained_state_leaves_neither(outbox, monkeypatch):
    real_insert = outbox._insert

    def insert_then_die(conn, rows, **kw):
        real_insert(conn, rows[:1], **kw)
        if len(rows) > 1:
            raise _KilledMidTransaction

    monkeypatch.setattr(outbox, "_insert", insert_then_die)
    pub = _publisher(outbox)
    raised = _results([5.0])[0]
    with contextlib.suppress(_KilledMidTransaction):
        pub.publish(raised, lambda robot: raised.events[0])
    assert [r for r in _rows(outbox) if r.kind == "alarm"] == [], "all or nothing"
    assert outbox.last_retained(TOPICS.alarm_active("r1")) is None
