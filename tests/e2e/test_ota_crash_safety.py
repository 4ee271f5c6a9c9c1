"""SIGKILL of the agent at each install step, then a restart: the agent comes up with a
loadable model and reports the outcome. Failpoints (tests/support/failpoint_agent.py) hold
the worker at a step so the kill lands there deterministically; the restarted agent runs
without them.
"""

from __future__ import annotations

import json
import signal

from agent.ota.startup import RESTART_REASON
from agent.ota.store import ModelStore
from agent.ota.transfer import sha256_hex
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoSub, wait_until
from tests.support.fixtures.ota import (
    ROBOT,
    Pusher,
    final_status,
    is_status,
    ota_config,
    publish_partial,
    repack,
    version,
    wait_ready,
    wait_scoring,
)

DEVICE = "crash"
CHUNK = 16 * 1024
HOLD = "sleep:120"


def test_sigkill_at_each_install_step(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    state = tmp_path / "state"
    common = dict(
        device=DEVICE,
        state_dir=state,
        bundle=base_path,
        replay=normal_csv,
        broker=broker,
        trusted_pub=keys["trusted_pub"],
    )
    config = ota_config(tmp_path / "agent.toml", **common)
    long_probation = ota_config(
        tmp_path / "long.toml", **common, probation_windows=1_000_000, ota="probation_max_s = 3600"
    )
    key = keys["trusted"]  # signs the bundles and the commands
    bundles = {v: repack(base_bundle, key, version(v)) for v in "2345"}
    store = ModelStore(state)

    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:

        def kill_and_restart(agent, cfg=config):
            agent.signal(signal.SIGKILL)
            agent.wait()
            mark = len(sub.messages())
            restarted = start_agent(cfg)
            wait_ready(restarted, sub, DEVICE, after=mark)  # a loadable model, scoring
            return restarted, mark

        def step_of(v: str, state_: str):
            return lambda m: (
                is_status(DEVICE, state=state_)(m) and m.json()["bundle"]["version"] == v
            )

        # 1. download: half the chunks are on disk when the agent dies
        agent = start_agent(config)
        wait_ready(agent, sub, DEVICE)
        half = -(-len(bundles["2"]) // CHUNK) // 2
        cmd = publish_partial(
            broker, DEVICE, bundles["2"], "dl", list(range(half)), CHUNK,
            ident=("test-bundle", "2"), key=key,
        )  # fmt: skip
        chunks = state / "ota" / "staging" / "dl" / "chunks"
        wait_until(lambda: len(list(chunks.glob("[0-9]*"))) == half, 30, message="half staged")
        agent, mark = kill_and_restart(agent)
        need = sub.wait_for(
            lambda m: (
                m.topic == f"rapp/v1/{DEVICE}/ota/need"
                and m in sub.messages()[mark:]
                and json.loads(m.payload)["transfer_id"] == "dl"
            ),
            timeout=30,
        )[0]
        validate(need.json(), "ota_need")
        assert need.json()["missing"] == list(range(half, cmd.n_chunks)), "only what is missing"
        result = Pusher(
            broker, bundles["2"], device=DEVICE, transfer_id="dl", chunk_size=CHUNK, key=key
        )
        assert result.join().ok, agent.output()[-3000:]
        wait_scoring(sub, DEVICE, "2", after=len(sub.messages()))

        # 2. verify, 3. swap (staged, the pointer not yet written): resumed from staging
        for v, step in (("3", "verifying"), ("4", "staged")):
            agent.stop()
            agent = start_agent(config, failpoints=f"{step}={HOLD}")
            wait_ready(agent, sub, DEVICE, after=len(sub.messages()))
            pusher = Pusher(
                broker, bundles[v], device=DEVICE, chunk_size=CHUNK, timeout=120, key=key
            )
            sub.wait_for(step_of(v, step), timeout=60)
            agent, _ = kill_and_restart(agent)
            result = pusher.join()
            assert result.ok, (v, result.final, agent.output()[-3000:])
            wait_scoring(sub, DEVICE, v, after=len(sub.messages()))
        assert store.pointer(ROBOT)["test-bundle"].active == sha256_hex(bundles["4"])

        # 4. probation: killed while the new bundle is serving on trial → rolled back at start
        agent.stop()
        agent = start_agent(long_probation)
        wait_ready(agent, sub, DEVICE, after=len(sub.messages()))
        pusher = Pusher(broker, bundles["5"], device=DEVICE, chunk_size=CHUNK, timeout=120, key=key)
        sub.wait_for(step_of("5", "active"), timeout=60)
        assert store.pointer(ROBOT)["test-bundle"].state == "probation"
        agent, _ = kill_and_restart(agent)
        result = pusher.join()
        status = final_status(sub, DEVICE, result.transfer_id)
        assert status["state"] == "rolled_back" and status["reason"] == RESTART_REASON, status
        assert result.final[DEVICE][0] == "rolled_back"
        wait_scoring(sub, DEVICE, "4", after=len(sub.messages()))
        entry = store.pointer(ROBOT)["test-bundle"]
        assert (entry.active, entry.state) == (sha256_hex(bundles["4"]), "committed")
