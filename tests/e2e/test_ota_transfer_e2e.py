"""Transfer robustness and the model archive, against a real broker and agent."""

from __future__ import annotations

import hashlib

from agent.ota.store import ModelStore
from agent.ota.transfer import sha256_hex
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoBroker, MosquittoSub, wait_until
from tests.support.fixtures.ota import (
    ROBOT,
    Pusher,
    is_status,
    ota_config,
    repack,
    version,
    wait_ready,
    wait_scoring,
)

CHUNK = 16 * 1024


def test_transfer_survives_a_broker_restart_without_persistence(
    tmp_path, base_path, base_bundle, keys, normal_csv, start_agent
):
    """The broker dies mid-transfer and forgets everything (no persistence, SIGKILL): the
    agent asks for the missing chunks after reconnecting and the pusher serves them."""
    broker = MosquittoBroker(tmp_path / "broker", extra_config=["persistence false"])
    broker.start()
    try:
        state = tmp_path / "state"
        config = ota_config(
            tmp_path / "agent.toml",
            device="flaky",
            state_dir=state,
            bundle=base_path,
            replay=normal_csv,
            broker=broker,
            trusted_pub=keys["trusted_pub"],
        )
        agent = start_agent(config)
        with MosquittoSub(broker, ["rapp/v1/flaky/#"]) as sub:
            wait_ready(agent, sub, "flaky")
        v2 = repack(base_bundle, keys["trusted"], version("2"))
        pusher = Pusher(
            broker, v2, device="flaky", chunk_size=CHUNK, pace_s=0.05, timeout=120,
            transfer_id="b1", key=keys["trusted"],
        )  # fmt: skip
        chunks = state / "ota" / "staging" / "b1" / "chunks"
        wait_until(lambda: len(list(chunks.glob("[0-9]*"))) >= 20, 60, message="20 chunks")
        broker.kill()
        have = len(list(chunks.glob("[0-9]*")))
        broker.start()
        result = pusher.join(150)
        assert result.ok, (result.final, agent.output()[-3000:])
        assert have < -(-len(v2) // CHUNK), "the outage hit the middle of the transfer"
        with MosquittoSub(broker, ["rapp/v1/flaky/#"]) as sub:
            wait_scoring(sub, "flaky", "2")
        assert ModelStore(state).pointer(ROBOT)["test-bundle"].active == sha256_hex(v2)
    finally:
        broker.stop()


def test_new_program_bundle_joins_the_archive_without_touching_others(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    state = tmp_path / "state"
    config = ota_config(
        tmp_path / "agent.toml",
        device="arch",
        state_dir=state,
        bundle=base_path,
        replay=normal_csv,
        broker=broker,
        trusted_pub=keys["trusted_pub"],
        ota="probation_max_s = 3",  # program 7 does not run in this replay
        allow_unsigned=True,
        file_url_root=tmp_path,  # the URL download below reads from here
    )
    before = hashlib.sha256(base_path.read_bytes()).hexdigest()
    prog7 = repack(base_bundle, None, version("1", "prog7", [7]))  # unsigned: allowed here
    with MosquittoSub(broker, ["rapp/v1/arch/#"]) as sub:
        agent = start_agent(config)
        wait_ready(agent, sub, "arch")
        result = Pusher(broker, prog7, device="arch", key=keys["trusted"]).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        active = sub.wait_for(is_status("arch", result.transfer_id, "active"))[0].json()
        validate(active, "ota_status")
        assert "not signed" in active["warnings"][0], "loud about an unsigned bundle"
        meta = sub.wait_for(
            lambda m: m.topic == "rapp/v1/arch/meta" and len(m.json()["robots"][0]["bundles"]) == 2,
            timeout=30,
        )[-1].json()
        ids = sorted(b["bundle_id"] for b in meta["robots"][0]["bundles"])
        assert ids == ["prog7", "test-bundle"]
        wait_scoring(sub, "arch", "1", after=len(sub.messages()))  # program -1: the old one
    assert hashlib.sha256(base_path.read_bytes()).hexdigest() == before
    pointer = ModelStore(state).pointer(ROBOT)
    assert set(pointer) == {"prog7"} and pointer["prog7"].state == "committed"
    assert [p.name for p in ModelStore(state).files(ROBOT)] == [f"{sha256_hex(prog7)}.rapp"]
    # a restart serves both again: the configured file plus the installed one
    agent.stop()
    with MosquittoSub(broker, ["rapp/v1/arch/meta"]) as sub:
        start_agent(config)
        meta = sub.wait_for(lambda m: m.topic == "rapp/v1/arch/meta", timeout=60)[-1].json()
    assert sorted(b["bundle_id"] for b in meta["robots"][0]["bundles"]) == ["prog7", "test-bundle"]
    # a URL source instead of MQTT chunks
    v2 = tmp_path / "v2.rapp"
    v2.write_bytes(repack(base_bundle, keys["trusted"], version("2")))
    with MosquittoSub(broker, ["rapp/v1/arch/#"]) as sub:
        result = Pusher(
            broker, v2.read_bytes(), device="arch", url=v2.as_uri(), key=keys["trusted"]
        ).join()
        assert result.ok, result.final
        wait_scoring(sub, "arch", "2")
