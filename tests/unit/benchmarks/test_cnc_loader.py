"""CNC mill loader, task labels and experiment-wise split, on a generated CNC-like folder.

The real recordings are not in a user's clone, so every test here writes a tiny folder with
the real layout: ``experiments.csv`` plus ``experiment_NN.csv`` whose first column is an
unnamed row index and whose phase label is spelled both ``End`` and ``end``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cnc_data import (
    ALL_NUMERIC,
    CncDataError,
    ExperimentSplit,
    check_experiment_wise,
    experiment_folds,
    is_machining,
    load_experiments,
    read_experiment,
    read_experiments,
    require_data_dir,
    task_labels,
)
from tests.support.cnc_folder import MI_F_NOVEL, MI_V_NOVEL


def test_mi_f_labels(cnc_dir: Path) -> None:
    labels = task_labels(read_experiments(cnc_dir), "mi-f")
    assert sorted(labels) == list(range(1, 19))
    assert {n for n, novel in labels.items() if novel} == MI_F_NOVEL


def test_mi_v_labels_use_finalized_experiments_only(cnc_dir: Path) -> None:
    infos = read_experiments(cnc_dir)
    labels = task_labels(infos, "mi-v")
    assert set(labels) == set(range(1, 19)) - MI_F_NOVEL
    assert {n for n, novel in labels.items() if novel} == MI_V_NOVEL
    assert all(infos[n].passed_visual_inspection is None for n in MI_F_NOVEL)


def test_unknown_task_is_rejected(cnc_dir: Path) -> None:
    with pytest.raises(CncDataError, match="mi-f, mi-v"):
        task_labels(read_experiments(cnc_dir), "mi-x")


@pytest.mark.parametrize("task", ["mi-f", "mi-v"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_folds", [3, 5])
def test_folds_are_experiment_wise(cnc_dir: Path, task: str, seed: int, n_folds: int) -> None:
    labels = task_labels(read_experiments(cnc_dir), task)
    normal = {n for n, novel in labels.items() if not novel}
    novel = {n for n, is_novel in labels.items() if is_novel}
    splits = experiment_folds(labels, n_folds, seed)
    assert len(splits) == n_folds
    tested = []
    for split in splits:
        sides = [split.train, split.calibration, split.test_normal, split.test_novel]
        flat = [n for side in sides for n in side]
        assert len(flat) == len(set(flat)), f"an experiment is on two sides: {split}"
        assert set(flat) == normal | novel
        assert set(split.test_novel) == novel  # novel data never trains or calibrates
        assert not (set(split.train) | set(split.calibration)) & novel
        assert split.train and split.calibration and split.test_normal
        tested += split.test_normal
    assert sorted(tested) == sorted(normal)  # each normal experiment tested once per seed


def test_wider_calibration_stays_experiment_wise(cnc_dir: Path) -> None:
    labels = task_labels(read_experiments(cnc_dir), "mi-v")
    for split in experiment_folds(labels, 5, 0, calibration_groups=2):
        check_experiment_wise(split)
        assert len(split.calibration) == 4 and len(split.test_normal) == 2
    with pytest.raises(CncDataError, match="n_folds"):
        experiment_folds(labels, 3, 0, calibration_groups=2)


def test_folds_depend_on_seed_and_are_deterministic(cnc_dir: Path) -> None:
    labels = task_labels(read_experiments(cnc_dir), "mi-f")
    assert experiment_folds(labels, 5, 0) == experiment_folds(labels, 5, 0)
    assert experiment_folds(labels, 5, 0) != experiment_folds(labels, 5, 1)


def test_leaky_split_is_rejected() -> None:
    leaky = ExperimentSplit(0, 0, train=(1, 2), calibration=(3,), test_normal=(2,), test_novel=(4,))
    with pytest.raises(CncDataError, match="experiment 2 is on both the train and test_normal"):
        check_experiment_wise(leaky)


def test_end_and_end_are_one_phase(cnc_dir: Path) -> None:
    info = read_experiments(cnc_dir)[1]
    exp = read_experiment(cnc_dir, info, ("X1_CurrentFeedback",))
    assert "end" not in set(exp.phase)
    assert int((exp.phase == "End").sum()) == 6
    machining = is_machining(exp.phase)
    assert not machining[exp.phase == "End"].any()
    assert machining[np.char.startswith(exp.phase, "Layer")].all()
    assert not machining[np.isin(exp.phase, ["Prep", "Starting", "Repositioning"])].any()


def test_index_column_is_not_a_channel(cnc_dir: Path) -> None:
    exp = load_experiments(cnc_dir, [3], "all")[3]
    assert exp.channels == ALL_NUMERIC
    assert exp.samples.shape == (72, len(ALL_NUMERIC))
    assert exp.samples.dtype == np.float32
    first = (cnc_dir / "experiment_03.csv").read_text().splitlines()[1].split(",")
    np.testing.assert_allclose(exp.samples[0], np.array(first[1:-2], dtype=np.float32))


def test_named_column_sets(cnc_dir: Path) -> None:
    exp = load_experiments(cnc_dir, [1], "currents")[1]
    assert exp.channels == ("X1_CurrentFeedback", "Y1_CurrentFeedback", "S1_CurrentFeedback")
    with pytest.raises(CncDataError, match="column set 'nope'"):
        load_experiments(cnc_dir, [1], "nope")


def test_missing_folder_names_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(CncDataError) as err:
        require_data_dir(missing)
    message = str(err.value)
    assert str(missing) in message
    assert "--data" in message and "cnc-mill-tool-wear" in message


def test_folder_without_experiments_csv(tmp_path: Path) -> None:
    with pytest.raises(CncDataError, match=r"experiments\.csv is missing"):
        read_experiments(tmp_path)


def test_missing_experiment_file_names_it(cnc_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "experiments.csv").write_text((cnc_dir / "experiments.csv").read_text())
    with pytest.raises(CncDataError, match=r"experiment_01\.csv: file is missing"):
        load_experiments(tmp_path, [1], "currents")


def test_evaluate_cli_reports_missing_folder(tmp_path: Path, capsys) -> None:
    from agent.core.errors import EXIT_FAILURE
    from benchmarks.cnc_eval import main

    code = main(["--data", str(tmp_path / "absent"), "--quick"])
    assert code == EXIT_FAILURE
    assert str(tmp_path / "absent") in capsys.readouterr().err


def test_quick_evaluation_end_to_end(cnc_dir: Path, tmp_path: Path) -> None:
    """Train, build, load and score through the product path (MI-V only: each fold builds a
    real fp32 + int8 bundle, and the loader tests above already cover MI-F's labels)."""
    from benchmarks.cnc_eval import run_evaluation

    out = tmp_path / "results" / "cnc_quality.json"
    code = run_evaluation(cnc_dir, "mi-v", out, seeds=3, quick=True, log=lambda _msg: None)
    assert code == 0
    results = json.loads(out.read_text())
    assert results["quick"] and results["seeds"] == 1
    result = results["tasks"]["mi-v"]
    assert set(result["novel"]) == MI_V_NOVEL
    assert set(result["normal"]) == set(range(1, 19)) - MI_F_NOVEL - MI_V_NOVEL
    for fold in result["folds"]:
        split = fold["split"]
        sides = [split[k] for k in ("train", "calibration", "test_normal", "test_novel")]
        flat = [n for side in sides for n in side]
        assert len(flat) == len(set(flat))
        assert set(split["test_novel"]) == MI_V_NOVEL
        for precision in ("fp32", "int8"):
            for level in ("window", "experiment"):
                for value in fold["metrics"][precision][level].values():
                    assert 0.0 <= value <= 1.0
    nap = result["summary"]["window"]["fp32"]["nap"]
    assert nap["n"] == results["config"]["n_folds"]
    assert nap["mean"] > 0.5  # the synthetic novel experiments are shifted: easy to detect
    markdown = out.with_suffix(".md").read_text()
    assert "| MI-V | NAP |" in markdown and "| MI-V | Recon |" in markdown


def test_quick_evaluation_reports_tflite_next_to_onnx(cnc_dir: Path, tmp_path: Path) -> None:
    """`evaluate --tflite`: every fold's bundle carries TFLite fp32/int8 too, scored through
    the LiteRT backend and reported beside ONNX with int8-vs-fp32 NAP Spearman per format."""
    from dataclasses import replace

    from benchmarks.cnc_eval import DEFAULT_CONFIG, run_evaluation

    out = tmp_path / "cnc_tflite.json"
    config = replace(DEFAULT_CONFIG, tflite=True)
    assert run_evaluation(cnc_dir, "mi-v", out, 1, True, config, log=lambda _m: None) == 0
    results = json.loads(out.read_text())
    assert "--tflite" in results["command"]
    summary = results["tasks"]["mi-v"]["summary"]
    for fold in results["tasks"]["mi-v"]["folds"]:
        assert {"fp32", "int8", "tflite-fp32", "tflite-int8"} <= set(fold["metrics"])
        rho = fold["spearman_nap_int8_vs_fp32"]
        assert set(rho) == {"onnx", "tflite"} and all(-1.0 <= r <= 1.0 for r in rho.values())
    assert summary["window"]["tflite_int8_minus_fp32"]["nap"]["n"] == len(
        results["tasks"]["mi-v"]["folds"]
    )
    assert summary["spearman_nap_tflite"]["n"] == summary["spearman_nap_onnx"]["n"] > 0
    markdown = out.with_suffix(".md").read_text()
    assert "ONNX vs TFLite" in markdown and "MI-V tflite: NAP Spearman" in markdown
