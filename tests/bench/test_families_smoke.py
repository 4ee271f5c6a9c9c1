"""`python -m benchmarks.families --quick`: the three families side by side, end to end, cold cache.

Builds the mlp, conv1d and lstm bundles with the quick recipe (real `rapp-export train` and
`build`, only `--model` differing), scores the simulator's fault and healthy runs with each and
times their scoring steps interleaved, then checks the results files. It asserts the harness,
not the families: quick bundles are trained for 5 epochs (the full table is in
benchmarks/results/families.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.families import FAMILIES, QUICK, cache_key, recipe_args
from benchmarks.sim_report import FAULT_CASES

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_builds_every_family_and_writes_one_table(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.families", "--quick", "--out", str(tmp_path),
         "--cache", str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "families.json").read_text())
    assert report["machine"]["cpu"] and report["quick"]
    assert list(report["families"]) == list(FAMILIES)
    windows = report["same_windows"]["windows"]
    assert set(windows) == {"cold start", "warm joints", *(c.kind for c in FAULT_CASES)}
    assert min(windows.values()) > 10
    healthy_windows = set()
    for family, r in report["families"].items():
        bundle = r["bundle"]
        assert Path(bundle["path"]).parent == cache and not bundle["cached"], family
        assert bundle["args"]["train"][-2:] == ["--model", family]
        assert r["alarm_score"] == "nap"
        assert list(r["faults"]) == [c.kind for c in FAULT_CASES]
        for kind, f in r["faults"].items():
            assert 0.0 <= f["auroc_alarm_score"] <= 1.0, (family, kind)
            assert f["auroc_alarm_score"] == f["auroc_nap"]
            assert f["auroc_combined"] is not None
        assert r["mean_auroc"]["alarm_score"] is not None
        healthy_windows.add(r["healthy"]["windows"])
        assert r["healthy"]["hours"] > 0 and r["healthy"]["false_alarms_per_hour"] >= 0
        for precision in ("default", "fp32"):
            cost = r["scoring"][precision]
            assert cost["b1_us"] > 0 and cost["b64_us_per_window"] > 0
        artifacts = r["artifacts"]
        assert artifacts["served"] in artifacts["in_bundle"]
        assert artifacts["tflite"]["exporter_supports"] == (family != "lstm")
    assert len(healthy_windows) == 1, "every family scores the same healthy windows"
    assert report["families"]["mlp"]["scoring"]["default"]["b1_ratio_to_mlp"] == 1.0
    lstm = report["families"]["lstm"]["artifacts"]
    assert lstm["in_bundle"] == ["onnx-fp32"] and "LSTM" in lstm["int8"]["not_built"]
    text = (tmp_path / "families.md").read_text()
    assert "| family | friction | backlash | collision | payload | ripple | sensor | mean |" in text
    for family in FAMILIES:
        assert f"\n| {family} | " in text


def test_the_cache_key_changes_with_family_flags_and_code() -> None:
    from agent.core.bundle import load_bundle
    from benchmarks.sim_healthy import SHIPPED_BUNDLE

    shipped = load_bundle(SHIPPED_BUNDLE.read_bytes())
    args = {f: recipe_args(shipped, f, QUICK.recipe) for f in FAMILIES}
    keys = {cache_key(f, QUICK.recipe, args[f], "code") for f in FAMILIES}
    assert len(keys) == len(FAMILIES)
    mlp = cache_key("mlp", QUICK.recipe, args["mlp"], "code")
    assert cache_key("mlp", QUICK.recipe, args["mlp"], "other code") != mlp
    longer = {**args["mlp"], "train": [*args["mlp"]["train"], "--epochs", "6"]}
    assert cache_key("mlp", QUICK.recipe, longer, "code") != mlp
    assert cache_key("mlp", QUICK.recipe, args["mlp"], "code") == mlp
