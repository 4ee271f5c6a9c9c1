from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.bundle.manifest import AlarmDefaults, clear_windows_for
from agent.core.features import FeatureSpec, Segmentation
from agent.pipeline.alarms import (
    CLEAR_REASONS,
    AlarmError,
    AlarmEvent,
    AlarmOverrides,
    AlarmSettings,
    AlarmSettingsError,
    AlarmTracker,
    ModelRef,
    WindowInfo,
    new_event_id,
    top_contributions,
)

MODEL = ModelRef("bundle-a", "3")


def window(i: int, contributions: dict[str, float] | None = None) -> WindowInfo:
    return WindowInfo(
        start=1_700_000_000.0 + i,
        end=1_700_000_000.0 + i + 0.5,
        seq_first=10 * i,
        seq_last=10 * i + 9,
        program="P1",
        contributions=contributions or {"axis1": 1.0, "axis2": 3.0},
    )


def run(
    tracker: AlarmTracker, scores: list[float], threshold: float = 1.0
) -> list[tuple[int, AlarmEvent]]:
    events = []
    for i, score in enumerate(scores):
        event = tracker.update(score, threshold, window(i), MODEL)
        if event is not None:
            events.append((i, event))
    return events


def tracker_with(**kw: float) -> AlarmTracker:
    ids = itertools.count()
    return AlarmTracker("r1", AlarmSettings(**kw), id_factory=lambda: f"id{next(ids)}")  # type: ignore[arg-type]


# -- examples -------------------------------------------------------------------------------


def test_k_of_n_raise_then_hysteresis_clear() -> None:
    tr = tracker_with(alpha=1.0, k=2, n=3, clear_ratio=0.5, clear_windows=2)
    #         0    1    2    3    4    5    6    7    8
    scores = [2.0, 0.0, 2.0, 0.8, 0.7, 0.4, 0.9, 0.4, 0.3]
    events = run(tr, scores)
    assert [(i, e.kind) for i, e in events] == [(2, "raise"), (8, "clear")]
    raised, cleared = events[0][1], events[1][1]
    # 0.8/0.7 are below the threshold but above the clear level: hysteresis keeps it active;
    # 0.9 resets the consecutive count.
    assert cleared.raise_id == raised.id
    assert raised.raise_id is None
    # evidence span: from the first above-threshold window (0) to the raising window (2)
    assert (raised.span_start, raised.span_end) == (window(0).start, window(2).end)
    assert (raised.seq_first, raised.seq_last) == (0, 29)
    # the clear covers the whole episode
    assert (cleared.seq_first, cleared.seq_last) == (0, 89)
    assert raised.model == MODEL and raised.program == "P1" and raised.robot == "r1"
    assert [c.channel for c in raised.contributions] == ["axis2", "axis1"]
    assert raised.contributions[0].share == pytest.approx(0.75)
    assert tr.active is None and tr.stats().raises == 1 and tr.stats().clears == 1


def test_ewma_smoothing_delays_and_suppresses() -> None:
    tr = tracker_with(alpha=0.5, k=1, n=1)
    # one spike after a normal window, smoothed in logs: exp(0.5 log 0.5 + 0.5 log 3)
    # = sqrt(1.5) >= 1 raises with k=1 ...
    assert run(tr, [0.5, 3.0])[0][1].smoothed == pytest.approx(math.sqrt(1.5))
    tr = tracker_with(alpha=0.2, k=1, n=1)
    # ... but a heavier smoothing absorbs it: 0.5**0.8 * 3**0.2 = 0.76 < 1
    assert run(tr, [0.5, 3.0, 0.5]) == []


def test_no_immediate_reraise_after_clear() -> None:
    tr = tracker_with(alpha=1.0, k=2, n=5, clear_ratio=1.0, clear_windows=1)
    events = run(tr, [2, 2, 2, 2, 0.5, 2, 0.5, 2])
    # after the clear at 4 the debounce buffer starts empty: 2 above-threshold windows needed
    assert [(i, e.kind) for i, e in events] == [(1, "raise"), (4, "clear"), (7, "raise")]


