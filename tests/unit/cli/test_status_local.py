"""`rapp-agent status --state-dir` / `--local`: what the agent keeps on disk, as a table and as
JSON, read without disturbing the outbox; and `rapp-agent models --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.ota.store import ModelStore
from agent.sinks.outbox import Outbox
from agent.sinks.topics import Topics
from tests.support.retained import DEVICE, QUIET_ROBOT, ROBOT, retained_payloads


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state dir as an agent leaves it: retained states and queued telemetry in the outbox,
    one bundle installed over the air."""
    state = tmp_path / "state"
    topics = Topics.for_device(DEVICE)
    with Outbox.open(state / "outbox.sqlite3", telemetry_max_rows=100) as box:
        for topic, payload in retained_payloads(topics).items():
            if topic != topics.status:  # the agent never queues its status
                box.put_json(topic, payload, kind="event", qos=1, retain=True)
        box.put_json(topics.score(ROBOT), {"score": 1.0}, kind="telemetry", qos=0)
        box.put_json("homeassistant/sensor/x/config", {"name": "x"}, kind="event", retain=True)
    store = ModelStore(state)
    sha = store.put(ROBOT, b"bundle bytes")
    store.activate(ROBOT, "kr16-p12", sha, "2024.05.1", "t1700000000-abcd")
    return state


def test_the_table_shows_alarms_bundles_queue_and_installed_models(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"device {DEVICE}: local state")
    assert f"source: {state_dir}" in lines
    assert "outbox: 0 alarm, 5 event, 1 telemetry queued; 0 telemetry dropped" in out
    assert "ota: committed kr16-p12 v2024.05.1 on kr16 (transfer t1700000000-abcd)" in out
    assert "installed over the air: kr16 kr16-p12 v2024.05.1 (probation" in out
    header = next(i for i, line in enumerate(lines) if line.startswith("ROBOT"))
    rows = {line.split()[0]: line for line in lines[header + 1 :]}
    assert set(rows) == {ROBOT, QUIET_ROBOT}
    assert "critical since 2023-11-14T22:15:00.000Z (J2)" in rows[ROBOT]
    assert "kr16-p12 v2024.05.1 [12]" in rows[ROBOT]
    assert rows[QUIET_ROBOT].split()[1] == "clear"
    # counters are only in the published status: unknown locally, not zero
    assert rows[QUIET_ROBOT].split()[2:8] == ["-"] * 6


def test_json_from_the_state_dir(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(state_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == str(state_dir) and doc["device"] == DEVICE
    assert doc["status"] is None
    assert set(doc["alarms"]) == {ROBOT, QUIET_ROBOT}
    assert doc["alarms"][ROBOT]["active"] is True
    assert doc["alarms"][ROBOT]["alarm"]["severity"] == "critical"
    assert doc["meta"]["schema"] == "rapp/meta/v1"
    assert doc["ota"]["state"] == "committed"
    assert doc["outbox"]["depth"] == {"alarm": 0, "event": 5, "telemetry": 1}
    assert doc["models"][ROBOT]["installed"]["kr16-p12"]["state"] == "probation"


def test_local_reads_the_configs_state_dir_and_leaves_the_outbox_usable(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "{DEVICE}"\nstate_dir = "{state_dir}"\n'
        "[mqtt]\nhost = '127.0.0.1'\nport = 1\n"
        f'[[robots]]\nid = "{ROBOT}"\nbundle = "default"\n[robots.source]\nkind = "simulator"\n'
    )
    assert main(["status", "--config", str(config), "--local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == DEVICE
    with Outbox.open(state_dir / "outbox.sqlite3", telemetry_max_rows=100) as box:
        assert box.depth() == {"alarm": 0, "event": 5, "telemetry": 1}
    assert main(["models", "--config", str(config), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert models[ROBOT]["configured"] == ["default"]
    assert models[ROBOT]["installed"]["kr16-p12"]["version"] == "2024.05.1"
    assert [f["role"] for f in models[ROBOT]["files"]] == ["active"]
