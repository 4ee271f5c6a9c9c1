"""`rapp-export push`: send a bundle over the air to one device or a group.

The protocol is described in ``agent/ota/transfer.py``. The pusher:

1. builds the install command — target, transfer id, bundle id and version, size, sha256,
   chunk hashes, url, rollback flag and an expiry (``expires_in``, by default the push
   ``timeout`` plus :data:`EXPIRY_MARGIN_S` for clock skew) — and signs it with the release
   key (``rapp-export keygen``; agents refuse unsigned commands unless ``[trust]
   allow_unsigned``; ``rollback`` lets an older version replace a newer one);
   publishes it (QoS 1, retained) on the device's or group's ``ota/cmd``, and again after
   every reconnect (a broker restarted without persistence forgets it);
2. publishes every chunk once (QoS 1) on ``<root>/_transfer/<transfer_id>/<index>`` — unless
   ``--url`` is given, then devices download the file themselves;
3. keeps serving: every ``ota/need`` message of this transfer gets the missing chunks
   re-published, so agents that reconnected, were restarted, or lost chunks in a broker
   restart complete the transfer;
4. follows the targets' retained ``ota/status`` for this transfer id and ends when every
   target reached a final state (``committed`` / ``rejected`` / ``rolled_back``) — for a
   group, once ``expect`` devices did — or at the timeout; then clears the retained command.

It succeeds (exit 0) only if every target committed.
"""

from __future__ import annotations

import json
import queue
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.core.bundle.archive import read_archive
from agent.core.bundle.errors import BundleError
from agent.core.bundle.manifest import MANIFEST_NAME
from agent.core.errors import AgentRuntimeError
from agent.ota.command import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_COMMAND_BYTES,
    CommandTarget,
    TransferCommand,
)
from agent.sinks.topics import DEFAULT_ROOT, TopicError, validate_id, validate_root
from exporter.keys import sign_command

FINAL = ("committed", "rejected", "rolled_back")
RESEND_GAP_S = 0.5  # do not re-publish the same chunk more often than this
EXPIRY_MARGIN_S = 300.0  # devices whose clock runs somewhat ahead still accept the command


class PushError(AgentRuntimeError, RuntimeError):
    """The push could not be started (bad bundle, bad target, broker unreachable)."""


