"""`python -m benchmarks.readme_recipe --quick`: the README's recipe run as written, cold cache.

Runs the README's quick-start commands (real `rapp-firmware simulate` of at most 240 s,
`rapp-export train` with a 3-epoch training, `build`, `rapp-agent score`), then sim_healthy's
healthy-run check on one seed of the recipe's program and two fault episodes, and checks the
results files; a second run takes the bundle from the cache. It asserts the harness, not the
model: a 3-epoch model's alarms mean nothing (the full check is
`python -m benchmarks.readme_recipe`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.readme_recipe import (
    README,
    recipe_commands,
    recipe_facts,
    stretch_edges,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, cache: Path, *extra: str, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.readme_recipe", "--quick", "--out", str(out),
         "--cache", str(cache), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "readme_recipe.json").read_text())


def test_the_readme_recipe_is_found_and_read_as_written() -> None:
    commands = recipe_commands(README.read_text(encoding="utf-8"), "README.md")
    assert commands[0][:2] == ["rapp-firmware", "simulate"]
    assert all(not any(t.startswith("[") for t in argv) for argv in commands), "optional flags"
    facts = recipe_facts(commands)
    assert facts["program"] == 1 and facts["bundle_file"].endswith(".rapp")
    assert facts["training"] and facts["calibration"]
    assert not {11, 12, 13, 14, 15} & set(facts["seeds_used"])
    assert stretch_edges(600.0, 7200.0) == [0.0, 600.0, 1800.0, 3600.0, 7200.0]


def test_quick_check_runs_the_recipe_then_reuses_its_bundle(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = _run(tmp_path / "first", cache, timeout=900)
    recipe = report["recipe"]
    assert report["machine"]["cpu"] and report["quick"]
    assert not recipe["cached"] and Path(recipe["path"]).parent == cache
    steps = recipe["steps"]
    assert len(steps) == len(recipe["commands"])
    # quick: the same commands, simulations shortened and a 3-epoch training
    assert [s["command"].split()[:2] for s in steps] == [c.split()[:2] for c in recipe["commands"]]
    assert any("windows scored" in line for line in steps[-1]["printed"])
    (run,) = report["runs"]
    assert set(run["windows"]) == {"1"} and run["windows"]["1"] > 1000
    assert run["program_changes"] == 0 and run["not_scored"]["unknown_program"] == 0
    assert len(run["raises"]) + run["raises_left_off"] == run["alarms_raised"]
    assert sum(s["alarms"] for s in report["alarms_by_stretch"]) == run["alarms_raised"]
    kinds = [e["kind"] for e in report["episodes"]]
    assert kinds == ["collision", "payload", "collision (one impulse)"]
    summary = report["summary"]
    assert summary["seeds"] == 1 and not summary["target_met"], "a quick run is too short"
    assert summary["false_alarms_per_hour_upper_95"] > 0
    text = (tmp_path / "first" / "readme_recipe.md").read_text()
    assert "rapp-firmware simulate --duration 600 --seed 1" in text
    assert "## Healthy runs" in text and "## One fault episode per kind" in text

    again = _run(tmp_path / "second", cache, "--seeds", "12", timeout=600)
    if again["recipe"]["key"] == recipe["key"]:
        assert again["recipe"]["cached"] and again["recipe"]["path"] == recipe["path"]
        assert again["bundle"]["sha256"] == report["bundle"]["sha256"]
    else:  # the exporter or simulator code changed in between (a shared working tree)
        assert not again["recipe"]["cached"]
    assert [r["seed"] for r in again["runs"]] == [12]
