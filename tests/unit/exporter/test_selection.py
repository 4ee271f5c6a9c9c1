"""Model selection: the grid, the block split, the choice, the sample rate from time_s, and
`rapp-export train` choosing what its flags leave open."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from agent.core.features import FeatureSpec
from agent.core.recording import Recording, RecordingError
from exporter.cli import main
from exporter.data import fit_normalization, load_recordings, sample_rate_from_time
from exporter.errors import ExportInputError
from exporter.selection import (
    SELECTION_JSON,
    Candidate,
    Fixed,
    Outcome,
    grade,
    hop_for,
    neighbour_bottlenecks,
    pick,
    select_model,
    split_blocks,
    window_for,
)
from exporter.train import TrainSettings

RATE = 100.0
CHANNELS = ("A1", "A2")


def two_channels(n: int, seed: int) -> np.ndarray:
    """A periodic pair (the second follows the first) plus noise, at RATE Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    a = np.sin(2 * np.pi * 1.3 * t) + 0.3 * np.sign(np.sin(2 * np.pi * 0.4 * t))
    b = 0.6 * np.roll(a, 7) + 0.2 * np.cos(2 * np.pi * 3.1 * t)
    return np.stack([a, b], axis=1) + 0.05 * rng.normal(size=(n, 2))


def write(path: Path, x: np.ndarray, times: np.ndarray | None = None) -> Path:
    times = np.arange(len(x)) / RATE if times is None else times
    rows = [f"{t:.4f},{a:.5f},{b:.5f}" for t, (a, b) in zip(times, x, strict=True)]
    path.write_text("time_s,A1,A2\n" + "\n".join(rows) + "\n")
    return path


def recording(n: int, seed: int = 0, time_s: np.ndarray | None = None) -> Recording:
    x = two_channels(n, seed).astype(np.float32)
    return Recording(Path(f"r{seed}.csv"), CHANNELS, x, time_s, None, None, None, None)


@pytest.fixture(scope="module")
def normal_csv(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("sel") / "normal.csv", two_channels(3000, seed=1))


# ------------------------------------------------------------------------------ the grid


def test_window_is_64_samples_unless_the_recordings_are_short():
    assert window_for(600_000, 600_000) == 64  # whatever the sample rate
    assert window_for(2_000, 11_000) == 64  # the CNC mill's experiments (10 Hz)
    assert window_for(200, 200_000) == 16  # an eighth of the shortest recording
    assert window_for(3_000, 3_000) == 32  # five blocks of 16 windows
    assert window_for(5, 5) == 1


def test_hop_is_half_the_window_unless_data_is_scarce():
    assert hop_for(64, 600_000) == 32
    assert hop_for(64, 40_000) == 19  # 2,048 windows
    assert hop_for(4, 3_000) == 1
    assert hop_for(1, 10**7) == 1


def test_neighbour_bottlenecks_stay_below_half_the_input():
    assert neighbour_bottlenecks(8, 384) == [4, 16]
    assert neighbour_bottlenecks(8, 20) == [4]
    assert neighbour_bottlenecks(1, 6) == [2]


def test_blocks_are_disjoint_cover_everything_and_are_seeded():
    recs = [recording(3000, 0), recording(1000, 1)]
    split = split_blocks(recs, 64, seed=3)
    assert split == split_blocks(recs, 64, seed=3)
    spans = sorted((b.recording, b.start, b.stop) for b in (*split.train, *split.fit, *split.held))
    covered = {r: sum(stop - start for rr, start, stop in spans if rr == r) for r in (0, 1)}
    assert covered == {0: 3000, 1: 1000}
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(spans) if a[0] == b[0])
    total = 4000
    for role in (split.fit, split.held):
        assert 0.15 < sum(b.size for b in role) / total < 0.3
    with pytest.raises(ExportInputError, match="too few to choose a model"):
        split_blocks([recording(100)], 64, seed=0)


# ------------------------------------------------------------------------------ choosing


def outcome(criterion: float, cost: float, window: int = 8) -> Outcome:
    o = Outcome(Candidate(window, 4, ("raw",), 4), 1, cost=cost)
    o.per_kind = {"spike": criterion, "drift": None}
    return o


def test_ties_go_to_the_cheaper_candidate():
    outcomes = [outcome(0.950, 10.0), outcome(0.947, 2.0), outcome(0.900, 1.0)]
    assert grade(outcomes) == ("spike",)  # drift changed nothing: not averaged
    winner, why = pick(outcomes)
    assert winner == 1
    assert "within 0.005 of the best" in why and "#1" in why
    assert outcomes[0].reason.startswith("tied")
    assert outcomes[2].reason == "-0.0500 below the best"


def test_a_clear_winner_wins_at_any_cost():
    outcomes = [outcome(0.90, 1.0), outcome(0.97, 50.0)]
    grade(outcomes)
    assert pick(outcomes) == (1, "highest criterion (0.9700)")


def test_a_candidate_that_could_not_be_judged_is_passed_over():
    failed = Outcome(Candidate(64, 32, ("raw",), 8), 1, reason="not judged: only 3 windows")
    outcomes = [failed, outcome(0.9, 1.0)]
    grade(outcomes)
    assert pick(outcomes)[0] == 1
    assert failed.reason == "not judged: only 3 windows" and failed.to_json()["criterion"] is None
    with pytest.raises(ExportInputError, match="no candidate model could be judged"):
        pick([failed])


