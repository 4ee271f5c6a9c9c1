"""docs/install.md works as written, as far as a container allows: scripts/check_install.sh
performs its steps in a temporary root (fresh venv with a non-editable install, install-unit,
credentials, trust key, signed first bundles) and checks the files, `systemd-analyze verify`
and `rapp-agent run --check` on every example config. Fails, never skips, without
systemd-analyze."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_install.sh"
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("agent-*.toml"))


@pytest.mark.slow
def test_the_install_guide_passes_in_a_temporary_root(tmp_path: Path) -> None:
    require_tool("systemd-analyze", "apt-get install systemd")
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "verify: clean" in result.stdout
    assert len(EXAMPLES) >= 3
    for name in EXAMPLES:
        assert re.search(rf"check-{re.escape(name)}: OK \(1 robot\(s\)\)", result.stdout), name
    assert f"check_install: OK ({len(EXAMPLES)} example configs)" in result.stdout
    assert not list(tmp_path.glob("rapp-install.*")), "the temporary root was not removed"


def test_the_script_fails_without_systemd_analyze(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mktemp", "rm"):  # what runs before the tool check
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "systemd-analyze not found" in result.stderr
