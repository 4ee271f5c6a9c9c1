"""The CNC mill tool-wear data (UMich SMART lab, Kaggle) and the RaPP paper's tasks on it.

Folder layout (see ``../shared/data/README.md``): ``experiments.csv`` with one row per
experiment and ``experiment_NN.csv`` with one row per 100 ms sample; the first column of the
latter is an unnamed row index. This module reads them, picks columns, filters machining
phases and defines the paper's two novelty tasks plus an *experiment-wise* split:

- **MI-F**: all 18 experiments; novel = machining not finalized (4, 5, 7, 16).
- **MI-V**: finalized experiments only; novel = failed visual inspection (6, 8, 9, 10).

Why experiment-wise: consecutive 100 ms rows of one experiment are nearly identical, so a
row-wise split puts near-copies of test rows into training and inflates AUROC. Here every
experiment lands on exactly one side (train, calibration or test).

The data is not shipped with the repository; every entry point takes the folder as an
argument and fails with a message naming the path and the fix when it is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.recording import RecordingError, read_columns, to_float
from exporter.errors import ExportError

EXPERIMENTS_CSV = "experiments.csv"
SAMPLE_PERIOD_S = 0.1
SAMPLE_RATE_HZ = 1.0 / SAMPLE_PERIOD_S
PHASE_COLUMN = "Machining_Process"
TASKS = ("mi-f", "mi-v")
AXES = ("X1", "Y1", "Z1", "S1")
KINEMATICS = (
    "ActualPosition",
    "ActualVelocity",
    "ActualAcceleration",
    "CommandPosition",
    "CommandVelocity",
    "CommandAcceleration",
)
DRIVE = ("CurrentFeedback", "DCBusVoltage", "OutputCurrent", "OutputVoltage", "OutputPower")
CONTROLLER = ("M1_CURRENT_PROGRAM_NUMBER", "M1_sequence_number", "M1_CURRENT_FEEDRATE")
# Known-dead or meaningless columns (README "known quirks"): the Z1 drive reads all zeros,
# the spindle's inertia is a constant and its position is an ever-growing angle.
DEAD_COLUMNS = (
    "Z1_CurrentFeedback",
    "Z1_DCBusVoltage",
    "Z1_OutputCurrent",
    "Z1_OutputVoltage",
    "S1_SystemInertia",
)
UNBOUNDED_COLUMNS = ("S1_ActualPosition", "S1_CommandPosition")
# Canonical phase names; the raw files spell the last phase both "End" and "end".
NON_MACHINING_PHASES = ("Prep", "Starting", "Repositioning", "End")
PHASE_FILTERS = ("all", "machining")


def _axis_columns(suffixes: Sequence[str], axes: Sequence[str] = AXES) -> tuple[str, ...]:
    return tuple(f"{axis}_{suffix}" for axis in axes for suffix in suffixes)


def _all_numeric() -> tuple[str, ...]:
    """Every numeric column of an experiment file, in file order (Z1 has no OutputPower)."""
    cols = []
    for axis in AXES:
        cols += [f"{axis}_{s}" for s in (*KINEMATICS, *DRIVE) if f"{axis}_{s}" != "Z1_OutputPower"]
    cols.insert(cols.index("S1_OutputPower") + 1, "S1_SystemInertia")
    return (*cols, *CONTROLLER)


ALL_NUMERIC = _all_numeric()
# Named column sets for experiments (``--columns``-style names in EvalConfig):
COLUMN_SETS: dict[str, tuple[str, ...]] = {
    # What the paper fed its AE: every numeric column of a row.
    "all": ALL_NUMERIC,
    # The servo signals: drop the controller's bookkeeping (program, line number, commanded
    # feedrate — a setting, not a measurement), dead columns and the unbounded spindle angle.
    "signals": tuple(
        c for c in ALL_NUMERIC if c not in (*CONTROLLER, *DEAD_COLUMNS, *UNBOUNDED_COLUMNS)
    ),
    # The servo signals without absolute positions: where the tool sits on the stock depends
    # on the program and the clamping, not on the machine's health, and every experiment
    # has its own position range, which an experiment-wise split would flag as novel.
    "servo": tuple(
        c
        for c in ALL_NUMERIC
        if c not in (*CONTROLLER, *DEAD_COLUMNS, *UNBOUNDED_COLUMNS) and "Position" not in c
    ),
    # Only what a robot controller exposes on the edge: motor currents (in A) per live axis.
    "currents": ("X1_CurrentFeedback", "Y1_CurrentFeedback", "S1_CurrentFeedback"),
    # Drive-side electrical signals without kinematics.
    "drive": tuple(
        c
        for c in _axis_columns(("CurrentFeedback", "DCBusVoltage", "OutputVoltage", "OutputPower"))
        if c not in DEAD_COLUMNS and c != "Z1_OutputPower"
    ),
}


class CncDataError(ExportError):
    """The CNC data folder is missing or malformed; the message names the path and the fix."""


@dataclass(frozen=True)
class ExperimentInfo:
    """One row of ``experiments.csv``; ``passed_visual_inspection`` is None if not finalized."""

    number: int
    feedrate: float
    clamp_pressure: float
    tool_condition: str
    finalized: bool
    passed_visual_inspection: bool | None


@dataclass(frozen=True)
class Experiment:
    """One experiment's samples (T × C float32, physical units) and canonical phase per row."""

    info: ExperimentInfo
    channels: tuple[str, ...]
    samples: np.ndarray
    phase: np.ndarray

    @property
    def number(self) -> int:
        return self.info.number


