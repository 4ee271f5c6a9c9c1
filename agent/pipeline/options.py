"""Operational options of one robot's pipeline (agent config `[robots.alarm]`, `[robots.drift]`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.pipeline.capture import WindowCapture
from agent.pipeline.drift import DriftSettings
from agent.pipeline.membership import MembershipSettings
from agent.pipeline.thresholds import DynamicSettings, ThresholdError

THRESHOLD_MODES = ("fixed", "dynamic")


@dataclass(frozen=True)
class PipelineOptions:
    """threshold: "fixed" (the bundle's calibrated threshold) or "dynamic" (Telemanom-style,
    :mod:`agent.pipeline.thresholds`, learned only from clean windows). capture: optional
    on-disk capture of recent normal windows for retraining."""

    threshold: str = "fixed"
    dynamic: DynamicSettings = field(default_factory=DynamicSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    capture: WindowCapture | None = None

    def __post_init__(self) -> None:
        if self.threshold not in THRESHOLD_MODES:
            raise ThresholdError(
                f"threshold = {self.threshold!r}: choose one of {', '.join(THRESHOLD_MODES)}"
            )
