"""`python -m benchmarks.sim_report` on the shipped default bundle.

One quick report (≈ 10 s) is shared by the module. Besides the report's shape, it checks
NAP AUROC floors for the faults that are clearly visible by construction, with the evidence
behind each floor (quick mode, report seeds 0–3, default bundle of
scripts/build_default_bundle.sh):

- collision, payload, sensor: NAP AUROC 1.000 in every run, fp32 and int8 — an impulse of
  0.8× rated current, a lost workpiece (−3 kg on the gravity-loaded axes) and a stuck channel
  put faulted cycles 10²–10³× above the threshold. Floor 0.95: a miss here is a broken model.
- ripple and friction: 0.962–1.000 — smaller, developing faults (friction ramps up over
  30 s and its first cycles count as faulted). Floor 0.90.
- backlash: no floor. Its kick lasts ~30 ms, between the grid points of a cycle resampled
  to 64 samples; the default model does not see it (AUROC ≈ 0.5, see the report notes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.models import default_bundle_path
from benchmarks.sim_report import EXIT_OK, EXIT_USAGE, FAULT_CASES, main
from firmware_config.simulator import FAULT_KINDS

NAP_FLOORS = {"collision": 0.95, "payload": 0.95, "sensor": 0.95, "ripple": 0.90, "friction": 0.90}
PLOTS = [f"currents_{kind}.png" for kind in FAULT_KINDS] + ["score_traces.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = default_bundle_path()
    assert bundle.is_file(), f"{bundle} is missing; run scripts/build_default_bundle.sh"
    out = tmp_path_factory.mktemp("sim_report")
    code = main(["--bundle", str(bundle), "--out", str(out), "--quick"])
    assert code == EXIT_OK
    return out


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def _auroc_table(markdown: str) -> list[list[str]]:
    """Data rows of the AUROC table (the first table after its heading)."""
    section = markdown.split("## AUROC", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header, rule, *data = rows
    assert "NAP" in header and set(rule.replace("|", "")) == {"-"}
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in data]


def test_markdown_table_has_one_row_per_fault_with_aurocs_in_unit_interval(
    report_dir: Path,
) -> None:
    rows = _auroc_table((report_dir / "report.md").read_text())
    assert [row[0] for row in rows] == list(FAULT_KINDS)
    for row in rows:
        values = [float(cell) for cell in row[3:]]
        assert len(values) == 6, f"{row[0]}: expected Recon/SAP/NAP × fp32/int8, got {row}"
        assert all(0.0 <= v <= 1.0 for v in values), row


def test_json_has_every_fault_and_precision(report: dict) -> None:
    assert report["precisions"] == ["fp32", "int8"]
    assert [f["kind"] for f in report["faults"]] == [c.kind for c in FAULT_CASES]
    for fault in report["faults"]:
        for precision, result in fault["results"].items():
            for name in ("auroc_recon", "auroc_sap", "auroc_nap", "attribution_hit"):
                assert 0.0 <= result[name] <= 1.0, (fault["kind"], precision, name)
            assert result["n_faulted"] > 0 and result["n_normal"] > 0


def test_plots_exist_and_are_png(report_dir: Path, report: dict) -> None:
    assert sorted(report["plots"]) == sorted(PLOTS)
    for name in PLOTS:
        data = (report_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name


@pytest.mark.parametrize("kind", sorted(NAP_FLOORS))
def test_clearly_visible_faults_exceed_their_nap_floor(report: dict, kind: str) -> None:
    fault = next(f for f in report["faults"] if f["kind"] == kind)
    for precision, result in fault["results"].items():
        assert result["auroc_nap"] >= NAP_FLOORS[kind], (kind, precision, result)


def test_no_alarm_on_normal_runs_with_nuisances(report: dict) -> None:
    """Cold start and warm joints: EWMA + debounce must not raise on normal cycles."""
    for run, per_precision in report["normal"].items():
        for precision, result in per_precision.items():
            assert result["alarms_raised"] == 0, (run, precision, result)


def test_missing_bundle_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--bundle", str(tmp_path / "nope.rapp"), "--out", str(tmp_path / "out")]
    assert main(args) == EXIT_USAGE
    assert "nope.rapp" in capsys.readouterr().err


def test_baselines_score_the_same_windows_under_every_precision(report: dict) -> None:
    """IsolationForest and PCA do not run through the bundle: the windows each precision
    scored are the same spans, so their AUROC is the same under both."""
    assert report["baselines"]["names"] == ["iforest", "pca"]
    assert "seed 1" in report["baselines"]["fitted_on"]
    for fault in report["faults"]:
        fp32, int8 = fault["results"]["fp32"], fault["results"]["int8"]
        for name in ("auroc_iforest", "auroc_pca"):
            assert 0.0 <= fp32[name] <= 1.0, (fault["kind"], name)
            assert fp32[name] == int8[name], (fault["kind"], name)


def test_combined_columns_follow_the_bundle(report: dict, report_dir: Path) -> None:
    """The shipped bundle may predate the latent density: then no density/combined figure."""
    has_density = "combined" in report["scores"]
    for fault in report["faults"]:
        for result in fault["results"].values():
            assert (result["auroc_combined"] is not None) == has_density
    section = (report_dir / "report.md").read_text().split("## The same windows", 1)[1]
    header = section.split("\n## ", 1)[0].splitlines()[2]
    assert ("combined fp32" in header) == has_density and "IsolationForest" in header


@pytest.mark.parametrize("kind", ["collision", "payload", "sensor"])
def test_alarm_events_of_clearly_visible_faults(report: dict, kind: str) -> None:
    """Every event alarmed, no alarm outside one, none on the normal runs."""
    fault = next(f for f in report["faults"] if f["kind"] == kind)
    for precision, result in fault["results"].items():
        events = result["events"]
        assert events["events"] >= 1 and events["recall"] == 1.0, (kind, precision, events)
        assert events["precision"] == 1.0 and events["false_alarms"] == 0, (kind, events)
        assert events["false_alarms_per_hour"] == 0.0 and events["normal_hours"] > 0
        assert 0.0 <= events["delay_s"]["mean"] <= events["delay_s"]["max"]
