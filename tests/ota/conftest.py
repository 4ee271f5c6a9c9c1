"""Fixtures for OTA tests: signing keys, bundle variants re-packed from the session bundle
(no retraining), agent configs with a looping replay of normal currents, and MQTT helpers.

Re-packing edits manifest.json (and re-hashes files) exactly as a producer of a bad bundle
would, then re-signs it, so each variant fails (or passes) for the one reason under test.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle.archive import pack_archive, read_archive
from agent.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from agent.ota.transfer import TransferCommand, sha256_hex
from exporter.keys import keygen, load_private_key
from exporter.push import BrokerOptions, PushResult, push
from tests.daemon import conftest as daemon_fixtures
from tests.daemon.conftest import AgentProcess
from tests.infra.broker import MosquittoBroker, MosquittoSub, wait_until
from tests.synthetic import currents, write_csv

ROBOT = "arm1"
# the daemon tests' fixtures: a real mosquitto per test, agent processes stopped at teardown
broker = daemon_fixtures.broker
agent_processes = daemon_fixtures.agent_processes


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("keys")
    trusted, trusted_pub = keygen(root / "trusted.key")
    other, _ = keygen(root / "other.key")
    return {
        "trusted": load_private_key(trusted),
        "trusted_pub": trusted_pub,
        "other": load_private_key(other),
    }


@pytest.fixture(scope="session")
def normal_csv(tmp_path_factory) -> Path:
    """20 s of normal currents (seed unseen in training), replayed in a loop by the agents."""
    return write_csv(tmp_path_factory.mktemp("ota-replay") / "normal.csv", currents(20000, seed=5))


def repack(
    data: bytes,
    key: Ed25519PrivateKey | None,
    edit: Callable[[dict[str, Any]], None] = lambda m: None,
    extra_files: dict[str, bytes] | None = None,
) -> bytes:
    """``data`` with its manifest edited, extra files added (and listed) and a new signature."""
    files = read_archive(data)
    files.pop(SIGNATURE_NAME, None)
    manifest = json.loads(files[MANIFEST_NAME])
    for name, content in (extra_files or {}).items():
        files[name] = content
        manifest["files"][name] = sha256_hex(content)
    edit(manifest)
    files[MANIFEST_NAME] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    if key is not None:
        files[SIGNATURE_NAME] = key.sign(files[MANIFEST_NAME])
    return pack_archive(files)


def version(v: str, bundle_id: str | None = None, programs: list[int] | None = None):
    def edit(m: dict[str, Any]) -> None:
        m["bundle_version"] = v
        if bundle_id is not None:
            m["bundle_id"] = bundle_id
        if programs is not None:
            m["robot"]["programs"] = programs

    return edit


def traversal_archive(data: bytes) -> bytes:
    """The bundle plus a member named ``../evil.sh`` (written with raw tarfile)."""
    buffer = io.BytesIO()
    files = read_archive(data)
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [*sorted(files.items()), ("../evil.sh", b"#!/bin/sh\nrm -rf /\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def base_bundle(built_bundle, keys) -> bytes:
    """The session bundle (id test-bundle) as version 1, signed by the trusted key."""
    return repack(built_bundle.data, keys["trusted"], version("1"))


@pytest.fixture
def base_path(base_bundle, tmp_path) -> Path:
    path = tmp_path / "configured.rapp"
    path.write_bytes(base_bundle)
    return path


def ota_config(
    path: Path,
    *,
    device: str,
    state_dir: Path,
    bundle: Path,
    replay: Path,
    broker: MosquittoBroker,
    trusted_pub: Path,
    groups: tuple[str, ...] = (),
    ota: str = "",
    probation_windows: int = 60,
    allow_unsigned: bool = False,
) -> Path:
    path.write_text(
        f"""
[agent]
device_id = "{device}"
state_dir = "{state_dir}"
log_level = "info"

[mqtt]
host = '127.0.0.1'
port = {broker.port}
keepalive = 5
reconnect_min_delay = 0.2
reconnect_max_delay = 1.0

[telemetry]
score_interval_s = 0.2
status_interval_s = 1

