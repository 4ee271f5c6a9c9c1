from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.sinks.outbox import Outbox, OutboxClosedError, OutboxDuplicateError, OutboxError

REPO = Path(__file__).resolve().parents[3]


def test_put_next_batch_ack_roundtrip(outbox: Outbox) -> None:
    a = outbox.put("t/a", b"1", kind="alarm")
    e = outbox.put("t/e", b"2", kind="event", retain=True)
    batch = outbox.next_batch(10)
    assert [(m.id, m.topic, m.payload, m.qos, m.retain, m.kind) for m in batch] == [
        (a, "t/a", b"1", 1, False, "alarm"),
        (e, "t/e", b"2", 1, True, "event"),
    ]
    assert outbox.next_batch(10) == batch, "next_batch must not consume"
    assert outbox.ack(a) is True
    assert outbox.ack(a) is False, "second ack of the same id is a no-op"
    assert [m.id for m in outbox.next_batch(10)] == [e]
    stats = outbox.stats()
    assert (stats.alarm, stats.event, stats.telemetry, stats.depth) == (0, 1, 0, 1)
    assert (stats.enqueued_total, stats.acked_total) == (2, 1)


def test_put_listeners(outbox: Outbox) -> None:
    calls: list[int] = []

    def listener() -> None:
        calls.append(outbox.stats().depth)  # called after commit, outside the lock

    outbox.add_put_listener(listener)
    outbox.put("a", b"", kind="alarm")
    outbox.remove_put_listener(listener)
    outbox.put("a", b"", kind="alarm")
    assert calls == [1]


def test_drain_order_alarms_before_telemetry_and_exclusion(outbox: Outbox) -> None:
    t1 = outbox.put("s", b"", kind="telemetry", qos=0)
    a1 = outbox.put("a", b"", kind="alarm")
    t2 = outbox.put("s", b"", kind="telemetry", qos=0)
    a2 = outbox.put("a", b"", kind="event")
    assert [m.id for m in outbox.next_batch(10)] == [a1, a2, t1, t2]
    assert [m.id for m in outbox.next_batch(2, exclude_ids={a1})] == [a2, t1]
    assert outbox.next_batch(0) == []


def test_put_json_puts_the_id_into_the_payload(outbox: Outbox) -> None:
    msg_id = outbox.put_json("t", {"x": 1}, kind="alarm")
    assert json.loads(outbox.next_batch(1)[0].payload) == {"x": 1, "id": msg_id}
    assert outbox.put_json("t", {"id": "given-1", "y": 2}, kind="event") == "given-1"
    with pytest.raises(OutboxError, match="JSON"):
        outbox.put_json("t", {"bad": float("nan")}, kind="alarm")
    with pytest.raises(OutboxDuplicateError):
        outbox.put_json("t", {"id": "given-1"}, kind="alarm")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "alarm", "qos": 0}, "QoS >= 1"),
        ({"kind": "alarm", "qos": 3}, "qos"),
        ({"kind": "telemetry", "retain": 1}, "retain"),
    ],
)
def test_put_validation(outbox: Outbox, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(OutboxError, match=match):
        outbox.put("t", b"", **kwargs)  # type: ignore[arg-type]


def test_bad_topic_and_payload(outbox: Outbox) -> None:
    for topic in ("", "a/+", "a/#"):
        with pytest.raises(OutboxError, match="topic"):
            outbox.put(topic, b"", kind="alarm")
    with pytest.raises(OutboxError, match="bytes"):
        outbox.put("t", "text", kind="alarm")  # type: ignore[arg-type]
    with pytest.raises(OutboxError, match="max_payload_bytes"):
        outbox.put("t", b"x" * (outbox.max_payload_bytes + 1), kind="alarm")


def test_telemetry_is_bounded_drops_oldest_and_never_touches_alarms(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.db", telemetry_max_rows=5) as box:
        alarms = [box.put("a", b"%d" % i, kind="alarm") for i in range(20)]
        tele = [box.put("s", b"%d" % i, kind="telemetry", qos=0) for i in range(12)]
        stats = box.stats()
        assert (stats.alarm, stats.telemetry, stats.telemetry_dropped) == (20, 5, 7)
        batch = box.next_batch(100)
        assert [m.id for m in batch] == alarms + tele[-5:]
    with Outbox.open(tmp_path / "o.db", telemetry_max_rows=5) as box:
        assert box.stats().telemetry_dropped == 7, "counters persist across reopen"


def test_survives_reopen_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox.open(path)
    ids = [box.put("a", b"x", kind="alarm") for _ in range(3)]
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxClosedError):
        box.put("a", b"x", kind="alarm")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with Outbox.open(path) as again:
        assert [m.id for m in again.next_batch(10)] == ids


def test_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError) as err:
        Outbox.open(path)
    assert str(path) in str(err.value) and "fix" in str(err.value)
    assert isinstance(err.value.__cause__, sqlite3.DatabaseError)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox.open(path)


def test_concurrent_put_and_ack_from_threads(outbox: Outbox) -> None:
    """Pipeline thread puts while a 'network' thread acks: nothing lost, nothing doubled."""
    n = 300
    done = threading.Event()
    acked: list[str] = []
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            for i in range(n):
                outbox.put("a", b"%d" % i, kind="alarm")
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    def consumer() -> None:
        try:
            while not (done.is_set() and outbox.stats().depth == 0):
                for m in outbox.next_batch(16):
                    assert outbox.ack(m.id)
                    acked.append(m.id)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(acked) == n and len(set(acked)) == n
    assert outbox.stats().acked_total == n


def test_put_is_durable_across_sigkill(tmp_path: Path) -> None:
    """Every id the child printed (i.e. put() had returned) is in the outbox after kill -9."""
    db = tmp_path / "kill.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.procs", "outbox-writer", str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        for line in proc.stdout:
            printed.append(line.decode().strip())
            if len(printed) >= 150:
                break
        # kill while it is still writing (it never stops on its own)
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    printed += [x for x in rest.decode().split("\n") if len(x) == 32]
    assert proc.returncode == -signal.SIGKILL, err.decode()
    with Outbox.open(db) as box:
        stored = {m.id for m in box.next_batch(100_000) if m.kind == "alarm"}
        assert box.stats().telemetry <= 50
    missing = [x for x in printed if x not in stored]
    assert not missing, f"{len(missing)} alarms lost after SIGKILL"
    assert len(printed) >= 150


def test_last_retained_payload_is_kept_per_topic_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox.open(path) as box:
        assert box.last_retained("r/active") is None
        first = box.put("r/active", b"raised", kind="alarm", retain=True)
        box.put("r/active", b"cleared", kind="alarm", retain=True)
        box.put("r/alarm", b"event", kind="alarm")  # not retained: not kept
        box.ack(first)
        assert box.last_retained("r/active") == b"cleared"
        assert box.last_retained("r/alarm") is None
    with Outbox.open(path) as box:
        assert box.last_retained("r/active") == b"cleared", "delivered or not, after reopen"