def test_severity_from_peak_ratio() -> None:
    tr = tracker_with(alpha=1.0, k=1, n=1, critical_ratio=2.0, clear_windows=1)
    events = run(tr, [1.5, 3.0, 0.1, 2.5])
    assert [(e.kind, e.severity) for _, e in events] == [
        ("raise", "warning"),
        ("clear", "critical"),  # the episode peaked at 3x
        ("raise", "critical"),
    ]
    assert events[1][1].peak_smoothed == 3.0


def test_nan_and_inf_are_counted_and_ignored() -> None:
    tr = tracker_with(alpha=0.5, k=2, n=2)
    assert run(tr, [math.nan, math.inf, -math.inf, 0.5]) == []
    assert tr.smoothed == 0.5
    assert tr.stats().invalid_scores == 3 and tr.stats().windows == 4


def test_reset_forgets_history_but_keeps_the_active_alarm() -> None:
    tr = tracker_with(alpha=1.0, k=1, n=1, clear_windows=2)
    [(_, raised)] = run(tr, [5.0])
    tr.reset()
    assert tr.smoothed is None and tr.active == raised
    [(_, cleared)] = run(tr, [0.1, 0.1])
    assert cleared.raise_id == raised.id


def test_threshold_must_be_positive_and_finite() -> None:
    tr = tracker_with()
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(AlarmError, match="threshold"):
            tr.update(1.0, bad, window(0), MODEL)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"k": 4, "n": 3}, "k"),
        ({"k": 0}, "k"),
        ({"n": 0, "k": 0}, "n"),
        ({"k": True}, "k"),
        ({"clear_ratio": 0.0}, "clear_ratio"),
        ({"clear_ratio": 1.2}, "clear_ratio"),
        ({"clear_windows": 0}, "clear_windows"),
        ({"critical_ratio": 0.9}, "critical_ratio"),
        ({"top_channels": -1}, "top_channels"),
    ],
)
def test_settings_validation_names_key_value_fix(kw: dict[str, object], key: str) -> None:
    with pytest.raises(AlarmSettingsError) as err:
        AlarmSettings(**kw)  # type: ignore[arg-type]
    text = str(err.value)
    assert f"alarms.{key} = " in text and "fix" in text


def test_top_contributions() -> None:
    top = top_contributions({"a": 1.0, "b": math.nan, "c": 3.0, "d": -1.0, "e": 0.0}, 2)
    assert [(c.channel, c.share) for c in top] == [("c", 0.75), ("a", 0.25)]
    assert top_contributions({"a": 0.0}, 3)[0].share == 0.0
    assert top_contributions({"a": 1.0}, 0) == ()


def test_event_ids_are_ulid_like_and_time_sortable() -> None:
    a = new_event_id(now_ms=1_700_000_000_000, entropy=b"\xff" * 10)
    b = new_event_id(now_ms=1_700_000_000_001, entropy=b"\x00" * 10)
    assert len(a) == 26 and a < b
    assert set(a) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert len({new_event_id() for _ in range(1000)}) == 1000


# -- properties -----------------------------------------------------------------------------

alarm_settings = st.builds(
    lambda alpha, n, k_frac, clear_ratio, clear_windows, critical: AlarmSettings(
        alpha=alpha,
        n=n,
        k=max(1, math.ceil(k_frac * n)),
        clear_ratio=clear_ratio,
        clear_windows=clear_windows,
        critical_ratio=critical,
    ),
    st.floats(0.01, 1.0),
    st.integers(1, 6),
    st.floats(0.0, 1.0),
    st.floats(0.05, 1.0),
    st.integers(1, 5),
    st.floats(1.0, 4.0),
)
finite_scores = st.floats(0.0, 5.0, allow_nan=False)
any_scores = st.one_of(finite_scores, st.just(math.nan), st.just(math.inf), st.just(-math.inf))


