"""`python -m benchmarks.sim_healthy --quick`: the healthy-run check end to end, cold cache.

Builds the program-2 bundle with the quick recipe (real `rapp-export train` and `build`), runs
one seed through the shipped bundle's archive with program changes and two fault episodes, and
checks the results files. It asserts the harness, not the model: the quick program-2 bundle is
trained for 5 epochs, so its alarms mean nothing (the full check is `make bench`'s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_check_builds_the_other_program_and_writes_the_report(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sim_healthy", "--quick", "--out", str(tmp_path),
         "--cache", str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "sim_healthy.json").read_text())
    assert report["machine"]["cpu"] and report["quick"]
    (built,) = report["program_bundles"].values()
    assert Path(built["path"]).is_file() and Path(built["path"]).parent == cache
    assert not built["cached"]
    (run,) = report["runs"]
    assert run["program_changes"] >= 2
    assert set(run["windows"]) == {"1", "2"} and min(run["windows"].values()) > 10
    assert run["not_scored"]["unknown_program"] == 0, "program 2 has its bundle"
    assert run["alarms_raised"] == len(run["raises"])
    kinds = [e["kind"] for e in report["episodes"]]
    assert kinds == ["collision", "payload", "collision (one impulse)"]
    payload = next(e for e in report["episodes"] if e["kind"] == "payload")
    assert (payload["raises"], payload["clears"]) == (1, 1), payload
    summary = report["summary"]
    assert summary["seeds"] == 1 and not summary["target_met"], "a quick run is too short"
    text = (tmp_path / "sim_healthy.md").read_text()
    assert "## Healthy runs" in text and "## One fault episode" in text
    assert "| collision | J3 | 11 |" in text
