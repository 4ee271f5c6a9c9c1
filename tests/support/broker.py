"""A real mosquitto broker and mosquitto_sub subscriber for tests (importable as
``tests.support.broker`` from any test folder).

The broker listens on a free loopback port with a generated config, keeps retained messages and
persistent sessions across :meth:`MosquittoBroker.restart` (``persistence true`` in a temp dir,
saved on the SIGTERM of :meth:`stop`), and restarts on the same port, so clients can reconnect
after an outage. If mosquitto is not installed the helpers *fail* the test (never skip): the
reliability guarantees are only checked against a real broker.

Usage::

    broker = MosquittoBroker(tmp_path); broker.start()
    with MosquittoSub(broker, ["rapp/v1/#"]) as sub:
        ...; msgs = sub.wait_for(lambda m: m.topic.endswith("/alarm"), count=3)
    broker.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.publish as publish
import pytest

INSTALL_HINT = "apt-get install mosquitto mosquitto-clients"


def require_binary(name: str) -> str:
    """Absolute path of ``name``; fails the test (not skip) when it is missing."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        pytest.fail(f"{name} not found; the MQTT tests need a real broker: {INSTALL_HINT}")
    return path


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    condition: Callable[[], Any], timeout: float, interval: float = 0.02, message: str = "condition"
) -> Any:
    """Poll ``condition`` until truthy (returned) or fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class MosquittoBroker:
    """One mosquitto process; start/stop/restart keep the port and the persistence dir."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, port: int | None = None, extra_config: Sequence[str] = ()
    ) -> None:
        """``extra_config``: more mosquitto.conf lines (e.g. ``acl_file``, ``password_file``)."""
        self.binary = require_binary("mosquitto")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_config = list(extra_config)
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        # `user` = the current user: as root, mosquitto would otherwise switch to the
        # 'mosquitto' user and could not write the persistence file in our temp dir.
        user = pwd.getpwuid(os.getuid()).pw_name
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    "autosave_interval 1",
                    f"user {user}",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "connection_messages true",
                    *self.extra_config,
                    "",
                ]
            )
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        pytest.fail(f"mosquitto did not accept connections within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves retained messages and sessions) and wait."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retained: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class MosquittoSub:
    """An external ``mosquitto_sub`` collecting messages on a reader thread.

    It uses a persistent session (``-c`` with a fixed client id and, for MQTT 5, a session
    expiry), so messages published while it is reconnecting after a broker restart are queued
    for it by the broker instead of being missed. :meth:`start` returns once the subscription
    is active (checked with a probe message), so nothing published afterwards is missed.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        topics: Sequence[str],
        *,
        protocol: str = "5",
        qos: int = 1,
    ) -> None:
        self.binary = require_binary("mosquitto_sub")
        self.broker = broker
        self.topics = list(topics)
        self.protocol = protocol
        self.qos = qos
        self.client_id = f"test-sub-{uuid.uuid4().hex[:12]}"
        self._probe_topic = f"test-sync/{self.client_id}"
        self._probe_token = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._stderr_path = broker.workdir / f"{self.client_id}.stderr"

    def start(self, timeout: float = 10.0) -> MosquittoSub:
        version = {"5": "mqttv5", "3.1.1": "mqttv311"}[self.protocol]
        cmd = [
            self.binary,
            "-h",
            self.broker.host,
            "-p",
            str(self.broker.port),
            "-V",
            version,
            "-i",
            self.client_id,
            "-c",
            "-q",
            str(self.qos),
            "-k",
            "5",
            # retained flag, qos, topic, payload as hex: robust against any payload bytes
            "-F",
            "%r %q %t %x",
        ]
        if self.protocol == "5":
            cmd += ["-x", "600"]
        for topic in [*self.topics, self._probe_topic]:
            cmd += ["-t", topic]
        stderr = self._stderr_path.open("ab")
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
        stderr.close()
        self._reader = threading.Thread(target=self._read, name="mosquitto_sub", daemon=True)
        self._reader.start()
        try:
            self._sync(timeout)
        except BaseException:
            self.stop()  # never leak the process when start fails
            raise
        return self

    def _sync(self, timeout: float) -> None:
        """Return once a probe published now has come back: everything published before it
        on the broker has been delivered. Each call waits for its own token (an older
        probe still in the buffer must not count)."""
        self._probe_token = uuid.uuid4().hex.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                pytest.fail(f"mosquitto_sub exited: {self._stderr_path.read_text()}")
            with contextlib.suppress(OSError):
                publish.single(
                    self._probe_topic,
                    self._probe_token,
                    qos=0,
                    hostname=self.broker.host,
                    port=self.broker.port,
                )
            if self.wait_for(self._is_probe, timeout=0.3, fail=False):
                return
        pytest.fail(f"mosquitto_sub did not subscribe within {timeout} s")

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            parts = raw.decode().rstrip("\n").split(" ", 3)
            if len(parts) < 3:
                continue
            retained, qos, topic = parts[0] == "1", int(parts[1]), parts[2]
            payload = bytes.fromhex(parts[3]) if len(parts) == 4 else b""
            with self._cond:
                self._messages.append(Message(topic, payload, retained, qos))
                self._cond.notify_all()

    def messages(self, topic: str | None = None) -> list[Message]:
        """Everything received so far (without probes), optionally for one topic."""
        with self._cond:
            return [
                m
                for m in self._messages
                if m.topic != self._probe_topic and (topic is None or m.topic == topic)
            ]

    def _wanted(self, m: Message, predicate: Callable[[Message], bool]) -> bool:
        # probes are only for _sync(); user predicates never see them
        if m.topic == self._probe_topic:
            return predicate == self._is_probe  # bound methods: equal, not identical
        return predicate(m)

    def _is_probe(self, m: Message) -> bool:
        return m.topic == self._probe_topic and m.payload == self._probe_token

    def wait_for(
        self,
        predicate: Callable[[Message], bool],
        *,
        count: int = 1,
        timeout: float = 10.0,
        fail: bool = True,
    ) -> list[Message]:
        """Block until ``count`` received messages satisfy ``predicate``; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self._messages if self._wanted(m, predicate)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if fail:
                        pytest.fail(
                            f"received {len(found)}/{count} matching messages in {timeout} s; "
                            f"all topics: {[m.topic for m in self._messages][-20:]}"
                        )
                    return found
                self._cond.wait(remaining)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            # the reader sees EOF once the process is gone; join before closing the pipe
            if self._reader is not None:
                self._reader.join(timeout=5)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> MosquittoSub:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def statuses(messages: Iterable[Message]) -> list[str]:
    """The ``state`` field of status payloads, in arrival order."""
    return [m.json()["state"] for m in messages]


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_mqtt_packet(conn: socket.socket) -> bytes:
    """One MQTT control packet: fixed header byte, varint remaining length, body."""
    header = _read_exact(conn, 1)
    length, shift, raw_len = 0, 0, b""
    while True:
        b = _read_exact(conn, 1)
        raw_len += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    return header + raw_len + _read_exact(conn, length)


class TcpProxy:
    """A loopback TCP proxy in front of a broker, for network-fault tests.

    mode "forward": pipe bytes to the broker. mode "blackhole": act as a broker that accepts
    the MQTT CONNECT (answers CONNACK) and then swallows everything, never sending PUBACK.
    :meth:`drop_connections` cuts every current connection (like a network failure); new
    connections use the current mode.
    """

    def __init__(self, target_port: int, mode: str = "forward") -> None:
        self.target_port = target_port
        self.mode = mode
        self.port = free_port()
        self.swallowed = bytearray()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.extend(socks)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
                except OSError:
                    client.close()
                    continue
                self._track(client, upstream)
                threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            else:
                self._track(client)
                threading.Thread(target=self._blackhole, args=(client,), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _blackhole(self, conn: socket.socket) -> None:
        try:
            connect = _read_mqtt_packet(conn)
            # skip the fixed header (1 byte + varint length); the variable header starts with
            # the protocol name (2-byte length + "MQTT"), then the protocol level (4 or 5)
            body_start = 1
            while connect[body_start] & 0x80:
                body_start += 1
            body_start += 1
            level = connect[body_start + 6]
            conn.sendall(b"\x20\x03\x00\x00\x00" if level == 5 else b"\x20\x02\x00\x00")
            while data := conn.recv(65536):
                with self._lock:
                    self.swallowed += data
        except (OSError, ConnectionError, IndexError):
            pass

    def drop_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def swallowed_bytes(self) -> bytes:
        with self._lock:
            return bytes(self.swallowed)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections()
