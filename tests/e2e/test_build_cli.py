"""The sanity report in the bundle, and `rapp-export build --strict` refusing a bad model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.core.bundle.archive import read_archive
from agent.core.bundle.manifest import MANIFEST_NAME, REPORT_NAME
from exporter.cli import main
from tests.support.synthetic import currents, write_csv

CHECK_NAMES = ["underfit", "overfit", "gradient_norm", "identity", "pseudo_anomaly"]


def test_report_and_manifest_of_a_built_bundle_hold_the_checks(built_bundle):
    files = read_archive(built_bundle.data)
    report = json.loads(files[REPORT_NAME])["sanity"]
    manifest = json.loads(files[MANIFEST_NAME])["sanity"]
    assert [c["name"] for c in report["checks"]] == CHECK_NAMES
    assert report["status"] == manifest["status"] == "pass"
    for full, short in zip(report["checks"], manifest["checks"], strict=True):
        assert set(short) == {"name", "value", "floor", "ceiling", "fail_at", "status", "message"}
        assert {k: full[k] for k in short} == short
        assert full["floor"] is not None or full["ceiling"] is not None
    pseudo = report["checks"][-1]
    assert set(pseudo["details"]["per_kind"]) == {
        "spike", "drift", "scaling", "channel_swap", "time_shift", "noise"
    }  # fmt: skip


@pytest.fixture(scope="module")
def bad_model_dir(one_epoch_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_epoch_model")
    one_epoch_model.save(out)
    return out


@pytest.fixture(scope="module")
def small_calibration(tmp_path_factory):
    """8 s of held-out currents (≈ 500 windows): enough for NAP, quick to read."""
    path = tmp_path_factory.mktemp("calib") / "calib.csv"
    return write_csv(path, currents(8000, seed=2))


def _build_args(model_dir, calib, out) -> list[str]:
    return ["build", "--model", str(model_dir), "--calibration", str(calib), "--out", str(out),
            "--no-int8"]  # fmt: skip


def test_strict_build_of_an_under_trained_model_fails_and_writes_nothing(
    bad_model_dir, small_calibration, tmp_path
):
    out = tmp_path / "bad.rapp"
    args = [*_build_args(bad_model_dir, small_calibration, out), "--strict"]
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    assert "--strict" in proc.stderr and "underfit" in proc.stderr
    assert "train longer" in proc.stderr


def test_without_strict_the_failure_is_a_warning_and_recorded(
    bad_model_dir, small_calibration, tmp_path, capsys
):
    out = tmp_path / "bad.rapp"
    assert main(_build_args(bad_model_dir, small_calibration, out)) == 0
    captured = capsys.readouterr()
    assert "warning: sanity check underfit fail" in captured.err
    assert "FAIL underfit" in captured.out
    files = read_archive(out.read_bytes())
    manifest = json.loads(files[MANIFEST_NAME])
    report = json.loads(files[REPORT_NAME])
    assert manifest["sanity"]["status"] == report["sanity"]["status"] == "fail"
    assert report["training"]["grad_norm_max"] == report["training"]["grad_norm_max"][:1]
    failed = [c["name"] for c in manifest["sanity"]["checks"] if c["status"] == "fail"]
    assert "underfit" in failed
