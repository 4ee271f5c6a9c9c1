"""Progress bars only on a terminal and never with -q; the exporter's known third-party noise
is filtered, and nothing else is."""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import pytest

from agent.cli import main as agent_main
from agent.models import default_bundle_path
from agent.progress import Progress, progress_bar
from exporter.cli import silence_third_party_noise
from firmware_config.cli import main as firmware_main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_on_a_terminal_and_not_when_quiet() -> None:
    tty = Terminal()
    with progress_bar(total=100, desc="scoring", unit="sample", stream=tty) as bar:
        assert type(bar) is not Progress
        bar.advance_to(40, 100)
        bar.advance_to(100, 100)
    assert "scoring" in tty.getvalue()
    for stream, quiet in ((io.StringIO(), False), (Terminal(), True)):
        bar = progress_bar(total=100, desc="scoring", quiet=quiet, stream=stream)
        assert type(bar) is Progress
        bar.advance_to(50, 100)
        bar.close()
        assert stream.getvalue() == ""


def test_a_stage_bar_writes_lines_above_itself(capsys: pytest.CaptureFixture[str]) -> None:
    tty = Terminal()
    with progress_bar(total=None, desc="build: reading", stream=tty) as bar:
        bar.stage("build: fitting")
        bar.write("fitting RaPP on onnx-fp32")
    assert "build: fitting" in tty.getvalue()
    assert capsys.readouterr().out == "fitting RaPP on onnx-fp32\n"


def test_score_shows_no_bar_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "sim.csv"
    assert firmware_main(["simulate", "--duration", "10", "--out", str(recording)]) == 0
    capsys.readouterr()
    argv = ["score", "--bundle", str(default_bundle_path()), "--input", str(recording)]
    assert agent_main([*argv, "--out", str(tmp_path / "s.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "windows scored with" in captured.out and "every window scored" in captured.out


def test_the_known_third_party_noise_is_filtered_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "")  # so that monkeypatch restores it
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    monkeypatch.setattr(registration, "filters", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        silence_third_party_noise()  # idempotent: one filter, not two
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn(
            "Saving ONNX model to a BytesIO object is deprecated.", DeprecationWarning, stacklevel=1
        )
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert len(registration.filters) == 1

    def passes(message: str) -> bool:
        record = logging.LogRecord(registration.name, logging.WARNING, "", 0, message, (), None)
        return registration.filter(record)

    assert not passes("torchvision is not installed. Skipping torchvision::nms")
    assert passes("opset 18 is not supported")
