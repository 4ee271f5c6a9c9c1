"""The drift-to-retrain loop end to end, reduced: drift → advised → retrain → push → fewer alarms.

Real parts throughout: a mosquitto broker on loopback, the `rapp-agent` daemon reading
currents as JSON over MQTT with its capture on, `rapp-export retrain` on the directory the
daemon captured into, and `rapp-export push` installing the signed v2 over the air into that
running daemon. The currents come from the arm simulator (3 channels, windows of 32 samples,
a tiny model), published by the test so every stretch of the stream is known:

1. *calibrated*: the nominal 3 kg payload — v1's false alarms on the data it was built for;
2. *ramp*: the payload creeps up to 3.65 kg (+22 %) over a minute, a process change that
   is now normal;
3. *before*: held at 3.65 kg — v1's false alarms on the changed cell; the daemon's status
   must say "retraining advised" by its end, and must not have said it on nominal data;
4. `retrain` on the capture, `push` of v2 (the stream goes on at 3.65 kg for the OTA gate
   and the probation);
5. *after*: fresh 3.65 kg data (later in the same run: v2 never trained on it), scored by
   v2.

False alarms are the alarms the daemon raised (the ``alarm`` topic), per hour of simulated
signal. Pass: before > calibrated + margin, after < before, and after ≤ calibrated + margin,
where the margin is one alarm over the *after* stretch (a rate measured over 120 s of
signal resolves one alarm: 30 per hour). One round is enough here: the whole drift takes a
minute, so the capture holds windows of every payload on the way (see
benchmarks/drift_loop.py for a slow drift that takes several rounds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from agent.core.bundle import TrustPolicy, load_bundle
from exporter.cli import main
from exporter.keys import load_private_key
from firmware_config.channel_map import builtin_map_path, load_builtin_map
from firmware_config.simulator import SimulationConfig, Simulator, write_csv
from tests.support.broker import MosquittoBroker, MosquittoSub, wait_until
from tests.support.fixtures.daemon import ROOT, AgentProcess

DEVICE = "drift-cell"
ROBOT = "arm1"
TOPIC = "plant/drift-cell/currents"
PAYLOAD_A, PAYLOAD_END = 3.0, 3.65
CHUNK = 1000  # samples per MQTT message (1 s of signal)
PACE_S = 0.005  # between messages; the daemon queues what it has not scored yet
CALIBRATED_S, RAMP_S, BEFORE_S, AFTER_S = 120, 60, 240, 120
PROBATION_WINDOWS = 150
WINDOW = 32
TRAIN = ["--channels", "J1,J2,J3", "--window", str(WINDOW), "--hop", str(WINDOW),
         "--features", "raw", "--layers", "2", "--bottleneck", "4", "--epochs", "15",
         "--patience", "5"]  # fmt: skip


class DriftingCell:
    """The simulated arm as one continuous run whose payload the test sets per second."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.position = 0  # next sample
        self.seq = 0  # last payload number sent
        self._simulators: dict[float, Simulator] = {}

    def next_payload(self, payload_kg: float) -> bytes:
        simulator = self._simulators.get(payload_kg)
        if simulator is None:
            config = SimulationConfig(
                seed=self.seed, duration_s=None, payload_kg=payload_kg, schedule=((1, 1),)
            )
            simulator = self._simulators.setdefault(payload_kg, Simulator(config))
        run = simulator.chunk(self.position, CHUNK)
        self.position += CHUNK
        self.seq += 1
        return json.dumps(
            {
                "seq": self.seq,
                "samples": np.round(run.currents, 5).tolist(),
                "cycle_start": run.cycle_start.tolist(),
                "program": 1,
            }
        ).encode()


class Feed:
    """Publishes the cell's currents on the daemon's input topic; remembers each stretch."""

    def __init__(self, broker: MosquittoBroker, cell: DriftingCell) -> None:
        self.cell = cell
        self.stretches: dict[str, tuple[int, int]] = {}  # name → first, last payload seq
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="drift-feed")
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def send(self, payload_kg: float) -> None:
        info = self._client.publish(TOPIC, self.cell.next_payload(payload_kg), qos=1)
        info.wait_for_publish(10)
        time.sleep(PACE_S)

    def stretch(self, name: str, seconds: int, payload_at=None) -> None:
        """``seconds`` of signal at ``payload_at(i)`` kg (i: second within the stretch)."""
        first = self.cell.seq + 1
        for i in range(seconds):
            self.send(payload_at(i) if payload_at else PAYLOAD_END)
        self.stretches[name] = (first, self.cell.seq)

    def hours(self, name: str) -> float:
        first, last = self.stretches[name]
        return (last - first + 1) * CHUNK / 1000 / 3600


