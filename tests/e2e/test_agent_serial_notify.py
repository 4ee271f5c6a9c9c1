"""Agent over a real pty (socat) with the firmware emulator, and sd_notify on a real socket."""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time
from pathlib import Path

from agent.config import load_config
from agent.daemon import Agent
from agent.sdnotify import SdNotifier
from firmware_config.channel_map import builtin_map_path, load_builtin_map
from firmware_config.emulator import Emulator, FrameSource
from firmware_config.simulator import SimulationConfig
from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config
from tests.support.fixtures.tools import SocatPair, require_tool


def test_serial_unplug_replug_reconnects_and_reports_the_gap(
    tmp_path, broker, bundle_path, agent_processes
):
    pair = SocatPair(require_tool("socat", "apt-get install socat"), tmp_path)
    pair.start()
    stop = threading.Event()
    source = FrameSource(SimulationConfig(seed=3, duration_s=None), load_builtin_map())
    emulator = Emulator(pair.device, source, speed=1.0, stop_event=stop)
    thread = emulator.start()
    source_cfg = f'kind = "serial"\nport = "{pair.host}"\nchannel_map = "{builtin_map_path()}"\n'
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=source_cfg,
        broker=broker,
    )
    try:
        with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
            agent = AgentProcess(config).start()
            agent_processes.append(agent)

            def scores() -> int:
                return len(sub.messages("rapp/v1/ipc1/arm1/score"))

            wait_until(lambda: scores() >= 3, timeout=60)
            pair.stop()  # unplug
            time.sleep(2.0)
            pair.start()  # replug at the same paths
            before = scores()
            wait_until(lambda: scores() >= before + 5, timeout=60)

            def health():
                statuses = [
                    m.json()
                    for m in sub.messages("rapp/v1/ipc1/status")
                    if m.json()["state"] == "online"
                ]
                return statuses[-1]["robots"]["arm1"] if statuses else None

            wait_until(
                lambda: (
                    (h := health()) is not None
                    and h["windows"]["reconnects"] >= 1
                    and h["frames"]["sequence_gaps"] >= 1
                ),
                timeout=30,
            )
            # the segmenter honoured the reconnect gap (windows never span it)
            assert health()["windows"]["gaps"] >= 1
            agent.signal(signal.SIGTERM)
            assert agent.wait() == 0, agent.output()
    finally:
        stop.set()
        thread.join(timeout=5)
        pair.stop()


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def _datagrams(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
    return out


def _datagrams_past_ready(
    sock: socket.socket, seconds: float, timeout: float = 60.0
) -> list[tuple[float, str]]:
    """Every datagram from now until ``seconds`` after READY=1: the start-up, which a busy
    machine stretches, does not eat into the time the pings are watched."""
    out: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while (ready := next((t for t, m in out if "READY=1" in m), None)) is None:
        assert time.monotonic() < deadline, f"no READY=1 within {timeout} s: {out}"
        out += _datagrams(sock, 0.2)
    out += _datagrams(sock, ready + seconds - time.monotonic())
    return out


def test_sd_notify_ready_after_warmup_watchdog_on_progress_stopping_on_sigterm(
    tmp_path, bundle_path, episodes_csv, agent_processes
):
    sock, path = _notify_socket(tmp_path)
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=f'kind = "replay"\nfile = "{episodes_csv}"\nspeed = 1.0\nloop = true\n',
    )
    agent = AgentProcess(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    agent.start()
    agent_processes.append(agent)
    messages = _datagrams_past_ready(sock, 3.0)
    texts = [m for _, m in messages]
    ready = next(i for i, m in enumerate(texts) if "READY=1" in m)
    assert not any("WATCHDOG=1" in m for m in texts[:ready]), "no ping before READY"
    pings = [t for t, m in messages if "WATCHDOG=1" in m]
    assert len(pings) >= 5, texts
    # Pings come about every WATCHDOG_USEC/2 while windows are processed; the median (not the
    # max) is asserted, as a loaded CI machine can delay single iterations.
    gaps = sorted(round(b - a, 3) for a, b in itertools.pairwise(pings))
    assert gaps[len(gaps) // 2] < 0.3, gaps
    agent.signal(signal.SIGTERM)
    tail = [m for _, m in _datagrams(sock, 3.0)]
    assert any("STOPPING=1" in m for m in tail)
    assert agent.wait() == 0


def test_no_watchdog_ping_while_the_pipeline_is_stuck(
    tmp_path, bundle_path, episodes_csv, monkeypatch
):
    sock, path = _notify_socket(tmp_path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=f'kind = "replay"\nfile = "{episodes_csv}"\nspeed = 1.0\n',
    )
    agent = Agent(load_config(config), notifier=SdNotifier(path))
    agent.start()
    try:
        agent.run(until=time.monotonic() + 1.5)
        healthy = [m for _, m in _datagrams(sock, 0.3)]
        assert any("WATCHDOG=1" in m for m in healthy)
        # Stall: chunks keep arriving but nothing processes them.
        monkeypatch.setattr(agent, "step", lambda: False)
        agent.run(until=time.monotonic() + 0.5)  # let the queue fill
        _datagrams(sock, 0.1)
        agent.run(until=time.monotonic() + 1.5)
        stuck = [m for _, m in _datagrams(sock, 0.3)]
        assert not any("WATCHDOG=1" in m for m in stuck), stuck
    finally:
        monkeypatch.undo()
        agent.request_stop()
        agent.stop()