@settings(max_examples=300, deadline=None)
@given(alarm_settings, st.lists(any_scores, max_size=80), st.floats(0.1, 3.0))
def test_raise_and_clear_alternate_and_reference_their_raise(
    cfg: AlarmSettings, scores: list[float], threshold: float
) -> None:
    tr = AlarmTracker("r1", cfg)
    events = run(tr, scores, threshold)
    kinds = [e.kind for _, e in events]
    assert kinds == ["raise", "clear"] * (len(kinds) // 2) + ["raise"] * (len(kinds) % 2)
    for (_, raised), (_, cleared) in zip(events[::2], events[1::2], strict=False):
        assert cleared.raise_id == raised.id
    assert len({e.id for _, e in events}) == len(events)
    assert (tr.active is not None) == (kinds[-1:] == ["raise"])
    for i, e in events:
        assert math.isfinite(scores[i]), "a non-finite score decided an event"
        assert e.span_start <= e.span_end and e.seq_first <= e.seq_last
        if e.kind == "raise":
            assert e.smoothed >= threshold
        else:
            assert e.smoothed < cfg.clear_ratio * threshold
        assert (e.severity == "critical") == (e.peak_smoothed / threshold >= cfg.critical_ratio)
    stats = tr.stats()
    assert stats.invalid_scores == sum(not math.isfinite(s) for s in scores)
    assert stats.raises == kinds.count("raise") and stats.clears == kinds.count("clear")


@settings(max_examples=200, deadline=None)
@given(alarm_settings, st.lists(finite_scores, max_size=60), st.data())
def test_non_finite_scores_change_nothing(
    cfg: AlarmSettings, scores: list[float], data: st.DataObject
) -> None:
    """Inserting NaN/inf windows anywhere never raises, never clears and shifts nothing."""
    noisy: list[float] = []
    for s in scores:
        noisy += data.draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf]), max_size=2))
        noisy.append(s)
    clean_events = run(AlarmTracker("r1", cfg), scores)
    noisy_events = run(AlarmTracker("r1", cfg), noisy)
    assert [(e.kind, e.score, e.smoothed) for _, e in clean_events] == [
        (e.kind, e.score, e.smoothed) for _, e in noisy_events
    ]


@settings(max_examples=100, deadline=None)
@given(alarm_settings, st.integers(1, 20))
def test_sustained_exceedance_raises_after_exactly_k_windows(
    cfg: AlarmSettings, extra: int
) -> None:
    tr = AlarmTracker("r1", cfg)
    events = run(tr, [2.0] * (cfg.k + extra))
    assert [(i, e.kind) for i, e in events] == [(cfg.k - 1, "raise")]


# -- continuity across model swaps and restarts ---------------------------------------------


def test_resumed_alarm_clears_with_the_original_raise_id() -> None:
    before = tracker_with(alpha=1.0, k=1, n=1, clear_windows=2)
    raised = run(before, [3.0])[0][1]
    after = tracker_with(alpha=1.0, k=1, n=1, clear_windows=2)  # a new process
    after.resume(raised)
    assert after.active == raised
    assert run(after, [2.0, 0.1]) == [], "no second raise; one low window is not enough"
    cleared = after.update(0.1, 1.0, window(9), MODEL)
    assert cleared is not None and cleared.kind == "clear" and cleared.raise_id == raised.id
    assert cleared.severity == "critical", "the peak of the resumed episode counts (3 × thr)"
    with pytest.raises(AlarmError, match="only a raise of the same robot"):
        after.resume(cleared)


def test_take_over_carries_the_active_alarm_and_not_later_updates() -> None:
    old = tracker_with(alpha=1.0, k=1, n=1, clear_windows=1)
    raised = run(old, [2.0])[0][1]
    new = tracker_with(alpha=1.0, k=1, n=1, clear_windows=1)
    new.take_over(old)
    assert new.active == raised and new.smoothed is None
    cleared = new.update(0.1, 1.0, window(5), MODEL)
    assert cleared is not None and cleared.raise_id == raised.id
    assert old.active == raised, "the replaced tracker is untouched (kept for a rollback)"
    old.take_over(new)  # rollback after the clear: the alarm stays cleared
    assert old.active is None
    assert old.update(0.1, 1.0, window(6), MODEL) is None, "no duplicate clear"


# -- hysteresis, hold and bounded smoothing ---------------------------------------------------


def test_dips_shorter_than_the_hold_keep_one_episode() -> None:
    """A fault whose scores drop to normal for a while each cycle (an axis that dwells) is one
    alarm: every window at or above the clear level restarts the clear count."""
    tr = tracker_with(alpha=1.0, k=3, n=5, clear_ratio=0.8, clear_windows=4)
    cycle = [5.0] * 6 + [0.1] * 3  # 3 quiet windows < clear_windows
    events = run(tr, [0.2] * 5 + cycle * 10 + [0.2] * 4)
    assert [e.kind for _, e in events] == ["raise", "clear"]
    raised, cleared = events[0][0], events[1][0]
    # the clear: the last dwell (3 windows) plus one normal window make 4 in a row
    assert raised == 5 + 2 and cleared == 5 + 90


