"""What the pipeline learns from windows it judged normal — and only from those.

A clean window (finite score below the threshold, no alarm raised, active or just cleared)
feeds: the drift monitor's score distribution, the ring of recent normal segments that an OTA
candidate is checked against, the optional on-disk capture for retraining, and the dynamic
threshold. Nothing here ever sees a window that raised or sat in an alarm, so an ongoing
fault cannot teach the agent that it is normal.
"""

from __future__ import annotations

import collections

import numpy as np

from agent.core.features import Segment
from agent.pipeline.capture import WindowCapture
from agent.pipeline.drift import RobotDrift
from agent.pipeline.routes import ModelRoute

RECENT_NORMAL_LIMIT = 256  # segments kept for the OTA gate


class NormalFeedback:
    def __init__(self, drift: RobotDrift, capture: WindowCapture | None) -> None:
        self.drift = drift
        self.capture = capture
        # Raw segments scored below threshold while no alarm was active, and segments of
        # programs no bundle serves yet (what a new bundle for them would have to score).
        self.recent_normal: collections.deque[Segment] = collections.deque(
            maxlen=RECENT_NORMAL_LIMIT
        )

    def unrouted(self, seg: Segment) -> None:
        self.recent_normal.append(seg)

    def clean(self, route: ModelRoute, seg: Segment, score: float, smoothed: float | None) -> None:
        self.recent_normal.append(seg)
        self.drift.add_score(route.model.bundle_id, route.calibration, score)
        if self.capture is not None:
            self.capture.add(seg.samples, seg.start, seg.program)
        threshold = route.current_threshold()
        if route.dynamic is not None and smoothed is not None and smoothed < threshold:
            route.dynamic.learn(smoothed)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.flush()


def is_clean(score: float, threshold: float, was_active: bool, active: bool) -> bool:
    return bool(np.isfinite(score)) and score < threshold and not active and not was_active
