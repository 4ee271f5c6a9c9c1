"""Sequence tracker: gaps, wraparound, backwards jumps, interruptions, unbounded numbers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_config.sequence import SequenceStats, SequenceStep, SequenceTracker


def observe_all(tracker: SequenceTracker, seqs: list[int]) -> list[SequenceStep]:
    return [tracker.observe(seq) for seq in seqs]


def test_sequence_gap_counts_missing_frames_across_wraparound() -> None:
    tracker = SequenceTracker()
    steps = observe_all(tracker, [65533, 65534, 1, 2, 5])  # missing 65535, 0 (wrap) and 3, 4
    assert tracker.stats.missing_frames == 4
    assert tracker.stats.gap_events == 2
    assert [s.missing for s in steps] == [0, 0, 2, 0, 2]
    assert [s.gap for s in steps] == [False, False, True, False, True]


def test_backwards_sequence_is_out_of_order_not_a_gap() -> None:
    tracker = SequenceTracker()
    steps = observe_all(tracker, [10, 11, 11, 5, 6])
    assert tracker.stats == SequenceStats(missing_frames=0, gap_events=0, out_of_order=2)
    assert [s.out_of_order for s in steps] == [False, False, True, True, False]
    assert not any(s.gap for s in steps)
    # still a discontinuity: the samples before and after are not contiguous
    assert [s.discontinuous for s in steps] == [False, False, True, True, False]


def test_wrap_without_loss_is_continuous() -> None:
    tracker = SequenceTracker()
    assert not any(s.discontinuous for s in observe_all(tracker, [65534, 65535, 0, 1]))
    assert tracker.stats == SequenceStats()
    assert tracker.expected == 2


def test_interruption_makes_the_next_frame_a_gap_and_keeps_counting_the_lost_ones() -> None:
    tracker = SequenceTracker()
    tracker.interrupt()  # before any frame: nothing to be discontinuous with
    observe_all(tracker, [0, 1])
    tracker.interrupt()
    resumed = tracker.observe(2)  # the number follows, the stream may not
    assert resumed == SequenceStep(gap=True, missing=0)
    tracker.interrupt()
    after_loss = tracker.observe(10)
    assert after_loss == SequenceStep(gap=True, missing=7)
    assert tracker.observe(11) == SequenceStep()
    assert tracker.stats == SequenceStats(missing_frames=7, gap_events=2, out_of_order=0)


def test_unbounded_numbers_never_wrap() -> None:
    tracker = SequenceTracker(modulus=None)
    steps = observe_all(tracker, [1, 2, 70_000, 69_999, 10**15])
    assert [s.missing for s in steps] == [0, 0, 69_997, 0, 10**15 - 70_000]
    assert steps[3].out_of_order
    assert tracker.stats.gap_events == 2


@given(st.lists(st.integers(0, 0xFFFF), max_size=60))
@settings(max_examples=200, deadline=None)
def test_counters_add_up_to_the_steps(seqs: list[int]) -> None:
    tracker = SequenceTracker()
    steps = observe_all(tracker, seqs)
    stats = tracker.stats
    assert stats.missing_frames == sum(s.missing for s in steps)
    assert stats.gap_events == sum(s.gap for s in steps)
    assert stats.out_of_order == sum(s.out_of_order for s in steps)
    assert all(0 <= s.missing < 0x8000 for s in steps)
    assert not any(s.gap and s.out_of_order for s in steps)  # never both without interrupt
