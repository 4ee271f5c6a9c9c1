"""Replay selection, the retrain gates, versions and the merge distance, on small data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent.core.bundle import load_bundle
from exporter.errors import ExportInputError
from exporter.merge import Member, MergeSettings, _train_settings, program_distance
from exporter.replay import REPLAY_NAME, ReplayBuffer, load_replay, save_replay, select_rows
from exporter.retrain import (
    GateLimits,
    RetrainGateError,
    RetrainSettings,
    capture_gate,
    next_version,
    recipe_of,
    retrain,
)
from exporter.train import TrainSettings
from tests.conftest import HOP, WINDOW
from tests.support.synthetic import currents


def windows(x: np.ndarray) -> np.ndarray:
    """Physical-unit windows of the session bundle's segmentation."""
    return np.stack([x[i : i + WINDOW] for i in range(0, len(x) - WINDOW + 1, HOP)])


def test_replay_selection_is_bounded_deterministic_and_stratified_by_program_and_time():
    program = np.r_[np.full(9000, 1), np.full(1000, 2)]
    rows = select_rows(program, limit=500, seed=3)
    assert len(rows) == 500 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, select_rows(program, limit=500, seed=3))
    assert not np.array_equal(rows, select_rows(program, limit=500, seed=4))
    assert abs(int(np.sum(program[rows] == 2)) - 50) <= 1  # proportional to its windows
    per_tenth = np.bincount(rows[program[rows] == 1] * 10 // 9000, minlength=10)
    assert per_tenth.min() >= 44 and per_tenth.max() <= 46  # every stretch of time kept
    uniform = select_rows(program, limit=500, seed=3, rule="uniform")
    assert len(uniform) == 500 and not np.array_equal(uniform, rows)
    assert np.array_equal(select_rows(program[:300], limit=500), np.arange(300))
    with pytest.raises(ExportInputError, match="rule"):
        select_rows(program, rule="newest")


def test_replay_buffer_round_trips_as_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer.of(rng.normal(size=(50, 8, 3)), np.arange(50) % 2).bounded(limit=20)
    assert len(buffer) == 20
    save_replay(tmp_path, buffer)
    with np.load(tmp_path / REPLAY_NAME, allow_pickle=False) as data:
        assert set(data.files) == {"segments", "program", "generation"}
    again = load_replay(tmp_path)
    assert np.array_equal(again.segments, buffer.segments)
    assert np.array_equal(again.program, buffer.program)
    with pytest.raises(ExportInputError, match="rapp-export train"):
        load_replay(tmp_path / "missing")


@pytest.mark.parametrize(
    ("before", "after"),
    [("1", "2"), ("9", "10"), ("1.2", "1.3"), ("2.0.9", "2.0.10"), ("v7", "v8"), ("", "1")],
)
def test_next_version(before, after):
    assert next_version(before) == after


def test_the_recipe_is_the_old_bundles_with_the_next_version(built_bundle):
    old = load_bundle(built_bundle.data)
    recipe = recipe_of(old, RetrainSettings())
    assert (recipe.bundle_id, recipe.bundle_version) == ("test-bundle", "2")
    assert (recipe.robot, recipe.programs, recipe.alarm) == ("r1", (), old.manifest.alarm)
    assert recipe.strict and recipe.quantize


def test_the_capture_gate_passes_normal_windows_and_rejects_faulty_ones(built_bundle):
    old = load_bundle(built_bundle.data)
    normal = ReplayBuffer.of(windows(currents(8000, seed=7)))
    faulty = ReplayBuffer.of(windows(currents(8000, seed=7, fault_from=0)))
    assert capture_gate(old, normal, GateLimits()).passed
    gate = capture_gate(old, faulty, GateLimits())
    assert not gate.passed and gate.values["alarm_share"] > 0.5
    assert "faulty windows" in gate.message


def test_retrain_refuses_a_faulty_capture_before_any_training(built_bundle, trained_model):
    old = load_bundle(built_bundle.data)
    normal = windows(currents(8000, seed=8))
    faulty = ReplayBuffer.of(windows(currents(8000, seed=9, fault_from=0)))
    with pytest.raises(RetrainGateError, match=r"capture: .* nothing was trained"):
        retrain(
            old, trained_model, ReplayBuffer.of(normal), faulty, ReplayBuffer.of(normal),
            RetrainSettings(),
        )  # fmt: skip


def test_program_distance_is_small_within_a_distribution_and_large_between_two():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 20)), rng.normal(size=(400, 20))
    assert program_distance(a, b) < 0.05
    assert program_distance(a, b + 1.0) > 0.3


def test_merge_trains_with_the_first_members_architecture_also_after_a_retrain(
    built_bundle, trained_model
):
    fine_tuned = dataclasses.replace(
        trained_model, history={"warm_start": True, "settings": {"learning_rate": 5e-4}}
    )
    member = Member(
        load_bundle(built_bundle.data), fine_tuned, ReplayBuffer.of(np.zeros((1, 32, 6)))
    )
    settings = _train_settings(member, MergeSettings(seed=2))
    assert (settings.n_layers, settings.bottleneck) == (3, 6)
    assert settings.learning_rate == TrainSettings().learning_rate and settings.seed == 2
