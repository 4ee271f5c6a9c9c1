"""`rapp-export retrain` and `merge` end to end on tiny simulator data.

v1 is trained and built on regime A (program 1, nominal payload); the agent's pipeline, with
its capture on, streams regime B (payload +20 %) through v1; `retrain` turns that capture into
a signed v2 and refuses a capture full of faulty windows; `merge` joins two programs whose
normal data are the same and refuses two that differ.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from agent.core.bundle import TrustPolicy, load_bundle
from agent.core.scoring import open_scorer
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.capture import WindowCapture
from agent.pipeline.options import PipelineOptions
from agent.pipeline.robot import RobotPipeline
from agent.sources.base import SampleChunk
from exporter.cli import main
from exporter.keys import load_private_key
from exporter.replay import CALIBRATION_NAME, REPLAY_NAME, ReplayBuffer, load_replay, save_replay
from firmware_config.channel_map import load_builtin_map
from firmware_config.simulator import FaultSpec, SimulatedRun, SimulationConfig, simulate, write_csv
from tests.support.fixtures.archive import _relabel

CHANNELS = "J1,J2,J3"
# Every dimension fixed: no model selection, the test trains one small model.
TRAIN = ["--channels", CHANNELS, "--window", "32", "--hop", "32", "--features", "raw",
         "--layers", "2", "--bottleneck", "4", "--epochs", "15", "--patience", "5"]  # fmt: skip
QUIET = ["--no-int8", "-q"]


def sim(seconds: float, seed: int, payload: float = 3.0, faults=(), program: int = 1):
    return simulate(
        SimulationConfig(
            seed=seed, duration_s=seconds, payload_kg=payload, faults=faults,
            schedule=((program, 1),),
        )
    )  # fmt: skip


def stream(run: SimulatedRun, bundle_path: Path, capture: WindowCapture) -> None:
    """Feed a run through the agent's pipeline in frame-sized chunks, capture on."""
    bundle = load_bundle(bundle_path)
    columns = [run.channels.index(c) for c in bundle.manifest.input.channels]
    pipeline = RobotPipeline(
        "arm1",
        [open_scorer(bundle, precision="fp32")],
        AlarmSettings.from_bundle(bundle.manifest.alarm),
        PipelineOptions(capture=capture),
    )
    for lo in range(0, run.n_samples, 1000):
        hi = min(run.n_samples, lo + 1000)
        pipeline.process(
            SampleChunk(
                samples=run.currents[lo:hi, columns],
                cycle_start=run.cycle_start[lo:hi],
                program=run.program_id[lo:hi].astype(np.int64),
                seq_first=lo,
                seq_last=hi - 1,
                wall_time=float(run.time_s[hi - 1]),
                received_monotonic=time.monotonic(),
            )
        )
    pipeline.close()


def raw_capture(run: SimulatedRun, directory: Path) -> Path:
    """Every window of ``run`` written as a capture, bypassing the agent's clean-window rule."""
    capture = WindowCapture.open(directory, max_windows=100_000)
    columns = [run.channels.index(c) for c in CHANNELS.split(",")]
    for start in range(0, run.n_samples - 32 + 1, 32):
        capture.add(run.currents[start : start + 32, columns], start, int(run.program_id[start]))
    capture.flush()
    return directory


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("field")
    cmap = load_builtin_map()
    write_csv([sim(30, seed=1)], root / "train.csv", cmap)
    write_csv([sim(20, seed=2)], root / "calib.csv", cmap)
    assert main(["train", "--data", str(root / "train.csv"), *TRAIN, "--replay-windows", "600",
                 "--out", str(root / "m1"), "-q"]) == 0  # fmt: skip
    build = ["build", "--model", str(root / "m1"), "--calibration", str(root / "calib.csv"),
             "--out", str(root / "v1.rapp"), "--program", "1", "--no-int8", "-q"]  # fmt: skip
    assert main(build) == 0
    capture = WindowCapture.open(root / "capture", max_windows=100_000)
    stream(sim(40, seed=3, payload=3.6), root / "v1.rapp", capture)
    assert capture.written > 600
    friction = (FaultSpec("friction", 2, 0.0, severity=3.0, ramp_s=0.0),)
    raw_capture(sim(30, seed=4, faults=friction), root / "faulty")
    assert main(["keygen", "--out", str(root / "release.key")]) == 0
    return {"root": root, "m1": root / "m1", "v1": root / "v1.rapp", "calib": root / "calib.csv"}


