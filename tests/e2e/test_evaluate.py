"""`rapp-export evaluate` end to end: simulator recordings, the shipped bundle, the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.models import default_bundle_path
from firmware_config.channel_map import load_builtin_map
from firmware_config.simulator.config import SimulationConfig, parse_fault
from firmware_config.simulator.core import simulate
from firmware_config.simulator.export import write_csv

ROOT = Path(__file__).resolve().parents[2]


def recording(path: Path, seed: int, duration: float, *faults: str) -> Path:
    config = SimulationConfig(
        seed=seed, duration_s=duration, faults=tuple(parse_fault(f) for f in faults)
    )
    write_csv([simulate(config)], path, load_builtin_map())
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    (root / "faults").mkdir()
    (root / "ok").mkdir()
    return {
        "friction": recording(root / "faults/friction.csv", 41, 90, "friction:2:onset=30:ramp=10"),
        "collision": recording(
            root / "faults/collision.csv", 42, 80, "collision:2:onset=30:duration=15"
        ),
        "normal": recording(root / "ok/normal.csv", 43, 120),
        "calibration": recording(root / "calibration.csv", 44, 150),
    }


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_evaluate_prints_the_tables_and_writes_the_json(recordings, tmp_path):
    out = tmp_path / "report.json"
    data = [str(recordings[k]) for k in ("friction", "collision", "normal")]
    proc = evaluate(
        "--bundle", str(default_bundle_path()), "--data", *data,
        "--calibration", str(recordings["calibration"]), "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "window AUROC" in proc.stdout and "alarm events" in proc.stdout
    report = json.loads(out.read_text())
    assert report["bundle"]["alarm_score"] == "nap"
    windows = report["windows"]["all"]
    assert set(windows["auroc"]) == {"recon", "sap", "nap", "density", "combined", "iforest", "pca"}
    assert windows["windows"] > 50 and 0 < windows["anomalous"] < windows["windows"]
    assert windows["auroc"]["nap"] > 0.9
    assert set(report["windows"]["groups"]) == {"collision", "friction", "normal"}
    events = report["events"]["all"]
    assert events["events"] == 2 and events["detected"] == 2 and events["recall"] == 1.0
    assert events["precision"] == 1.0 and events["alarms_per_detected_event"] == 1.0
    assert events["false_alarms"] == 0 and events["false_alarms_per_hour"] == 0.0
    assert events["normal_hours"] == pytest.approx(120 / 3600)
    friction = report["events"]["groups"]["friction"]
    assert 0 < friction["delay_s"]["median"] < 40
    collision = next(r for r in report["recordings"] if r["group"] == "collision")
    [episode] = collision["episodes"]
    [event] = collision["events"]
    assert event["label"] == "collision" and episode["start"] >= event["start"]
    # the alarm ends within 2 × debounce_n (10) cycles of the fault, not minutes later
    assert not episode["open"] and episode["end"] - event["end"] < 10 * 4.6


def test_evaluate_groups_by_directory_and_runs_without_baselines(recordings, tmp_path):
    out = tmp_path / "report.json"
    data = [str(recordings[k]) for k in ("friction", "normal")]
    proc = evaluate(
        "--bundle", str(default_bundle_path()), "--data", *data, "--group-by", "dir",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report["windows"]["all"]["auroc"]) == {"recon", "sap", "nap", "density", "combined"}
    assert report["settings"]["baselines"] is None
    assert set(report["events"]["groups"]) == {"faults", "ok"}


def test_a_too_short_recording_is_bad_input_naming_it(tmp_path):
    short = recording(tmp_path / "short.csv", 45, 2.0)  # less than one 4.4 s cycle
    proc = evaluate("--bundle", str(default_bundle_path()), "--data", str(short))
    assert proc.returncode == 2
    assert f"{short}: 2000 samples with 1 cycle start(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
