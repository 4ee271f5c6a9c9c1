"""`rapp-firmware` subcommands, called through main() and as a module."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_config.channel_map import ChannelMap, builtin_map_path
from firmware_config.cheader import parse_defines
from firmware_config.cli import main
from tests.support.fixtures.tools import GOLDEN_DIR


def test_header_to_file(tmp_path: Path, six_axis_map: ChannelMap) -> None:
    out = tmp_path / "rapp_map.h"
    assert main(["header", "--map", str(builtin_map_path()), "--out", str(out)]) == 0
    defines = parse_defines(out.read_text(encoding="utf-8"))
    assert defines["RAPP_SCHEMA_HASH"] == f"0x{six_axis_map.schema_hash:04X}u"
    assert "from six_axis_arm.toml" in out.read_text(encoding="utf-8")


def test_header_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["header", "--map", str(builtin_map_path())]) == 0
    assert "#define RAPP_CHANNEL_COUNT 6u" in capsys.readouterr().out


def test_header_with_a_bad_map_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(builtin_map_path().read_text().replace('unit = "A"', 'unit = ""', 1))
    assert main(["header", "--map", str(bad)]) == 2
    assert "channels[0].unit = ''" in capsys.readouterr().err


def test_simulate_writes_a_labelled_recording(tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    code = main(
        [
            "simulate",
            "--duration",
            "3",
            "--seed",
            "2",
            "--program",
            "2",
            "--fault",
            "collision:J3:onset=1.5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3000
    assert {r["program_id"] for r in rows} == {"2"}
    labelled = [r for r in rows if r["fault"]]
    assert len(labelled) == 100 and {r["fault_axis"] for r in labelled} == {"3"}
    assert labelled[0]["time_s"] == "1.500000"


def test_simulate_rejects_bad_fault(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--out", str(tmp_path / "x.csv"), "--fault", "rust:J2"])
    assert code == 2
    assert "fault kind 'rust': unknown" in capsys.readouterr().err


def test_golden_check_and_regenerate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["golden", "--check", "--out", str(GOLDEN_DIR)]) == 0
    # a directory without any vectors is a wrong --out (bad input), not stale vectors
    assert main(["golden", "--check", "--out", str(tmp_path)]) == 2
    assert f"no golden files in {tmp_path}" in capsys.readouterr().err
    assert main(["golden", "--out", str(tmp_path)]) == 0
    for name in ("frames.json", "cobs.json", "crc.json"):
        assert (tmp_path / name).read_bytes() == (GOLDEN_DIR / name).read_bytes()
    (tmp_path / "crc.json").unlink()
    (tmp_path / "frames.json").write_text("[]\n")
    capsys.readouterr()
    assert main(["golden", "--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing crc.json; out of date frames.json" in err


def test_emulate_with_bad_arguments_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulate", "--port", "loop://", "--duration", "1", "--garbage", "2"]) == 2
    assert "garbage_rate = 2.0: must be a probability" in capsys.readouterr().err
    assert main(["emulate", "--port", "loop://", "--speed", "-1"]) == 2
    assert "speed = -1.0: must be ≥ 0" in capsys.readouterr().err
    assert main(["emulate", "--port", "loop://", "--map", str(tmp_path / "none.toml")]) == 2
    assert "none.toml: cannot read channel map" in capsys.readouterr().err


def test_emulate_into_a_loopback_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--port", "loop://", "--duration", "0.2", "--speed", "0"]) == 0
    assert "frames_sent=20" in capsys.readouterr().err


def test_module_entry_points() -> None:
    for module in ("firmware_config", "firmware_config.cli"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0
        assert "header" in result.stdout and "emulate" in result.stdout