@dataclass
class PushResult:
    transfer_id: str
    final: dict[str, tuple[str, str]] = field(default_factory=dict)  # device → (state, reason)
    expected: int = 1
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return (
            len(self.final) >= self.expected
            and not self.timed_out
            and all(state == "committed" for state, _ in self.final.values())
        )

    def summary(self) -> str:
        lines = [f"{dev}: {state}" + (f" ({reason})" if reason else "")
                 for dev, (state, reason) in sorted(self.final.items())]  # fmt: skip
        if len(self.final) < self.expected:
            lines.append(
                f"only {len(self.final)} of {self.expected} device(s) reported a final state"
                + (" before the timeout" if self.timed_out else "")
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class BrokerOptions:
    host: str
    port: int = 1883
    root: str = DEFAULT_ROOT
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None


def parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise PushError(f"--broker {text!r}: use HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def bundle_identity(data: bytes) -> tuple[str, str]:
    """(bundle_id, version) from the bundle's manifest (full checks happen on the device)."""
    try:
        manifest = json.loads(read_archive(data)[MANIFEST_NAME])
        return str(manifest["bundle_id"]), str(manifest["bundle_version"])
    except (BundleError, KeyError, ValueError, TypeError) as err:
        raise PushError(f"not a readable .rapp bundle: {err}") from err


def _client(options: BrokerOptions, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(32)
    client.reconnect_delay_set(0.2, 2.0)
    if options.ca_file or options.cert_file:
        context = ssl.create_default_context(
            cafile=str(options.ca_file) if options.ca_file else None
        )
        if options.cert_file:
            context.load_cert_chain(
                str(options.cert_file), str(options.key_file) if options.key_file else None
            )
        client.tls_set_context(context)
    if options.username:
        password = None
        if options.password_file:
            password = Path(options.password_file).read_text().strip()
        client.username_pw_set(options.username, password)
    return client


def _check_signing(
    key: Ed25519PrivateKey | None,
    rollback: bool,
    chunk_size: int,
    timeout: float,
    expires_in: float | None,
) -> float:
    """Refuse what agents would ignore; the command's lifetime in seconds."""
    if rollback and key is None:
        raise PushError("--rollback needs --key: agents act on a signed rollback only")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise PushError(f"--chunk-size {chunk_size}: use 1 to {MAX_CHUNK_SIZE} bytes")
    lifetime = timeout + EXPIRY_MARGIN_S if expires_in is None else expires_in
    if lifetime <= 0:
        raise PushError(f"--expires-in {expires_in:g}: must be a positive number of seconds")
    return lifetime


def _command_payload(
    command: TransferCommand, key: Ed25519PrivateKey | None, log: Callable[[str], None]
) -> bytes:
    """The command as published: signed by ``key`` (unsigned without one, with a warning)."""
    if key is not None:
        command = sign_command(command, key)
    else:
        log(
            f"push {command.transfer_id}: WARNING unsigned command; only agents with "
            "allow_unsigned accept it"
        )
    payload = json.dumps(command.to_json()).encode()
    if len(payload) > MAX_COMMAND_BYTES:
        raise PushError(
            f"the command would be {len(payload)} bytes, over the {MAX_COMMAND_BYTES} "
            "agents read; use a larger --chunk-size"
        )
    return payload


def push(
    data: bytes,
    options: BrokerOptions,
    *,
    device: str | None = None,
    group: str | None = None,
    expect: int = 1,
    robot: str | None = None,
    url: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = 600.0,
    transfer_id: str | None = None,
    pace_s: float = 0.0,
    key: Ed25519PrivateKey | None = None,
    rollback: bool = False,
    expires_in: float | None = None,
    log: Callable[[str], None] = print,
) -> PushResult:
    """Push ``data`` and wait for the outcome (see the module docstring). Without ``key``
    the command is unsigned: only agents with ``[trust] allow_unsigned`` act on it."""
    if (device is None) == (group is None):
        raise PushError("give exactly one of --device or --group")
    kind = "device" if device else "group"
    try:
        root = validate_root(options.root)
        target = validate_id(device or group, what=f"{kind} id")
        if robot is not None:
            validate_id(robot, what="robot id")
    except TopicError as err:
        raise PushError(str(err)) from err
    lifetime = _check_signing(key, rollback, chunk_size, timeout, expires_in)
    bundle_id, version = bundle_identity(data)
    tid = transfer_id or f"t{int(time.time())}-{uuid.uuid4().hex[:8]}"
    command = TransferCommand.for_bundle(
        data, tid, bundle_id, version, robot=robot, chunk_size=chunk_size, url=url,
        target=CommandTarget(kind, target), rollback=rollback,
        expires=int(time.time() + lifetime),
    )  # fmt: skip
    cmd_topic = f"{root}/{target}/ota/cmd" if device else f"{root}/group/{target}/ota/cmd"
    cmd_payload = _command_payload(command, key, log)
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    expected = 1 if device else max(1, expect)
    result = PushResult(tid, expected=expected)
    inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
    connected = queue.Queue()

    def on_connect(client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            return
        client.subscribe(f"{root}/+/ota/status", 1)
        client.subscribe(f"{root}/+/ota/need", 1)
        client.publish(cmd_topic, cmd_payload, qos=1, retain=True)
        connected.put(True)

    client = _client(options, f"rapp-push-{tid}")
    client.on_connect = on_connect
    client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload)))
    try:
        client.connect(options.host, options.port, keepalive=10)
    except OSError as err:
        raise PushError(f"cannot connect to {options.host}:{options.port}: {err}") from err
    client.loop_start()
    sent_at: dict[int, float] = {}

    def send(index: int) -> None:
        if not 0 <= index < len(chunks):
            return
        now = time.monotonic()
        if now - sent_at.get(index, -1e9) < RESEND_GAP_S:
            return
        sent_at[index] = now
        client.publish(f"{root}/_transfer/{tid}/{index}", chunks[index], qos=1)

    try:
        try:
            connected.get(timeout=min(30.0, timeout))
        except queue.Empty as err:
            raise PushError(f"no MQTT connection to {options.host}:{options.port}") from err
        log(
            f"push {tid}: {bundle_id} v{version}{' (rollback)' * rollback}, "
            f"{len(data)} bytes in {len(chunks)} chunk(s) → {kind} {target}"
        )
        if url is None:
            for i in range(len(chunks)):
                send(i)
                if pace_s:  # bandwidth limit on constrained links
                    time.sleep(pace_s)
        deadline = time.monotonic() + timeout
        while len(result.final) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                break
            try:
                topic, payload = inbox.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            _handle(topic, payload, tid, device, result, send, url is None, log)
    finally:
        client.publish(cmd_topic, b"", qos=1, retain=True).wait_for_publish(5)
        # disconnect first: the network thread then leaves its select at once, where
        # loop_stop alone waits out its one-second timeout
        client.disconnect()
        client.loop_stop()
    return result


def _handle(topic, payload, tid, device, result, send, serve_chunks, log) -> None:
    try:
        msg = json.loads(payload)
    except ValueError:
        return
    if not isinstance(msg, dict) or msg.get("transfer_id") != tid:
        return
    source = topic.split("/")[-3]
    if device is not None and source != device:
        return
    if topic.endswith("/ota/need") and serve_chunks:
        for index in msg.get("missing", []):
            if isinstance(index, int) and not isinstance(index, bool):
                send(index)
        return
    if topic.endswith("/ota/status"):
        state, reason = msg.get("state"), msg.get("reason", "")
        log(f"  {source}: {state}" + (f" ({reason})" if reason else ""))
        if state in FINAL:
            result.final[source] = (state, reason)