def daemon_config(path: Path, broker: MosquittoBroker, bundle: Path, public_key: Path) -> Path:
    root = path.parent
    path.write_text(
        f"""
[agent]
device_id = "{DEVICE}"
state_dir = "{root / "state"}"
log_level = "info"

[mqtt]
host = '127.0.0.1'
port = {broker.port}
keepalive = 5
reconnect_min_delay = 0.2
reconnect_max_delay = 1.0

[telemetry]
score_interval_s = 1
status_interval_s = 1

[trust]
keys = ["{public_key}"]
allow_unsigned = false

[ota]
need_interval_s = 0.5
min_recent_windows = 16
gate_wait_s = 5
probation_windows = {PROBATION_WINDOWS}

[[robots]]
id = "{ROBOT}"
bundle = "{bundle}"
[robots.source]
kind = "mqtt"
topic = "{TOPIC}"
payload = "json"
channel_map = "{builtin_map_path()}"
queue_chunks = 100000
[robots.drift]
capture_dir = "{root / "capture"}"
"""
    )
    return path


def train_v1(root: Path) -> tuple[Path, Path]:
    """v1: the tiny model trained and built on nominal-payload runs (other seeds)."""
    cmap = load_builtin_map()

    def run(seed: int, seconds: int):
        config = SimulationConfig(seed=seed, duration_s=seconds, payload_kg=PAYLOAD_A)
        return Simulator(config).chunk(0, seconds * 1000)

    write_csv([run(1, 40)], root / "train.csv", cmap)
    write_csv([run(2, 30)], root / "calib.csv", cmap)
    assert main(["train", "--data", str(root / "train.csv"), *TRAIN, "--replay-windows", "600",
                 "--out", str(root / "m1"), "-q"]) == 0  # fmt: skip
    assert main(["keygen", "--out", str(root / "release.key")]) == 0
    assert main(["build", "--model", str(root / "m1"), "--calibration", str(root / "calib.csv"),
                 "--out", str(root / "v1.rapp"), "--bundle-id", "arm1-sim", "--program", "1",
                 "--no-int8", "--sign-key", str(root / "release.key"), "-q"]) == 0  # fmt: skip
    return root / "v1.rapp", root / "release.key"


def status_of(sub: MosquittoSub) -> dict | None:
    msgs = sub.messages(f"rapp/v1/{DEVICE}/status")
    return msgs[-1].json() if msgs else None


def robot_status(sub: MosquittoSub) -> dict:
    status = status_of(sub)
    return ((status or {}).get("robots") or {}).get(ROBOT) or {}


def scored(sub: MosquittoSub) -> int:
    return int(robot_status(sub).get("windows", {}).get("scored", 0))


def accepted(sub: MosquittoSub) -> int:
    return int(robot_status(sub).get("frames", {}).get("ok", 0))


def subscribed(sub: MosquittoSub, feed: Feed) -> int:
    """Send nominal currents until the daemon takes them (its input subscription is made
    after it connects); the payloads sent before that are lost, return how many."""

    def taken() -> bool:
        feed.send(PAYLOAD_A)
        deadline = time.monotonic() + 1.5  # a status interval and then some
        while time.monotonic() < deadline:
            if accepted(sub) > 0:
                return True
            time.sleep(0.05)
        return False

    wait_until(taken, timeout=60, message="the daemon taking currents from MQTT")
    sent, seen = feed.cell.seq, len(sub.messages(f"rapp/v1/{DEVICE}/status"))
    wait_until(lambda: len(sub.messages(f"rapp/v1/{DEVICE}/status")) > seen, 10, message="status")
    return sent - accepted(sub)


def first_advice(sub: MosquittoSub) -> int | None:
    """Windows the daemon had scored when its status first said "retraining advised"."""
    for m in sub.messages(f"rapp/v1/{DEVICE}/status"):
        robot = ((m.json().get("robots") or {}).get(ROBOT) or {}) if m.payload else {}
        if robot.get("drift", {}).get("retraining_advised"):
            return int(robot["windows"]["scored"])
    return None


