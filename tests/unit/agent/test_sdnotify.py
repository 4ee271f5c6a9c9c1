from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import SdNotifier, SdNotifyError, WatchdogGate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket, like systemd's. A short directory keeps the path
    under the 108-byte sun_path limit whatever pytest's tmp_path looks like."""
    directory = Path(tempfile.mkdtemp(prefix="sdn-"))
    path = str(directory / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        directory.rmdir()


def drain(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


def test_noop_outside_systemd() -> None:
    n = SdNotifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    gate = WatchdogGate(n, environ={"WATCHDOG_USEC": "1000000"})
    gate.progress()
    assert not gate.enabled and gate.maybe_ping() is False


def test_ready_status_stopping_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("scoring 2\nrobots") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=scoring 2 robots"
    assert n.status("draining outbox")
    assert sock.recv(4096) == b"STATUS=draining outbox"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.extend_timeout(2.5)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=2500000"
    with pytest.raises(SdNotifyError):
        n.notify("NOT AN ASSIGNMENT")
    n.close()


def test_abstract_socket() -> None:
    name = f"rapp-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = SdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_bad_socket_value_and_gone_socket(tmp_path: Path) -> None:
    with pytest.raises(SdNotifyError):
        SdNotifier("relative/path")
    # systemd went away: logged and reported, never raised
    assert SdNotifier(str(tmp_path / "nobody-listens")).ready() is False


def test_watchdog_pings_only_while_progressing(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    clock = FakeClock()
    n = SdNotifier(path)
    gate = WatchdogGate(n, environ={"WATCHDOG_USEC": "10000000"}, clock=clock)
    assert gate.enabled and gate.interval == 5.0
    n.ready()
    assert drain(sock) == ["READY=1"]

    # no progress yet: no ping, however long we wait
    clock.now += 100
    assert gate.maybe_ping() is False

    gate.progress()
    assert gate.maybe_ping() is True  # first ping right away
    assert drain(sock) == ["WATCHDOG=1"]

    # progressing: at most one ping per interval (5 s)
    sent = 0
    for _ in range(80):  # 10 s of an 8 Hz main loop (0.125 is exact in binary)
        clock.now += 0.125
        gate.progress()
        sent += gate.maybe_ping()
    assert sent == 2
    assert drain(sock) == ["WATCHDOG=1", "WATCHDOG=1"]

    # stuck main loop (still calling maybe_ping, but no progress): no pings
    for _ in range(300):
        clock.now += 0.1
        assert gate.maybe_ping() is False
    assert drain(sock) == []

    # legitimately idle source counts as progress
    gate.idle_ok()
    assert gate.maybe_ping() is True
    assert drain(sock) == ["WATCHDOG=1"]
    assert gate.pings == 4


def test_watchdog_pid_must_match(notify_socket: tuple[socket.socket, str]) -> None:
    _, path = notify_socket
    n = SdNotifier(path)
    assert (
        WatchdogGate(n, environ={"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}, pid=2).enabled
        is False
    )
    assert WatchdogGate(n, environ={"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "2"}, pid=2).enabled
    assert WatchdogGate(n, environ={"WATCHDOG_USEC": "0"}).enabled is False
    assert WatchdogGate(n, environ={}).enabled is False
    with pytest.raises(SdNotifyError):
        WatchdogGate(n, environ={"WATCHDOG_USEC": "soon"})
