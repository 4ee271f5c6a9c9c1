"""`python -m benchmarks.run --quick` (the CI smoke run of `make bench`) produces every file.

Runs the real harness — PyTorch/ONNX/LiteRT timing, real agent processes with a real
mosquitto, the digit protocol, benchmarks.sim_report and benchmarks.sim_healthy — on small
settings into a temp folder, and checks the results files, tables, plots and SUMMARY.md are
there. It asserts no speed (the harness reports numbers; a shared box is too noisy to judge
them). The CNC evaluation is left out here (its own tests cover it, and it needs the
recordings beside the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--skip-cnc", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_every_results_file_is_written(quick_run: Path) -> None:
    for name in (
        "scoring_speed.json",
        "scoring_speed.md",
        "streaming.json",
        "streaming.md",
        "digits.json",
        "digits.md",
        "quality.json",
        "quality.md",
        "SUMMARY.md",
        "sim_report/report.json",
        "sim_healthy.json",
        "sim_healthy.md",
        "sim_report/score_traces.png",
        "plots/scoring_latency.png",
        "plots/streaming_latency.png",
    ):
        path = quick_run / name
        assert path.is_file() and path.stat().st_size > 0, name
    for png in quick_run.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_results_state_the_machine(quick_run: Path) -> None:
    for name in ("scoring_speed.json", "streaming.json", "digits.json", "quality.json"):
        machine = json.loads((quick_run / name).read_text())["machine"]
        assert machine["cpu"] and machine["cores"] >= 1 and machine["python"]
        assert len(machine["load_average_at_start"]) == 3
        assert machine["versions"]["numpy"]
    text = (quick_run / "scoring_speed.md").read_text()
    assert "load average" in text and "CPU:" in text


def test_scoring_covers_every_implementation_and_both_models(quick_run: Path) -> None:
    report = json.loads((quick_run / "scoring_speed.json").read_text())
    assert [m["model"] for m in report["models"]] == ["default", "large"]
    default = report["models"][0]
    assert default["layer_sizes"] == [384, 198, 12], "default must be the shipped bundle"
    names = {r["implementation"] for r in default["results"]}
    assert {
        "pytorch-eager fp32",
        "onnxruntime fp32",
        "onnxruntime int8",
        "litert fp32",
        "litert int8",
    } <= names
    for row in default["results"]:
        assert row["inference"]["batch1"]["p50_us"] > 0
        assert row["scoring"]["batch64"]["windows_per_s"] > 0
    assert default["breakdown"] and default["gemm_flops_per_window"] > 0
    assert report["peak"]["gflops"] > 0


def test_streaming_measured_a_real_agent(quick_run: Path) -> None:
    report = json.loads((quick_run / "streaming.json").read_text())
    for row in report["cost"] + report["latency"]:
        assert row["cpu_pct_one_core"] > 0
        assert 10 < row["rss_peak_mb"] < 10_000
    latency = report["latency"][0]
    assert latency["frame_to_alarm_ms"]["n"] >= 1, "no alarm reached the subscriber"
    assert all(x > 0 for x in latency["latencies_ms"])
    ingest = report["ingest"]
    assert ingest["unpaced"]["samples_per_s"] > 0
    assert ingest["steps"] and all(step["samples_per_s"] > 0 for step in ingest["steps"])


def test_summary_has_targets_and_tables(quick_run: Path) -> None:
    text = (quick_run / "SUMMARY.md").read_text()
    assert "## Targets: measured figure and gap" in text
    for phrase in (
        "p99 frame-to-alarm latency < 20 ms",
        "RSS < 150 MB",
        "int8 AUROC within",
        "## Performance",
        "## Detection quality",
        "| friction | J2 |",
        "unimodal",
        "**Every task, default flags**",
        "| simulator friction (J2) |",
        "| digits multimodal |",
        "combined ≥ best baseline (IsolationForest, PCA) on every task",
        "0 alarms over ≥ 2 h × ≥ 5 healthy seeds",
        "one fault episode → exactly one raise and one clear",
    ):
        assert phrase in text, phrase
    assert "Quick smoke run" in text
