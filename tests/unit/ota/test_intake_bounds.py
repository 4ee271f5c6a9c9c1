"""Unit tests of the intake at the trust boundary, with stand-ins for the daemon: hostile
commands leave no trace, the pending queue is bounded and newest-wins, stalled transfers are
superseded, versions are checked before downloading, the whole file is checked before
anything parses it, and the MQTT hand-over is bounded."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.bundle import TrustPolicy
from agent.ota.authenticate import CommandAuthenticator
from agent.ota.command import CommandTarget, TransferCommand
from agent.ota.fetch import UrlFetcher
from agent.ota.inbox import Inbox
from agent.ota.intake import IntakeParts, NeedRequests, TransferIntake
from agent.ota.refusals import Refusals
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog, Staging
from agent.ota.versions import ServingVersions
from agent.sinks.topics import Topics
from exporter.keys import public_b64, sign_command

DATA = bytes(range(256)) * 4
CHUNK = 256


class _Outbox:
    """Stands in for the outbox: records every published message."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    def put_json(self, topic, payload, **kw) -> None:
        self.published.append((topic, payload))


class _Bundle:
    def __init__(self, bundle_id: str, version: str) -> None:
        manifest = type("M", (), {"bundle_id": bundle_id, "bundle_version": version})
        self.bundle = type("B", (), {"manifest": manifest})


@pytest.fixture(scope="module")
def release() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class Rig:
    """An intake for device ``d`` (one robot, ``arm1``, configured with ``b`` v1), its
    outbox and counters."""

    def __init__(self, tmp_path, release: Ed25519PrivateKey, **settings) -> None:
        self.key = release
        self.outbox = _Outbox()
        self.settings = OtaSettings(groups=("hall3",), **settings)
        policy = TrustPolicy((base64.b64decode(public_b64(release)),), allow_unsigned=False)
        versions = ServingVersions(ModelStore(tmp_path))
        versions.note_configured("arm1", [_Bundle("b", "1")])  # type: ignore[list-item]
        self.refusals = Refusals()
        self.staging = tmp_path / "staging"
        self.intake = TransferIntake(
            self.settings,
            self.staging,
            DoneLog.load(tmp_path / "done.json"),
            OtaReporter("d", Topics.for_device("d"), self.outbox),  # type: ignore[arg-type]
            NeedRequests("d", "rapp/v1/d/ota/need", self.outbox),  # type: ignore[arg-type]
            _NoHooks(),
            IntakeParts(
                auth=CommandAuthenticator(policy, "d", self.settings.groups),
                versions=versions,
                fetcher=UrlFetcher(None, 5.0),
                refusals=self.refusals,
            ),
        )

    def command(self, tid: str, version: str = "2", key=..., **fields) -> TransferCommand:
        fields.setdefault("target", CommandTarget("device", "d"))
        fields.setdefault("expires", 2_000_000_000)
        command = TransferCommand.for_bundle(DATA, tid, "b", version, chunk_size=CHUNK, **fields)
        signer = self.key if key is ... else key
        return sign_command(command, signer) if signer is not None else command

    def send_command(self, command: TransferCommand | bytes, hold: bool = False) -> None:
        payload = command if isinstance(command, bytes) else json.dumps(command.to_json()).encode()
        self.intake.on_command("rapp/v1/d/ota/cmd", payload)
        self.settle(hold)

    def send_chunk(self, tid: str, index: int, data: bytes | None = None):
        if data is None:
            data = DATA[index * CHUNK : (index + 1) * CHUNK]
        self.intake.on_chunk(f"rapp/v1/_transfer/{tid}/{index}", data)
        return self.settle()

    def settle(self, hold: bool = False):
        """Run the worker until every message is handled and, unless ``hold``, the next
        pending transfer has begun; the delivery, if one completed."""
        intake, delivery = self.intake, None
        for _ in range(100):
            can_begin = not hold and intake._active is None and len(intake.pending) > 0
            if not len(intake.inbox) and not can_begin:
                break
            delivery = intake.next(can_begin=not hold) or delivery
        return delivery

    def states(self, tid: str) -> list[tuple[str, str]]:
        return [
            (p["state"], p.get("reason", ""))
            for topic, p in self.outbox.published
            if topic.endswith("/ota/status") and p["transfer_id"] == tid
        ]


class _NoHooks:
    def reach(self, step: str) -> None:
        pass


