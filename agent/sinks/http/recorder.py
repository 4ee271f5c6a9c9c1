"""What the endpoint learns from the publisher's observers, on the main loop.

:class:`WindowRecorder` is called for every scored window and alarm event (the publisher's
``window_observers`` / ``event_observers``, so on the main loop, never concurrently) and keeps
only small aggregates: the last window per robot, a latency histogram, event counts and the
most recent events. :meth:`WindowRecorder.freeze` copies them into a frozen
:class:`Recorded` for the endpoint's threads.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.pipeline.alarms import AlarmEvent, ModelRef
from agent.pipeline.robot import ScoredWindow

# Seconds from the newest sample's reception to its window's score: queueing, segmenting and
# the backend's inference. Scores are usually ready in milliseconds; seconds mean a backlog.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECENT_EVENTS = 20


@dataclass(frozen=True, slots=True)
class LastWindow:
    """The robot's most recent scored window."""

    score: float
    smoothed: float | None
    threshold: float
    model: ModelRef
    program: int
    end: float  # unix seconds


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative counts per upper bound of :data:`LATENCY_BUCKETS_S` (then +Inf = count)."""

    cumulative: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class Recorded:
    """A frozen copy of what :class:`WindowRecorder` holds."""

    last: Mapping[str, LastWindow] = field(default_factory=dict)
    latency: Mapping[str, Histogram] = field(default_factory=dict)
    event_counts: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    recent_events: Sequence[AlarmEvent] = ()  # oldest first


class _Latency:
    def __init__(self) -> None:
        self.counts = [0] * len(LATENCY_BUCKETS_S)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        i = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.count += 1
        self.total += seconds

    def freeze(self) -> Histogram:
        running, cumulative = 0, []
        for n in self.counts:
            running += n
            cumulative.append(running)
        return Histogram(tuple(cumulative), self.count, self.total)


class WindowRecorder:
    """Main-loop aggregates of scored windows and alarm events (not thread-safe)."""

    def __init__(self, recent_events: int = RECENT_EVENTS) -> None:
        self._last: dict[str, LastWindow] = {}
        self._latency: dict[str, _Latency] = collections.defaultdict(_Latency)
        self._event_counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._events: collections.deque[AlarmEvent] = collections.deque(maxlen=recent_events)

    def window(self, w: ScoredWindow) -> None:
        self._last[w.robot] = LastWindow(
            w.score, w.smoothed, w.threshold, w.model, w.program, w.window.end
        )
        self._latency[w.robot].observe(w.latency_s)

    def event(self, e: AlarmEvent) -> None:
        self._event_counts[(e.robot, e.kind, e.severity)] += 1
        self._events.append(e)

    def freeze(self) -> Recorded:
        return Recorded(
            last=dict(self._last),
            latency={robot: h.freeze() for robot, h in self._latency.items()},
            event_counts=dict(self._event_counts),
            recent_events=tuple(self._events),
        )