@dataclass(frozen=True)
class ExperimentSplit:
    """Experiment numbers per side of one fold; no number appears on two sides."""

    seed: int
    fold: int
    train: tuple[int, ...]
    calibration: tuple[int, ...]
    test_normal: tuple[int, ...]
    test_novel: tuple[int, ...]

    @property
    def test(self) -> tuple[int, ...]:
        return (*self.test_normal, *self.test_novel)

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "fold": self.fold,
            "train": list(self.train),
            "calibration": list(self.calibration),
            "test_normal": list(self.test_normal),
            "test_novel": list(self.test_novel),
        }


def missing_data_message(path: Path, what: str) -> str:
    return (
        f"{path}: {what}. The CNC mill tool-wear data is not part of the repository; pass the "
        f"folder that holds {EXPERIMENTS_CSV} and experiment_01.csv … experiment_18.csv, "
        "e.g. `python -m benchmarks.cnc_eval --data ../shared/data/cnc-mill-tool-wear` "
        "(download: Kaggle 'CNC Mill Tool Wear', University of Michigan SMART lab)"
    )


def require_data_dir(data_dir: Path | str) -> Path:
    """The data folder as a Path, or :class:`CncDataError` naming it and the fix."""
    root = Path(data_dir)
    if not root.is_dir():
        raise CncDataError(missing_data_message(root, "no such folder"))
    if not (root / EXPERIMENTS_CSV).is_file():
        raise CncDataError(missing_data_message(root, f"{EXPERIMENTS_CSV} is missing"))
    return root