def test_a_level_between_clear_and_threshold_holds_the_alarm() -> None:
    tr = tracker_with(alpha=1.0, k=1, n=1, clear_ratio=0.5, clear_windows=2)
    events = run(tr, [2.0, 0.9, 0.6, 0.4, 0.7, 0.4, 0.4])
    # 0.9/0.6/0.7 are in the band [clear level, threshold): neither raise nor clear
    assert [(i, e.kind) for i, e in events] == [(0, "raise"), (6, "clear")]


def test_clears_carry_their_reason_and_raises_none() -> None:
    tr = tracker_with(alpha=1.0, k=1, n=1, clear_windows=1)
    (_, raised), (_, cleared) = run(tr, [3.0, 0.1])
    assert raised.reason is None
    assert cleared.reason == "scores_normal" and cleared.reason in CLEAR_REASONS


def test_collision_clears_within_two_debounce_windows_of_the_fault_ending() -> None:
    """The shipped bundle's defaults (alpha 0.3, 3 of 5, clear 0.8 × thr for 5 windows): four
    collision cycles at the score the field saw (17,880 × threshold), then normal cycles at
    0.3 × threshold. A linear EWMA needs 29 windows to decay below the clear level; clipped
    log-ratios need 4, so the clear comes 8 windows after the fault, within 2 × n = 10."""
    cfg = AlarmSettings(alpha=0.3, k=3, n=5, clear_ratio=0.8, clear_windows=5)
    events = run(AlarmTracker("r1", cfg), [0.3] * 10 + [17_880.0] * 4 + [0.3] * 20)
    assert [e.kind for _, e in events] == ["raise", "clear"]
    last_fault = 13
    assert events[1][0] - last_fault == 8 <= 2 * cfg.n
    assert events[0][1].severity == "critical"


def test_cap_ratio_bounds_each_window_and_keeps_critical_reachable() -> None:
    tr = tracker_with(alpha=1.0, k=1, n=1, cap_ratio=4.0, critical_ratio=2.0)
    [(_, raised)] = run(tr, [1e9])
    assert raised.smoothed == pytest.approx(4.0) and raised.severity == "critical"
    assert raised.score == 1e9, "the raw score is reported unclipped"
    tr = tracker_with(alpha=1.0, k=1, n=1)
    run(tr, [0.0, -5.0])
    assert tr.smoothed == pytest.approx(1 / 30), "zero and negative scores clip to 1/cap_ratio"


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"cap_ratio": 1.0}, "cap_ratio"),
        ({"cap_ratio": 3.0, "critical_ratio": 4.0}, "cap_ratio"),
        ({"cap_ratio": math.inf}, "cap_ratio"),
    ],
)
def test_cap_ratio_validation(kw: dict[str, object], key: str) -> None:
    with pytest.raises(AlarmSettingsError, match=f"alarms.{key} = "):
        AlarmSettings(**kw)  # type: ignore[arg-type]


def test_from_bundle_takes_clear_windows_from_the_bundle_unless_overridden() -> None:
    defaults = AlarmDefaults(clear_windows=63)
    assert AlarmSettings.from_bundle(defaults).clear_windows == 63
    assert AlarmSettings.from_bundle(defaults, AlarmOverrides(clear_windows=7)).clear_windows == 7
    assert AlarmSettings.from_bundle(AlarmDefaults(clear_windows=None)).clear_windows == 5


