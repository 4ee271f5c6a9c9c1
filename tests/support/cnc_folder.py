"""A tiny folder with the CNC mill recordings' real layout (benchmarks.cnc_data reads it).

``experiments.csv`` plus ``experiment_NN.csv`` whose first column is an unnamed row index and
whose phase label is spelled both ``End`` and ``end``; novel experiments sit at a shifted
operating point, easy for any detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.cnc_data import ALL_NUMERIC, PHASE_COLUMN

MI_F_NOVEL = {4, 5, 7, 16}
MI_V_NOVEL = {6, 8, 9, 10}
PHASES = ("Prep", "Starting", "Layer 1 Up", "Layer 1 Down", "Layer 2 Up", "Repositioning")


def _experiments_csv(root: Path) -> None:
    """The paper's outcome flags per experiment; the process settings are made up."""
    lines = ["No,material,feedrate,clamp_pressure,tool_condition,machining_finalized,"
             "passed_visual_inspection"]  # fmt: skip
    for n in range(1, 19):
        finalized = n not in MI_F_NOVEL
        passed = "" if not finalized else ("no" if n in MI_V_NOVEL else "yes")
        tool = "worn" if n % 2 == 0 else "unworn"
        lines.append(
            f"{n},aluminum,{3 + n % 4},{3 + n % 2},{tool},{'yes' if finalized else 'no'},{passed}"
        )
    (root / "experiments.csv").write_text("\n".join(lines) + "\n")


def _experiment_csv(root: Path, n: int, rows: int, novel: bool) -> None:
    rng = np.random.default_rng(n)
    t = np.arange(rows)
    base = np.sin(2 * np.pi * t[:, None] / 25.0 + np.arange(len(ALL_NUMERIC))[None, :])
    values = base + 0.05 * rng.normal(size=base.shape)
    if novel:
        values[:, ::3] += 0.8  # a shifted operating point: easy for any detector
    cut = rows - 6
    phases = [PHASES[min(i * len(PHASES) // cut, len(PHASES) - 1)] for i in range(cut)]
    phases += ["End", "end", "End", "end", "end", "End"]  # both spellings, as in the data
    header = ",".join(["", *ALL_NUMERIC, PHASE_COLUMN, "tool_condition"])
    lines = [header]
    for i in range(rows):
        nums = ",".join(f"{v:.4f}" for v in values[i])
        lines.append(f"{i},{nums},{phases[i]},unworn")
    (root / f"experiment_{n:02d}.csv").write_text("\n".join(lines) + "\n")


def write_cnc_folder(root: Path) -> Path:
    """The 18 experiments of the real data set, 72–80 rows each."""
    _experiments_csv(root)
    for n in range(1, 19):
        _experiment_csv(root, n, rows=72 + 4 * (n % 3), novel=n in MI_F_NOVEL | MI_V_NOVEL)
    return root
