"""The [http] endpoint of a real `rapp-agent run`: /metrics, /healthz and /readyz with real HTTP
clients, a port in use refused by `run --check`, and the status page rendered in headless
Chromium during a simulated fault (fails, never skips, without chromium: apt-get install
chromium)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import MosquittoBroker, free_port, wait_until
from tests.support.fixtures.daemon import ROOT, AgentProcess

SIMULATOR = 'kind = "simulator"\nseed = 1\nspeed = 4\nfaults = ["sensor:J6:onset=8"]\n'


def write_agent_config(
    path: Path, *, http_port: int, broker: MosquittoBroker | None = None, device: str = "ipc1"
) -> Path:
    mqtt = ""
    if broker is not None:
        mqtt = (
            f"[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n"
            "keepalive = 5\nreconnect_min_delay = 0.2\nreconnect_max_delay = 0.5\n"
        )
    path.write_text(
        f"""
[agent]
device_id = "{device}"
state_dir = "{path.parent / "state"}"

{mqtt}
[http]
listen = "127.0.0.1:{http_port}"

[telemetry]
status_interval_s = 1

[trust]
allow_unsigned = true

[[robots]]
id = "arm1"
bundle = "default"
[robots.source]
{SIMULATOR}"""
    )
    return path


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body); (0, "", error) when nothing answers yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()
    except OSError as err:
        return 0, "", str(err)


def metric_values(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_healthz_and_readyz_of_a_running_agent(tmp_path, agent_processes):
    port = free_port()
    broker = MosquittoBroker(tmp_path / "broker")  # not started yet: the agent is not ready
    config = write_agent_config(tmp_path / "agent.toml", http_port=port, broker=broker)
    agent = AgentProcess(config).start()
    agent_processes.append(agent)
    try:
        wait_until(lambda: get(port, "/healthz")[0] == 200, 60, 0.2, "/healthz to answer")
        not_ready = wait_until(
            lambda: (r := get(port, "/readyz"))[0] == 503 and "mqtt: broker" in r[2] and r,
            30,
            0.2,
            "/readyz to wait for the broker",
        )
        assert not_ready[1] == "application/json"
        body = json.loads(not_ready[2])
        assert body["ready"] is False and "mqtt: broker not connected" in body["not_ready"]
        assert body["checks"]["mqtt"] is False
        broker.start()
        ready = wait_until(lambda: (r := get(port, "/readyz"))[0] == 200 and r, 30, 0.2, "ready")
        assert json.loads(ready[2]) == {
            "ready": True,
            "checks": {"main_loop": True, "bundles": True, "sources": True, "mqtt": True},
            "not_ready": [],
        }
        arm1 = (("robot", "arm1"),)

        def scored() -> bool:
            windows = metric_values(get(port, "/metrics")[2]).get("rapp_windows_scored_total")
            return bool(windows) and windows[arm1] >= 1

        wait_until(scored, 30, 0.5, "a scored window in /metrics")
        status, content_type, text = get(port, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        m = metric_values(text)
        assert m["rapp_frames_received_total"][arm1] > 0
        assert m["rapp_frames_crc_errors_total"][arm1] == 0
        assert m["rapp_windows_scored_total"][arm1] >= 1
        assert m["rapp_score_threshold"][arm1] > 0
        assert m["rapp_mqtt_connected"][()] == 1 and m["rapp_agent_ready"][()] == 1
        assert m["rapp_window_latency_seconds_count"][arm1] >= 1
        assert dict(next(iter(m["rapp_agent_info"])))["device"] == "ipc1"
        assert any(dict(k)["bundle_id"] == "default" for k in m["rapp_bundle_info"])
        assert json.loads(get(port, "/healthz")[2])["status"] == "ok"
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
        assert get(port, "/healthz")[0] == 0, "the endpoint closes with the agent"
    finally:
        broker.kill()


def test_run_check_refuses_a_port_in_use(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = write_agent_config(tmp_path / "agent.toml", http_port=port)
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config), "--check"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert f"http.listen = '127.0.0.1:{port}': the port is in use by another program" in (
        done.stderr
    )


def test_a_reload_serves_again_on_the_same_port(tmp_path, agent_processes):
    """SIGHUP: the preflight accepts the port the running agent holds, then the new agent
    binds it again."""
    port = free_port()
    agent = AgentProcess(write_agent_config(tmp_path / "agent.toml", http_port=port)).start()
    agent_processes.append(agent)

    def boot_id() -> str | None:
        status, _, text = get(port, "/metrics")
        if status != 200:
            return None
        return dict(next(iter(metric_values(text)["rapp_agent_info"])))["boot_id"]

    wait_until(lambda: get(port, "/readyz")[0] == 200, 60, 0.2, "ready")
    first = boot_id()
    agent.signal(signal.SIGHUP)
    wait_until(lambda: boot_id() not in (None, first), 60, 0.2, "the reloaded agent's endpoint")
    wait_until(lambda: get(port, "/readyz")[0] == 200, 60, 0.2, "ready after the reload")
    assert "reload refused" not in agent.output()
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium not found; the status page test needs it: apt-get install chromium")
    return path


def headless(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium with the page's script given 3 s of (virtual) time to fetch and render."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        "--virtual-time-budget=3000",
        *args,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (no imaging library needed)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.slow
def test_status_page_in_headless_chromium_shows_the_robot_and_the_alarm(tmp_path, agent_processes):
    port = free_port()
    config = write_agent_config(tmp_path / "agent.toml", http_port=port)
    agent = AgentProcess(config).start()
    agent_processes.append(agent)

    def alarm_on_arm1() -> bool:
        status, _, body = get(port, "/status.json")
        return status == 200 and json.loads(body)["robots"][0].get("alarm") is not None

    wait_until(alarm_on_arm1, 90, 0.5, "the simulated J6 sensor fault to raise an alarm")
    url = f"http://127.0.0.1:{port}/"
    shot = tmp_path / "status-page.png"
    done = headless(url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.is_file(), done.stderr
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1200, 900)
    assert shot.stat().st_size > 20_000, "a blank page compresses to a few KB"
    assert len(set(pixels)) > 64, "text and colours, not a uniform page"

    dom = headless(url, tmp_path / "profile", "--dump-dom").stdout
    robots = dom.split('<tbody id="robots">', 1)[1].split("</tbody>", 1)[0]
    alarms = dom.split('<tbody id="alarms">', 1)[1].split("</tbody>", 1)[0]
    assert "<td>arm1</td>" in robots and "ALARM" in robots, robots
    assert "<td>arm1</td>" in alarms and "<td>J6</td>" in alarms, alarms
    assert 'id="ready" class="badge ok">ready<' in dom
    assert 'id="error" style="display: none;"' in dom, "the page reached the agent"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()