def test_hostile_commands_are_counted_and_leave_no_trace(tmp_path, release):
    rig = Rig(tmp_path, release)
    stranger = Ed25519PrivateKey.generate()
    good = rig.command("t-good")
    hostile = [
        rig.command("t-unsigned", key=None),
        rig.command("t-stranger", key=stranger),
        rig.command("t-expired", expires=1),
        rig.command("t-other", target=CommandTarget("device", "e")),
        rig.command("t-group", target=CommandTarget("group", "hall4")),
        rig.command("t-rb", key=None, rollback=True),
        json.dumps({**good.to_json(), "transfer_id": "t-renamed"}).encode(),
        json.dumps({**good.to_json(), "rollback": True}).encode(),
        json.dumps({**good.to_json(), "url": "file:///etc/shadow"}).encode(),
        b"\xff\xfe",
        b"{}",
        b"[" * 100_000,
        b"x" * (600 * 1024),
    ]
    for command in hostile:
        rig.send_command(command)
    assert rig.outbox.published == [], "nothing published to the stranger"
    assert not rig.staging.exists() and not (tmp_path / "done.json").exists()
    counts = rig.refusals.counts()
    assert sum(counts.values()) == len(hostile)
    assert counts == {"unsigned": 2, "bad_signature": 4, "expired": 1, "not_for_me": 2,
                      "malformed": 4}  # fmt: skip
    rig.send_command(good)  # and the agent still takes a good one
    assert rig.states("t-good")[:2] == [("received", ""), ("downloading", "")]


def test_a_replayed_command_is_ignored_once_its_transfer_ended(tmp_path, release):
    rig = Rig(tmp_path, release)
    command = rig.command("t1")
    rig.send_command(command)
    delivery = None
    for i in range(command.n_chunks):
        delivery = rig.send_chunk("t1", i)
    assert delivery is not None
    rig.intake.finished(delivery)
    rig.intake.done.record("t1", "committed")
    published = len(rig.outbox.published)
    for _ in range(3):
        rig.send_command(command)
    assert len(rig.outbox.published) == published
    assert rig.refusals.counts() == {"repeated": 3}


def test_versions_are_checked_before_downloading(tmp_path, release):
    rig = Rig(tmp_path, release)
    rig.send_command(rig.command("old", version="1"))
    assert rig.states("old")[-1][0] == "rejected" and "not newer" in rig.states("old")[-1][1]
    rig.send_command(rig.command("bad", version="2.x"))
    assert "not a dotted integer" in rig.states("bad")[-1][1]
    rig.send_command(rig.command("rb", version="1", rollback=True))
    assert rig.states("rb")[-1][0] == "downloading", "a signed rollback may go back"


def test_the_whole_file_is_checked_against_the_signed_sha256_before_delivery(tmp_path, release):
    rig = Rig(tmp_path, release)
    honest = rig.command("t1")
    # a (buggy) signer whose chunk hashes match the data but whose sha256 does not
    wrong = sign_command(
        TransferCommand(**{**honest.__dict__, "sha256": "0" * 64, "signature": None}), release
    )
    rig.send_command(wrong)
    results = [rig.send_chunk("t1", i) for i in range(wrong.n_chunks)]
    assert results == [None] * wrong.n_chunks, "never handed on to be parsed"
    assert rig.states("t1")[-1] == ("rejected", "bundle sha256 differs from the command's "
                                    "(corrupt or tampered)")  # fmt: skip


def test_the_pending_queue_is_bounded(tmp_path, release):
    rig = Rig(tmp_path, release, max_pending=2)
    active = rig.command("a0")
    rig.send_command(active)  # begins
    waiting = [
        TransferCommand(**{**rig.command(f"w{i}").__dict__, "bundle_id": f"b{i}"}) for i in range(3)
    ]
    for command in waiting:
        rig.send_command(sign_command(command, release))
    assert len(rig.intake.pending) == 2
    assert rig.states("w2") == [
        ("rejected", "2 updates are already waiting on this device ([ota] max_pending); "
                     "push it again later")
    ]  # fmt: skip
    assert rig.refusals.counts() == {"queue_full": 1}


