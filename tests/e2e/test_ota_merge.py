"""A merged bundle over the air, against a real broker and agent: it supersedes the bundles
whose programs it serves, they leave the model store when it commits, a kill during its
probation brings them all back, and a bundle sharing only some programs is refused."""

from __future__ import annotations

import signal

from agent.ota.startup import RESTART_REASON
from agent.ota.store import ModelStore
from agent.ota.transfer import sha256_hex
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoSub
from tests.support.fixtures.ota import (
    ROBOT,
    Pusher,
    final_status,
    is_status,
    ota_config,
    repack,
    version,
    wait_ready,
)

DEVICE = "merge"


def _index(sub: MosquittoSub, status: dict) -> int:
    """The position of an ota/status message in the subscription: the agent publishes in
    order, so its next meta comes after it (an earlier meta may still be in flight)."""
    return next(
        i for i, m in enumerate(sub.messages()) if is_status(DEVICE)(m) and m.json() == status
    )


def _served(sub: MosquittoSub, after: int) -> list[str]:
    """The bundle ids of the next meta message after message number ``after``."""
    meta = sub.wait_for(
        lambda m: m.topic == f"rapp/v1/{DEVICE}/meta" and m in sub.messages()[after:], timeout=60
    )[-1].json()
    return sorted(b["bundle_id"] for b in meta["robots"][0]["bundles"])


def test_a_merged_bundle_replaces_its_members_in_the_agent_archive(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    state = tmp_path / "state"
    common = dict(
        device=DEVICE, state_dir=state, bundle=base_path, replay=normal_csv, broker=broker,
        trusted_pub=keys["trusted_pub"],
    )  # fmt: skip
    # Programs 7 and 8 do not run in this replay: probation ends on time.
    config = ota_config(tmp_path / "agent.toml", **common, ota="probation_max_s = 3")
    long_probation = ota_config(
        tmp_path / "long.toml", **common, probation_windows=1_000_000, ota="probation_max_s = 3600"
    )
    key = keys["trusted"]
    prog7 = repack(base_bundle, key, version("1", "prog7", [7]))
    prog8 = repack(base_bundle, key, version("1", "prog8", [8]))
    merged = repack(base_bundle, key, version("2", "prog7", [7, 8]))  # rapp-export merge's id
    store = ModelStore(state)

    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = start_agent(config)
        wait_ready(agent, sub, DEVICE)
        for data in (prog7, prog8):
            result = Pusher(broker, data, device=DEVICE, key=key).join()
            assert result.ok, (result.final, agent.output()[-3000:])
        assert set(store.pointer(ROBOT)) == {"prog7", "prog8"}

        # killed while the merged bundle is on probation: all members serve again at start
        agent.stop()
        agent = start_agent(long_probation)
        wait_ready(agent, sub, DEVICE, after=len(sub.messages()))
        pusher = Pusher(broker, merged, device=DEVICE, key=key, timeout=120)
        active = sub.wait_for(
            lambda m: is_status(DEVICE, state="active")(m) and m.json()["bundle"]["version"] == "2",
            timeout=60,
        )[-1].json()
        validate(active, "ota_status")
        assert active["replaces"] == [{"bundle_id": "prog8", "version": "1"}], active
        assert store.pointer(ROBOT)["prog7"].state == "probation"
        assert "prog8" in store.pointer(ROBOT), "a member leaves the store only at the commit"
        agent.signal(signal.SIGKILL)
        agent.wait()
        agent = start_agent(config)
        result = pusher.join()
        status = final_status(sub, DEVICE, result.transfer_id)
        assert status["state"] == "rolled_back" and status["reason"] == RESTART_REASON, status
        assert _served(sub, _index(sub, status)) == ["prog7", "prog8", "test-bundle"]
        pointer = store.pointer(ROBOT)
        assert pointer["prog7"].active == sha256_hex(prog7)
        assert pointer["prog8"].active == sha256_hex(prog8)

        # pushed again and proven: the member is gone from the store, its file deleted
        result = Pusher(broker, merged, device=DEVICE, key=key).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        committed = final_status(sub, DEVICE, result.transfer_id)
        validate(committed, "ota_status")
        assert committed["state"] == "committed", committed
        assert committed["replaces"] == [{"bundle_id": "prog8", "version": "1"}]
        active = sub.wait_for(is_status(DEVICE, result.transfer_id, "active"))[0].json()
        assert _served(sub, _index(sub, active)) == ["prog7", "test-bundle"]
        pointer = store.pointer(ROBOT)
        assert set(pointer) == {"prog7"} and pointer["prog7"].active == sha256_hex(merged)
        files = {p.name for p in store.files(ROBOT)}
        assert files == {f"{sha256_hex(merged)}.rapp", f"{sha256_hex(prog7)}.rapp"}, files

        # a bundle sharing only some programs with the merged one is refused, nothing changes
        partial = repack(base_bundle, key, version("1", "prog9", [8, 9]))
        result = Pusher(broker, partial, device=DEVICE, key=key).join()
        refused = final_status(sub, DEVICE, result.transfer_id)
        assert refused["state"] == "rejected", refused
        assert "'prog9'" in refused["reason"] and "rapp-export merge" in refused["reason"]
        assert set(store.pointer(ROBOT)) == {"prog7"}

        # a restart serves what the store says: the merged bundle, not its member
        agent.stop()
        mark = len(sub.messages())
        start_agent(config)
        assert _served(sub, mark) == ["prog7", "test-bundle"]
