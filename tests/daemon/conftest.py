"""Fixtures for agent-daemon tests: real agent processes, a real broker, replay recordings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.infra.broker import MosquittoBroker
from tests.synthetic import currents, write_csv

ROOT = Path(__file__).resolve().parents[2]
EPISODES = 4
NORMAL_S, FAULT_S = 3.0, 1.5


def episode_recording(path: Path, episodes: int = EPISODES, seed: int = 11) -> Path:
    """Normal stretches with ripple faults in between: one raise and one clear per episode."""
    n_normal, n_fault = int(NORMAL_S * 1000), int(FAULT_S * 1000)
    period = n_normal + n_fault
    total = episodes * period + n_normal
    x = currents(total, seed=seed)
    labels = np.array([""] * total, dtype=object)
    t = np.arange(total) / 1000.0
    for e in range(episodes):
        lo = e * period + n_normal
        x[lo : lo + n_fault, 1] += 3.0 * np.sin(2 * np.pi * 40.0 * t[lo : lo + n_fault])
        labels[lo : lo + n_fault] = "ripple"
    return write_csv(path, x, labels)


def write_config(
    path: Path,
    *,
    state_dir: Path,
    bundle: Path,
    source: str,
    broker: MosquittoBroker | None = None,
    extra: str = "",
) -> Path:
    mqtt = ""
    if broker is not None:
        mqtt = (
            f"[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n"
            "keepalive = 5\nreconnect_min_delay = 0.2\nreconnect_max_delay = 1.0\n"
        )
    path.write_text(
        f"""
[agent]
device_id = "ipc1"
state_dir = "{state_dir}"
log_level = "info"

{mqtt}
[telemetry]
score_interval_s = 0.2
status_interval_s = 1

[trust]
allow_unsigned = true
{extra}
[[robots]]
id = "arm1"
bundle = "{bundle}"
[robots.source]
{source}
"""
    )
    return path


class AgentProcess:
    """`rapp-agent run` as a real child process."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = config.with_suffix(f".{int(time.time() * 1000)}.log")
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self._env,
            )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def agent_processes() -> Iterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="session")
def episodes_csv(tmp_path_factory) -> Path:
    return episode_recording(tmp_path_factory.mktemp("replay") / "episodes.csv")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()
