"""The one quality table (`benchmarks.quality.quality_table`) and its SUMMARY target rows.

Built from small hand-made results (the shapes `cnc_eval`, `sim_report`, `sim_healthy` and
`digits` write), so every branch is checked without running a benchmark.
"""

from __future__ import annotations

from typing import Any

from benchmarks.quality import quality_table
from benchmarks.summary import _combined_vs_baselines, _healthy_targets


def _stat(mean: float) -> dict[str, float]:
    return {"mean": mean, "std": 0.0, "n": 15}


def _events(recall: float = 1.0) -> dict[str, Any]:
    return {
        "precision": 1.0,
        "recall": recall,
        "delay_s": {"mean": 9.9, "median": 9.9, "max": 9.9},
        "false_alarms_per_hour": 0.0,
    }


def _quality(combined: float | None = 0.76) -> dict[str, Any]:
    cnc_fp32 = {"nap": _stat(0.57), "iforest": _stat(0.72), "pca": _stat(0.47)}
    if combined is not None:
        cnc_fp32["combined"] = _stat(combined)
    sim_fp32 = {"auroc_nap": 1.0, "auroc_combined": combined, "auroc_iforest": 0.98,
                "auroc_pca": 0.7, "events": _events()}  # fmt: skip
    return {
        "cnc": {"tasks": {"mi-f": {"summary": {"window": {"fp32": cnc_fp32}}}}},
        "sim": {
            "bundle": {"id": "default", "path": "agent/data/default.rapp"},
            "faults": [
                {
                    "kind": "payload",
                    "axis": 2,
                    "results": {"fp32": sim_fp32, "int8": {**sim_fp32, "events": _events(0.5)}},
                }
            ],
        },
        "healthy": {
            "plan": {"seconds": 7200.0},
            "runs": [{"seed": s, "alarms_raised": 0} for s in range(11, 16)],
            "summary": {
                "seeds": 5,
                "alarms": 0,
                "hours": 10.0,
                "false_alarms_per_hour": 0.0,
                "false_alarms_per_hour_upper_95": 0.2996,
                "target_met": True,
                "episodes_ok": 5,
                "episodes_detected": 5,
                "episodes_not_ok": [],
                "episodes_target_met": True,
                "not_detected_kinds": ["backlash"],
                "worst_clear_after_debounce_windows": 2.0,
            },
        },
    }


DIGITS = {
    "summary": {
        "multimodal": {
            "fp32": {
                "nap": _stat(0.906),
                "combined": _stat(0.761),
                "iforest": _stat(0.804),
                "pca": _stat(0.733),
            }
        }
    }
}


def _row(lines: list[str], task: str) -> list[str]:
    line = next(line for line in lines if line.startswith(f"| {task} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_has_every_task_with_the_acceptance_columns() -> None:
    lines = quality_table(_quality(), DIGITS)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == [
        "task", "NAP", "combined", "IsolationForest", "PCA",
        "event precision", "event recall", "delay s", "false alarms/h",
    ]  # fmt: skip
    assert _row(lines, "CNC MI-F") == ["CNC MI-F", "0.570", "0.760", "0.720", "0.470", *"––––"]
    # the simulator's events are the int8 artifact's (the agent's default precision)
    assert _row(lines, "simulator payload (J2)")[1:] == [
        "1.000", "0.760", "0.980", "0.700", "1.000", "0.500", "9.9", "0.00",
    ]  # fmt: skip
    assert _row(lines, "digits multimodal")[1:5] == ["0.906", "0.761", "0.804", "0.733"]
    healthy = next(line for line in lines if line.startswith("| simulator healthy"))
    assert "5 seeds × 2 h" in healthy and "0.00 (0 alarms; ≤ 0.30 at 95 %)" in healthy


def test_a_bundle_without_density_has_no_combined_figure() -> None:
    lines = quality_table(_quality(combined=None), None)
    assert _row(lines, "simulator payload (J2)")[2] == "–"
    assert not any(line.startswith("| digits") for line in lines)
    _, measured, gap = _combined_vs_baselines(_quality(combined=None), None)
    assert "not measured: CNC MI-F, simulator payload (J2)" in measured and gap == "incomplete"


def test_combined_target_names_every_task_it_is_short_on() -> None:
    target, measured, gap = _combined_vs_baselines(_quality(), DIGITS)
    assert target.startswith("combined ≥ best baseline")
    # CNC 0.76 ≥ 0.72 (met); simulator 0.76 < IsolationForest 0.98; digits 0.761 < 0.804
    assert measured.startswith("≥ on 1 of 3 tasks")
    assert "simulator payload (J2) 0.760 vs IsolationForest 0.980" in measured
    assert "digits multimodal 0.761 vs IsolationForest 0.804" in measured
    assert gap == "2 task(s) short, worst by 0.220"
    _, _, gap = _combined_vs_baselines(_quality(combined=0.99), None)
    assert gap == "met"


def test_healthy_targets_report_alarms_per_seed_and_episodes() -> None:
    (alarms, episodes) = _healthy_targets(_quality()["healthy"])
    assert alarms[0].startswith("0 alarms over ≥ 2 h × ≥ 5 healthy seeds")
    assert "11: 0, 12: 0" in alarms[1] and "95 % upper bound 0.300/h" in alarms[1]
    assert alarms[2] == "met"
    assert "5 of 5 detected episodes ok (worst clear 2.0 debounce windows)" in episodes[1]
    assert "not detected: backlash" in episodes[1] and episodes[2] == "met where detected"
    healthy = _quality()["healthy"]
    healthy["summary"] |= {"alarms": 2, "target_met": False}
    assert _healthy_targets(healthy)[0][2] == "2 alarm(s)"
    assert _healthy_targets(None) == [["0 alarms over ≥ 2 h × ≥ 5 healthy seeds", "not run", "–"]]


def test_cnc_rows_come_from_the_default_flags_run_when_there_is_one() -> None:
    quality = _quality()
    defaults = {"nap": _stat(0.81), "combined": _stat(0.9), "iforest": _stat(0.86),
                "pca": _stat(0.79)}  # fmt: skip
    quality["cnc_defaults"] = {"tasks": {"mi-f": {"summary": {"window": {"fp32": defaults}}}}}
    assert _row(quality_table(quality, None), "CNC MI-F")[1:5] == [
        "0.810", "0.900", "0.860", "0.790",
    ]  # fmt: skip
    quality["cnc_defaults"] = {"skipped": "--skip-cnc given"}  # the paper protocol's rows then
    assert _row(quality_table(quality, None), "CNC MI-F")[1:5] == [
        "0.570", "0.760", "0.720", "0.470",
    ]  # fmt: skip


def test_the_readme_recipe_row_and_target() -> None:
    from benchmarks.summary import _readme_recipe_target

    quality = _quality()
    recipe = {"plan": {"seconds": 7200.0}, "summary": dict(quality["healthy"]["summary"])}
    recipe["summary"] |= {"alarms": 3, "false_alarms_per_hour": 0.3, "target_met": False}
    quality["readme_recipe"] = recipe
    row = next(line for line in quality_table(quality, None) if "README recipe" in line)
    assert "5 seeds × 2 h healthy" in row and "0.30 (3 alarms; ≤ 0.30 at 95 %)" in row
    target = _readme_recipe_target(recipe)
    assert target[0].startswith("the README recipe") and target[2] == "3 alarm(s)"
    assert target[1].startswith("3 alarms over 5 × 2 h")
