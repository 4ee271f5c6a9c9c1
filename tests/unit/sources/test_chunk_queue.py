"""ChunkQueue, the bounded queue between every source thread and the main loop."""

from __future__ import annotations

import threading
import time

import numpy as np

from agent.sources.base import ChunkQueue, SampleChunk


def _chunk(seq: int) -> SampleChunk:
    return SampleChunk(
        samples=np.zeros((2, 1), np.float32), cycle_start=np.zeros(2, bool),
        program=np.full(2, -1), seq_first=seq, seq_last=seq, wall_time=0.0,
        received_monotonic=0.0,
    )  # fmt: skip


def test_fifo_and_wake_callback() -> None:
    q = ChunkQueue(4)
    woken = []
    q.on_put = lambda: woken.append(1)
    for seq in range(3):
        q.put(_chunk(seq))
    assert len(q) == 3 and len(woken) == 3
    assert [q.get(0).seq_first for _ in range(3)] == [0, 1, 2]
    assert q.get(0) is None
    assert q.stats.put == 3 and q.stats.dropped == 0 and q.stats.high_water == 3


def test_full_queue_drops_the_oldest_and_marks_the_gap() -> None:
    q = ChunkQueue(2)
    for seq in range(5):
        q.put(_chunk(seq))
    first, second = q.get(0), q.get(0)
    assert (first.seq_first, second.seq_first) == (3, 4)
    assert first.gap_before, "what follows a dropped chunk starts after a hole"
    assert not second.gap_before
    assert q.stats.dropped == 3 and q.capacity == 2


def test_get_waits_for_a_put_from_another_thread() -> None:
    q = ChunkQueue(2)
    threading.Timer(0.05, lambda: q.put(_chunk(7))).start()
    started = time.monotonic()
    got = q.get(timeout=5.0)
    assert got is not None and got.seq_first == 7
    assert time.monotonic() - started < 4.0


def test_put_many_appends_in_order_with_one_wake_up() -> None:
    q = ChunkQueue(3)
    woken = []
    q.on_put = lambda: woken.append(1)
    q.put_many([_chunk(seq) for seq in range(5)])
    q.put_many([])
    assert len(woken) == 1
    got = [q.get(0) for _ in range(3)]
    assert [c.seq_first for c in got] == [2, 3, 4]
    assert [c.gap_before for c in got] == [True, False, False]
    assert q.stats.put == 5 and q.stats.dropped == 2 and q.stats.high_water == 3
