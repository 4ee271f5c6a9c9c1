"""The three tools as real processes: exit status, logging levels, JSON output, and paths that
do not depend on the working directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from agent.models import default_bundle_path
from tests.support.broker import wait_until
from tests.support.fixtures.daemon import ROOT, AgentProcess

CONFIG = """
[agent]
device_id = "ipc1"
state_dir = "{state}"
log_level = "{level}"

[trust]
allow_unsigned = true

[[robots]]
id = "arm1"
bundle = "default"
[robots.source]
kind = "simulator"
"""


def tool(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_golden_check_finds_the_vectors_from_any_working_directory(tmp_path: Path) -> None:
    result = tool("firmware_config.cli", "golden", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(ROOT / "tests" / "golden" / "frames") in result.stderr


def test_log_level_debug_in_the_config_prints_debug_lines(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", level="debug"))
    result = tool("agent.cli", "run", "--config", str(config), "--check")
    assert result.returncode == 0, result.stderr
    assert "DEBUG agent.cli: config " in result.stderr
    assert "DEBUG agent.cli: robot arm1: source simulator, bundles default" in result.stderr


def test_a_running_agent_at_debug_level_logs_a_status_heartbeat(
    tmp_path: Path, broker, agent_processes
) -> None:
    config = tmp_path / "agent.toml"
    text = CONFIG.format(state=tmp_path / "state", level="debug")
    mqtt = f"[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n[telemetry]\nstatus_interval_s = 1\n"
    config.write_text(text.replace("[trust]", mqtt + "[trust]"))
    agent = AgentProcess(config).start()
    agent_processes.append(agent)
    wait_until(lambda: "DEBUG agent.daemon: status: arm1 frames " in agent.output(), 60,
               message="a debug status line")  # fmt: skip
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()


def test_the_command_line_level_overrides_the_configs(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", level="info"))
    quiet = tool("agent.cli", "run", "--config", str(config), "--check", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = tool("agent.cli", "-v", "run", "--config", str(config), "--check")
    assert "DEBUG agent.cli: config " in loud.stderr
    info = tool("agent.cli", "run", "--config", str(config), "--check")
    assert "INFO agent.models: loaded default" in info.stderr and "DEBUG" not in info.stderr


def test_score_json_summary_of_a_simulated_recording(tmp_path: Path) -> None:
    recording = tmp_path / "sim.csv"
    made = tool("firmware_config.cli", "simulate", "--duration", "12", "--out", str(recording))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "scores.csv"
    bundle = str(default_bundle_path())
    result = tool("agent.cli", "score", "--bundle", bundle, "--input", str(recording),
                  "--out", str(out), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "no progress bar when stderr is not a terminal"
    summary = json.loads(result.stdout)
    assert summary["bundle"]["bundle_id"] == "default"
    assert summary["windows"] == out.read_text().count("\n") - 1 > 0
    assert summary["alarms_raised"] == 0
    assert set(summary["segmenter"]) >= {"segments", "skipped_gap", "skipped_nan", "unrouted"}


def test_a_non_bundle_file_exits_2_with_one_line_in_a_real_process(tmp_path: Path) -> None:
    not_a_bundle = tmp_path / "notes.rapp"
    not_a_bundle.write_text("time_s,J1,J2\n0.000,1.5,-2.25\n")
    key = tmp_path / "release.key"
    assert tool("exporter.cli", "keygen", "--out", str(key)).returncode == 0
    for module, argv in [
        ("exporter.cli", ["sign", "--bundle", str(not_a_bundle), "--key", str(key)]),
        ("agent.cli", ["score", "--bundle", str(not_a_bundle), "--input", str(not_a_bundle),
                       "--out", str(tmp_path / "s.csv")]),
    ]:  # fmt: skip
        result = tool(module, *argv)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not a readable bundle archive" in result.stderr
        assert "tarfile" not in result.stderr and "Traceback" not in result.stderr
