"""`rapp-agent install-unit` (agent/install.py): what it lays down under a prefix, that it
replaces the unit but never the operator's files, and that the package carries the repo's
unit and examples."""

from __future__ import annotations

import argparse
import stat
import tomllib
from pathlib import Path

import pytest

from agent.core.errors import AgentInputError, exit_code
from agent.install import (
    add_install_unit_parser,
    example_names,
    exec_start,
    plan,
    run_install_unit,
    unit_text,
)

REPO = Path(__file__).resolve().parents[3]


def install(prefix: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> str:
    ap = argparse.ArgumentParser()
    add_install_unit_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["install-unit", "--prefix", str(prefix), *extra])
    assert run_install_unit(args) == 0
    return capsys.readouterr().out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_package_carries_the_repo_unit_and_examples() -> None:
    assert unit_text() == (REPO / "systemd" / "rapp-agent.service").read_bytes()
    assert example_names() == sorted(
        p.name[len("agent-") : -len(".toml")] for p in (REPO / "examples").glob("agent-*.toml")
    )
    assert str(exec_start(unit_text())) == "/opt/rapp-agent/venv/bin/rapp-agent"


def test_lays_down_unit_config_map_and_private_credentials_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = install(tmp_path, capsys=capsys)
    etc = tmp_path / "etc" / "rapp-agent"
    unit = tmp_path / "etc" / "systemd" / "system" / "rapp-agent.service"
    assert unit.read_bytes() == unit_text() and mode(unit) == 0o644
    assert (etc / "agent.toml").read_bytes() == (REPO / "examples/agent-serial.toml").read_bytes()
    map_text = (REPO / "firmware_config" / "maps" / "six_axis_arm.toml").read_bytes()
    assert (etc / "six_axis_arm.toml").read_bytes() == map_text
    assert mode(etc / "credentials") == 0o700 and mode(etc / "bundles") == 0o755
    assert mode(tmp_path / "etc" / "systemd") == 0o755, "parents it creates are readable"
    assert sum(line.startswith("create ") for line in out.splitlines()) == 6
    assert "not installed" in out, "no venv under the prefix: says the unit cannot start"
    assert "run --config /etc/rapp-agent/agent.toml --check" in out


def test_a_second_run_replaces_a_changed_unit_but_keeps_the_operators_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(tmp_path, capsys=capsys)
    etc = tmp_path / "etc" / "rapp-agent"
    unit = tmp_path / "etc" / "systemd" / "system" / "rapp-agent.service"
    (etc / "agent.toml").write_text("# mine\n")
    unit.write_text("[Unit]\n# stale\n")
    (etc / "credentials").chmod(0o755)
    out = install(tmp_path, "--example", "mqtt", capsys=capsys)
    assert (etc / "agent.toml").read_text() == "# mine\n"
    assert unit.read_bytes() == unit_text()
    assert mode(etc / "credentials") == 0o700
    assert "keep" in out and "update" in out and "secure" in out
    out = install(tmp_path, capsys=capsys)
    assert not any(line.startswith(("create", "update", "secure")) for line in out.splitlines())


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = install(tmp_path, "--dry-run", capsys=capsys)
    assert list(tmp_path.iterdir()) == []
    assert "nothing was changed" in out


def test_an_unknown_example_or_a_missing_prefix_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AgentInputError, match="mqtt, serial, simulator") as err:
        plan("modbus")
    assert exit_code(err.value) == 2
    with pytest.raises(AgentInputError, match="no such directory"):
        install(tmp_path / "absent", capsys=capsys)


def test_the_venv_under_the_prefix_is_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "opt" / "rapp-agent" / "venv" / "bin" / "rapp-agent"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    assert "not installed" not in install(tmp_path, "--dry-run", capsys=capsys)


def test_the_distribution_declares_its_license_the_modern_way() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0", "an SPDX expression, not the deprecated table"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text, "the full text"
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