def _yes_no(path: Path, number: int, field: str, value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("yes", "no"):
        return text == "yes"
    if text == "":
        return None
    raise CncDataError(f"{path}: experiment {number}: {field} = {value!r}; expected yes, no or ''")


def read_experiments(data_dir: Path | str) -> dict[int, ExperimentInfo]:
    """Parse ``experiments.csv`` into :class:`ExperimentInfo` keyed by experiment number."""
    path = require_data_dir(data_dir) / EXPERIMENTS_CSV
    try:
        cols = read_columns(path)
        numbers = to_float(path, "No", cols["No"]).astype(int)
        feed = to_float(path, "feedrate", cols["feedrate"])
        clamp = to_float(path, "clamp_pressure", cols["clamp_pressure"])
        tool, fin, vis = (
            cols["tool_condition"],
            cols["machining_finalized"],
            cols["passed_visual_inspection"],
        )
    except KeyError as err:
        raise CncDataError(f"{path}: column {err} is missing") from err
    except RecordingError as err:
        raise CncDataError(str(err)) from err
    infos = {}
    for i, n in enumerate(numbers.tolist()):
        finalized = _yes_no(path, n, "machining_finalized", fin[i])
        if finalized is None:
            raise CncDataError(f"{path}: experiment {n}: machining_finalized is empty")
        passed = _yes_no(path, n, "passed_visual_inspection", vis[i])
        infos[n] = ExperimentInfo(
            number=n,
            feedrate=float(feed[i]),
            clamp_pressure=float(clamp[i]),
            tool_condition=tool[i].strip(),
            finalized=finalized,
            passed_visual_inspection=passed if finalized else None,
        )
    return infos


def experiment_path(data_dir: Path | str, number: int) -> Path:
    return Path(data_dir) / f"experiment_{number:02d}.csv"


def canonical_phase(label: str) -> str:
    """Phase names compared case-insensitively: ``end`` and ``End`` are one phase."""
    text = " ".join(str(label).split())
    for known in NON_MACHINING_PHASES:
        if text.lower() == known.lower():
            return known
    return text[:1].upper() + text[1:] if text else text


def is_machining(phase: np.ndarray) -> np.ndarray:
    """Rows that cut material: the ``Layer N Up/Down`` phases, not Prep/Starting/… /End."""
    return np.char.startswith(np.asarray(phase, dtype=str), "Layer")


def phase_mask(phase: np.ndarray, keep: str) -> np.ndarray:
    """Boolean row mask for a phase filter (``all`` or ``machining``)."""
    if keep == "all":
        return np.ones(len(phase), dtype=bool)
    if keep == "machining":
        return is_machining(phase)
    raise CncDataError(f"phase filter {keep!r}: choose one of {', '.join(PHASE_FILTERS)}")


def resolve_columns(columns: str | Sequence[str]) -> tuple[str, ...]:
    """A named column set (see :data:`COLUMN_SETS`) or an explicit list of column names."""
    if isinstance(columns, str):
        if columns not in COLUMN_SETS:
            raise CncDataError(
                f"column set {columns!r}: choose one of {', '.join(COLUMN_SETS)} or list names"
            )
        return COLUMN_SETS[columns]
    names = tuple(columns)
    if not names:
        raise CncDataError("no columns selected; name at least one, e.g. X1_CurrentFeedback")
    return names


def read_experiment(
    data_dir: Path | str, info: ExperimentInfo, columns: str | Sequence[str]
) -> Experiment:
    """Read one ``experiment_NN.csv``: the chosen columns and the canonical phase per row."""
    path = experiment_path(data_dir, info.number)
    if not path.is_file():
        raise CncDataError(missing_data_message(path, "file is missing"))
    names = resolve_columns(columns)
    try:
        cols = read_columns(path)
    except RecordingError as err:
        raise CncDataError(str(err)) from err
    missing = [n for n in (*names, PHASE_COLUMN) if n not in cols]
    if missing:
        raise CncDataError(f"{path}: missing column(s) {missing}")
    try:
        samples = np.stack([to_float(path, n, cols[n]) for n in names], axis=1)
    except RecordingError as err:
        raise CncDataError(str(err)) from err
    phase = np.array([canonical_phase(p) for p in cols[PHASE_COLUMN]], dtype=str)
    return Experiment(info, names, samples.astype(np.float32), phase)


def load_experiments(
    data_dir: Path | str, numbers: Sequence[int], columns: str | Sequence[str]
) -> dict[int, Experiment]:
    """Read several experiments (``numbers`` must exist in ``experiments.csv``)."""
    infos = read_experiments(data_dir)
    unknown = [n for n in numbers if n not in infos]
    if unknown:
        raise CncDataError(f"{Path(data_dir) / EXPERIMENTS_CSV}: no experiment(s) {unknown}")
    return {n: read_experiment(data_dir, infos[n], columns) for n in numbers}


def task_labels(infos: Mapping[int, ExperimentInfo], task: str) -> dict[int, bool]:
    """Experiments taking part in ``task`` → True if novel (the paper's definitions)."""
    if task == "mi-f":
        return {n: not info.finalized for n, info in sorted(infos.items())}
    if task == "mi-v":
        return {
            n: not info.passed_visual_inspection
            for n, info in sorted(infos.items())
            if info.finalized
        }
    raise CncDataError(f"task {task!r}: choose one of {', '.join(TASKS)}")


def experiment_folds(
    labels: Mapping[int, bool], n_folds: int, seed: int, calibration_groups: int = 1
) -> list[ExperimentSplit]:
    """Rotate the normal experiments through test / calibration / train, experiment-wise.

    The normal experiments are shuffled with ``seed`` and dealt into ``n_folds`` groups. In
    fold k, group k is the normal test side, the next ``calibration_groups`` groups (mod
    n_folds) are the calibration set (held-out normal data for the NAP fit and thresholds)
    and the rest train the model. Every novel experiment is on the test side of every fold
    and never trains. So each normal experiment is tested exactly once per seed, and no
    experiment is on two sides of a fold.
    """
    normal = np.array(sorted(n for n, novel in labels.items() if not novel))
    novel = tuple(sorted(n for n, is_novel in labels.items() if is_novel))
    if calibration_groups < 1 or n_folds < calibration_groups + 2:
        raise CncDataError(
            f"n_folds = {n_folds} with {calibration_groups} calibration group(s): need "
            f"n_folds ≥ {calibration_groups + 2} (train, calibration and test groups)"
        )
    if len(normal) < n_folds:
        raise CncDataError(f"{len(normal)} normal experiments cannot fill {n_folds} folds")
    if not novel:
        raise CncDataError("no novel experiments in this task; AUROC is undefined")
    shuffled = np.random.default_rng(seed).permutation(normal)
    groups = [tuple(sorted(g.tolist())) for g in np.array_split(shuffled, n_folds)]
    splits = []
    for k in range(n_folds):
        calib_ids = {(k + 1 + j) % n_folds for j in range(calibration_groups)}
        calib = tuple(sorted(n for j in calib_ids for n in groups[j]))
        train = tuple(
            sorted(n for j, g in enumerate(groups) if j != k and j not in calib_ids for n in g)
        )
        splits.append(ExperimentSplit(seed, k, train, calib, groups[k], novel))
    for split in splits:
        check_experiment_wise(split)
    return splits


def check_experiment_wise(split: ExperimentSplit) -> None:
    """Raise if any experiment sits on two sides of ``split`` (a leak)."""
    sides = {
        "train": split.train,
        "calibration": split.calibration,
        "test_normal": split.test_normal,
        "test_novel": split.test_novel,
    }
    seen: dict[int, str] = {}
    for side, numbers in sides.items():
        for n in numbers:
            if n in seen:
                raise CncDataError(f"experiment {n} is on both the {seen[n]} and {side} side")
            seen[n] = side
    if not split.train or not split.calibration or not split.test_normal:
        raise CncDataError(f"fold {split.fold}: train, calibration and test need ≥ 1 experiment")
