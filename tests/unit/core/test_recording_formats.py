"""Recording CSVs from other locales (';' and decimal commas), and files too short to use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.core.features import Segmentation
from agent.core.recording import (
    RecordingError,
    read_recording,
    require_segments,
    sniff_decimal,
    sniff_delimiter,
)

CHANNELS = ("J1", "J2")
ROWS = [("0.000", "1.25", "-0.5", "1"), ("0.001", "1.5", "-0.25", "0"), ("0.002", "2", "", "1")]


def write(path: Path, sep: str = ",", decimal: str = ".", rows=ROWS) -> Path:
    lines = [sep.join(("time_s", "J1", "J2", "cycle_start"))]
    lines += [sep.join(cell.replace(".", decimal) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("sep", "decimal"), [(",", "."), (";", ","), (";", "."), ("\t", ","), ("\t", ".")]
)
def test_delimiter_and_decimal_mark_are_sniffed(tmp_path: Path, sep: str, decimal: str) -> None:
    reference = read_recording(write(tmp_path / "ref.csv"), CHANNELS)
    got = read_recording(write(tmp_path / "x.csv", sep, decimal), CHANNELS)
    np.testing.assert_array_equal(got.samples, reference.samples)
    np.testing.assert_array_equal(got.time_s, reference.time_s)
    assert got.cycle_start.tolist() == [True, False, True]
    assert np.isnan(got.samples[2, 1]), "an empty cell is still NaN"


def test_named_delimiter_and_decimal_win(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", ";", ",")
    rec = read_recording(path, CHANNELS, delimiter=";", decimal=",")
    assert rec.samples[0].tolist() == [1.25, -0.5]
    with pytest.raises(RecordingError) as err:
        read_recording(path, CHANNELS, delimiter=",")
    assert str(err.value).startswith(f"{path}: line 2 has 4 fields but the header has 1")
    assert "are the fields separated by ';'? pass delimiter=" in str(err.value)
    header_only = tmp_path / "header.csv"
    header_only.write_text("time_s;J1;J2\n")
    with pytest.raises(RecordingError) as err:
        read_recording(header_only, CHANNELS, delimiter=",")
    assert str(err.value).startswith(f"{header_only}: missing channel column(s) ['J1', 'J2']")
    assert "are the fields separated by ';'? pass delimiter=" in str(err.value)
    with pytest.raises(RecordingError, match=r"column 'J1' is not numeric .*pass decimal=','"):
        read_recording(path, CHANNELS, decimal=".")


def test_unsupported_delimiter_or_decimal_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv")
    with pytest.raises(RecordingError, match=r"x\.csv: delimiter '\|' is not supported"):
        read_recording(path, CHANNELS, delimiter="|")
    with pytest.raises(RecordingError, match=r"x\.csv: decimal mark '_' is not supported"):
        read_recording(path, CHANNELS, decimal="_")


def test_sniffers() -> None:
    assert sniff_delimiter("a;b;c\n") == ";" and sniff_delimiter("a\tb\n") == "\t"
    assert sniff_delimiter("a,b;c,d\n") == "," and sniff_delimiter("single\n") == ","
    assert sniff_decimal([np.array(["0,5", "", "-1,25e3"])]) == ","
    assert sniff_decimal([np.array(["1", "2"])]) == "."
    assert sniff_decimal([np.array(["0,5", "1.5"])]) == ".", "a dot anywhere means dots"


def test_a_file_shorter_than_one_window_is_named(tmp_path: Path) -> None:
    rows = [(f"{i / 1000:.3f}", "1.0", "2.0", "0") for i in range(40)]
    rec = read_recording(write(tmp_path / "calib.csv", rows=rows), CHANNELS)
    with pytest.raises(RecordingError) as err:
        require_segments(rec, Segmentation("window", 64, 32))
    assert str(err.value) == (
        f"{tmp_path / 'calib.csv'}: 40 samples, shorter than one 64-sample window; "
        "give a longer recording"
    )
    require_segments(rec, Segmentation("window", 40, 32))  # exactly one window is enough


def test_a_file_without_a_complete_cycle_is_named(tmp_path: Path) -> None:
    cycles = Segmentation("cycle", 64, 1)
    rows = [(f"{i / 1000:.3f}", "1.0", "2.0", "1" if i == 3 else "0") for i in range(40)]
    rec = read_recording(write(tmp_path / "one.csv", rows=rows), CHANNELS)
    with pytest.raises(RecordingError, match=r"one\.csv: 40 samples with 1 cycle start\(s\)"):
        require_segments(rec, cycles)
    path = tmp_path / "nomarks.csv"
    path.write_text("J1,J2\n1,2\n3,4\n")
    with pytest.raises(RecordingError, match=r"nomarks\.csv: no cycle_start column"):
        require_segments(read_recording(path, CHANNELS), cycles)
