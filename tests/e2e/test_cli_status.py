"""`rapp-agent status` against a real mosquitto holding an agent's retained state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import MosquittoBroker
from tests.support.fixtures.daemon import ROOT
from tests.support.retained import DEVICE, QUIET_ROBOT, ROBOT, retained_payloads

CONFIG = """
[agent]
device_id = "{device}"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = {port}

[[robots]]
id = "{robot}"
bundle = "default"
[robots.source]
kind = "simulator"
"""


def config_for(tmp_path: Path, broker: MosquittoBroker, device: str = DEVICE) -> Path:
    path = tmp_path / f"{device}.toml"
    path.write_text(
        CONFIG.format(device=device, state=tmp_path / "state", port=broker.port, robot=ROBOT)
    )
    return path


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture
def published(broker: MosquittoBroker) -> dict[str, dict]:
    payloads = retained_payloads()
    publish.multiple(
        [(topic, json.dumps(p), 1, True) for topic, p in payloads.items()],
        hostname=broker.host,
        port=broker.port,
    )
    return payloads


def test_status_json_is_what_the_broker_retains(tmp_path, broker, published) -> None:
    result = status("--config", str(config_for(tmp_path, broker)), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == f"mqtt://127.0.0.1:{broker.port}"
    assert doc["device"] == DEVICE
    by_schema = {p["schema"]: p for p in published.values()}
    assert doc["status"] == by_schema["rapp/status/v1"]
    assert doc["meta"] == by_schema["rapp/meta/v1"]
    assert doc["ota"] == by_schema["rapp/ota_status/v1"]
    assert set(doc["alarms"]) == {ROBOT, QUIET_ROBOT}
    assert doc["alarms"][ROBOT]["alarm"]["severity"] == "critical"
    assert doc["outbox"] is None and doc["models"] is None  # state-dir fields


def test_status_table_from_the_broker(tmp_path, broker, published) -> None:
    result = status("--config", str(config_for(tmp_path, broker)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"device {DEVICE}: online; rapp-agent 0.1.0; started ")
    assert "outbox: 0 alarm, 1 event, 7 telemetry queued; 0 telemetry dropped" in result.stdout
    header = next(i for i, line in enumerate(lines) if line.startswith("ROBOT"))
    assert lines[header].split() == [
        "ROBOT", "ALARM", "FRAMES", "OK", "CRC", "ERR", "SEQ", "GAPS", "WINDOWS", "NOT",
        "SCORED", "DRIFT", "KS", "BUNDLES",
    ]  # fmt: skip
    assert lines[header + 1].split() == [
        ROBOT, "critical", "since", "2023-11-14T22:15:00.000Z", "(J2)",
        "120000", "3", "1", "1875", "3", "0.21", "kr16-p12", "v2024.05.1", "[12]",
    ]  # fmt: skip
    assert lines[header + 2].split()[:2] == [QUIET_ROBOT, "clear"]


def test_status_returns_once_the_retained_messages_are_in(tmp_path, broker, published) -> None:
    """No waiting out --timeout: the second SUBACK says every retained message arrived."""
    started = time.monotonic()
    result = status("--config", str(config_for(tmp_path, broker)), "--timeout", "30", "--json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert set(json.loads(result.stdout)["alarms"]) == {ROBOT, QUIET_ROBOT}


def test_reading_the_status_does_not_disconnect_the_running_agent(
    tmp_path, broker, published
) -> None:
    """The reader uses a client id of its own: the agent's would make the broker drop it."""
    lost = threading.Event()
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rapp-agent-{DEVICE}")
    agent.on_disconnect = lambda *_: lost.set()
    agent.connect(broker.host, broker.port)
    agent.loop_start()
    try:
        result = status("--config", str(config_for(tmp_path, broker)), "--json")
        assert result.returncode == 0, result.stderr
        assert not lost.wait(0.5), "the status reader took over the agent's session"
    finally:
        agent.disconnect()
        agent.loop_stop()


def test_a_device_without_retained_status_fails_with_exit_1(tmp_path, broker, published) -> None:
    result = status("--config", str(config_for(tmp_path, broker, device="nobody")))
    assert result.returncode == 1
    assert result.stderr.startswith("rapp-agent status: error: no retained status on ")
    assert "rapp/v1/nobody/status" in result.stderr and "--state-dir" in result.stderr
    assert result.stdout == ""
