"""`benchmarks.sim_healthy`: the rate bound, the plan, and short runs through the real pipeline.

The runs use the shipped default bundle (program 1) and stay short (minutes of simulation):
the full check (5 seeds × 2 h, programs 1–3) is `make bench`'s; here the counting is checked —
alarms through the agent's tracker, program changes, windows of a program no bundle serves —
and one episode of a fault the model sees by construction.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest

from agent.core.bundle import load_bundle
from agent.core.scoring import open_scorer
from agent.models import default_bundle_path
from benchmarks.sim_healthy import (
    EPISODE_CASES,
    FULL,
    ONE_IMPULSE,
    QUICK,
    _recipe_key,
    code_fingerprint,
    episode_faults,
    fault_episode,
    healthy_run,
    main,
    parser,
    plan_from,
    poisson_upper_rate,
    summarize,
    train_args,
)
from benchmarks.sim_report import FAULT_CASES, column_index, sim_config, simulate_span
from firmware_config.simulator import SimulationError


@pytest.fixture(scope="module")
def bundle():
    path = default_bundle_path()
    assert path.is_file(), f"{path} is missing; run scripts/build_default_bundle.sh"
    return load_bundle(path.read_bytes())


@pytest.fixture(scope="module")
def scorer(bundle):
    return open_scorer(bundle, "onnxruntime", "int8")


@pytest.fixture(scope="module")
def columns(bundle):
    return column_index(simulate_span(sim_config(0, 1, 1000), 0.0, 0.01), bundle)


def test_rate_bound_is_the_poisson_upper_limit() -> None:
    # 0 events: -ln(0.05) = 2.996; 1 event: 4.744; 5 events: 10.513 (chi² tables / 2)
    assert poisson_upper_rate(0, 10.0) == pytest.approx(-math.log(0.05) / 10.0, rel=1e-6)
    assert poisson_upper_rate(1, 1.0) == pytest.approx(4.7439, abs=1e-3)
    assert poisson_upper_rate(5, 2.0) == pytest.approx(10.5130 / 2, abs=1e-3)
    # thousands of alarms (a model that misfires): e^-λ alone would underflow to 0 there
    assert poisson_upper_rate(2578, 10.0) == pytest.approx(266.31, abs=0.01)


def test_the_full_plan_meets_the_acceptance_sizes() -> None:
    assert len(FULL.seeds) >= 5 and FULL.seconds >= 2 * 3600
    assert not {1, 2} & set(FULL.seeds), "seeds 1 and 2 trained and calibrated the bundle"
    assert {p for p, _ in FULL.schedule} == {1, 2, 3}
    assert set(FULL.fault_kinds) == {c.kind for c in FAULT_CASES}


def test_plan_refuses_the_training_seeds_and_unknown_programs() -> None:
    with pytest.raises(SimulationError, match="trained or calibrated"):
        plan_from(parser().parse_args(["--seeds", "11,2"]))
    with pytest.raises(SimulationError, match="program 4"):
        plan_from(parser().parse_args(["--schedule", "1:5,4:5"]))
    plan = plan_from(parser().parse_args(["--quick", "--seeds", "21,22", "--hours", "0.5"]))
    assert plan.seeds == (21, 22) and plan.seconds == 1800 and plan.recipe == QUICK.recipe


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--seeds", "1", "--out", str(tmp_path)]) == 2
    assert "trained or calibrated" in capsys.readouterr().err
    assert main(["--bundle", str(tmp_path / "nope.rapp"), "--out", str(tmp_path)]) == 2
    assert "nope.rapp" in capsys.readouterr().err


def test_program_bundles_take_the_spec_and_layers_of_the_bundle(bundle) -> None:
    args = train_args(bundle, FULL.recipe)
    flags = {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}
    assert flags["--segmentation"] == "cycle" and flags["--window"] == "64"
    assert (flags["--min-cycle"], flags["--max-cycle"]) == ("2200", "6600")
    assert (flags["--layers"], flags["--bottleneck"]) == ("2", "12")
    assert flags["--epochs"] == "200" and flags["--batch-size"] == "64"
    code = code_fingerprint()
    key = _recipe_key(bundle, 2, FULL.recipe, code)
    assert key == _recipe_key(bundle, 2, FULL.recipe, code_fingerprint())
    assert key != _recipe_key(bundle, 3, FULL.recipe, code)
    assert key != _recipe_key(bundle, 2, QUICK.recipe, code)
    assert key != _recipe_key(bundle, 2, FULL.recipe, "other code")


def test_collision_episode_repeats_its_impulse_unless_it_is_the_lone_one() -> None:
    collision = next(c for c in EPISODE_CASES if c.kind == "collision" and c.note != ONE_IMPULSE)
    lone = next(c for c in EPISODE_CASES if c.note == ONE_IMPULSE)
    assert len(episode_faults(collision, 100.0, 60.0)) == 9  # every 7.3 s over 60 s
    (impulse,) = episode_faults(lone, 100.0, 60.0)
    assert impulse.end_s == pytest.approx(100.1)
    friction = next(c for c in EPISODE_CASES if c.kind == "friction")
    assert episode_faults(friction, 100.0, 60.0)[0].end_s == 160.0


def test_healthy_run_counts_program_changes_and_unserved_programs(scorer, columns) -> None:
    """Program 2 has no bundle here: its windows are counted as unknown, never scored."""
    plan = replace(FULL, seeds=(11,), seconds=240.0, schedule=((1, 10), (2, 10)))
    run = healthy_run([scorer], 11, plan, 1000, columns)
    assert run["program_changes"] >= 2
    assert set(run["windows"]) == {"1"} and run["windows"]["1"] >= 20
    assert run["not_scored"]["unknown_program"] >= 10
    assert run["alarms_raised"] == len(run["raises"]) == 0, run["raises"]


def test_one_payload_episode_raises_once_and_clears_once(scorer, columns) -> None:
    case = next(c for c in EPISODE_CASES if c.kind == "payload")
    plan = replace(FULL, lead_s=40.0, episode_s=40.0, tail_s=90.0)
    episode = fault_episode([scorer], case, 11, 1, plan, 1000, columns)
    assert (episode["raises"], episode["clears"], episode["raises_before_onset"]) == (1, 1, 0)
    assert 0 < episode["delay_s"] < 40.0
    assert episode["clear_after_windows"] <= 10 and episode["verdict"] == "ok", episode
    assert not episode["still_raised_at_end"]


def test_summary_target_needs_zero_alarms_on_enough_long_seeds() -> None:
    runs = [{"seed": s, "hours": 2.0, "alarms_raised": 0} for s in range(11, 16)]
    episodes = [
        {"kind": "payload", "seed": 11, "verdict": "ok", "clear_after_debounce_windows": 1.8},
        {"kind": "backlash", "seed": 11, "verdict": "not detected",
         "clear_after_debounce_windows": None},
    ]  # fmt: skip
    s = summarize(runs, episodes)
    assert s["target_met"] and s["alarms"] == 0 and s["hours"] == 10.0
    assert s["false_alarms_per_hour_upper_95"] == pytest.approx(0.2996, abs=1e-3)
    assert s["episodes_target_met"] and s["not_detected_kinds"] == ["backlash"]
    assert not summarize(runs[:4], episodes)["target_met"]
    runs[0] = {**runs[0], "alarms_raised": 1}
    assert not summarize(runs, episodes)["target_met"]
    late = [{**episodes[0], "verdict": "clears late"}]
    assert not summarize(runs, late)["episodes_target_met"]
