"""Too-short or unusable recordings are refused with the file's name (exit 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.core.recording import RecordingError, read_recording
from exporter.cli import main
from exporter.data import segment_all, segment_one
from tests.support.synthetic import CHANNELS, currents, write_csv


@pytest.fixture(scope="module")
def model_dir(trained_model, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    trained_model.save(directory)
    return directory


def build(model_dir: Path, calibration: Path, out: Path) -> list[str]:
    return ["build", "--model", str(model_dir), "--calibration", str(calibration),
            "--out", str(out), "--no-int8"]  # fmt: skip


def test_build_with_a_calibration_file_shorter_than_one_window(model_dir, tmp_path, capsys):
    short = write_csv(tmp_path / "calib.csv", currents(20, seed=3))  # windows are 32 samples
    code = main(build(model_dir, short, tmp_path / "x.rapp"))
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"rapp-export build: bad input: {short}: 20 samples, shorter than one 32-sample "
        "window; give a longer recording\n"
    )
    assert not (tmp_path / "x.rapp").exists()


def test_build_with_too_few_calibration_windows_is_bad_input(model_dir, tmp_path, capsys):
    few = write_csv(tmp_path / "few.csv", currents(100, seed=3))  # 5 windows of 32 / hop 16
    assert main(build(model_dir, few, tmp_path / "x.rapp")) == 2
    err = capsys.readouterr().err
    assert "only 5 calibration windows; give at least 8" in err
    assert "longer --calibration recordings" in err and "Traceback" not in err


def test_a_recording_whose_windows_all_hold_nan_is_named(trained_model, tmp_path):
    x = currents(200, seed=3)
    x[::10, 0] = np.nan  # every window of 32 holds a NaN
    rec = read_recording(write_csv(tmp_path / "holes.csv", x), CHANNELS)
    with pytest.raises(RecordingError) as err:
        segment_one(trained_model.spec, trained_model.normalization, rec)
    assert str(err.value).startswith(f"{rec.path}: 200 samples but no window can be scored")
    assert "skipped_nan 11" in str(err.value)


def test_segment_all_names_the_short_file_among_several(trained_model, tmp_path):
    good = read_recording(write_csv(tmp_path / "good.csv", currents(400, seed=3)), CHANNELS)
    short = read_recording(write_csv(tmp_path / "short.csv", currents(10, seed=4)), CHANNELS)
    with pytest.raises(RecordingError, match=r"short\.csv: 10 samples, shorter than one 32"):
        segment_all(trained_model.spec, trained_model.normalization, [good, short])
