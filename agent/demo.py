"""`rapp-agent demo`: the whole product on one machine, on embedded defaults.

simulator → firmware emulator → serial pty → agent (default bundle) → alarms, with a fault
injected mid-run, a live terminal view, MQTT to a broker when one is given or mosquitto is
installed, and a PNG plot of the run at the end. The agent part is the real daemon code
(:class:`agent.daemon.Agent`) with a serial source on a real pseudo-terminal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import (
    AgentConfig,
    AgentSection,
    RobotConfig,
    TelemetryConfig,
    TrustConfig,
)
from agent.core.errors import AgentRuntimeError
from agent.daemon import Agent
from agent.models import default_bundle_path
from agent.pipeline.alarms import AlarmEvent
from agent.pipeline.robot import ScoredWindow
from agent.sdnotify import SdNotifier
from agent.sinks.mqtt.settings import MqttSettings
from agent.sources.settings import SerialSourceSettings


class DemoError(AgentRuntimeError, RuntimeError):
    """The demo cannot run here (no default bundle, no pty support …)."""


class PtyMasterPort:
    """The board's end of a pseudo-terminal, shaped like the pyserial port the emulator uses."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.is_open = True

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        return len(data)

    def flush(self) -> None:
        """Writes go straight to the pty."""

    def close(self) -> None:
        self.is_open = False


@dataclass
class DemoRecord:
    """What the run produced, for the live view and the final plot."""

    times: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    threshold: float = 0.0
    rms: list[list[float]] = field(default_factory=list)  # per chunk (one serial frame)
    rms_times: list[float] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)
    last: ScoredWindow | None = None


