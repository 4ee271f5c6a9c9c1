"""Drift indicators vs calibration quantiles, and the bounded capture of normal windows."""

from __future__ import annotations

import os

import numpy as np
import pytest

from agent.pipeline.capture import WindowCapture, load_capture
from agent.pipeline.drift import (
    DriftError,
    DriftSettings,
    RobotDrift,
    ks_at_quantiles,
)

LEVELS = tuple(np.linspace(0.0, 1.0, 21))


def calibration(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    values = rng.lognormal(0.0, 0.5, 5000)
    return LEVELS, tuple(np.quantile(values, LEVELS))


def test_ks_is_small_for_the_calibration_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    levels, q = calibration(rng)
    same = rng.lognormal(0.0, 0.5, 2000)
    shifted = rng.lognormal(1.0, 0.5, 2000)
    assert ks_at_quantiles(same, levels, q) < 0.05
    assert ks_at_quantiles(shifted, levels, q) > 0.5
    assert np.isnan(ks_at_quantiles(np.array([]), levels, q))


def test_retraining_is_advised_on_a_score_shift_not_on_normal_data():
    rng = np.random.default_rng(1)
    cal = calibration(rng)
    settings = DriftSettings(window=256, min_windows=64)
    for shift, expect in ((0.0, False), (1.0, True)):
        drift = RobotDrift(settings)
        for v in rng.lognormal(shift, 0.5, 300):
            drift.add_score("b", cal, float(v))
            drift.scored(False)
        summary, advised = drift.summary()
        assert advised is expect, summary
        assert summary["p50_ratio"] == pytest.approx(np.exp(shift), rel=0.2)


def test_no_advice_before_min_windows_and_old_bundles_report_no_ks():
    drift = RobotDrift(DriftSettings(window=128, min_windows=64))
    for _ in range(10):
        drift.unknown(5)
    summary, advised = drift.summary()
    assert summary["unknown_program_share"] == 1.0 and not advised
    drift.add_score("old", None, 1.0)  # a bundle without calibration quantiles
    summary, _ = drift.summary()
    assert summary["ks"] is None and summary["last_unknown_program"] == 5.0


def test_alarm_rate_and_unknown_share_advise_retraining():
    drift = RobotDrift(DriftSettings(window=100, min_windows=50))
    for i in range(100):
        drift.scored(alarm_active=i % 2 == 0, confidence=0.9)
    summary, advised = drift.summary()
    assert summary["alarm_rate"] == 0.5 and advised
    drift.reset_membership()
    summary, advised = drift.summary()
    assert summary["alarm_rate"] is None and not advised


def test_settings_name_the_fix():
    with pytest.raises(DriftError, match="min_windows"):
        DriftSettings(window=10, min_windows=20)
    with pytest.raises(DriftError, match="ks_limit"):
        DriftSettings(ks_limit=0.0)


def test_capture_is_bounded_atomic_and_pickle_free(tmp_path):
    capture = WindowCapture.open(tmp_path / "cap", max_windows=40, per_file=10)
    rng = np.random.default_rng(2)
    for i in range(95):
        capture.add(rng.normal(size=(64, 6)), start=i * 64, program=1)
    capture.flush()
    files = sorted(os.listdir(tmp_path / "cap"))
    assert len(files) == 4 and all(f.endswith(".npz") for f in files), files
    assert not [f for f in files if f.startswith(".")], "no temporary files left behind"
    samples, programs = load_capture(tmp_path / "cap")
    assert samples.shape == (35, 64, 6) and (programs == 1).all()
    with np.load(tmp_path / "cap" / files[-1], allow_pickle=False) as data:
        assert data["start"][-1] == 94 * 64
    # A restarted agent continues the numbering instead of overwriting the newest file.
    again = WindowCapture.open(tmp_path / "cap", max_windows=40, per_file=10)
    again.add(np.zeros((64, 6)), 0, 2)
    again.flush()
    assert sorted(os.listdir(tmp_path / "cap"))[-1] > files[-1]


def test_capture_directory_errors_name_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DriftError, match="capture_dir"):
        WindowCapture.open(blocker / "sub", max_windows=10)
