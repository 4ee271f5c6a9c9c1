"""One exit-code convention in all three tools: 2 for bad input or configuration, 1 for a
runtime failure; a file that is not a bundle gets one clear line, never tarfile internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main as agent_main
from agent.core.bundle.errors import BundleError
from agent.models import default_bundle_path
from exporter.cli import exit_status
from exporter.cli import main as export_main
from exporter.errors import ExportError
from exporter.keys import keygen
from firmware_config.cli import main as firmware_main
from tests.support.broker import free_port

CONFIG = """
[agent]
device_id = "ipc1"
state_dir = "{state}"

[trust]
allow_unsigned = true

[[robots]]
id = "arm1"
bundle = "{bundle}"
[robots.source]
kind = "simulator"
"""


@pytest.fixture
def not_a_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "recording.rapp"
    path.write_text("time_s,J1\n0,1\n")
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path / "release.key")[0]


def one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "tarfile" not in err and "Traceback" not in err and "ReadError" not in err, err
    return lines[0]


def test_a_non_bundle_file_is_bad_input_for_every_command_that_takes_one(
    not_a_bundle: Path, key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = str(not_a_bundle)
    runs = {
        "rapp-agent score": lambda: agent_main(
            ["score", "--bundle", b, "--input", b, "--out", str(tmp_path / "s.csv")]
        ),
        "rapp-export sign": lambda: export_main(["sign", "--bundle", b, "--key", str(key)]),
        "rapp-export push": lambda: export_main(
            ["push", "--bundle", b, "--broker", "127.0.0.1:1", "--device", "d", "--key", str(key)]
        ),
        "rapp-export evaluate": lambda: export_main(["evaluate", "--bundle", b, "--data", b]),
    }
    for command, run in runs.items():
        assert run() == 2, command
        line = one_clean_line(capsys.readouterr().err)
        assert line.startswith(f"{command}: bad input: ") and "not a readable" in line, line


def test_a_config_naming_a_non_bundle_is_a_configuration_error(
    not_a_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", bundle=not_a_bundle))
    assert agent_main(["run", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rapp-agent run: configuration error: ")
    assert "not a readable bundle archive" in err and "tarfile" not in err


def test_missing_inputs_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nothing = str(tmp_path / "nothing")
    runs = {
        "rapp-export build": ["build", "--model", nothing, "--calibration", nothing, "--out", "x"],
        "rapp-export sign": ["sign", "--bundle", nothing, "--key", nothing],
        "rapp-export push": ["push", "--bundle", nothing, "--broker", "h:1", "--device", "d"],
    }
    for command, argv in runs.items():
        assert export_main(argv) == 2, command
        assert f"{command}: bad input: " in capsys.readouterr().err
    assert agent_main(["models", "--config", nothing]) == 2
    assert "rapp-agent models: configuration error: " in capsys.readouterr().err
    assert agent_main(["status", "--state-dir", nothing]) == 2
    assert "no agent state here" in capsys.readouterr().err
    assert firmware_main(["header", "--map", nothing]) == 2
    assert "rapp-firmware header: bad input: " in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for main, argv in [
        (agent_main, ["status"]),  # neither --config nor --state-dir
        (export_main, ["push", "--bundle", "b", "--broker", "no-port", "--device", "d"]),
        (export_main, ["push", "--bundle", "b", "--broker", "h:1", "--device", "d", "--rollback"]),
        (export_main, ["push", "--bundle", "b", "--broker", "h:1", "--group", "g",
                       "--expires-in", "0"]),
        (firmware_main, ["simulate"]),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    err = capsys.readouterr().err
    assert "--rollback needs --key" in err and "use HOST:PORT" in err


def test_runtime_failures_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    bundle = str(default_bundle_path())
    argv = ["push", "--bundle", bundle, "--broker", f"127.0.0.1:{port}", "--device", "d", "-q"]
    assert export_main(argv) == 1
    assert "rapp-export push: error: cannot connect" in capsys.readouterr().err
    config = tmp_path / "agent.toml"
    text = CONFIG.format(state=tmp_path / "state", bundle=bundle)
    config.write_text(text + f"\n[mqtt]\nhost = '127.0.0.1'\nport = {port}\n")
    assert agent_main(["status", "--config", str(config), "--timeout", "1"]) == 1
    assert "rapp-agent status: error: cannot connect to the broker" in capsys.readouterr().err
    (tmp_path / "golden").mkdir()
    (tmp_path / "golden" / "frames.json").write_text("[]\n")
    assert firmware_main(["golden", "--check", "--out", str(tmp_path / "golden")]) == 1
    assert "out of date frames.json" in capsys.readouterr().err


def test_an_error_caused_by_bad_input_is_bad_input() -> None:
    def wrapped(cause: BaseException) -> ExportError:
        try:
            raise ExportError("cannot sign") from cause
        except ExportError as err:
            return err

    assert exit_status(wrapped(BundleError("not a bundle"))) == 2
    assert exit_status(wrapped(FileNotFoundError(2, "No such file"))) == 2
    assert exit_status(wrapped(PermissionError(13, "denied"))) == 1
    assert exit_status(ExportError("onnxruntime crashed")) == 1