@contextlib.contextmanager
def local_broker() -> Iterator[tuple[str, int] | None]:
    """mosquitto on a free loopback port if installed; None otherwise."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="rapp-demo-broker-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
            yield ("127.0.0.1", port)
        finally:
            proc.terminate()
            proc.wait(5)


def demo_config(port: str, state_dir: Path, broker: tuple[str, int] | None) -> AgentConfig:
    mqtt = None
    if broker is not None:
        mqtt = MqttSettings(host=broker[0], port=broker[1], device_id="demo")
    from firmware_config.channel_map import builtin_map_path

    return AgentConfig(
        agent=AgentSection(device_id="demo", state_dir=str(state_dir)),
        mqtt=mqtt,
        telemetry=TelemetryConfig(score_interval_s=0.5, status_interval_s=5.0),
        trust=TrustConfig(allow_unsigned=True),
        robots=(
            RobotConfig(
                id="arm1",
                source=SerialSourceSettings(port=port, channel_map=builtin_map_path()),
                bundles=("default",),
            ),
        ),
    )


def _bar(value: float, scale: float, width: int = 30) -> str:
    filled = min(width, round(width * value / scale)) if scale > 0 else 0
    return "█" * filled + "·" * (width - filled)


def render(
    record: DemoRecord, elapsed: float, duration: float, fault: str, onset: float, agent: Agent
) -> str:
    lines = [
        f"rapp-edge demo  t = {elapsed:5.1f} / {duration:.0f} s   fault {fault} at {onset:.0f} s"
    ]
    if record.rms:
        peak = max(max(r) for r in record.rms[-50:]) or 1.0
        for axis, value in enumerate(record.rms[-1], start=1):
            lines.append(f"  J{axis} {value:7.3f} A  {_bar(value, peak)}")
    if record.scores:
        s, th = record.smoothed[-1], record.threshold
        state = "ALARM" if agent._active_alarm("arm1") is not None else "ok"
        lines.append(f"  score {s:9.3f}  threshold {th:9.3f}  {_bar(s, 2 * th)}  {state}")
    health = agent.health()["arm1"]
    lines.append(
        f"  frames ok {health.frames.ok}  crc errors {health.frames.crc_errors}  "
        f"gaps {health.frames.sequence_gaps}  windows {health.windows['scored']}"
    )
    for event in record.events[-4:]:
        top = event.contributions[0].channel if event.contributions else "-"
        lines.append(f"  {event.kind.upper():5} {event.severity:8} top axis {top}  id {event.id}")
    return "\n".join(lines)


def write_plot(record: DemoRecord, path: Path, onset: float, started: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t = np.array(record.times) - started
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    rms = np.array(record.rms)
    t_rms = np.array(record.rms_times) - started
    for axis in range(rms.shape[1] if rms.size else 0):
        ax1.plot(t_rms, rms[:, axis], lw=0.6, label=f"J{axis + 1}")
    ax1.set_ylabel("RMS current per frame [A]")
    ax1.legend(ncol=6, fontsize=8)
    ax2.semilogy(t, record.scores, lw=0.5, color="grey", label="NAP score")
    ax2.semilogy(t, record.smoothed, lw=1.2, label="smoothed (EWMA)")
    ax2.axhline(record.threshold, color="red", ls="--", label="threshold")
    for ax in (ax1, ax2):
        ax.axvline(onset, color="black", ls=":", lw=1)
    for event in record.events:
        x = event.span_end - started
        ax2.axvline(x, color="red" if event.kind == "raise" else "green", lw=1)
    ax2.set_xlabel("time [s]  (dotted: fault onset; red: alarm raised; green: cleared)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(
    duration: float = 60.0,
    fault: str = "friction:J2",
    mqtt: str | None = None,
    use_broker: bool = True,
    out: Path = Path("rapp-demo.png"),
    seed: int = 7,
    live: bool | None = None,
) -> int:
    from firmware_config.channel_map import load_builtin_map
    from firmware_config.emulator import Emulator, FrameSource
    from firmware_config.simulator import SimulationConfig, parse_fault

    if not default_bundle_path().is_file():
        raise DemoError(
            f"{default_bundle_path()}: the default bundle is missing; regenerate it with "
            "scripts/build_default_bundle.sh"
        )
    spec = fault if ":onset=" in fault else f"{fault}:onset={duration / 2:g}:ramp=5"
    fault_spec = parse_fault(spec)
    live = sys.stdout.isatty() if live is None else live
    master, slave = os.openpty()
    port = os.ttyname(slave)
    stop = threading.Event()
    simulation = SimulationConfig(seed=seed, duration_s=None, faults=(fault_spec,))
    emulator = Emulator(
        port,
        FrameSource(simulation, load_builtin_map()),
        speed=1.0,
        stop_event=stop,
        serial_factory=lambda *_: PtyMasterPort(master),
    )
    record = DemoRecord()
    broker_ctx = contextlib.nullcontext(None) if (mqtt or not use_broker) else local_broker()
    with broker_ctx as started_broker, tempfile.TemporaryDirectory(prefix="rapp-demo-") as tmp:
        broker = _broker_address(mqtt) if mqtt else started_broker
        agent = Agent(demo_config(port, Path(tmp), broker), notifier=SdNotifier(None))
        agent.start()
        _attach_recorder(agent, record)
        thread = emulator.start()
        where = (
            f"MQTT {broker[0]}:{broker[1]} — watch with: mosquitto_sub -h {broker[0]} "
            f"-p {broker[1]} -t 'rapp/v1/demo/#' -v"
            if broker
            else "no MQTT"
        )
        print(f"demo: simulator → emulator → {port} → agent; {where}", flush=True)
        started = time.time()
        try:
            _run_live(agent, record, duration, spec, fault_spec.onset_s, live, started)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            thread.join(timeout=5)
            agent.request_stop()
            agent.stop(drain_timeout=5)
            os.close(master)
            os.close(slave)
    _report(record, out, fault_spec.onset_s, fault_spec.axis, started)
    return 0


def _broker_address(mqtt: str) -> tuple[str, int]:
    host, _, port_text = mqtt.rpartition(":")
    try:
        return host or "127.0.0.1", int(port_text)
    except ValueError as err:
        raise DemoError(f"--mqtt {mqtt!r}: expected HOST:PORT, e.g. 127.0.0.1:1883") from err


def _attach_recorder(agent: Agent, record: DemoRecord) -> None:
    """Record every scored window, event and the per-axis RMS of every chunk for the view."""
    assert agent.publisher is not None
    runtime = agent.robots["arm1"]
    record.threshold = runtime.pipeline.routes[0].threshold

    def on_window(w: ScoredWindow) -> None:
        record.times.append(w.window.end)
        record.scores.append(w.score)
        record.smoothed.append(w.smoothed if w.smoothed is not None else w.score)
        record.last = w

    agent.publisher.window_observers.append(on_window)
    agent.publisher.event_observers.append(record.events.append)
    original = runtime.pipeline.process

    def process_and_measure(chunk):
        record.rms.append([float(v) for v in (chunk.samples**2).mean(axis=0) ** 0.5])
        record.rms_times.append(chunk.wall_time)
        return original(chunk)

    runtime.pipeline.process = process_and_measure  # type: ignore[method-assign]


def _run_live(
    agent: Agent,
    record: DemoRecord,
    duration: float,
    spec: str,
    onset: float,
    live: bool,
    started: float,
) -> None:
    last_draw = 0.0
    while time.time() - started < duration:
        agent.run(until=time.monotonic() + 0.25)
        now = time.time()
        if now - last_draw < (0.5 if live else 5.0):
            continue
        last_draw = now
        view = render(record, now - started, duration, spec, onset, agent)
        if live:
            sys.stdout.write("\x1b[H\x1b[2J" + view + "\n")
        else:
            sys.stdout.write(view.splitlines()[0] + " | " + view.splitlines()[-1] + "\n")
        sys.stdout.flush()


def _report(record: DemoRecord, out: Path, onset: float, axis: int, started: float) -> None:
    try:
        write_plot(record, out, onset, started)
        plotted = f"plot written to {out}"
    except ImportError:
        plotted = "no plot (matplotlib is not installed: pip install 'rapp-edge[demo]')"
    raises = [e for e in record.events if e.kind == "raise"]
    first_after = next((e for e in raises if e.span_end - started >= onset), None)
    false_alarms = [e for e in raises if e.span_end - started < onset]
    print(
        f"demo done: {len(record.scores)} windows scored, {len(raises)} alarm(s) raised "
        f"({len(false_alarms)} before the fault), {plotted}"
    )
    if first_after is not None:
        delay = first_after.span_end - started - onset
        top = first_after.contributions[0].channel if first_after.contributions else "-"
        print(f"fault detected {delay:.1f} s after onset; top axis {top} (fault on J{axis})")
