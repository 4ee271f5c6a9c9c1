"""`python -m benchmarks.cnc_defaults` on a generated CNC-like folder: model selection, the
CLI's build and the agent's scorer per fold, baselines on the same windows, one results file
that the quality table reads (the real recordings are not in a user's clone)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cnc_defaults import main
from benchmarks.quality import task_aurocs


def test_quick_run_writes_results_the_quality_table_reads(cnc_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cnc_defaults.json"
    assert main(["--data", str(cnc_dir), "--task", "mi-v", "--quick", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    task = results["tasks"]["mi-v"]
    assert len(task["folds"]) == 2  # quick: 2 of the 5 folds
    for fold in task["folds"]:
        assert set(fold["auroc"]) >= {"nap", "combined", "sap", "recon", "iforest", "pca"}
        assert all(0.0 <= v <= 1.0 for v in fold["auroc"].values())
        # six training experiments of 72–80 rows: too few for five blocks of sixteen 8-row
        # windows, so the window rule (exporter.selection.window_for) shortens 64 to 4
        assert fold["chosen"]["window"] == 4
        assert not set(fold["split"]["train"]) & set(fold["split"]["test_normal"])
    # the generated novel experiments sit at a shifted operating point: any detector sees it
    assert task["summary"]["window"]["fp32"]["nap"]["mean"] > 0.9
    assert "| MI-V |" in out.with_suffix(".md").read_text()
    quality = {"cnc": results, "sim": {"faults": []}}
    (name, aurocs, events), *_ = task_aurocs(quality, None)
    assert name == "CNC MI-V" and aurocs["combined"] is not None and events is None


def test_missing_data_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--data", str(tmp_path / "nowhere"), "--quick"]) == 2
    assert "nowhere" in capsys.readouterr().err