[trust]
keys = ["{trusted_pub}"]
allow_unsigned = {str(allow_unsigned).lower()}

[ota]
groups = {json.dumps(list(groups))}
need_interval_s = 0.5
min_recent_windows = 16
gate_wait_s = 5
probation_windows = {probation_windows}
{ota}

[[robots]]
id = "{ROBOT}"
bundle = "{bundle}"
[robots.source]
kind = "replay"
file = "{replay}"
speed = 1.0
loop = true
"""
    )
    return path


def is_status(device: str, tid: str | None = None, state: str | None = None):
    def match(m) -> bool:
        if m.topic != f"rapp/v1/{device}/ota/status" or not m.payload:
            return False
        p = m.json()
        return (tid is None or p["transfer_id"] == tid) and (state is None or p["state"] == state)

    return match


def scores_with(device: str, version_: str, bundle_id: str = "test-bundle"):
    def match(m) -> bool:
        if m.topic != f"rapp/v1/{device}/{ROBOT}/score":
            return False
        model = m.json()["model"]
        return model == {"bundle_id": bundle_id, "version": version_}

    return match


def wait_scoring(sub: MosquittoSub, device: str, version_: str, after: int = 0, **kw) -> None:
    """Wait for score messages of ``version_`` that arrived after message number ``after``."""
    wait_until(
        lambda: any(scores_with(device, version_, **kw)(m) for m in sub.messages()[after:]),
        timeout=30,
        message=f"{device} scoring with version {version_}",
    )


def final_status(sub: MosquittoSub, device: str, tid: str, timeout: float = 60) -> dict:
    msgs = sub.wait_for(
        lambda m: (
            is_status(device, tid)(m)
            and m.json()["state"] in ("committed", "rejected", "rolled_back")
        ),
        timeout=timeout,
    )
    return msgs[0].json()


def publish_partial(
    broker: MosquittoBroker,
    device: str,
    data: bytes,
    tid: str,
    indices: list[int] | None,
    chunk_size: int,
    tamper: dict[int, bytes] | None = None,
    ident: tuple[str, str] = ("test-bundle", "3"),
) -> TransferCommand:
    """Act as a (broken or hostile) pusher: the command, then only ``indices`` (optionally
    tampered). ``indices=None`` sends every chunk."""
    command = TransferCommand.for_bundle(data, tid, *ident, chunk_size=chunk_size)
    if indices is None:
        indices = list(range(command.n_chunks))
    msgs = [(f"rapp/v1/{device}/ota/cmd", json.dumps(command.to_json()), 1, False)]
    for i in indices:
        chunk = (tamper or {}).get(i, data[i * chunk_size : (i + 1) * chunk_size])
        msgs.append((f"rapp/v1/_transfer/{tid}/{i}", chunk, 1, False))
    mqtt_publish.multiple(msgs, hostname=broker.host, port=broker.port)
    return command


class Pusher:
    """``exporter.push.push`` on a thread (the CLI is exercised in the group test)."""

    def __init__(self, broker: MosquittoBroker, data: bytes, **kwargs: Any) -> None:
        self.result: PushResult | None = None
        self.error: BaseException | None = None
        options = BrokerOptions(broker.host, broker.port)
        kwargs.setdefault("timeout", 60)

        def run() -> None:
            try:
                self.result = push(data, options, log=lambda _m: None, **kwargs)
            except BaseException as err:  # reported by join()
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 90) -> PushResult:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "pusher still running"
        return self.result


@pytest.fixture
def start_agent(agent_processes) -> Iterator[Callable[..., AgentProcess]]:
    def start(config: Path, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(config, env=env).start()
        agent_processes.append(agent)
        return agent

    yield start


def wait_ready(agent: AgentProcess, sub: MosquittoSub, device: str, after: int = 0) -> None:
    """The agent is up and scoring (any model)."""

    def scoring() -> bool:
        if agent.proc is not None and agent.proc.poll() is not None:
            pytest.fail(f"agent exited: {agent.output()[-3000:]}")
        return any(m.topic == f"rapp/v1/{device}/{ROBOT}/score" for m in sub.messages()[after:])

    wait_until(scoring, timeout=60, message=f"{device} scoring")
