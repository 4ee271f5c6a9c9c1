"""The outbox on a real full disk (tmpfs): no exception, no lost alarm, no re-publish loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sinks.outbox import Outbox, json_message
from tests.support.full_disk import FullDisk, mounted_tmpfs


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[FullDisk]:
    with mounted_tmpfs(tmp_path / "state", size="2m") as d:
        yield d


def _alarm(i: int) -> dict:
    return {"id": f"alarm-{i}", "n": i, "pad": "x" * 200}


def _wait_retry() -> None:
    time.sleep(1.1)  # the outbox retries the disk at most once a second


def test_alarms_are_held_while_full_and_written_once_space_returns(disk: FullDisk) -> None:
    box = Outbox.open(disk.root / "outbox.sqlite3", telemetry_max_rows=100)
    box.put_json("rapp/v1/d/r1/alarm", _alarm(0), kind="alarm")
    disk.fill()
    for i in range(1, 40):
        box.put_json("rapp/v1/d/r1/alarm", _alarm(i), kind="alarm")  # never raises
        box.put_json("rapp/v1/d/r1/score", {"n": i, "pad": "y" * 500}, kind="telemetry", qos=0)
    stats = box.stats()
    assert stats.storage is not None and "full" in stats.storage.error
    assert stats.storage.path.endswith("outbox.sqlite3")
    assert stats.alarm == 40 and stats.held >= 1
    order = [json.loads(m.payload)["n"] for m in box.next_batch(100) if m.kind == "alarm"]
    assert order == list(range(40)), "stored first, then held, in order"
    disk.free()
    _wait_retry()
    box.put_json("rapp/v1/d/r1/alarm", _alarm(40), kind="alarm")
    stats = box.stats()
    assert stats.storage is None and stats.held == 0 and stats.alarm == 41
    box.close()
    reopened = Outbox.open(disk.root / "outbox.sqlite3", telemetry_max_rows=100)
    stored = [json.loads(m.payload)["n"] for m in reopened.next_batch(100) if m.kind == "alarm"]
    assert stored == list(range(41)), "everything reached the disk exactly once"
    reopened.close()


def test_delivered_rows_are_not_offered_again_when_they_cannot_be_deleted(
    disk: FullDisk,
) -> None:
    box = Outbox.open(disk.root / "outbox.sqlite3", telemetry_max_rows=100)
    box.put_many([json_message("t/ota/status", {"id": f"e{i}"}, kind="event") for i in range(2)])
    disk.fill()
    offered = 0
    for _ in range(50):  # a drain loop: publish, ack, next batch
        batch = box.next_batch(16)
        offered += len(batch)
        for message in batch:
            assert box.ack(message.id)
    assert offered == 2, "each message is published once, not in a loop"
    disk.free()
    _wait_retry()
    assert box.next_batch(16) == []
    assert box.stats().depth == 0
    box.close()


def test_held_alarms_are_delivered_from_memory(disk: FullDisk) -> None:
    box = Outbox.open(disk.root / "outbox.sqlite3", telemetry_max_rows=100)
    disk.fill()
    box.put_json("rapp/v1/d/r1/alarm", _alarm(7), kind="alarm")
    (message,) = box.next_batch(16)
    assert json.loads(message.payload)["n"] == 7
    assert box.ack(message.id)
    assert box.next_batch(16) == [] and box.stats().alarm == 0
    box.close()


def test_an_outbox_that_cannot_be_opened_serves_from_memory(disk: FullDisk) -> None:
    disk.fill()
    box = Outbox.open(disk.root / "sub" / "outbox.sqlite3", telemetry_max_rows=100)
    box.put_json("rapp/v1/d/r1/alarm", _alarm(1), kind="alarm")
    stats = box.stats()
    assert stats.storage is not None and "memory" in stats.storage.error
    assert [json.loads(m.payload)["n"] for m in box.next_batch(16)] == [1]
    box.close()
