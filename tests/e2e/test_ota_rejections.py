"""Each bad update is rejected with its reason while the current model keeps scoring; a model
that turns NaN after activation is rolled back within probation. One long-lived agent takes
them all in sequence (bundle variants are re-packed from the session bundle)."""

from __future__ import annotations

import os

from agent.core.bundle.archive import pack_archive, read_archive
from agent.core.bundle.manifest import SIGNATURE_NAME
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoSub
from tests.support.fixtures.ota import (
    Pusher,
    final_status,
    ota_config,
    publish_partial,
    repack,
    traversal_archive,
    version,
    wait_ready,
    wait_scoring,
)

DEVICE = "long"
CHUNK = 64 * 1024
PADDING = 600_000


def _edit_artifacts(fn):
    def edit(m):
        m["bundle_version"] = "3"
        for artifact in m["artifacts"]:
            fn(artifact)

    return edit


def _scale_canary(artifact):
    artifact["canary"]["nap"] = [10 * v + 1.0 for v in artifact["canary"]["nap"]]


def _tiny_thresholds(artifact):
    artifact["thresholds"] = {name: 1e-12 for name in artifact["thresholds"]}


def _other_channels(m):
    m["bundle_version"] = "3"
    m["input"]["channels"] = [{**c, "name": f"X{i}"} for i, c in enumerate(m["input"]["channels"])]


def _wrong_signature(data: bytes) -> bytes:
    files = read_archive(data)
    files[SIGNATURE_NAME] = bytes(reversed(files[SIGNATURE_NAME]))
    return pack_archive(files)


def test_bad_updates_are_rejected_and_nan_model_rolled_back(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    trusted, other = keys["trusted"], keys["other"]
    good_v3 = repack(base_bundle, trusted, version("3"))
    config = ota_config(
        tmp_path / "agent.toml",
        device=DEVICE,
        state_dir=tmp_path / "state",
        bundle=base_path,
        replay=normal_csv,
        broker=broker,
        trusted_pub=keys["trusted_pub"],
        # room for good bundles, not for one padded with PADDING bytes
        ota=f"max_bundle_bytes = {len(base_bundle) + PADDING // 2}\ntransfer_timeout_s = 3",
    )
    failpoints = "nan_after_activation=test-bundle@4"
    pushed = {
        "wrong signature": (_wrong_signature(good_v3), "signature does not verify"),
        "unsigned": (repack(base_bundle, None, version("3")), "only accepts signed bundles"),
        "untrusted key": (repack(base_bundle, other, version("3")), "does not verify"),
        "channel map": (repack(base_bundle, trusted, _other_channels), "channel map mismatch"),
        "oversized": (
            repack(base_bundle, trusted, version("3"), {"padding.bin": os.urandom(PADDING)}),
            "over this device's limit",
        ),
        "canary": (repack(base_bundle, trusted, _edit_artifacts(_scale_canary)), "canary failed"),
        "alarms on normal data": (
            repack(base_bundle, trusted, _edit_artifacts(_tiny_thresholds)),
            "recent normal windows",
        ),
    }
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = start_agent(config, failpoints=failpoints)
        wait_ready(agent, sub, DEVICE)

        def expect(tid: str, state: str, reason: str) -> dict:
            status = final_status(sub, DEVICE, tid)
            validate(status, "ota_status")
            assert status["state"] == state, (status, agent.output()[-2000:])
            assert reason in status["reason"], status
            wait_scoring(sub, DEVICE, "1", after=len(sub.messages()))
            return status

        # a chunk that does not match its announced hash
        tampered = {3: b"\x00" * CHUNK}
        publish_partial(broker, DEVICE, good_v3, "tampered", None, CHUNK, tampered, key=trusted)
        expect("tampered", "rejected", "chunk 3: sha256 mismatch")
        # a pusher that dies half-way: no progress for transfer_timeout_s
        publish_partial(broker, DEVICE, good_v3, "truncated", [0, 1], CHUNK, key=trusted)
        expect("truncated", "rejected", "transfer incomplete")
        # a hostile archive (`rapp-export push` itself refuses to read it)
        hostile = traversal_archive(good_v3)
        publish_partial(broker, DEVICE, hostile, "traversal", None, CHUNK, key=trusted)
        expect("traversal", "rejected", "path traversal")
        for case, (data, reason) in pushed.items():
            pusher = Pusher(broker, data, device=DEVICE, key=trusted)
            result = pusher.join()
            assert not result.ok, case
            status = expect(result.transfer_id, "rejected", reason)
            assert result.final[DEVICE] == ("rejected", status["reason"]), case
        # passes canary and gate, then scores NaN once serving: rolled back in probation
        poisoned = repack(base_bundle, trusted, version("4"))  # scores NaN once active
        result = Pusher(broker, poisoned, device=DEVICE, key=trusted).join()
        status = expect(result.transfer_id, "rolled_back", "non-finite score")
        assert status["previous"] == {"bundle_id": "test-bundle", "version": "1"}
        states = [
            m.json()["state"]
            for m in sub.messages()
            if m.topic.endswith("/ota/status") and m.json()["transfer_id"] == result.transfer_id
        ]
        assert states[-3:] == ["staged", "active", "rolled_back"], states
    assert agent.proc is not None and agent.proc.poll() is None, "the agent kept running"
