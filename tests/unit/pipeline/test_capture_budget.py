"""The capture of normal windows stays within its disk budget and keeps program ids."""

from __future__ import annotations

import numpy as np

from agent.config import parse_config
from agent.daemon import pipeline_options
from agent.pipeline.capture import WindowCapture, load_capture


def test_capture_stays_within_its_disk_budget_newest_windows_kept(tmp_path):
    budget = 50_000
    capture = WindowCapture.open(tmp_path / "cap", max_windows=10_000, max_bytes=budget)
    for i in range(400):
        capture.add(np.full((64, 6), i, dtype=np.float32), start=i * 64, program=1 + i % 3)
        size = sum(p.stat().st_size for p in (tmp_path / "cap").iterdir())
        assert size <= budget
    capture.flush()
    samples, programs = load_capture(tmp_path / "cap")
    assert 0 < len(samples) < 400
    newest = samples[:, 0, 0].astype(int)
    assert newest[-1] == 399 and np.all(np.diff(newest) == 1)
    assert np.array_equal(programs, 1 + newest % 3)


def test_a_window_larger_than_the_budget_is_dropped_and_counted(tmp_path):
    capture = WindowCapture.open(tmp_path / "cap", max_windows=100, max_bytes=1000)
    capture.add(np.zeros((64, 6), np.float32), start=0, program=1)
    capture.flush()
    assert capture.too_large == 1 and capture.written == 0


def test_the_budget_comes_from_capture_max_mb(tmp_path):
    parsed = parse_config(
        {
            "agent": {"device_id": "ipc1", "state_dir": str(tmp_path / "state")},
            "trust": {"allow_unsigned": True},
            "robots": [
                {
                    "id": "arm1",
                    "bundle": "default",
                    "source": {"kind": "simulator"},
                    "drift": {"capture_dir": str(tmp_path / "cap"), "capture_max_mb": 2},
                }
            ],
        }
    )
    capture = pipeline_options(parsed.robots[0]).capture
    assert capture is not None and capture.max_bytes == 2 * 2**20
