"""Sequence numbers → gaps: the one place that decides whether data was lost before a frame.

Every stream numbers its messages (the wire's u16 frame counter, an MQTT JSON payload's
``seq``). The tracker compares each number with the one it expects next and says, per
frame, whether data was lost before it and how many frames are missing. The counters mean
the same for every stream:

- ``missing_frames``: frames known to be lost — the sum of all forward jumps (u16
  wraparound handled), including frames that fell while the device was disconnected;
- ``gap_events``: how many frames follow lost data — a forward jump, or the first frame after
  :meth:`SequenceTracker.interrupt` (a reconnect); every such frame starts a new run of
  windows downstream;
- ``out_of_order``: frames whose number went backwards or repeated (duplicate, reordering,
  device reboot). They are no gap — nothing is known to be missing — but they are a
  discontinuity, so the frame is still marked as one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_config.protocol import SEQ_MODULUS


@dataclass(frozen=True)
class SequenceStep:
    """What one frame's sequence number says about the data before it."""

    gap: bool = False  # data was lost before this frame (forward jump or interruption)
    missing: int = 0  # frames known to be lost right before this one
    out_of_order: bool = False  # the number went backwards or repeated

    @property
    def discontinuous(self) -> bool:
        """Samples before and after this frame must not be treated as contiguous."""
        return self.gap or self.out_of_order


@dataclass(frozen=True, eq=False)
class SequenceSteps:
    """:class:`SequenceStep` of a run of frames, one array element per frame."""

    gap: np.ndarray  # (n,) bool
    missing: np.ndarray  # (n,) int64
    out_of_order: np.ndarray  # (n,) bool

    @property
    def discontinuous(self) -> np.ndarray:
        return self.gap | self.out_of_order


@dataclass(frozen=True)
class SequenceStats:
    """Counters of one tracker (a snapshot); meanings in the module docstring."""

    missing_frames: int = 0
    gap_events: int = 0
    out_of_order: int = 0


class SequenceTracker:
    """Feed every delivered frame's sequence number, in order; get a :class:`SequenceStep`.

    ``modulus`` is the counter's range (2**16 on the wire); ``None`` for numbers that never
    wrap. With a modulus, a jump of half the range or more counts as a step backwards.
    """

    def __init__(self, modulus: int | None = SEQ_MODULUS) -> None:
        self._modulus = modulus
        self._expected: int | None = None
        self._interrupted = False
        self._missing = 0
        self._gap_events = 0
        self._out_of_order = 0

    @property
    def expected(self) -> int | None:
        """The number the next frame should carry; None before the first frame."""
        return self._expected

    @property
    def stats(self) -> SequenceStats:
        return SequenceStats(self._missing, self._gap_events, self._out_of_order)

    def interrupt(self) -> None:
        """The stream was interrupted (e.g. the port was reopened).

        The expected number is kept, so frames lost meanwhile are counted; the next frame
        is a gap even if its number follows, as nothing guarantees the stream is the same.
        """
        self._interrupted = self._expected is not None

    def observe(self, seq: int) -> SequenceStep:
        expected = self._expected
        interrupted, self._interrupted = self._interrupted, False
        self._expected = seq + 1 if self._modulus is None else (seq + 1) % self._modulus
        if expected is None:
            return SequenceStep()
        jump = self._jump(expected, seq)
        backwards = jump < 0
        missing = max(jump, 0)
        gap = interrupted or missing > 0
        self._out_of_order += backwards
        self._gap_events += gap
        self._missing += missing
        return SequenceStep(gap=gap, missing=missing, out_of_order=backwards)

    def observe_many(self, seqs: np.ndarray) -> SequenceSteps:
        """:meth:`observe` for each number of ``seqs`` in order, without a step per frame.

        The loop only compares numbers; arrays are built only when something is irregular.
        """
        numbers = np.asarray(seqs).tolist()
        if not numbers:
            return _steady(0)  # nothing observed: an interruption still waits for a frame
        known = self._expected is not None
        interrupted, self._interrupted = self._interrupted, False
        expected = self._expected
        modulus = self._modulus
        irregular: list[tuple[int, int]] = []  # (frame, jump) where the number is unexpected
        for i, seq in enumerate(numbers):
            if seq != expected and expected is not None:
                irregular.append((i, self._jump(expected, seq)))
            expected = seq + 1 if modulus is None else (seq + 1) % modulus
        self._expected = expected
        steps = _steady(len(numbers))
        if not irregular and not (known and interrupted):
            return steps  # the usual case: every frame follows the one before
        gap, missing, backwards = steps.gap.copy(), steps.missing, steps.out_of_order.copy()
        for i, jump in irregular:
            missing[i] = max(jump, 0)
            gap[i] = jump > 0
            backwards[i] = jump < 0
        gap[0] |= known and interrupted
        self._out_of_order += int(np.count_nonzero(backwards))
        self._gap_events += int(np.count_nonzero(gap))
        self._missing += int(missing.sum())
        return SequenceSteps(gap, missing, backwards)

    def _jump(self, expected: int, seq: int) -> int:
        """Frames skipped between the expected number and ``seq`` (negative: backwards)."""
        jump = seq - expected
        if self._modulus is None:
            return jump
        jump %= self._modulus
        return jump - self._modulus if jump >= self._modulus // 2 else jump


def _steady(n: int) -> SequenceSteps:
    """Steps of ``n`` frames that each follow the one before."""
    no = np.zeros(n, dtype=bool)
    return SequenceSteps(no, np.zeros(n, dtype=np.int64), no)
