"""A good signed bundle pushed with the real `rapp-export push` CLI to a group of 3 agents."""

from __future__ import annotations

import subprocess
import sys

from agent.ota.store import ModelStore
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoSub
from tests.support.fixtures.daemon import ROOT
from tests.support.fixtures.ota import (
    ROBOT,
    is_status,
    ota_config,
    repack,
    version,
    wait_ready,
    wait_scoring,
)

DEVICES = ("cell-a", "cell-b", "cell-c")


def test_group_push_commits_on_three_agents(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    new = tmp_path / "v2.rapp"
    new.write_bytes(repack(base_bundle, keys["trusted"], version("2")))
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agents = {}
        for device in DEVICES:
            config = ota_config(
                tmp_path / f"{device}.toml",
                device=device,
                state_dir=tmp_path / device,
                bundle=base_path,
                replay=normal_csv,
                broker=broker,
                trusted_pub=keys["trusted_pub"],
                groups=("hall3",),
            )
            agents[device] = (start_agent(config), config)
        for device, (agent, _) in agents.items():
            wait_ready(agent, sub, device)
        mark = len(sub.messages())
        done = subprocess.run(
            [sys.executable, "-m", "exporter.cli", "push", "--bundle", str(new),
             "--broker", f"{broker.host}:{broker.port}", "--group", "hall3", "--expect", "3",
             "--chunk-size", "16384", "--timeout", "90", "--key", str(keys["trusted_key"])],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        log = agents["cell-a"][0].output()[-3000:]
        assert done.returncode == 0, done.stdout + done.stderr + log
        for device in DEVICES:
            steps = [m.json() for m in sub.messages()[mark:] if is_status(device)(m)]
            for step in steps:
                validate(step, "ota_status")
            states = [s["state"] for s in steps]
            assert states == [
                "received", "downloading", "verifying", "staged", "active", "committed"
            ], (device, states)  # fmt: skip
            assert steps[-1]["bundle"] == {"bundle_id": "test-bundle", "version": "2"}
            assert steps[-1]["previous"] == {"bundle_id": "test-bundle", "version": "1"}
            wait_scoring(sub, device, "2", after=len(sub.messages()) - 1)
            pointer = ModelStore(tmp_path / device).pointer(ROBOT)
            assert pointer["test-bundle"].state == "committed"
        listing = subprocess.run(
            [sys.executable, "-m", "agent.cli", "models", "--config", str(agents["cell-a"][1])],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        assert "test-bundle: active" in listing.stdout and "v2 (committed" in listing.stdout
