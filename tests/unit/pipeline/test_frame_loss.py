"""1 % of the frames lost on the link: windows are still scored and the fault still alarms.

Frames of 10 samples (the reference arm's) go through the daemon's RobotPipeline as a framed
source hands them over: a chunk after lost frames has ``gap_before`` and ``missing_samples``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.core.bundle import load_bundle
from agent.core.features import Normalization, StreamSegmenter
from agent.core.recording import read_recording
from agent.core.scoring import open_scorer
from agent.models import default_bundle_path
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.robot import RobotPipeline
from agent.sinks.status import robot_health
from agent.sources.base import QueueStats, SampleChunk, SourceStatus
from firmware_config.simulator.config import SimulationConfig, parse_fault
from firmware_config.simulator.core import simulate

FRAME = 10


def stream(
    pipeline: RobotPipeline,
    samples: np.ndarray,
    cycle_start: np.ndarray,
    program: np.ndarray,
    loss: float,
    seed: int = 5,
) -> tuple[int, list[float]]:
    """(windows scored, times of the raises in seconds) with a share ``loss`` of frames lost."""
    lost = np.random.default_rng(seed).random(samples.shape[0] // FRAME) < loss
    windows, raises, missing = 0, [], 0
    for f, gone in enumerate(lost):
        if gone:
            missing += FRAME
            continue
        rows = slice(f * FRAME, (f + 1) * FRAME)
        chunk = SampleChunk(
            samples[rows],
            cycle_start[rows],
            program[rows],
            seq_first=f,
            seq_last=f,
            wall_time=1.7e9 + f * FRAME / 1000,
            received_monotonic=time.monotonic(),
            gap_before=missing > 0,
            missing_samples=missing,
        )
        missing = 0
        result = pipeline.process(chunk)
        windows += len(result.windows)
        raises += [f * FRAME / 1000 for e in result.events if e.kind == "raise"]
    return windows, raises


def pipeline_for(path: Path, fill: bool = True) -> RobotPipeline:
    bundle = load_bundle(path.read_bytes())
    scorer = open_scorer(bundle, "onnxruntime", "int8", 1)
    pipeline = RobotPipeline("r1", [scorer], AlarmSettings.from_bundle(bundle.manifest.alarm))
    if not fill:  # what the agent did before: every gap ends the window or cycle
        n = pipeline.spec.n_channels
        identity = Normalization(np.zeros(n, np.float32), np.ones(n, np.float32))
        pipeline.segmenter = StreamSegmenter(pipeline.spec, identity, max_fill=0)
    return pipeline


def test_the_shipped_cycle_bundle_scores_through_one_percent_frame_loss() -> None:
    onset = 30.0
    run = simulate(
        SimulationConfig(
            seed=5, duration_s=110.0, faults=(parse_fault(f"friction:2:onset={onset}:ramp=20"),)
        )
    )
    args = (run.currents, run.cycle_start, run.program_id.astype(np.int64))
    clean_windows, clean_raises = stream(pipeline_for(default_bundle_path()), *args, loss=0.0)
    lossy = pipeline_for(default_bundle_path())
    windows, raises = stream(lossy, *args, loss=0.01)
    old_windows, _ = stream(pipeline_for(default_bundle_path(), fill=False), *args, loss=0.01)
    assert clean_windows >= 20 and len(clean_raises) == 1
    assert windows >= 0.95 * clean_windows, (windows, clean_windows)
    assert old_windows <= 0.2 * clean_windows, "nearly every 4.4 s cycle holds a lost frame"
    assert lossy.segmenter.stats.interpolated > 0
    health = robot_health(lossy, SourceStatus("serial"), QueueStats())
    assert health.windows["interpolated"] == lossy.segmenter.stats.interpolated
    assert len(raises) == 1 and raises[0] > onset, raises


def test_a_window_bundle_scores_through_one_percent_frame_loss(bundle_path, recordings) -> None:
    recording = read_recording(recordings["test"], ("J1", "J2", "J3", "J4", "J5", "J6"))
    n = recording.n_samples
    args = (recording.samples, np.zeros(n, bool), np.full(n, -1, np.int64))
    clean_windows, clean_raises = stream(pipeline_for(bundle_path), *args, loss=0.0)
    windows, raises = stream(pipeline_for(bundle_path), *args, loss=0.01)
    assert windows >= 0.95 * clean_windows, (windows, clean_windows)
    assert clean_raises and raises and raises[0] >= 4.0  # the ripple starts at 4 s