@settings(max_examples=200, deadline=None)
@given(
    alarm_settings,
    st.lists(st.floats(0.0, 1e12), min_size=1, max_size=30),
    st.floats(0.0, 0.7),
    st.floats(0.1, 3.0),
)
def test_clear_comes_within_a_bound_after_the_fault_whatever_its_size(
    cfg: AlarmSettings, fault: list[float], normal: float, threshold: float
) -> None:
    """Once scores are back at ``normal`` (< clear level), an active alarm clears within
    t* + clear_windows − 1 windows, where t* is how long the clipped log-EWMA takes to fall
    from log(cap_ratio) below log(clear_ratio): no fault score, however large, extends it."""
    normal_ratio = min(normal, 0.999 * cfg.clear_ratio)
    floor = math.log(max(normal_ratio, 1.0 / cfg.cap_ratio))
    gap = math.log(cfg.clear_ratio) - floor
    if gap <= 1e-6:
        return  # clipped normal windows would sit at the clear level
    span, t_star = math.log(cfg.cap_ratio) - floor, 0
    while span * (1.0 - cfg.alpha) ** t_star >= gap * (1 - 1e-9):
        t_star += 1
    bound = max(1, t_star) + cfg.clear_windows - 1
    tr = AlarmTracker("r1", cfg)
    for i, score in enumerate(fault):
        tr.update(score * threshold, threshold, window(i), MODEL)
    was_active = tr.active is not None
    events = [
        tr.update(normal_ratio * threshold, threshold, window(len(fault) + j), MODEL)
        for j in range(1, bound + 1)
    ]
    kinds = [e.kind for e in events if e is not None]
    assert kinds in ([], ["clear"], ["raise", "clear"]), kinds
    if was_active or kinds:
        assert kinds[-1:] == ["clear"] and tr.active is None, (bound, kinds)


@settings(max_examples=200, deadline=None)
@given(alarm_settings, st.lists(finite_scores, max_size=80))
def test_an_alarm_lasts_at_least_clear_windows(cfg: AlarmSettings, scores: list[float]) -> None:
    events = run(AlarmTracker("r1", cfg), scores)
    for (i, raised), (j, cleared) in zip(events[::2], events[1::2], strict=False):
        assert raised.kind == "raise" and cleared.kind == "clear"
        assert j - i >= cfg.clear_windows


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(1.5, 1e4), min_size=15, max_size=40),  # the axis moves
            st.lists(st.floats(0.0, 0.5), min_size=1, max_size=16),  # … and dwells
        ),
        min_size=2,
        max_size=12,
    )
)
def test_a_noisy_fault_never_toggles(cycles: list[tuple[list[float], list[float]]]) -> None:
    """The pattern measured on the simulator's friction fault with a 64/32 window model (bad
    phases of ~20 windows, quiet dwells of up to 16): with the bundle's defaults for that
    segmentation (clear_windows 79 ≈ 2.5 s) it is one alarm that lasts the whole fault."""
    window_spec = FeatureSpec(
        channels=("J1",), units=("A",), sample_rate_hz=1000.0, segmentation=Segmentation()
    )
    assert clear_windows_for(window_spec) == 79
    cfg = AlarmSettings(alpha=0.3, k=3, n=5, clear_ratio=0.8, clear_windows=79)
    scores = [s for loud, quiet in cycles for s in (*loud, *quiet)]
    events = run(AlarmTracker("r1", cfg), scores)
    assert [e.kind for _, e in events] == ["raise"]


def reference_events(cfg: AlarmSettings, scores: list[float]) -> list[tuple[int, str]]:
    """The documented rules, written out once more in the plainest way (threshold 1)."""
    level, buffer, active, below, out = None, [], False, 0, []
    for i, x in enumerate(scores):
        if not math.isfinite(x):
            continue
        clipped = min(max(x, 1 / cfg.cap_ratio), cfg.cap_ratio)
        z = math.log(clipped)
        level = z if level is None else level + cfg.alpha * (z - level)
        smoothed = clipped if level == z else math.exp(level)
        if not active:
            buffer = [*buffer, smoothed >= 1.0][-cfg.n :]
            if sum(buffer) >= cfg.k:
                active, buffer, below = True, [], 0
                out.append((i, "raise"))
        else:
            below = below + 1 if smoothed < cfg.clear_ratio else 0
            if below >= cfg.clear_windows:
                active = False
                out.append((i, "clear"))
    return out


@settings(max_examples=300, deadline=None)
@given(alarm_settings, st.lists(any_scores, max_size=80))
def test_tracker_follows_the_documented_rules(cfg: AlarmSettings, scores: list[float]) -> None:
    events = run(AlarmTracker("r1", cfg), scores)
    assert [(i, e.kind) for i, e in events] == reference_events(cfg, scores)