def caught_up(sub: MosquittoSub, feed: Feed, agent: AgentProcess, lost: int) -> None:
    """Wait until the daemon scored every window published so far (but the ``lost``)."""
    want = (feed.cell.seq - lost) * CHUNK // WINDOW - 1

    def done() -> bool:
        if agent.proc is not None and agent.proc.poll() is not None:
            pytest.fail(f"agent exited: {agent.output()[-3000:]}")
        return scored(sub) >= want

    wait_until(done, timeout=60, message=f"the daemon scoring {want} windows")


def raises_in(sub: MosquittoSub, feed: Feed, name: str, version: str) -> int:
    first, last = feed.stretches[name]
    return sum(
        1
        for m in sub.messages(f"rapp/v1/{DEVICE}/{ROBOT}/alarm")
        if m.json()["kind"] == "raise"
        and m.json()["model"]["version"] == version
        and first <= m.json()["seq"]["first"] <= last
    )


def test_drift_raises_advice_and_a_pushed_retrain_brings_false_alarms_back(
    tmp_path, broker, agent_processes
):
    started = time.monotonic()
    v1, key = train_v1(tmp_path)
    config = daemon_config(tmp_path / "agent.toml", broker, v1, key.with_name(key.name + ".pub"))
    agent = AgentProcess(config).start()
    agent_processes.append(agent)
    topics = [f"rapp/v1/{DEVICE}/status", f"rapp/v1/{DEVICE}/{ROBOT}/alarm",
              f"rapp/v1/{DEVICE}/ota/status"]  # fmt: skip
    feed = Feed(broker, DriftingCell(seed=3))
    try:
        with MosquittoSub(broker, topics) as sub:
            wait_until(lambda: status_of(sub) is not None, 60, message="the daemon's status")
            lost = subscribed(sub, feed)
            feed.stretch("calibrated", CALIBRATED_S, lambda i: PAYLOAD_A)
            feed.stretch(
                "ramp", RAMP_S, lambda i: PAYLOAD_A + (PAYLOAD_END - PAYLOAD_A) * (i + 1) / RAMP_S
            )
            feed.stretch("before", BEFORE_S)
            caught_up(sub, feed, agent, lost)
            advice = wait_until(lambda: first_advice(sub), 5, message="retraining advised")
            nominal = (feed.stretches["calibrated"][1] - lost) * CHUNK // WINDOW
            assert advice > nominal, "no advice while the payload is nominal"

            v2 = retrain_v2(tmp_path, v1, key)

            push = subprocess.Popen(
                [sys.executable, "-m", "exporter.cli", "push", "--bundle", str(v2),
                 "--broker", f"{broker.host}:{broker.port}", "--device", DEVICE,
                 "--key", str(key), "--timeout", "60"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 90
            while push.poll() is None and time.monotonic() < deadline:
                feed.send(PAYLOAD_END)  # the gate and the probation score live windows
            out = push.communicate(timeout=10)[0]
            assert push.returncode == 0, out + agent.output()[-3000:]
            states = [m.json()["state"] for m in sub.messages(f"rapp/v1/{DEVICE}/ota/status")
                      if m.payload]  # fmt: skip
            assert states[-1] == "committed", states

            feed.stretch("after", AFTER_S)
            caught_up(sub, feed, agent, lost)
            rates = {
                name: raises_in(sub, feed, name, version) / feed.hours(name)
                for name, version in (("calibrated", "1"), ("before", "1"), ("after", "2"))
            }
    finally:
        feed.close()
    margin = 1 / feed.hours("after")
    elapsed = time.monotonic() - started
    print(
        f"false alarms per hour {rates} (margin {margin:.0f}); advised after "
        f"{advice * WINDOW / 1000:.0f} s of signal; {elapsed:.0f} s"
    )
    assert rates["before"] > rates["calibrated"] + margin, rates
    assert rates["after"] < rates["before"], rates
    assert rates["after"] <= rates["calibrated"] + margin, rates


def retrain_v2(root: Path, v1: Path, key: Path) -> Path:
    """`rapp-export retrain` on the daemon's capture directory, signed with the release key."""
    out = root / "v2.rapp"
    assert main(["retrain", "--bundle", str(v1), "--model", str(root / "m1"),
                 "--capture", str(root / "capture"), "--calibration", str(root / "calib.csv"),
                 "--out", str(out), "--sign-key", str(key), "--epochs", "15",
                 "--no-int8", "-q"]) == 0  # fmt: skip
    public = load_private_key(key).public_key().public_bytes_raw()
    policy = TrustPolicy(trusted_keys=(public,), allow_unsigned=False)
    assert load_bundle(out, policy).manifest.bundle_version == "2"
    return out