def test_train_keeps_a_bounded_replay_buffer(field):
    replay = load_replay(field["m1"])
    assert len(replay) == 600  # of 937 training windows
    assert replay.segments.shape[1:] == (32, 3) and set(replay.program) == {1}


def test_retrain_builds_a_signed_next_version_that_passes_the_gates(field, capsys):
    root = field["root"]
    out = root / "v2.rapp"
    args = ["retrain", "--bundle", str(field["v1"]), "--model", str(field["m1"]),
            "--capture", str(root / "capture"), "--calibration", str(field["calib"]),
            "--out", str(out), "--replay-windows", "800",
            "--sign-key", str(root / "release.key"), "--epochs", "8", "--json", *QUIET]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["from_version"], report["version"]) == ("1", "2")
    assert [g["name"] for g in report["gates"]] == [
        "capture",
        "old_calibration",
        "new_fit",
        "sanity",
    ]
    assert all(g["passed"] for g in report["gates"]), report["gates"]
    public = load_private_key(root / "release.key").public_key().public_bytes_raw()
    v2 = load_bundle(out, TrustPolicy(trusted_keys=(public,), allow_unsigned=False))
    assert (v2.bundle_id, v2.manifest.bundle_version) == ("v1", "2")
    model_dir = root / "v2-model"
    replay = load_replay(model_dir)
    assert len(replay) <= 800 and set(replay.generation) == {0, 1}
    assert (model_dir / CALIBRATION_NAME).exists()


def test_retrain_refuses_a_capture_full_of_faulty_windows(field, capsys):
    root = field["root"]
    out = root / "bad.rapp"
    args = ["retrain", "--bundle", str(field["v1"]), "--model", str(field["m1"]),
            "--capture", str(root / "faulty"), "--calibration", str(field["calib"]),
            "--out", str(out), *QUIET]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "retrain refused, no bundle written — capture:" in err
    assert "faulty windows" in err and "nothing was trained" in err
    assert not out.exists() and not (root / "bad-model").exists()


def _member(field, program: int, replay: ReplayBuffer | None = None) -> tuple[Path, Path]:
    """v1 as the bundle of ``program`` (same model), with ``replay`` as its memory."""
    root = field["root"]
    bundle = root / f"p{program}.rapp"
    bundle.write_bytes(_relabel(field["v1"].read_bytes(), f"p{program}", (program,)))
    model = root / f"m{program}"
    shutil.copytree(field["m1"], model, dirs_exist_ok=True)
    if replay is None:
        replay = load_replay(field["m1"])
        replay = ReplayBuffer(replay.segments, np.full(len(replay), program), replay.generation)
    save_replay(model, replay)
    assert (model / REPLAY_NAME).exists()
    return bundle, model


def test_merge_joins_programs_with_the_same_normal_data(field, capsys):
    root = field["root"]
    bundle, model = _member(field, 3)
    out = root / "merged.rapp"
    args = ["merge", "--member", str(field["v1"]), str(field["m1"]), "--member", str(bundle),
            str(model), "--out", str(out), "--json", *QUIET]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["programs"] == [1, 3] and report["distances"][0]["distance"] < 0.05
    assert all(g["passed"] for g in report["gates"]), report["gates"]
    merged = load_bundle(out)
    assert merged.manifest.programs == (1, 3)
    assert (merged.bundle_id, merged.manifest.bundle_version) == ("v1", "2")


def test_merge_refuses_programs_whose_normal_data_differ(field, capsys):
    root = field["root"]
    other = sim(30, seed=5, program=2)
    columns = [other.channels.index(c) for c in CHANNELS.split(",")]
    starts = range(0, other.n_samples - 32 + 1, 32)
    segments = np.stack([other.currents[s : s + 32, columns] for s in starts])
    bundle, model = _member(field, 2, ReplayBuffer.of(segments, np.full(len(segments), 2)))
    out = root / "refused.rapp"
    args = ["merge", "--member", str(field["v1"]), str(field["m1"]), "--member", str(bundle),
            str(model), "--out", str(out), *QUIET]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "merge refused" in err and "not close enough" in err
    assert not out.exists()