def test_a_newer_version_supersedes_a_waiting_and_a_stalled_older_one(tmp_path, release):
    rig = Rig(tmp_path, release, transfer_timeout_s=3600)
    rig.send_command(rig.command("v2", version="2"))  # begins, then stalls after one chunk
    rig.send_chunk("v2", 0)
    assert rig.states("v2")[-1][0] == "downloading"
    other = sign_command(
        TransferCommand(**{**rig.command("x", version="5").__dict__, "bundle_id": "other"}),
        release,
    )
    rig.send_command(other)
    rig.send_command(rig.command("v3", version="3"), hold=True)
    assert [c.transfer_id for c in rig.intake.pending] == ["v3", "x"], "v3 goes first"
    assert rig.states("v2")[-1] == ("rejected", "superseded by transfer v3 (version 3)")
    assert not (rig.staging / "v2").exists()
    rig.send_command(rig.command("v4", version="4"), hold=True)  # replaces v3 in place
    assert [c.transfer_id for c in rig.intake.pending] == ["v4", "x"]
    assert rig.states("v3") == [("rejected", "superseded by transfer v4 (version 4)")]
    rig.send_command(rig.command("v1", version="1"), hold=True)  # older: no supersede
    assert [c.transfer_id for c in rig.intake.pending] == ["v4", "x", "v1"]
    rig.settle()
    assert rig.states("v4")[-1][0] == "downloading", "the newest begins at once"


def test_a_signed_transfer_with_no_valid_chunks_times_out_and_says_why(tmp_path, release):
    rig = Rig(tmp_path, release, transfer_timeout_s=1.0)
    command = rig.command("t1")
    rig.send_command(command)
    rig.send_chunk("t1", 1, b"\x00" * CHUNK)
    rig.intake._active.last_progress -= 2  # type: ignore[union-attr]
    rig.intake.next(can_begin=True)
    state, reason = rig.states("t1")[-1]
    assert state == "rejected" and reason.startswith("transfer incomplete")
    assert "ignored 1 chunk(s)" in reason and "chunk 1: sha256 mismatch" in reason


def test_the_hand_over_from_the_mqtt_thread_is_bounded():
    refusals = Refusals()
    inbox = Inbox(refusals, max_messages=8, max_bytes=1000)
    for _ in range(20):
        inbox.put(("chunk", "t", 0, b"x" * 300), 300)
    assert refusals.counts() == {"inbox_full": 17}  # 3 × 300 bytes fit
    for _ in range(3):
        assert inbox.get(0.01) is not None
    assert inbox.get(0.01) is None
    for _ in range(12):
        inbox.put(("cmd", b""), 0)
    inbox.put(("halt",), control=True)  # never blocks the stopping thread for long
    assert refusals.counts()["inbox_full"] == 17 + 4


def test_oversized_and_odd_chunk_topics_never_reach_the_worker(tmp_path, release):
    rig = Rig(tmp_path, release)
    rig.intake.on_chunk("rapp/v1/_transfer/t1/0", b"x" * (1024 * 1024 + 1))
    rig.intake.on_chunk("rapp/v1/_transfer/t1/" + "9" * 12, b"x")
    rig.intake.on_chunk("rapp/v1/_transfer/t1/²", b"x")  # a digit, but not an ASCII one
    rig.intake.on_chunk("rapp/v1/_transfer/t1/-1", b"x")
    assert rig.intake.inbox.get(0.01) is None
    assert rig.refusals.counts() == {"bad_chunk": 2}


def test_a_staged_transfer_is_authenticated_again_at_resume(tmp_path, release):
    rig = Rig(tmp_path, release)
    good = rig.command("good", expires=1)  # expired since: it was accepted before, fine
    forged = TransferCommand(**{**rig.command("forged").__dict__, "version": "7"})
    Staging.create(rig.staging, good)
    Staging.create(rig.staging, forged)  # someone wrote into the state directory
    rig.intake.resume()
    assert [c.transfer_id for c in rig.intake.pending] == ["good"]
    assert not (rig.staging / "forged").exists()


def test_refusals_are_logged_once_per_kind_and_counted(caplog):
    refusals = Refusals()
    with caplog.at_level(logging.WARNING, "agent.ota"):
        for _ in range(5):
            refusals.note("unsigned", "command t1: unsigned\nforged log line")
        refusals.note("expired", "command t2: expired")
    assert caplog.text.count("ignored (unsigned)") == 1 and "\nforged" not in caplog.text
    assert caplog.text.count("ignored (expired)") == 1
    assert refusals.counts() == {"unsigned": 5, "expired": 1}
    assert refusals.summary() == "expired 1, unsigned 5" and Refusals().summary() == "none"
