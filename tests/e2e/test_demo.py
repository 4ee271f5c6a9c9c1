"""The README's main job: `rapp-agent demo` end to end on the shipped default bundle.

Runs the real command (simulator → emulator → pty → agent → local mosquitto) for a short,
real-time run with an early fault, and checks what a user sees: the fault is detected on the
right axis, nothing fires before it, and the plot is written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DURATION_S = 30
FAULT = "sensor:J6:onset=10"


@pytest.mark.slow
def test_demo_detects_the_injected_fault_and_writes_the_plot(tmp_path: Path) -> None:
    assert shutil.which("mosquitto"), "mosquitto is required (apt-get install mosquitto)"
    plot = tmp_path / "demo.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "demo",
            "--duration",
            str(DURATION_S),
            "--fault",
            FAULT,
            "--out",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=DURATION_S + 60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "MQTT 127.0.0.1:" in out, f"the demo did not start its local broker:\n{out}"
    summary = re.search(r"(\d+) windows scored, (\d+) alarm\(s\) raised \((\d+) before", out)
    assert summary, out
    windows, raised, early = map(int, summary.groups())
    assert windows >= 4
    assert raised >= 1 and early == 0, out
    assert re.search(r"fault detected [\d.]+ s after onset; top axis J6 \(fault on J6\)", out), out
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
