"""`python -m benchmarks.chaos` on its smallest setting: one round of each kill scenario against
a real agent and mosquitto writes the results table, and no committed alarm is lost or stuck."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kill_rounds_write_the_table_and_lose_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--quick", "--rounds", "3", "--only", "kills",
         "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = (tmp_path / "chaos.md").read_text()
    assert "## Kill rounds" in table and "| scenario | rounds (in start-up) | raised |" in table
    scenarios = json.loads((tmp_path / "chaos.json").read_text())["kills"]["scenarios"]
    assert [s["scenario"] for s in scenarios] == ["agent SIGKILL", "broker kill -9", "both at once"]
    assert sum(s["raised"] for s in scenarios) > 0, "no alarm was raised: nothing was checked"
    for s in scenarios:
        assert (s["lost"], s["stuck"]) == (0, 0), (s["scenario"], s["lost_ids"], s["stuck_ids"])
        assert s["exit_code"] == 0 and not s["crashes"], s