def test_selection_is_deterministic_and_fixed_dimensions_stay_fixed():
    recs = [recording(3000, 1)]
    base = FeatureSpec(CHANNELS, ("A", "A"), RATE)
    norm = fit_normalization(recs)
    settings = TrainSettings(epochs=2, patience=2, seed=0)
    fixed = Fixed(window=8, hop=4, bottleneck=4)
    first = select_model(recs, base, norm, fixed, settings, log=lambda _m: None)
    again = select_model(recs, base, norm, fixed, settings, log=lambda _m: None)
    assert [o.candidate for o in first.outcomes] == [
        Candidate(8, 4, ("raw",), 4),
        Candidate(8, 4, ("raw", "stats"), 4),
    ]  # no stage 2: the bottleneck is fixed
    assert [o.to_json() | {"seconds": 0} for o in first.outcomes] == [
        o.to_json() | {"seconds": 0} for o in again.outcomes
    ]
    assert sum(o.chosen for o in first.outcomes) == 1
    assert first.chosen in [o.candidate for o in first.outcomes]
    assert all(0.0 <= o.criterion <= 1.0 for o in first.outcomes)


# ------------------------------------------------------------------------------ sample rate


def test_sample_rate_comes_from_time_s(tmp_path):
    recs = load_recordings([write(tmp_path / "a.csv", two_channels(50, 0))], CHANNELS)
    assert sample_rate_from_time(recs) == (100.0, tmp_path / "a.csv")
    assert sample_rate_from_time([recording(50)]) is None  # no time_s column


def test_time_s_going_backwards_names_the_file_and_line():
    t = np.arange(50) / RATE
    t[10] = t[8]
    with pytest.raises(RecordingError, match=r"r0.csv: time_s does not increase on line 12"):
        sample_rate_from_time([recording(50, time_s=t)])


def test_irregular_time_s_names_the_file():
    t = np.cumsum(np.random.default_rng(0).uniform(0.005, 0.02, size=50))
    with pytest.raises(RecordingError, match=r"r0.csv: time_s is irregular.*--sample-rate"):
        sample_rate_from_time([recording(50, time_s=t)])


def test_files_with_different_rates_are_refused():
    fast = recording(50, 0, time_s=np.arange(50) / 100.0)
    slow = recording(50, 1, time_s=np.arange(50) / 50.0)
    with pytest.raises(RecordingError, match=r"r1.csv: time_s gives 50 Hz but r0.csv gives 100"):
        sample_rate_from_time([fast, slow])


# ------------------------------------------------------------------------------ the CLI


def train(data: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "--data", str(data), "--channels", "A1,A2", "--epochs", "2",
            "--patience", "2", "--quiet", "--out", str(out), *flags]  # fmt: skip


def test_train_without_flags_selects_and_writes_the_table(normal_csv, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(train(normal_csv, out)) == 0
    printed = capsys.readouterr().out
    assert f"sample rate 100 Hz (from time_s of {normal_csv})" in printed
    assert "model selection on the normal data for: window, hop, features, bottleneck" in printed
    assert "criterion" in printed and "reason" in printed
    report = json.loads((out / SELECTION_JSON).read_text())
    windows = {c["window"] for c in report["candidates"]}
    assert windows == {32}  # not graded: 64, halved for 3,000 samples (window_for)
    assert len(report["candidates"]) == 4  # raw, raw+stats; then half and double
    assert sum(c["chosen"] for c in report["candidates"]) == 1
    chosen = report["chosen"]
    assert f"chose window {chosen['window']}, hop {chosen['hop']}" in printed
    spec = json.loads((out / "model.json").read_text())["input"]
    assert spec["segmentation"] == {"kind": "window", "length": chosen["window"],
                                    "hop": chosen["hop"]}  # fmt: skip
    assert spec["features"] == chosen["features"] and spec["sample_rate_hz"] == 100.0


def test_train_with_window_given_keeps_that_window(normal_csv, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(train(normal_csv, out, "--window", "16", "--features", "raw")) == 0
    assert "for: hop, bottleneck (flags fix them)" in capsys.readouterr().out
    report = json.loads((out / SELECTION_JSON).read_text())
    assert {(c["window"], tuple(c["features"])) for c in report["candidates"]} == {(16, ("raw",))}
    assert report["fixed_by_flags"] == {"window": 16, "features": ["raw"]}
    assert len(report["candidates"]) == 3  # stage-1 bottleneck, then half and double


def test_train_with_every_flag_or_no_select_does_not_select(normal_csv, tmp_path, capsys):
    out = tmp_path / "fixed"
    flags = ("--window", "16", "--hop", "8", "--features", "raw", "--bottleneck", "4")
    assert main(train(normal_csv, out, *flags, "--sample-rate", "250")) == 0
    assert not (out / SELECTION_JSON).exists()
    spec = json.loads((out / "model.json").read_text())["input"]
    assert spec["sample_rate_hz"] == 250.0  # --sample-rate wins over time_s
    out = tmp_path / "defaults"
    assert main(train(normal_csv, out, "--no-select")) == 0
    assert not (out / SELECTION_JSON).exists()
    spec = json.loads((out / "model.json").read_text())["input"]
    assert spec["segmentation"] == {"kind": "window", "length": 64, "hop": 32}
    assert "model selection" not in capsys.readouterr().out
