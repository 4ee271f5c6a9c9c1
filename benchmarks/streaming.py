"""Streaming cost of the real agent daemon (Streaming).

Run from the repository root (``make bench`` runs it with the others)::

    .venv/bin/python -m benchmarks.streaming [--quick] [--out benchmarks/results]

Everything runs as real processes on this machine: a mosquitto broker on a free loopback port,
``rapp-agent run`` (``python -m agent.cli run``) with the shipped default bundle, and
``mosquitto_sub`` as an independent subscriber that stamps each message's arrival time
(``-F %U``). Three measurements:

1. **cost** — ``simulator`` sources (6 channels × 1 kHz per robot, real time) for 1, 4 and 16
   robots: CPU % of one core = Δ(utime + stime) of the agent process (all its threads, from
   ``/proc/<pid>/stat``) over the wall time of the measured interval, after a warm-up; RSS =
   ``VmHWM`` (peak) and ``VmRSS`` (at the end) from ``/proc/<pid>/status``. The simulator
   source computes the arm's physics *inside* the agent process, so this CPU figure includes
   generating the data.
2. **latency** — ``mqtt`` sources fed by this script with firmware frames (the serial wire
   format, 10 samples per frame, published at real-time pace: 100 frames/s per robot) from the
   firmware simulator, for 1, 4 and 16 robots. Every other robot cycle carries an injected
   fault (+3 A on J2), and the robots' alarm settings are ``ewma_alpha = 1``,
   ``debounce 1 of 1``, ``clear_windows = 1``, so every cycle window raises or clears an
   alarm. **Frame-to-alarm latency** = arrival time of the alarm event at ``mosquitto_sub``
   − the time this script published the frame that completed the deciding window (the frame
   carrying the next cycle's start marker; the event's ``seq.last`` names the window's last
   frame). It includes the broker hop in, decoding, segmentation, inference, NAP, the alarm
   state machine, the SQLite outbox commit, and the broker hop out. CPU and RSS are reported
   here too: this is the realistic cost (data generated outside the agent).
3. **max ingest** — one ``simulator`` source at ``speed = 0`` (as fast as the pipeline takes
   it: the source waits while its queue is half full, so nothing is lost by construction) for
   a fixed time; the rate is the growth of the agent's sample counter (``status`` topic) per
   second, reported as samples/s and robot-equivalents (÷ 1 000 samples/s of 6 channels).
   Paced runs at 80 %, 60 %, 40 % of that rate follow until one drops nothing and keeps up:
   that one is the *sustained* rate.
4. **frames ingest** — MQTT frame sources at real-time pace, more robots per step (×1.5)
   until a step loses a frame or does not keep up: every frame published must be counted
   (``frames.ok``), no sequence gap or queue drop, and the agent must have taken them all
   within a few seconds of the feed stopping. The last lossless step is the maximum
   sustained ingest; agent, broker and publisher CPU of the first failing step say where it
   saturates.
5. **serial** — the framed input alone (pyserial reader → framed stage → queue) in a child
   process reading one socat pty that the firmware emulator writes: CPU µs per frame.

Phases 2, 4 and 5 run for the **new** implementation (frames batched per message/read, one
chunk per read, one scorer per bundle; ``--frames-per-message``, default
:data:`~firmware_config.emulator.DEFAULT_FRAMES_PER_MESSAGE`) and the **previous** one (one
frame per MQTT message, one chunk per frame, one scorer per robot: the agent started through
``python -m benchmarks.streaming agent-previous``, which switches those back) in the same run,
so their ratio holds even on a shared machine. ``--py-spy PATH`` also samples the agent at 16
robots with py-spy and lists the functions it spends its time in.

Results: ``<out>/streaming.json``, ``<out>/streaming.md``, ``<out>/plots/streaming_latency.png``.
``--quick`` (CI smoke) uses fewer robots and seconds; it checks the harness, not the speed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS,
    ROOT,
    BenchmarkError,
    load_average,
    machine_info,
    machine_lines,
    md_table,
    percentiles,
    write_json,
    write_text,
)

DEVICE = "bench"
CHANNELS_PER_ROBOT = 6
RATE_HZ = 1000
FAULT_AMPS = 3.0  # added to J2 in faulted cycles (1 mA per count on J2)
CLK_TCK = os.sysconf("SC_CLK_TCK")
FRAME_PERIOD_S = 10 / RATE_HZ  # the shipped map: 10 samples per frame
PREVIOUS_AGENT = "agent-previous"  # hidden command: the agent without batching or sharing
SERIAL_RECEIVER = "serial-receiver"  # hidden command: the serial input stage alone


@dataclass(frozen=True)
class Plan:
    """Robot counts and seconds per phase; ``--quick`` shrinks it."""

    cost_robots: tuple[int, ...]
    latency_robots: tuple[int, ...]
    warmup_s: float
    cost_s: float
    latency_s: float
    ingest_s: float
    # The latency phase goes on (up to EXTRA_FEED_S more) until this many alarm events arrived,
    # so a slow machine still yields a measurement instead of an empty table.
    min_alarm_events: int = 2

    frames_ingest_s: float = 15.0
    frames_ingest_start: int = 16
    frames_ingest_max: int = 400
    serial_frames: int = 3000


FULL = Plan((1, 16), (1, 16), warmup_s=5.0, cost_s=30.0, latency_s=45.0, ingest_s=20.0)
QUICK = Plan(
    (1,),
    (2,),
    warmup_s=1.0,
    cost_s=4.0,
    latency_s=10.0,
    ingest_s=6.0,
    frames_ingest_s=4.0,
    frames_ingest_start=4,
    frames_ingest_max=6,
    serial_frames=300,
)
EXTRA_FEED_S = 60.0
INGEST_GROWTH = 1.5  # robots per frames-ingest step: × this until a step fails
INGEST_SETTLE_S = 4.0  # a step keeps up if the agent counted every frame this soon after
SUSTAINED_CPU_PCT = 90.0  # … and is sustained only with this much of its core or less


@dataclass(frozen=True)
class Implementation:
    """Which agent is measured: ``previous`` switches batching and scorer sharing off."""

    name: str
    previous: bool
    frames_per_message: int


def implementations(frames_per_message: int) -> tuple[Implementation, Implementation]:
    return (
        Implementation("previous", previous=True, frames_per_message=1),
        Implementation("new", previous=False, frames_per_message=frames_per_message),
    )


# --- processes ------------------------------------------------------------------------------


def require(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else "")
    if not path:
        raise BenchmarkError(f"{name} not found: apt-get install mosquitto mosquitto-clients")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[tuple[int, int]]:
    """A mosquitto on a free loopback port for the duration of the block; yields its port
    and process id."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    user = pwd.getpwuid(os.getuid()).pw_name
    # set_tcp_nodelay: the broker forwards each message at once instead of holding it back
    # until the previous one is acknowledged (Nagle + delayed ACKs add up to ~40 ms)
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {user}\nset_tcp_nodelay true\n"
    )
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen([require("mosquitto"), "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchmarkError("mosquitto did not start; see mosquitto.log") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Subscriber:
    """``mosquitto_sub`` in its own process; every line is ``<unix time> <topic> <payload>``."""

    def __init__(self, port: int, topics: Sequence[str], path: Path) -> None:
        self.path = path
        args = [require("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
        for topic in topics:
            args += ["-t", topic]
        self._out = path.open("wb")
        self.proc = subprocess.Popen([*args, "-F", "%U %t %p"], stdout=self._out)

    def messages(self) -> list[tuple[float, str, dict[str, Any]]]:
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[2].startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append((float(parts[0]), parts[1], json.loads(parts[2])))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._out.close()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(line.split()[1]) / 1024.0
    return out


class Agent:
    """``python -m agent.cli run`` as a child process with one thread for numerical libraries;
    ``previous`` starts it through :func:`run_previous_agent` instead."""

    def __init__(self, config: Path, previous: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.log = config.with_suffix(".log")
        if previous:
            command = ["-m", "benchmarks.streaming", PREVIOUS_AGENT, str(config)]
        else:
            command = ["-m", "agent.cli", "run", "--config", str(config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_config(
    path: Path, port: int, robots: Sequence[str], telemetry_s: float = 1.0, status_s: float = 1.0
) -> Path:
    """Agent config: one [[robots]] table per entry of ``robots`` (TOML body of the table)."""
    body = [
        "[agent]",
        f'device_id = "{DEVICE}"',
        f'state_dir = "{path.parent / (path.stem + "-state")}"',
        'log_level = "warning"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "[telemetry]",
        f"score_interval_s = {telemetry_s}",
        f"status_interval_s = {status_s}",
        "[trust]",
        "allow_unsigned = true",
        "[ota]",
        "enabled = false",
        *robots,
    ]
    path.write_text("\n".join(body) + "\n")
    return path


def simulator_robot(i: int, speed: float = 1.0) -> str:
    return (
        f'[[robots]]\nid = "arm{i}"\nbundle = "default"\n[robots.source]\nkind = "simulator"\n'
        f"seed = {i + 1}\nspeed = {speed}\n"
    )


def mqtt_robot(i: int) -> str:
    return (
        f'[[robots]]\nid = "arm{i}"\nbundle = "default"\n[robots.source]\nkind = "mqtt"\n'
        f'topic = "bench/frames/arm{i}"\npayload = "frames"\n'
        f'channel_map = "{ROOT / "firmware_config" / "maps" / "six_axis_arm.toml"}"\n'
        "[robots.alarm]\newma_alpha = 1.0\ndebounce_k = 1\ndebounce_n = 1\nclear_windows = 1\n"
    )


def wait_until(agent: Agent, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``done()`` until true; fail with the agent's log if it exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not agent.alive():
            raise BenchmarkError(f"agent exited: {agent.log.read_text()[-2000:]}")
        if done():
            return
        time.sleep(0.1)
    raise BenchmarkError(f"{what} after {timeout} s: {agent.log.read_text()[-2000:]}")


def wait_online(sub: Subscriber, agent: Agent) -> None:
    wait_until(
        agent,
        lambda: any(
            topic.endswith("/status") and doc.get("state") == "online"
            for _, topic, doc in sub.messages()
        ),
        "agent not online",
    )


def wait_robots_listed(sub: Subscriber, agent: Agent, robots: Sequence[str]) -> None:
    """Until a status lists every robot: bundles loaded and sources started (subscribed).

    ``online`` is published when the MQTT link connects, before the sources subscribe, so
    it does not prove the agent takes frames yet.
    """
    wait_until(
        agent,
        lambda: set(robots) <= set(last_status(sub).get("robots", {})),
        "robots not listed in status",
    )
    time.sleep(0.5)  # the SUBACK follows the status; loopback needs far less


def wait_frames_flowing(sub: Subscriber, agent: Agent, robots: Sequence[str]) -> None:
    """Until a status shows frames decoded for every robot."""

    def flowing() -> bool:
        entries = last_status(sub).get("robots", {})
        return all(entries.get(r, {}).get("frames", {}).get("ok", 0) > 0 for r in robots)

    wait_until(agent, flowing, "no frames decoded")


def settled_frame_counts(sub: Subscriber, robots: Sequence[str]) -> dict[str, int]:
    """Frames decoded per robot once two successive statuses agree (the feed has stopped)."""
    previous: dict[str, int] = {}
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        time.sleep(1.1)  # status interval is 1 s
        entries = last_status(sub).get("robots", {})
        counts = {r: int(entries.get(r, {}).get("frames", {}).get("ok", 0)) for r in robots}
        if counts == previous:
            return counts
        previous = counts
    return previous


def alarm_events(sub: Subscriber) -> int:
    return sum(1 for _, topic, _ in sub.messages() if topic.endswith("/alarm"))


def last_status(sub: Subscriber) -> dict[str, Any]:
    docs = [d for _, t, d in sub.messages() if t.endswith("/status") and d.get("robots")]
    return docs[-1] if docs else {}


@dataclass
class Measured:
    cpu_pct: float
    wall_s: float
    rss: dict[str, float]
    status: dict[str, Any] = field(default_factory=dict)


def measure_agent(agent: Agent, sub: Subscriber, warmup_s: float, seconds: float) -> Measured:
    """CPU % of one core over ``seconds`` after ``warmup_s``; memory at the end."""
    time.sleep(warmup_s)
    cpu0, t0 = proc_cpu_seconds(agent.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = proc_cpu_seconds(agent.pid), time.monotonic()
    if not agent.alive():
        raise BenchmarkError(f"agent died during the run: {agent.log.read_text()[-2000:]}")
    time.sleep(1.2)  # one more status message covering the interval
    return Measured(
        100 * (cpu1 - cpu0) / (t1 - t0), t1 - t0, proc_memory_mb(agent.pid), last_status(sub)
    )


def robot_counters(status: dict[str, Any]) -> dict[str, int]:
    """Windows scored, queue drops and sequence gaps summed over robots in a status payload."""
    total = {"scored": 0, "queue_dropped": 0, "sequence_gaps": 0}
    for entry in status.get("robots", {}).values():
        windows = entry.get("windows", {})
        total["scored"] += int(windows.get("scored", 0))
        total["queue_dropped"] += int(windows.get("queue_dropped", 0))
        total["sequence_gaps"] += int(entry.get("frames", {}).get("sequence_gaps", 0))
    return total


# --- phase 1: cost with simulator sources --------------------------------------------------


def run_cost(work: Path, port: int, robots: int, plan: Plan) -> dict[str, Any]:
    config = write_config(
        work / f"cost{robots}.toml", port, [simulator_robot(i) for i in range(robots)]
    )
    sub = Subscriber(port, [f"rapp/v1/{DEVICE}/status"], work / f"cost{robots}.sub")
    agent = Agent(config)
    try:
        wait_online(sub, agent)
        m = measure_agent(agent, sub, plan.warmup_s, plan.cost_s)
    finally:
        agent.stop()
        sub.stop()
    return {
        "robots": robots,
        "source": "simulator (in-process physics), 6 ch × 1 kHz each",
        "seconds": round(m.wall_s, 1),
        "cpu_pct_one_core": m.cpu_pct,
        "cpu_pct_per_robot": m.cpu_pct / robots,
        "rss_peak_mb": m.rss.get("VmHWM"),
        "rss_end_mb": m.rss.get("VmRSS"),
        "counters": robot_counters(m.status),
    }


# --- phase 2: frame-to-alarm latency with MQTT frame sources -------------------------------


@dataclass
class RobotFeed:
    """Frames of one simulated robot with a fault in every other cycle, and their times."""

    frames: Iterator[Any]
    cycle: int = 0
    published: dict[int, float] = field(default_factory=dict)  # agent seq → publish time
    markers: list[int] = field(default_factory=list)  # agent seqs carrying a cycle start
    count: int = 0


def _feed(seed: int) -> RobotFeed:
    from firmware_config.channel_map import load_builtin_map
    from firmware_config.emulator import FrameSource
    from firmware_config.simulator import SimulationConfig

    channel_map = load_builtin_map()
    config = SimulationConfig(
        seed=seed, duration_s=None, sample_rate_hz=RATE_HZ, schedule=((1, 1),)
    )
    return RobotFeed(FrameSource(config, channel_map).frames())


def _next_wire(feed: RobotFeed, fault_counts: int) -> bytes:
    """Encode the feed's next frame, adding the fault to J2 in odd-numbered cycles."""
    from firmware_config.protocol import encode_frame

    frame = next(feed.frames)
    feed.count += 1  # the agent numbers frames 1, 2, 3, … (no loss on loopback)
    before = feed.cycle % 2 == 1  # samples before a marker belong to the previous cycle
    marker = frame.cycle_start_index if frame.cycle_start else frame.samples.shape[0]
    if frame.cycle_start:
        feed.cycle += 1
        feed.markers.append(feed.count)
    after = feed.cycle % 2 == 1
    if before or after:
        samples = frame.samples.astype(np.int32)
        if before:
            samples[:marker, 1] += fault_counts
        if after:
            samples[marker:, 1] += fault_counts
        clipped = np.clip(samples, -32768, 32767).astype(np.int16)
        frame = dataclasses.replace(frame, samples=clipped)
    return encode_frame(frame)


def publish_frames(
    port: int,
    feeds: list[RobotFeed],
    seconds: float,
    stop: threading.Event,
    frames_per_message: int = 1,
) -> int:
    """Publish every feed's frames at real-time pace (QoS 0), ``frames_per_message`` frames
    per message once the last of them is due, robot ``i`` of ``n`` at ``i / n`` of a message
    period later than robot 0; returns late messages (> 5 ms)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-feeder")
    client.connect("127.0.0.1", port)
    _no_delay(client)
    client.loop_start()
    fault_counts = round(FAULT_AMPS / 0.001)
    period = frames_per_message * FRAME_PERIOD_S
    start = time.monotonic()
    late = 0
    tick = 0
    try:
        while not stop.is_set() and tick * period < seconds:
            for i, feed in enumerate(feeds):
                # robots are not in step: each one's messages go out at its own phase
                delay = start + (tick + 1 + i / len(feeds)) * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.005:
                    late += 1
                wire = b"".join(_next_wire(feed, fault_counts) for _ in range(frames_per_message))
                now = time.time()
                for count in range(feed.count - frames_per_message + 1, feed.count + 1):
                    feed.published[count] = now
                client.publish(f"bench/frames/arm{i}", wire, qos=0)
            tick += 1
    finally:
        client.loop_stop()
        client.disconnect()
    return late


def _no_delay(client: Any) -> None:
    """Send each publish at once, as a gateway forwarding frames would (no Nagle)."""
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def completing_frame(feed: RobotFeed, seq_last: int) -> int | None:
    """The first frame at or after ``seq_last`` that carries a cycle start (closes the cycle)."""
    idx = int(np.searchsorted(feed.markers, seq_last))
    return feed.markers[idx] if idx < len(feed.markers) else None


def run_latency(
    work: Path, port: int, robots: int, plan: Plan, impl: Implementation, py_spy: Path | None
) -> dict[str, Any]:
    label = f"lat{robots}-{impl.name}"
    config = write_config(work / f"{label}.toml", port, [mqtt_robot(i) for i in range(robots)])
    sub = Subscriber(
        port, [f"rapp/v1/{DEVICE}/status", f"rapp/v1/{DEVICE}/+/alarm"], work / f"{label}.sub"
    )
    agent = Agent(config, previous=impl.previous)
    profile: dict[str, Any] | None = None
    feeds = [_feed(seed=100 + i) for i in range(robots)]
    stop = threading.Event()
    try:
        wait_online(sub, agent)
        names = [f"arm{i}" for i in range(robots)]
        wait_robots_listed(sub, agent, names)
        result: dict[str, int] = {}
        longest = plan.warmup_s + plan.latency_s + EXTRA_FEED_S + 60
        feeder = threading.Thread(
            target=lambda: result.update(
                late=publish_frames(port, feeds, longest, stop, impl.frames_per_message)
            ),
            daemon=True,
        )
        feeder.start()
        wait_frames_flowing(sub, agent, names)
        m = measure_agent(agent, sub, plan.warmup_s, plan.latency_s)
        if py_spy is not None:
            profile = sample_profile(py_spy, agent.pid, work / f"{label}.pyspy")
        deadline = time.monotonic() + EXTRA_FEED_S
        while alarm_events(sub) < plan.min_alarm_events and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        feeder.join(30)
        received = settled_frame_counts(sub, names)
    finally:
        stop.set()
        agent.stop()
        sub.stop()
    # The agent numbers the frames it receives from 1; frames published before its
    # subscription took effect are the difference (loopback loses none later: gaps are 0).
    unseen = [
        feed.count - received.get(name, feed.count) for feed, name in zip(feeds, names, strict=True)
    ]
    latencies, kinds = [], {"raise": 0, "clear": 0}
    for arrived, topic, doc in sub.messages():
        if not topic.endswith("/alarm"):
            continue
        index = int(doc["robot"].removeprefix("arm"))
        feed = feeds[index]
        done = completing_frame(feed, int(doc["seq"]["last"]) + unseen[index])
        if done is None or done not in feed.published:
            continue
        latencies.append((arrived - feed.published[done]) * 1000.0)
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    return {
        "robots": robots,
        "implementation": impl.name,
        "frames_per_message": impl.frames_per_message,
        "profile": profile,
        "source": "mqtt frames (firmware wire format), 6 ch × 1 kHz each, published by the bench",
        "seconds": round(m.wall_s, 1),
        "cpu_pct_one_core": m.cpu_pct,
        "cpu_pct_per_robot": m.cpu_pct / robots,
        "rss_peak_mb": m.rss.get("VmHWM"),
        "rss_end_mb": m.rss.get("VmRSS"),
        "frames_published": sum(f.count for f in feeds),
        "publisher_late_ticks": result.get("late", -1),
        "frames_before_subscription": unseen,
        "events": kinds,
        "frame_to_alarm_ms": {
            **percentiles(latencies, (50, 90, 99)),
            "max": max(latencies, default=float("nan")),
        },
        "latencies_ms": [round(x, 3) for x in latencies],
        "counters": robot_counters(m.status),
    }


# --- phase 3: maximum sustained ingest -----------------------------------------------------


def _sample_rate(sub: Subscriber, since: float) -> float:
    """Samples/s from the growth of the robots' frame counters in ``online`` status payloads.

    Timed by each payload's own ``ts`` (when the agent read its counters): a busy agent sends
    statuses late and in bursts, so arrival times would compress the interval.
    """
    points = []
    for arrived, topic, doc in sub.messages():
        if (
            topic.endswith("/status")
            and doc.get("state") == "online"
            and doc.get("robots")
            and arrived >= since
        ):
            ok = sum(int(r["frames"]["ok"]) for r in doc["robots"].values())
            stamp = datetime.fromisoformat(doc["ts"].replace("Z", "+00:00")).timestamp()
            points.append((stamp, ok))
    if len(points) < 2 or points[-1][0] - points[0][0] < 1.0:
        raise BenchmarkError("ingest: fewer than two status reports 1 s apart; run longer")
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


CONFIRM_FRACTIONS = (0.8, 0.6, 0.4)  # of the unpaced rate, tried in turn until one keeps up


def _ingest_run(work: Path, port: int, plan: Plan, label: str, speed: float) -> dict[str, Any]:
    config = write_config(work / f"ingest-{label}.toml", port, [simulator_robot(0, speed)])
    sub = Subscriber(port, [f"rapp/v1/{DEVICE}/status"], work / f"ingest-{label}.sub")
    agent = Agent(config)
    try:
        wait_online(sub, agent)
        time.sleep(plan.warmup_s)
        since = time.time()
        m = measure_agent(agent, sub, 0.0, plan.ingest_s)
    finally:
        agent.stop()
        sub.stop()
    rate = _sample_rate(sub, since)
    return {
        "speed": speed,
        "samples_per_s": rate,
        "channel_samples_per_s": rate * CHANNELS_PER_ROBOT,
        "robot_equivalents": rate / RATE_HZ,
        "cpu_pct_one_core": m.cpu_pct,
        "counters": robot_counters(m.status),
    }


def run_ingest(work: Path, port: int, plan: Plan) -> dict[str, Any]:
    """Unpaced peak, then paced runs at falling fractions of it until one loses nothing.

    The first paced run that keeps up (no queue drop, ≥ 95 % of the asked rate) is the
    *sustained* rate; the unpaced figure is a peak (the source only waits when the queue is
    half full, which a paced source never does).
    """
    out: dict[str, Any] = {"unpaced": _ingest_run(work, port, plan, "unpaced", 0.0)}
    out["steps"] = []
    out["sustained"] = None
    for fraction in CONFIRM_FRACTIONS:
        speed = round(fraction * out["unpaced"]["samples_per_s"] / RATE_HZ, 1)
        step = _ingest_run(work, port, plan, f"paced{fraction:g}", speed)
        step["fraction_of_unpaced"] = fraction
        step["kept_up"] = bool(
            step["counters"]["queue_dropped"] == 0
            and step["samples_per_s"] >= 0.95 * speed * RATE_HZ
        )
        out["steps"].append(step)
        if step["kept_up"]:
            out["sustained"] = step
            break
    out["confirm"] = out["steps"][-1]
    return out


# --- phase 4: maximum sustained ingest of MQTT frames -------------------------------------


def ingest_messages(seconds: float, frames_per_message: int) -> list[bytes]:
    """Wire payloads of one simulated robot for ``seconds``, encoded before the clock starts
    (every robot is sent the same ones, each on its own topic, so the feeder stays cheap)."""
    from firmware_config.protocol import encode_frame

    feed = _feed(seed=7)
    count = int(seconds / FRAME_PERIOD_S) // frames_per_message * frames_per_message
    wires = [encode_frame(next(feed.frames)) for _ in range(count)]
    return [
        b"".join(wires[i : i + frames_per_message]) for i in range(0, count, frames_per_message)
    ]


def publish_messages(
    port: int, topics: Sequence[str], messages: Sequence[bytes], period_s: float
) -> dict[str, float]:
    """Publish message k to topic i at ``(k + 1 + i / n) × period_s``; the feeder's own CPU and
    how late it fell behind tell whether it, not the agent, was the limit."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ingest")
    client.connect("127.0.0.1", port)
    _no_delay(client)
    client.loop_start()
    cpu0, start = time.process_time(), time.monotonic()
    worst = 0.0
    try:
        for k, payload in enumerate(messages):
            for i, topic in enumerate(topics):  # each robot at its own phase, as in latency
                delay = start + (k + 1 + i / len(topics)) * period_s - time.monotonic()
                if delay > 0.0005:
                    time.sleep(delay)
                worst = max(worst, -delay)
                client.publish(topic, payload, qos=0)
    finally:
        client.loop_stop()
        client.disconnect()
    wall = time.monotonic() - start
    return {"cpu_pct": 100 * (time.process_time() - cpu0) / wall, "worst_late_s": worst}


def _frames_ok(sub: Subscriber, robots: Sequence[str]) -> dict[str, int]:
    entries = last_status(sub).get("robots", {})
    return {r: int(entries.get(r, {}).get("frames", {}).get("ok", 0)) for r in robots}


def _ingest_step(
    work: Path, port: int, plan: Plan, impl: Implementation, robots: int, broker_pid: int
) -> dict[str, Any]:
    label = f"frames-ingest-{impl.name}-{robots}"
    names = [f"arm{i}" for i in range(robots)]
    config = write_config(work / f"{label}.toml", port, [mqtt_robot(i) for i in range(robots)])
    sub = Subscriber(port, [f"rapp/v1/{DEVICE}/status"], work / f"{label}.sub")
    messages = ingest_messages(plan.frames_ingest_s, impl.frames_per_message)
    published = len(messages) * impl.frames_per_message
    agent = Agent(config, previous=impl.previous)
    try:
        wait_online(sub, agent)
        wait_robots_listed(sub, agent, names)
        cpu0, broker0, t0 = proc_cpu_seconds(agent.pid), proc_cpu_seconds(broker_pid), time.time()
        feeder = publish_messages(
            port,
            [f"bench/frames/{n}" for n in names],
            messages,
            impl.frames_per_message * FRAME_PERIOD_S,
        )
        wall = time.time() - t0
        cpu = 100 * (proc_cpu_seconds(agent.pid) - cpu0) / wall
        broker_cpu = 100 * (proc_cpu_seconds(broker_pid) - broker0) / wall
        deadline = time.monotonic() + INGEST_SETTLE_S + 1.2  # one status interval more
        while time.monotonic() < deadline and min(_frames_ok(sub, names).values()) < published:
            time.sleep(0.2)
        counted = _frames_ok(sub, names)
        rss = proc_memory_mb(agent.pid)
        counters = robot_counters(last_status(sub))
    finally:
        agent.stop()
        sub.stop()
    lost = sum(published - n for n in counted.values())
    return {
        "robots": robots,
        "frames_published": published * robots,
        "frames_missing": lost,
        "counters": counters,
        "lossless": lost == 0 and counters["queue_dropped"] == 0 and counters["sequence_gaps"] == 0,
        "agent_cpu_pct_one_core": cpu,
        "broker_cpu_pct": broker_cpu,
        "feeder_cpu_pct": feeder["cpu_pct"],
        "feeder_worst_late_s": feeder["worst_late_s"],
        "rss_peak_mb": rss.get("VmHWM"),
    }


def saturation(step: dict[str, Any] | None) -> str:
    """Which process ran out of time in the first failing step."""
    if step is None:
        return "not reached"
    if step["feeder_worst_late_s"] > 0.5:
        return f"the bench's feeder (fell {step['feeder_worst_late_s']:.1f} s behind)"
    if step["agent_cpu_pct_one_core"] >= SUSTAINED_CPU_PCT:
        return (
            f"the agent process: {step['agent_cpu_pct_one_core']:.0f} % of one core "
            "(one interpreter: the MQTT thread and the main loop share its lock)"
        )
    return (
        f"not CPU-bound in the agent ({step['agent_cpu_pct_one_core']:.0f} %); broker "
        f"{step['broker_cpu_pct']:.0f} %, feeder {step['feeder_cpu_pct']:.0f} % — the 2 shared "
        "cores"
    )


def run_frames_ingest(
    work: Path, port: int, plan: Plan, impl: Implementation, broker_pid: int
) -> dict[str, Any]:
    """Steps of ×1.5 robots until one is not lossless; the last lossless one is the figure."""
    steps: list[dict[str, Any]] = []
    robots = plan.frames_ingest_start
    while robots <= plan.frames_ingest_max:
        step = _ingest_step(work, port, plan, impl, robots, broker_pid)
        steps.append(step)
        print(
            f"frames ingest {impl.name} {robots} robots: lossless {step['lossless']}, "
            f"missing {step['frames_missing']}, agent CPU {step['agent_cpu_pct_one_core']:.0f} %"
        )
        if not step["lossless"]:
            break
        robots = max(robots + 1, round(robots * INGEST_GROWTH))
    return ingest_summary(impl.name, impl.frames_per_message, steps)


def ingest_summary(name: str, frames_per_message: int, steps: list[dict[str, Any]]) -> dict:
    """The figures of a ramp: lossless (every frame counted) and sustained (lossless with
    the agent below :data:`SUSTAINED_CPU_PCT` of its one core: a saturated interpreter only
    looks lossless while the broker buffers for it)."""
    lossless = [s for s in steps if s["lossless"]]
    sustained = [s for s in lossless if s["agent_cpu_pct_one_core"] < SUSTAINED_CPU_PCT]
    failed = next((s for s in steps if all(s is not x for x in sustained)), None)
    return {
        "implementation": name,
        "frames_per_message": frames_per_message,
        "steps": steps,
        "max_lossless_robots": lossless[-1]["robots"] if lossless else 0,
        "max_sustained_robots": sustained[-1]["robots"] if sustained else 0,
        "first_failing_robots": failed["robots"] if failed else None,
        "saturates": saturation(failed),
    }


# --- phase 5: the serial input stage over a pty ----------------------------------------------


def run_serial_receiver(port: str, frames: int, previous: bool) -> int:
    """Child process: the serial source's reader and framed stage, queue drained and dropped.

    Prints one JSON line: CPU seconds of this process from the first chunk to the last
    expected frame, and the counters.
    """
    from agent.sources.base import ChunkQueue
    from agent.sources.serial_source import SerialSource
    from firmware_config.channel_map import load_builtin_map

    if previous:
        use_previous_implementation()
    queue = ChunkQueue(1_000_000)
    source = SerialSource(port, 921_600, load_builtin_map(), queue)
    source.start()
    deadline = time.monotonic() + 10
    while not source.status().connected and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    chunks, samples, cpu_first, last_data = 0, 0, None, time.monotonic()
    per_frame = load_builtin_map().samples_per_frame
    while samples < frames * per_frame and time.monotonic() - last_data < 3.0:
        chunk = queue.get(timeout=0.2)
        if chunk is None:
            continue
        chunks += 1
        samples += chunk.n
        last_data = time.monotonic()
        if cpu_first is None:
            cpu_first = time.process_time()
    cpu = time.process_time() - (cpu_first or time.process_time())
    source.stop()
    counters = source.status().counters
    print(json.dumps({"cpu_s": cpu, "chunks": chunks, **counters}), flush=True)
    return 0


def _serial_run(work: Path, plan: Plan, previous: bool, frames_per_message: int) -> dict[str, Any]:
    from firmware_config.channel_map import load_builtin_map
    from firmware_config.emulator import Emulator, FrameSource
    from firmware_config.simulator import SimulationConfig

    device, host = work / "ttyDEVICE", work / "ttyHOST"
    socat = subprocess.Popen(
        [
            require("socat"),
            f"pty,raw,echo=0,link={device}",
            f"pty,raw,echo=0,link={host}",
        ],
        stderr=subprocess.DEVNULL,
    )
    receiver = None
    try:
        deadline = time.monotonic() + 10
        while not (device.exists() and host.exists()):
            if time.monotonic() > deadline:
                raise BenchmarkError("socat made no ptys (apt-get install socat)")
            time.sleep(0.01)
        command = [sys.executable, "-m", "benchmarks.streaming", SERIAL_RECEIVER, str(host)]
        command += [str(plan.serial_frames), "previous" if previous else "new"]
        receiver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise BenchmarkError("serial receiver did not start")
        duration = plan.serial_frames * FRAME_PERIOD_S
        simulation = SimulationConfig(seed=3, duration_s=duration, sample_rate_hz=RATE_HZ)
        emulator = Emulator(
            str(device),
            FrameSource(simulation, load_builtin_map()),
            speed=SERIAL_SPEED,
            frames_per_message=frames_per_message,
        )
        emulator.run()
        out, _ = receiver.communicate(timeout=30)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if receiver is not None and receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        socat.terminate()
        socat.wait(10)
    frames = max(int(result["frames_ok"]), 1)
    return {
        "implementation": "previous" if previous else "new",
        "frames_per_write": frames_per_message,
        "frames_ok": result["frames_ok"],
        "chunks": result["chunks"],
        "cpu_us_per_frame": 1e6 * result["cpu_s"] / frames,
    }


SERIAL_SPEED = 4.0  # × real time: 400 frames/s on one pty, so the CPU time is measurable


def run_serial(work: Path, plan: Plan, frames_per_message: int) -> list[dict[str, Any]]:
    rows = []
    for per_write in sorted({1, frames_per_message}):
        for previous in (True, False):
            rows.append(_serial_run(work, plan, previous, per_write))
            print(
                f"serial {rows[-1]['implementation']} {per_write} frame(s)/write: "
                f"{rows[-1]['cpu_us_per_frame']:.1f} µs/frame"
            )
    return rows


# --- the previous implementation, and a profile of either -----------------------------------


def use_previous_implementation() -> None:
    """Switch this process's agent back to one chunk per frame and one scorer per robot.

    Only for measuring: the new stage's ``batched`` switch and the scorer cache are the
    production code's; this replaces the names the sources and the daemon look them up by.
    """
    import functools

    from agent import daemon, models
    from agent.sources import mqtt_source, serial_source
    from agent.sources.framed import FramedInput

    per_frame = functools.partial(FramedInput, batched=False)
    mqtt_source.FramedInput = per_frame  # type: ignore[misc]
    serial_source.FramedInput = per_frame  # type: ignore[misc]

    class NoSharing(models.ScorerCache):
        def get(self, key: Any) -> None:
            return None

    daemon.ScorerCache = NoSharing  # type: ignore[misc]


def run_previous_agent(config: str) -> int:
    use_previous_implementation()
    from agent.cli import main as agent_main

    return agent_main(["run", "--config", config])


PROFILE_S = 15.0


def sample_profile(py_spy: Path, pid: int, out: Path, top: int = 12) -> dict[str, Any]:
    """Sample every thread of ``pid`` with py-spy for :data:`PROFILE_S`; top functions by
    own time, as a share of the samples of busy threads (py-spy leaves idle ones out)."""
    command = [str(py_spy), "record", "-p", str(pid), "-d", str(int(PROFILE_S)), "-r", "200"]
    subprocess.run(
        [*command, "-f", "raw", "-o", str(out), "--nonblocking"],
        check=True,
        capture_output=True,
        timeout=PROFILE_S + 60,
    )
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        name = leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split(":")[0].split("/")[-1]
        own[name + ")"] = own.get(name + ")", 0) + int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {"samples": total, "top": [[name, 100 * n / max(total, 1)] for name, n in ranked]}


def fsync_ms(directory: Path, n: int = 200) -> dict[str, float]:
    """Latency of a small write + fsync in ``directory`` (where the agent's outbox lives).

    An alarm is committed with SQLite ``synchronous=FULL`` before it is published, so the
    disk's fsync time is part of every frame-to-alarm latency; this states it.
    """
    path = directory / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 256)
            start = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        os.close(fd)
        path.unlink()
    return percentiles(times, (50, 99))


# --- report ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Streaming cost of the agent daemon", "", *machine_lines(report["machine"])]
    lines += [
        f"- {'quick smoke run' if report['quick'] else 'full run'}; shipped default bundle "
        "(robot cycles ≈ 4.4 s → one window per robot per cycle), onnxruntime int8, one thread",
        "",
        *comparison_lines(report),
        "## Cost, simulator sources (the arm's physics is simulated inside the agent process)",
        "",
    ]
    lines += md_table(
        [
            "robots",
            "CPU % of one core",
            "per robot",
            "RSS peak MB",
            "RSS end MB",
            "windows",
            "queue drops",
        ],
        [
            [
                r["robots"],
                f"{r['cpu_pct_one_core']:.2f}",
                f"{r['cpu_pct_per_robot']:.2f}",
                f"{r['rss_peak_mb']:.0f}",
                f"{r['rss_end_mb']:.0f}",
                r["counters"]["scored"],
                r["counters"]["queue_dropped"],
            ]
            for r in report["cost"]
        ],
    )
    lines += [
        "",
        "## Frame-to-alarm latency, MQTT frame sources (data generated outside the agent)",
        "",
        "Latency = alarm event's arrival at an independent `mosquitto_sub` − publication of the "
        "frame that completed the deciding window (both on this machine's clock). Every cycle "
        "decides an alarm (fault on every other cycle, debounce 1 of 1). Each alarm is "
        "committed to the SQLite outbox with fsync before it is sent; fsync on this disk: "
        f"p50 {report['fsync_ms']['p50']:.1f} ms, p99 {report['fsync_ms']['p99']:.1f} ms.",
        "",
    ]
    lines += md_table(
        [
            "implementation",
            "robots",
            "CPU % of one core",
            "RSS peak MB",
            "alarm events",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "queue drops",
        ],
        [
            [
                f"{r['implementation']} ({r['frames_per_message']} frame/msg)",
                r["robots"],
                f"{r['cpu_pct_one_core']:.2f}",
                f"{r['rss_peak_mb']:.0f}",
                r["frame_to_alarm_ms"]["n"],
                f"{r['frame_to_alarm_ms']['p50']:.1f}",
                f"{r['frame_to_alarm_ms']['p90']:.1f}",
                f"{r['frame_to_alarm_ms']['p99']:.1f}",
                f"{r['frame_to_alarm_ms']['max']:.1f}",
                r["counters"]["queue_dropped"],
            ]
            for r in [*report["latency_previous"], *report["latency"]]
        ],
    )
    ing = report["ingest"]
    ing_lines = [f"- failed: {ing['error']}"] if "error" in ing else simulator_ingest_lines(ing)
    lines += [
        "",
        "## Maximum sustained ingest (one agent process, one scoring thread)",
        "",
        *ing_lines,
        "",
        *frames_ingest_lines(report),
        *serial_lines(report),
        *profile_lines(report),
        "![latency](plots/streaming_latency.png)",
    ]
    return "\n".join(lines) + "\n"


def simulator_ingest_lines(ing: dict[str, Any]) -> list[str]:
    return [
        f"- unpaced simulator source: **{ing['unpaced']['samples_per_s']:,.0f} samples/s** "
        f"(× 6 channels = {ing['unpaced']['channel_samples_per_s']:,.0f} values/s) ≈ "
        f"**{ing['unpaced']['robot_equivalents']:.0f} robots** at 6 ch × 1 kHz, CPU "
        f"{ing['unpaced']['cpu_pct_one_core']:.0f} % of one core (includes simulating them)",
        *(
            f"- paced at {step['fraction_of_unpaced']:.0%} of that (speed × {step['speed']:g}): "
            f"{step['samples_per_s']:,.0f} samples/s, queue drops "
            f"{step['counters']['queue_dropped']}, kept up: {step['kept_up']}"
            for step in ing["steps"]
        ),
        (
            f"- **sustained without loss: {ing['sustained']['samples_per_s']:,.0f} samples/s "
            f"≈ {ing['sustained']['robot_equivalents']:.0f} robots**"
            if ing["sustained"]
            else "- **no paced run kept up**: the sustained rate is below "
            f"{ing['steps'][-1]['samples_per_s']:,.0f} samples/s"
        ),
    ]


def _row_at(rows: Sequence[dict[str, Any]], robots: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["robots"] == robots), None)


def _ratio(old: float, new: float) -> str:
    return f"{old / new:.1f}×" if new else "—"


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """Previous vs new implementation, measured in this run, against the targets."""
    n = max(r["robots"] for r in report["latency"])
    old, new = _row_at(report["latency_previous"], n), _row_at(report["latency"], n)
    one_old, one_new = _row_at(report["latency_previous"], 1), _row_at(report["latency"], 1)
    rows = []
    if old and new:
        rows += [
            [
                f"CPU % of one core, {n} robots (MQTT frames)",
                "≤ 10 %",
                f"{old['cpu_pct_one_core']:.1f}",
                f"{new['cpu_pct_one_core']:.1f}",
                _ratio(old["cpu_pct_one_core"], new["cpu_pct_one_core"]),
            ],
            [
                f"RSS peak MB, {n} robots",
                "≤ 100 MB",
                f"{old['rss_peak_mb']:.0f}",
                f"{new['rss_peak_mb']:.0f}",
                _ratio(old["rss_peak_mb"], new["rss_peak_mb"]),
            ],
            _latency_row(f"frame→alarm p50 / p99 ms, {n} robots", "p99 ≤ 20 ms", old, new),
        ]
    if one_old and one_new and n != 1:
        rows.append(_latency_row("frame→alarm p50 / p99 ms, 1 robot", "", one_old, one_new))
    ingest = report.get("frames_ingest", {})
    if ingest:
        o, w = ingest["previous"], ingest["new"]
        rows.append(
            [
                "max sustained lossless ingest, robots (MQTT frames, 6 ch × 1 kHz)",
                "≥ 100",
                f"{o['max_sustained_robots']} (lossless {o['max_lossless_robots']})",
                f"{w['max_sustained_robots']} (lossless {w['max_lossless_robots']})",
                _ratio(w["max_sustained_robots"], o["max_sustained_robots"]),
            ]
        )
    for per_write in sorted({r["frames_per_write"] for r in report.get("serial", [])}):
        pair = {
            r["implementation"]: r for r in report["serial"] if r["frames_per_write"] == per_write
        }
        rows.append(
            [
                f"serial input, CPU µs per frame ({per_write} frame(s) per write, pty)",
                "",
                f"{pair['previous']['cpu_us_per_frame']:.1f}",
                f"{pair['new']['cpu_us_per_frame']:.1f}",
                _ratio(pair["previous"]["cpu_us_per_frame"], pair["new"]["cpu_us_per_frame"]),
            ]
        )
    return [
        "## Previous vs new implementation (same run)",
        "",
        f"Previous: one frame per MQTT message, one chunk per frame, one scorer per robot. New: "
        f"{report['frames_per_message']} frames per message, batch decoding, one chunk per "
        "message, one scorer per bundle.",
        "",
        *md_table(["measure", "target", "previous", "new", "gain"], rows, "lrrrr"),
        "",
        "Durability: an alarm and its retained state are committed to the SQLite outbox in one "
        "transaction with `synchronous=FULL` (fsynced) before they are published, so the "
        "latency includes one fsync (this disk: p50 "
        f"{report['fsync_ms']['p50']:.1f} ms, p99 {report['fsync_ms']['p99']:.1f} ms). The "
        "agent's MQTT socket sends without delay (TCP_NODELAY); the broker here runs with "
        "`set_tcp_nodelay true`.",
        "",
    ]


def _latency_row(name: str, target: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old["frame_to_alarm_ms"], new["frame_to_alarm_ms"]
    return [
        name,
        target,
        f"{a['p50']:.1f} / {a['p99']:.1f} (n={a['n']})",
        f"{b['p50']:.1f} / {b['p99']:.1f} (n={b['n']})",
        _ratio(a["p99"], b["p99"]) + " (p99)",
    ]


def frames_ingest_lines(report: dict[str, Any]) -> list[str]:
    ingest = report.get("frames_ingest")
    if not ingest:
        return []
    lines = [
        "## Maximum sustained ingest of MQTT frames (real-time pace, more robots per step)",
        "",
    ]
    rows = [
        [
            result["implementation"],
            step["robots"],
            step["frames_published"],
            step["frames_missing"],
            step["counters"]["queue_dropped"],
            f"{step['agent_cpu_pct_one_core']:.0f}",
            f"{step['broker_cpu_pct']:.0f}",
            f"{step['feeder_cpu_pct']:.0f}",
            "yes" if step["lossless"] else "**no**",
        ]
        for result in ingest.values()
        for step in result["steps"]
    ]
    lines += md_table(
        [
            "implementation",
            "robots",
            "frames sent",
            "missing",
            "queue drops",
            "agent CPU %",
            "broker CPU %",
            "feeder CPU %",
            "lossless",
        ],
        rows,
        "lrrrrrrrl",
    )
    lines.append("")
    for result in ingest.values():
        failing = result["first_failing_robots"]
        where = (
            f"saturates at {failing} robots: {result['saturates']}"
            if failing
            else f"no step up to {report['plan']['frames_ingest_max']} robots failed"
        )
        lines.append(
            f"- {result['implementation']}: **{result['max_sustained_robots']} robots** "
            f"sustained (lossless, agent < {SUSTAINED_CPU_PCT:.0f} % of its core; lossless "
            f"up to {result['max_lossless_robots']}); {where}"
        )
    return [*lines, ""]


def serial_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("serial", [])
    if not rows:
        return []
    lines = [
        "## Serial input stage over a socat pty (reader → framed stage → queue, child process)",
        "",
        f"The firmware emulator writes {SERIAL_SPEED:g}× real time; CPU from the first chunk "
        "to the last frame, per frame received.",
        "",
    ]
    lines += md_table(
        ["implementation", "frames per write", "frames", "chunks", "CPU µs per frame"],
        [
            [
                r["implementation"],
                r["frames_per_write"],
                r["frames_ok"],
                r["chunks"],
                f"{r['cpu_us_per_frame']:.1f}",
            ]
            for r in rows
        ],
    )
    return [*lines, ""]


def profile_lines(report: dict[str, Any]) -> list[str]:
    rows = [r for r in [*report["latency_previous"], *report["latency"]] if r.get("profile")]
    lines = []
    for r in rows:
        profile = r["profile"]
        lines += [
            f"## Where the agent spends its time: {r['implementation']}, {r['robots']} robots "
            f"(py-spy, {profile['samples']} samples of busy threads)",
            "",
            *md_table(
                ["function (own time)", "% of samples"],
                [[name, f"{pct:.1f}"] for name, pct in profile["top"]],
            ),
            "",
        ]
    return lines


def plot_latency(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in [*report.get("latency_previous", []), *report["latency"]]:
        if r["latencies_ms"]:
            ax.hist(
                r["latencies_ms"],
                bins=40,
                histtype="step",
                linewidth=1.3,
                label=f"{r.get('implementation', '')} {r['robots']} robot(s), "
                f"p99 {r['frame_to_alarm_ms']['p99']:.1f} ms",
            )
    ax.axvline(20.0, color="red", linestyle="--", label="target p99 < 20 ms")
    ax.set_xlabel("frame-to-alarm latency [ms]")
    ax.set_ylabel("alarm events")
    ax.set_title("rapp-agent: frame published → alarm at subscriber")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == [PREVIOUS_AGENT]:
        return run_previous_agent(args_in[1])
    if args_in[:1] == [SERIAL_RECEIVER]:
        return run_serial_receiver(args_in[1], int(args_in[2]), args_in[3] == "previous")
    from firmware_config.emulator import DEFAULT_FRAMES_PER_MESSAGE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: fewer robots, seconds")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--frames-per-message",
        type=int,
        default=DEFAULT_FRAMES_PER_MESSAGE,
        help="frames per MQTT message (and per serial write) for the new implementation",
    )
    ap.add_argument("--py-spy", type=Path, help="py-spy binary: profile the agent at 16 robots")
    args = ap.parse_args(args_in)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    info = machine_info()
    report: dict[str, Any] = {
        "quick": args.quick,
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "frames_per_message": args.frames_per_message,
    }
    impls = implementations(args.frames_per_message)

    def save() -> None:
        write_json(args.out / "streaming.partial.json", report)

    with tempfile.TemporaryDirectory(prefix="rapp-bench-stream-") as tmp:
        work = Path(tmp)
        report["fsync_ms"] = fsync_ms(work)
        with broker(work) as (port, broker_pid):
            run_phases(report, work, port, broker_pid, plan, impls, args.py_spy, save)
        report["serial"] = run_serial(work, plan, args.frames_per_message)
    info["load_average_at_end"] = load_average()
    report["elapsed_s"] = time.perf_counter() - started
    plot_latency(report, args.out / "plots" / "streaming_latency.png")
    write_json(args.out / "streaming.json", report)
    text = markdown(report)
    write_text(args.out / "streaming.md", text)
    print(text)
    return 0


def run_phases(
    report: dict[str, Any],
    work: Path,
    port: int,
    broker_pid: int,
    plan: Plan,
    impls: Sequence[Implementation],
    py_spy: Path | None,
    save: Callable[[], None],
) -> None:
    """Every phase that needs the broker, old and new side by side where both are measured;
    ``save`` writes what was measured so far."""
    report["cost"] = []
    for n in plan.cost_robots:
        report["cost"].append(run_cost(work, port, n, plan))
        print(f"cost {n} robot(s): {report['cost'][-1]['cpu_pct_one_core']:.2f} % CPU")
    by_impl: dict[str, list[dict[str, Any]]] = {impl.name: [] for impl in impls}
    for n in plan.latency_robots:
        for impl in impls:
            profile = py_spy if n == max(plan.latency_robots) else None
            row = run_latency(work, port, n, plan, impl, profile)
            by_impl[impl.name].append(row)
            lat = row["frame_to_alarm_ms"]
            print(
                f"latency {impl.name} {n} robot(s): {lat['n']} events, p50 {lat['p50']:.1f} ms, "
                f"p99 {lat['p99']:.1f} ms, CPU {row['cpu_pct_one_core']:.2f} %"
            )
    report["latency"] = by_impl["new"]  # the implementation the agent runs
    report["latency_previous"] = by_impl["previous"]
    save()
    try:
        report["ingest"] = run_ingest(work, port, plan)
        print(f"ingest: {report['ingest']['unpaced']['samples_per_s']:,.0f} samples/s")
    except BenchmarkError as err:  # a flooded agent may send too few statuses: say so, go on
        report["ingest"] = {"error": str(err)}
        print(f"ingest: {err}")
    save()
    report["frames_ingest"] = {}
    for impl in impls:
        report["frames_ingest"][impl.name] = run_frames_ingest(work, port, plan, impl, broker_pid)
        save()


if __name__ == "__main__":
    sys.exit(main())
