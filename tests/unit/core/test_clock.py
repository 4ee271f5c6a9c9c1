"""Ids and stamps keep their order when the wall clock steps (NTP, an operator)."""

from __future__ import annotations

import time

from agent.core.clock import AnchoredClock
from agent.pipeline.alarms import new_event_id


def test_anchored_clock_ignores_a_backward_wall_clock_step(monkeypatch) -> None:
    clock = AnchoredClock()
    before = clock.now()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 7200.0)  # -2 h
    after = clock.now()
    assert after >= before
    assert abs(after - real()) < 5.0


def test_event_ids_sort_across_a_wall_clock_step(monkeypatch) -> None:
    first = [new_event_id() for _ in range(3)]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 7200.0)
    monkeypatch.setattr(time, "time_ns", lambda: int((real() - 7200.0) * 1e9))
    time.sleep(0.002)
    later = new_event_id()
    assert all(later > earlier for earlier in first)
