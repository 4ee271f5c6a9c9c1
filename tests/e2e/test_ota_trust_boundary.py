"""The OTA channel against a hostile broker client, with a real mosquitto and agent process.

Anyone who can publish on the broker can send commands and chunks. None of it may change the
model, stall the channel, or make the agent publish anything about itself:

1. replaying old, validly signed bundles as new transfers (a downgrade) is refused unless a
   signed rollback command says so; versions order as dotted integers (9 < 10);
2. unsigned, wrongly signed, altered, expired and foreign commands are ignored, counted and
   logged once, with nothing published;
3. chunks that do not match the signed hashes are ignored and asked for again; a stalled
   transfer is superseded by a newer signed one; hostile archives are rejected;
4. url downloads: file:// only below ``file_url_root``, no links, no FIFOs or devices, one
   reason for every refusal; http(s) bounded in size and time.

Each test prints ``hostile: N tried, model changed 0, stalled 0`` (run with ``-s``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time

import paho.mqtt.publish as mqtt_publish

from agent.core.bundle.archive import read_archive
from agent.ota.command import CommandTarget
from agent.ota.fetch import FILE_REFUSED
from agent.ota.store import ModelStore
from tests.support.agents_inprocess import validate
from tests.support.broker import MosquittoBroker, MosquittoSub
from tests.support.fixtures.ota import (
    ROBOT,
    BundleServer,
    Pusher,
    final_status,
    is_status,
    ota_config,
    publish_command,
    publish_partial,
    repack,
    serve_bytes,
    serve_drip,
    serve_endless,
    signed_command,
    version,
    wait_ready,
    wait_scoring,
)

CHUNK = 16 * 1024


def _publish_chunks(broker: MosquittoBroker, tid: str, data: bytes, junk: bytes | None = None):
    """Every chunk of ``data`` under ``tid`` (or ``junk`` in place of each)."""
    msgs = [
        (f"rapp/v1/_transfer/{tid}/{i // CHUNK}", junk if junk is not None else data[i:][:CHUNK])
        for i in range(0, len(data), CHUNK)
    ]
    mqtt_publish.multiple(
        [(t, p, 1, False) for t, p in msgs], hostname=broker.host, port=broker.port
    )


def _device_messages(sub: MosquittoSub, device: str, after: int, kinds=("status", "need")):
    return [
        m
        for m in sub.messages()[after:]
        if any(m.topic == f"rapp/v1/{device}/ota/{k}" for k in kinds) and m.payload
    ]


class Tally:
    """Hostile attempts and what they achieved (both counts must stay 0)."""

    def __init__(self) -> None:
        self.tried = 0
        self.model_changed = 0
        self.stalled = 0

    def line(self) -> str:
        return (
            f"hostile: {self.tried} tried, model changed {self.model_changed}, "
            f"stalled {self.stalled}"
        )


def _serving(store: ModelStore) -> str | None:
    entry = store.pointer(ROBOT).get("test-bundle")
    return entry.active if entry is not None else None


def test_downgrade_replay_and_hostile_commands_change_nothing(
    tmp_path, broker, base_bundle, keys, normal_csv, start_agent
):
    device, trusted = "guard", keys["trusted"]
    v = {n: repack(base_bundle, trusted, version(n)) for n in ("1", "2", "9", "10", "11")}
    configured = tmp_path / "v9.rapp"
    configured.write_bytes(v["9"])
    state = tmp_path / "state"
    config = ota_config(
        tmp_path / "agent.toml", device=device, state_dir=state, bundle=configured,
        replay=normal_csv, broker=broker, trusted_pub=keys["trusted_pub"], groups=("hall3",),
    )  # fmt: skip
    store, tally = ModelStore(state), Tally()

    def command(tid: str, key=trusted, **fields):
        return signed_command(v["11"], tid, key, device=device, ident=("test-bundle", "11"),
                              chunk_size=CHUNK, **fields)  # fmt: skip

    def altered(tid: str, **changes) -> bytes:
        return json.dumps({**command(tid).to_json(), **changes}).encode()

    hostile: dict[str, bytes | object] = {
        "unsigned": command("h-unsigned", key=None),
        "untrusted key": command("h-other", key=keys["other"]),
        "renamed transfer": altered("h-x", transfer_id="h-renamed"),
        "other sha256": altered("h-sha", sha256="0" * 64),
        "other version": altered("h-ver", version="12"),
        "rollback added": altered("h-rb", rollback=True),
        "url added": altered("h-url", url="file:///etc/passwd", chunks=[]),
        "retargeted": altered("h-tgt", target={"kind": "group", "id": "hall3"}),
        "expiry extended": altered("h-exp", expires=int(time.time()) + 10**6),
        "expired": command("h-expired", expires_in=-5),
        "for another device": command("h-dev", target=CommandTarget("device", "nobody")),
        "for another group": command("h-grp", target=CommandTarget("group", "hall9")),
        "unsigned rollback": command("h-urb", key=None, rollback=True),
        "not JSON": b"\xff\xfe",
        "not a command": b'{"schema": "rapp/ota_cmd/v1"}',
        "deeply nested": b"[" * 50_000,
        "oversized": b" " * (600 * 1024),
    }

    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = start_agent(config)
        wait_ready(agent, sub, device)
        wait_scoring(sub, device, "9")

        # 1. hostile commands (with every chunk of v11 behind each), none acted on
        mark = len(sub.messages())
        for payload in hostile.values():
            publish_command(broker, device, payload)  # type: ignore[arg-type]
        on_group = command("h-grp-other", key=keys["other"], target=CommandTarget("group", "hall3"))
        mqtt_publish.single(
            "rapp/v1/group/hall3/ota/cmd", json.dumps(on_group.to_json()), qos=1,
            hostname=broker.host, port=broker.port,
        )  # fmt: skip
        tally.tried += len(hostile) + 1
        for tid in ("h-unsigned", "h-other", "h-renamed", "h-rb", "h-expired", "h-dev", "h-urb"):
            _publish_chunks(broker, tid, v["11"])
        # 2. the downgrade: old, validly signed bundles as new transfers
        for old in ("2", "1"):
            result = Pusher(broker, v[old], device=device, key=trusted, chunk_size=CHUNK).join()
            tally.tried += 1
            status = final_status(sub, device, result.transfer_id)
            validate(status, "ota_status")
            assert status["state"] == "rejected", (status, agent.output()[-3000:])
            assert f"version {old} of test-bundle is not newer than version 9" in status["reason"]
            assert "rapp-export push --rollback" in status["reason"]
        # the worker handles messages in order: the hostile ones came first and left no trace
        seen = {m.json()["transfer_id"] for m in _device_messages(sub, device, mark)}
        assert not any(tid.startswith("h-") for tid in seen), seen
        tally.model_changed += _serving(store) is not None
        wait_scoring(sub, device, "9", after=len(sub.messages()))

        # 3. a newer version (10 > 9 as numbers, not as text) is installed
        result = Pusher(broker, v["10"], device=device, key=trusted, chunk_size=CHUNK).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        final_status(sub, device, result.transfer_id)
        wait_scoring(sub, device, "10", after=len(sub.messages()))
        serving_v10 = _serving(store)

        # 4. replays of captured commands: verbatim (already done) or with a new id (forged)
        commands = [m for m in sub.messages(f"rapp/v1/{device}/ota/cmd") if m.payload]
        captured = [m.payload for m in commands if b'"transfer_id": "t' in m.payload]
        assert len(captured) >= 3, "the pusher's three signed commands were seen"
        mark = len(sub.messages())
        for payload in captured:
            publish_command(broker, device, payload)
            renamed = {**json.loads(payload), "transfer_id": f"r{len(payload)}"}
            publish_command(broker, device, json.dumps(renamed).encode())
            tally.tried += 2
        # 5. the operator's signed rollback does go back
        result = Pusher(
            broker, v["2"], device=device, key=trusted, chunk_size=CHUNK, rollback=True
        ).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        seen = {m.json()["transfer_id"] for m in _device_messages(sub, device, mark)}
        assert seen == {result.transfer_id}, "the replays left no trace"
        tally.model_changed += serving_v10 is None
        wait_scoring(sub, device, "2", after=len(sub.messages()))

    assert agent.proc is not None and agent.proc.poll() is None
    agent.stop()
    log = agent.output()
    assert log.count("ignored (unsigned)") == 1, "logged once, then only counted"
    assert log.count("ignored (bad_signature)") == 1
    summary = next(line for line in log.splitlines() if "ignored messages this run" in line)
    for counted in ("unsigned 2", "expired 1", "not_for_me 2", "malformed 4"):
        assert counted in summary, summary
    assert int(summary.split("bad_signature ")[1].split(",")[0]) >= 9 + len(captured), summary
    assert "allow_unsigned = true" not in log
    print(tally.line())
    assert (tally.model_changed, tally.stalled) == (0, 0)


def _hostile_archives(good: bytes) -> dict[str, tuple[bytes, str]]:
    files = read_archive(good)

    def tar(members) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out:
            for info, data in members:
                out.addfile(info, io.BytesIO(data) if data is not None else None)
        return buffer.getvalue()

    def regular(name: str, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    def special(name: str, kind: bytes, linkname: str = ""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        return info, None

    plain = [regular(n, d) for n, d in sorted(files.items())]
    huge = tarfile.TarInfo("arrays.npz")
    huge.size = 1024**3  # declared in the header, never sent
    lying = huge.tobuf(tarfile.USTAR_FORMAT) + b"\x00" * 1024
    return {
        "gzip-compressed": (gzip.compress(good), "compressed"),
        "symlink member": (tar([*plain, special("x", tarfile.SYMTYPE, "/etc/passwd")]), "link"),
        "fifo member": (tar([*plain, special("p", tarfile.FIFOTYPE)]), "not a regular file"),
        "4000 members": (tar([regular(f"f{i}", b"") for i in range(4000)]), "members"),
        "huge declared member": (lying, "member limit"),
        "duplicate member": (tar([*plain, plain[0]]), "appears twice"),
    }


def test_bad_chunks_stalls_and_hostile_archives_neither_abort_nor_block(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    device, trusted = "chunks", keys["trusted"]
    config = ota_config(
        tmp_path / "agent.toml", device=device, state_dir=tmp_path / "state", bundle=base_path,
        replay=normal_csv, broker=broker, trusted_pub=keys["trusted_pub"],
        ota="transfer_timeout_s = 600",  # a stalled transfer really stalls
    )  # fmt: skip
    v = {n: repack(base_bundle, trusted, version(n)) for n in ("2", "3", "4")}
    tally = Tally()
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        agent = start_agent(config)
        wait_ready(agent, sub, device)

        # 1. a signed push while a stranger floods its chunk topics with wrong chunks
        cmd = signed_command(
            v["2"], "c2", trusted, device=device, ident=("test-bundle", "2"), chunk_size=CHUNK
        )
        publish_command(broker, device, cmd)
        sub.wait_for(is_status(device, "c2", "downloading"), timeout=30)
        for junk in (b"7 bytes", b"\x00" * CHUNK):
            _publish_chunks(broker, "c2", v["2"], junk)
            tally.tried += cmd.n_chunks
        mqtt_publish.multiple(
            [("rapp/v1/_transfer/c2/0", b"x" * (2 * 1024 * 1024), 1, False),
             ("rapp/v1/_transfer/c2/99999", b"x", 1, False),
             ("rapp/v1/_transfer/c2/-1", b"x", 1, False)],
            hostname=broker.host, port=broker.port,
        )  # fmt: skip
        tally.tried += 3
        result = Pusher(
            broker, v["2"], device=device, key=trusted, chunk_size=CHUNK, transfer_id="c2"
        ).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        states = [m.json()["state"] for m in sub.messages() if is_status(device, "c2")(m)]
        assert "rejected" not in states and states[-1] == "committed", states
        wait_scoring(sub, device, "2", after=len(sub.messages()))

        # 2. a transfer that stalls (command, no chunks) is superseded by a newer signed one
        publish_command(
            broker, device,
            signed_command(v["3"], "stall", trusted, device=device, ident=("test-bundle", "3")),
        )  # fmt: skip
        sub.wait_for(is_status(device, "stall", "downloading"), timeout=30)
        started = time.monotonic()
        result = Pusher(broker, v["4"], device=device, key=trusted, chunk_size=CHUNK).join()
        tally.tried += 1
        assert result.ok, (result.final, agent.output()[-3000:])
        tally.stalled += time.monotonic() - started > 60
        stalled = final_status(sub, device, "stall")
        assert stalled["state"] == "rejected", stalled
        assert stalled["reason"] == f"superseded by transfer {result.transfer_id} (version 4)"
        wait_scoring(sub, device, "4", after=len(sub.messages()))
        serving = ModelStore(tmp_path / "state").pointer(ROBOT)["test-bundle"].active

        # 3. hostile archives in validly signed pushes: rejected, nothing changes
        for n, (case, (data, reason)) in enumerate(_hostile_archives(v["4"]).items()):
            tid = f"arch{n}"
            publish_partial(broker, device, data, tid, None, CHUNK, key=trusted,
                            ident=("test-bundle", "9"))  # fmt: skip
            tally.tried += 1
            status = final_status(sub, device, tid, timeout=30)
            assert status["state"] == "rejected" and reason in status["reason"], (case, status)
        tally.model_changed += (
            ModelStore(tmp_path / "state").pointer(ROBOT)["test-bundle"].active != serving
        )
        wait_scoring(sub, device, "4", after=len(sub.messages()))
    assert agent.proc is not None and agent.proc.poll() is None
    print(tally.line())
    assert (tally.model_changed, tally.stalled) == (0, 0)


def test_url_downloads_are_confined_bounded_and_reveal_nothing(
    tmp_path, broker, base_path, base_bundle, keys, normal_csv, start_agent
):
    device, trusted = "urls", keys["trusted"]
    incoming = tmp_path / "incoming"
    (incoming / "sub").mkdir(parents=True)
    config = ota_config(
        tmp_path / "agent.toml", device=device, state_dir=tmp_path / "state", bundle=base_path,
        replay=normal_csv, broker=broker, trusted_pub=keys["trusted_pub"],
        file_url_root=incoming, ota="url_timeout_s = 3",
    )  # fmt: skip
    v2 = repack(base_bundle, trusted, version("2"))
    outside = tmp_path / "outside-v2.rapp"
    outside.write_bytes(v2)  # a valid bundle, but not where bundles may be read from
    os.symlink(outside, incoming / "link.rapp")
    os.symlink("/dev/zero", incoming / "zero.rapp")
    os.mkfifo(incoming / "fifo.rapp")
    file_urls = {
        "outside the root": outside.as_uri(),
        "link out of the root": (incoming / "link.rapp").as_uri(),
        "link to /dev/zero": (incoming / "zero.rapp").as_uri(),
        "FIFO": (incoming / "fifo.rapp").as_uri(),
        "directory": (incoming / "sub").as_uri(),
        "missing file": (incoming / "missing.rapp").as_uri(),
        "dot-dot": incoming.as_uri() + "/../outside-v2.rapp",
        "an existing system file": "file:///etc/passwd",
        "a missing system file": "file:///etc/no-such-file",
    }
    tally = Tally()
    with (
        MosquittoSub(broker, ["rapp/v1/#"]) as sub,
        BundleServer({"/endless": serve_endless, "/drip": serve_drip}) as web,
    ):
        agent = start_agent(config)
        wait_ready(agent, sub, device)
        for case, url in file_urls.items():
            started = time.monotonic()
            result = Pusher(broker, v2, device=device, key=trusted, url=url, timeout=30).join()
            tally.tried += 1
            tally.stalled += time.monotonic() - started > 20
            assert result.final[device] == ("rejected", FILE_REFUSED), (case, result.final)
        for path, reason in (("/endless", "larger than the signed size"),
                             ("/drip", "did not finish within 3 s")):  # fmt: skip
            started = time.monotonic()
            result = Pusher(broker, v2, device=device, key=trusted, url=web.url(path)).join()
            tally.tried += 1
            tally.stalled += time.monotonic() - started > 20
            state, why = result.final[device]
            assert state == "rejected" and reason in why, (path, result.final)
        tally.model_changed += bool(ModelStore(tmp_path / "state").pointer(ROBOT))
        wait_scoring(sub, device, "1", after=len(sub.messages()))
        # the good ones: http:// (the signed sha256 protects it) and file:// below the root
        web.routes["/v2"] = lambda h: serve_bytes(h, v2)
        result = Pusher(broker, v2, device=device, key=trusted, url=web.url("/v2")).join()
        assert result.ok, (result.final, agent.output()[-3000:])
        v3 = incoming / "sub" / "v3.rapp"
        v3.write_bytes(repack(base_bundle, trusted, version("3")))
        result = Pusher(broker, v3.read_bytes(), device=device, key=trusted, url=v3.as_uri())
        assert result.join().ok, (result.result, agent.output()[-3000:])
        wait_scoring(sub, device, "3", after=len(sub.messages()))
    log = agent.output()
    assert "fifo.rapp refused: not a regular file" in log, "the detail stays in the local log"
    print(tally.line())
    assert (tally.model_changed, tally.stalled) == (0, 0)
