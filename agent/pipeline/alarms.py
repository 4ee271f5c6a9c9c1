"""Alarm state machine: per-window scores in, raise/clear events out.

One :class:`AlarmTracker` per robot. Each scored window goes through three stages:

1. **Smoothing in the log domain**: each window's score is clipped to
   ``[threshold / cap_ratio, threshold * cap_ratio]`` and its logarithm enters an EWMA
   ``m = m + alpha * (log x - m)`` (the first valid window initialises ``m``); the smoothed
   score is ``exp(m)``. A linear EWMA of raw scores let one collision window at
   ~5000 × threshold hold the alarm for minutes while it decayed; in logs a window moves the
   average by at most ``alpha * log(cap_ratio)``, so the alarm clears within a few windows of
   the scores returning to normal. Measured on the simulator, see docs/architecture.md.
2. **Debounce, k of n**: while no alarm is active, an alarm is *raised* when at least ``k`` of
   the last ``n`` smoothed scores were ``>= threshold``.
3. **Hysteresis and hold**: while an alarm is active, it is *cleared* after ``clear_windows``
   consecutive smoothed scores ``< clear_ratio * threshold``; any window at or above that level
   restarts the count. So an alarm lasts at least ``clear_windows`` windows after its raise,
   and a fault whose scores dip between its bad phases (a friction fault is quiet while its
   axis dwells) stays one episode: the clear is held back until the scores have been normal
   for the whole hold. The bundle sizes ``clear_windows`` to span a couple of seconds of
   signal (:func:`agent.core.bundle.manifest.clear_windows_for`). A clear, once published, is
   final: a later raise is a new alarm with a new id (re-opening the old one would make
   subscribers see the alarm go off and on, the toggling this rule exists to prevent).

Every clear says why (``reason``; :data:`CLEAR_REASONS`): today only ``"scores_normal"``.

Non-finite scores (NaN, ±inf) are counted and otherwise ignored: they never raise, never clear
and never enter the EWMA (one ``inf`` would keep the smoothed score infinite forever).

The module is pure: no clock, no I/O. Event times come from the window metadata and ids from an
injectable factory, so the tracker is deterministic under test.

Usage::

    tracker = AlarmTracker("r1", AlarmSettings(alpha=0.3, k=3, n=5))
    event = tracker.update(score, threshold, WindowInfo(t0, t1, seq0, seq1, "P12", contrib), model)
    if event is not None: ...  # publish event (kind "raise" or "clear")
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from agent.core.bundle.manifest import AlarmDefaults
from agent.core.clock import PROCESS_CLOCK
from agent.core.errors import AgentInputError, AgentRuntimeError

EventKind = Literal["raise", "clear"]
Severity = Literal["warning", "critical"]
ClearReason = Literal["scores_normal"]
CLEAR_REASONS: tuple[ClearReason, ...] = ("scores_normal",)
DEFAULT_CLEAR_WINDOWS = 5

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_event_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A 26-character ULID-style id: 48-bit Unix milliseconds + 80 random bits, Crockford base32.

    Ids sort by creation time (lexicographically), which keeps logs and subscriber databases in
    order, and are unique without coordination. ``now_ms``/``entropy`` exist for tests.
    """
    # The anchored clock, not time.time(): ids must keep sorting after a wall-clock step.
    ms = PROCESS_CLOCK.now_ms() if now_ms is None else now_ms
    rnd = os.urandom(10) if entropy is None else entropy
    if not 0 <= ms < 1 << 48 or len(rnd) != 10:
        raise ValueError("new_event_id: now_ms must fit in 48 bits and entropy be 10 bytes")
    value = (ms << 80) | int.from_bytes(rnd, "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class AlarmError(AgentRuntimeError):
    """Base class of alarm state machine errors."""


class AlarmSettingsError(AlarmError, AgentInputError, ValueError):
    """Invalid :class:`AlarmSettings`; the message names the key, the value and the fix."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """Smoothing, debounce and hysteresis parameters (usually from the bundle or agent config).

    alpha: EWMA weight of the newest score, 0 < alpha <= 1 (1 = no smoothing).
    k, n: raise when >= k of the last n smoothed scores are >= threshold (1 <= k <= n).
    clear_ratio: clear level as a fraction of the threshold, 0 < clear_ratio <= 1.
    clear_windows: consecutive windows below the clear level needed to clear (>= 1); also the
        shortest an alarm lasts.
    critical_ratio: smoothed/threshold at or above which severity is "critical" (>= 1).
    top_channels: how many channel contributions an event carries (>= 0).
    cap_ratio: each window's score/threshold is clipped to [1/cap_ratio, cap_ratio] before it
        is smoothed (>= critical_ratio and > 1, so "critical" stays reachable).
    """

    alpha: float = 0.3
    k: int = 3
    n: int = 5
    clear_ratio: float = 0.8
    clear_windows: int = DEFAULT_CLEAR_WINDOWS
    critical_ratio: float = 2.0
    top_channels: int = 3
    cap_ratio: float = 30.0

    def __post_init__(self) -> None:
        self._check_debounce()
        self._check_levels()

    def _fail(self, key: str, fix: str) -> None:
        raise AlarmSettingsError(f"alarms.{key} = {getattr(self, key)!r}: {fix}")

    def _check_debounce(self) -> None:
        if not _is_real(self.alpha) or not 0 < self.alpha <= 1:
            self._fail("alpha", "must be a number in (0, 1]; fix: e.g. 0.3 (1 disables smoothing)")
        if not _is_int(self.n) or self.n < 1:
            self._fail("n", "must be an integer >= 1; fix: e.g. 5")
        if not _is_int(self.k) or not 1 <= self.k <= self.n:
            self._fail(
                "k", f"must be an integer with 1 <= k <= n (n = {self.n!r}); fix: e.g. k = 3"
            )
        if not _is_int(self.clear_windows) or self.clear_windows < 1:
            self._fail("clear_windows", "must be an integer >= 1; fix: e.g. 5")
        if not _is_int(self.top_channels) or self.top_channels < 0:
            self._fail("top_channels", "must be an integer >= 0; fix: e.g. 3")

    def _check_levels(self) -> None:
        if not _is_real(self.clear_ratio) or not 0 < self.clear_ratio <= 1:
            self._fail("clear_ratio", "must be a number in (0, 1]; fix: e.g. 0.8")
        if not _is_real(self.critical_ratio) or self.critical_ratio < 1:
            self._fail("critical_ratio", "must be a number >= 1; fix: e.g. 2.0")
        cap = self.cap_ratio
        if not _is_real(cap) or cap <= 1 or cap < self.critical_ratio:
            self._fail("cap_ratio", "must be a number > 1 and >= critical_ratio; fix: e.g. 30")

    @classmethod
    def from_bundle(
        cls, defaults: AlarmDefaults, overrides: AlarmOverrides | None = None
    ) -> AlarmSettings:
        """The bundle's calibrated alarm defaults, each overridden where ``overrides`` sets
        a value (the agent config's ``[robots.alarm]``). Everyone who builds a tracker for a
        bundle — daemon, offline scoring, benchmarks — goes through here."""
        o = overrides or AlarmOverrides()
        # Bundles from before the field carry none; their parser sizes it from the spec.
        bundle_clear_windows = defaults.clear_windows or DEFAULT_CLEAR_WINDOWS

        def pick(override: float | int | None, default: float | int) -> float | int:
            return default if override is None else override

        return cls(
            alpha=float(pick(o.ewma_alpha, defaults.ewma_alpha)),
            k=int(pick(o.debounce_k, defaults.debounce_k)),
            n=int(pick(o.debounce_n, defaults.debounce_n)),
            clear_ratio=float(pick(o.clear_ratio, defaults.clear_ratio)),
            clear_windows=int(pick(o.clear_windows, bundle_clear_windows)),
        )


@dataclass(frozen=True)
class AlarmOverrides:
    """Per-robot overrides of the bundle's alarm defaults (agent config ``[robots.alarm]``);
    None keeps the bundle's value. ``threshold`` is "fixed" (calibrated) or "dynamic"."""

    ewma_alpha: float | None = None
    debounce_k: int | None = None
    debounce_n: int | None = None
    clear_ratio: float | None = None
    clear_windows: int | None = None
    threshold: str = "fixed"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Which model produced the score: bundle id and version from the bundle manifest."""

    bundle_id: str
    version: str


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """Metadata of one scored window.

    start/end: wall-clock time of the first/last sample, Unix seconds (UTC).
    seq_first/seq_last: (unwrapped) frame sequence numbers the window spans.
    program: robot program id, if the frames carry one.
    contributions: per-channel contribution to the score (any non-negative scale; shares are
    computed from it), e.g. ``{"axis3": 0.61, "axis1": 0.2}``.
    """

    start: float
    end: float
    seq_first: int
    seq_last: int
    program: str | None = None
    contributions: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelContribution:
    """One channel's part of the score: raw value and its share of the sum over channels."""

    channel: str
    value: float
    share: float


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A raise or a clear.

    For a raise, ``span_*``/``seq_*`` cover the evidence: from the oldest above-threshold window
    in the debounce buffer to the window that raised. For a clear they cover the whole episode:
    from the raise's evidence start to the window that cleared. ``score``/``smoothed`` are of the
    deciding window; ``peak_smoothed`` and ``contributions`` are of the worst window so far (for
    a raise, the worst evidence window). ``severity`` is "critical" when the peak smoothed score
    reached ``critical_ratio * threshold``. ``raise_id`` and ``reason`` (why the alarm ended,
    one of :data:`CLEAR_REASONS`) are set on clears only.
    """

    id: str
    kind: EventKind
    severity: Severity
    robot: str
    model: ModelRef
    program: str | None
    score: float
    smoothed: float
    peak_smoothed: float
    threshold: float
    span_start: float
    span_end: float
    seq_first: int
    seq_last: int
    contributions: tuple[ChannelContribution, ...]
    raise_id: str | None = None
    reason: ClearReason | None = None

    @property
    def ratio(self) -> float:
        """Smoothed score of the deciding window over the threshold."""
        return self.smoothed / self.threshold


@dataclass(frozen=True, slots=True)
class AlarmStats:
    """Counters for status reporting."""

    windows: int
    invalid_scores: int
    raises: int
    clears: int
    active: bool


def top_contributions(
    contributions: Mapping[str, float], limit: int
) -> tuple[ChannelContribution, ...]:
    """The ``limit`` largest finite contributions, with shares of the finite, non-negative sum."""
    finite = [(str(ch), float(v)) for ch, v in contributions.items() if math.isfinite(v)]
    total = sum(v for _, v in finite if v > 0)
    finite.sort(key=lambda item: (-item[1], item[0]))
    return tuple(
        ChannelContribution(ch, v, (max(v, 0.0) / total) if total > 0 else 0.0)
        for ch, v in finite[:limit]
    )


@dataclass(slots=True)
class _Evidence:
    """One window's contribution to the debounce buffer."""

    above: bool
    window: WindowInfo
    smoothed: float


@dataclass(slots=True)
class _Episode:
    """State kept while an alarm is active."""

    raise_event: AlarmEvent
    peak_smoothed: float
    peak_window: WindowInfo
    peak_ratio: float
    below_count: int = 0


class AlarmTracker:
    """Stateful raise/clear decision for one robot. Not thread-safe: call from one thread."""

    def __init__(
        self,
        robot: str,
        settings: AlarmSettings,
        *,
        id_factory: Callable[[], str] = new_event_id,
    ) -> None:
        self.robot = robot
        self.settings = settings
        self._new_id = id_factory
        self._log_level: float | None = None  # EWMA of log(score), each clipped around thr
        self._smoothed: float | None = None
        self._buffer: deque[_Evidence] = deque(maxlen=settings.n)
        self._episode: _Episode | None = None
        self._windows = 0
        self._invalid = 0
        self._raises = 0
        self._clears = 0

    @property
    def smoothed(self) -> float | None:
        """Current EWMA, or None before the first valid score (or after :meth:`reset`)."""
        return self._smoothed

    @property
    def active(self) -> AlarmEvent | None:
        """The raise event of the active alarm, or None when no alarm is active."""
        return None if self._episode is None else self._episode.raise_event

    def stats(self) -> AlarmStats:
        return AlarmStats(
            windows=self._windows,
            invalid_scores=self._invalid,
            raises=self._raises,
            clears=self._clears,
            active=self._episode is not None,
        )

    def reset(self) -> None:
        """Forget smoothing and debounce history, e.g. after a model swap changed the score scale.

        An active alarm stays active (its clear will still reference its raise id); it clears
        once the new model's scores stay below the clear level.
        """
        self._log_level = None
        self._smoothed = None
        self._buffer.clear()
        if self._episode is not None:
            self._episode.below_count = 0

    def take_over(self, previous: AlarmTracker) -> None:
        """Carry on from ``previous`` (the tracker of the route this one replaces or restores):
        its active alarm, if any, stays active here and its clear will reference its raise id;
        if it had none, neither does this one. Smoothing and debounce history start afresh,
        as the score scale may have changed with the model."""
        if previous.robot != self.robot:
            raise AlarmError(f"tracker of robot {previous.robot!r} taken over by {self.robot!r}")
        self.reset()
        episode = previous._episode
        # A copy: the replaced route is kept for a rollback and must not see this one's updates.
        self._episode = None if episode is None else replace(episode, below_count=0)

    def drop_episode(self) -> None:
        """Forget the active alarm without a clear: another tracker has taken it over and
        ends it (see RouteTable.rejoin)."""
        self.reset()
        self._episode = None

    def resume(self, raised: AlarmEvent) -> None:
        """Hold ``raised`` as the active alarm, e.g. one the previous agent process raised
        and never cleared; it clears like any other, with ``raise_id = raised.id``."""
        if raised.kind != "raise" or raised.robot != self.robot:
            raise AlarmError(
                f"cannot resume a {raised.kind} event of robot {raised.robot!r} in the tracker "
                f"of robot {self.robot!r}: only a raise of the same robot"
            )
        self.reset()
        window = WindowInfo(
            start=raised.span_start,
            end=raised.span_end,
            seq_first=raised.seq_first,
            seq_last=raised.seq_last,
            program=raised.program,
            contributions={c.channel: c.value for c in raised.contributions},
        )
        self._episode = _Episode(
            raised, raised.peak_smoothed, window, raised.peak_smoothed / raised.threshold
        )

    def update(
        self, score: float, threshold: float, window: WindowInfo, model: ModelRef
    ) -> AlarmEvent | None:
        """Feed one window's score; return a raise or clear event, or None."""
        if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
            raise AlarmError(
                f"threshold = {threshold!r} for robot {self.robot!r}: must be finite and > 0; "
                "fix: check the bundle's calibrated threshold"
            )
        self._windows += 1
        if not math.isfinite(score):
            self._invalid += 1
            return None
        x = float(score)
        s = self._smooth(x, float(threshold))
        if self._episode is None:
            return self._maybe_raise(x, s, threshold, window, model)
        return self._maybe_clear(x, s, threshold, window, model)

    def _smooth(self, score: float, threshold: float) -> float:
        """Fold one window into the log-domain EWMA; the smoothed score on the score scale.

        The logs are of the scores themselves, only the clip is relative to the threshold, so
        a dynamic threshold that moves does not move the smoothed scores it learns from.
        """
        cap = self.settings.cap_ratio
        # The clip also takes care of scores <= 0.
        clipped = min(max(score, threshold / cap), threshold * cap)
        z = math.log(clipped)
        level = self._log_level
        level = z if level is None else level + self.settings.alpha * (z - level)
        self._log_level = level
        # One window's value (the first window, alpha = 1) is reported exactly, not through
        # exp(log(x)), which is off in the last digit.
        self._smoothed = clipped if level == z else math.exp(level)
        return self._smoothed

    def _severity(self, ratio: float) -> Severity:
        return "critical" if ratio >= self.settings.critical_ratio else "warning"

    def _maybe_raise(
        self, x: float, s: float, threshold: float, window: WindowInfo, model: ModelRef
    ) -> AlarmEvent | None:
        self._buffer.append(_Evidence(s >= threshold, window, s))
        evidence = [e for e in self._buffer if e.above]
        if len(evidence) < self.settings.k:
            return None
        worst = max(evidence, key=lambda e: e.smoothed)
        event = AlarmEvent(
            id=self._new_id(),
            kind="raise",
            severity=self._severity(worst.smoothed / threshold),
            robot=self.robot,
            model=model,
            program=window.program,
            score=x,
            smoothed=s,
            peak_smoothed=worst.smoothed,
            threshold=threshold,
            span_start=evidence[0].window.start,
            span_end=window.end,
            seq_first=evidence[0].window.seq_first,
            seq_last=window.seq_last,
            contributions=top_contributions(worst.window.contributions, self.settings.top_channels),
        )
        self._episode = _Episode(event, worst.smoothed, worst.window, worst.smoothed / threshold)
        self._buffer.clear()
        self._raises += 1
        return event

    def _maybe_clear(
        self, x: float, s: float, threshold: float, window: WindowInfo, model: ModelRef
    ) -> AlarmEvent | None:
        episode = self._episode
        assert episode is not None
        if s > episode.peak_smoothed:
            episode.peak_smoothed = s
            episode.peak_window = window
        episode.peak_ratio = max(episode.peak_ratio, s / threshold)
        if s < self.settings.clear_ratio * threshold:
            episode.below_count += 1
        else:
            episode.below_count = 0
        if episode.below_count < self.settings.clear_windows:
            return None
        raised = episode.raise_event
        event = AlarmEvent(
            id=self._new_id(),
            kind="clear",
            # The worst severity reached during the episode, so a subscriber that only reads
            # clears still learns how bad it got.
            severity=self._severity(episode.peak_ratio),
            robot=self.robot,
            model=model,
            program=window.program,
            score=x,
            smoothed=s,
            peak_smoothed=episode.peak_smoothed,
            threshold=threshold,
            span_start=raised.span_start,
            span_end=window.end,
            seq_first=raised.seq_first,
            seq_last=window.seq_last,
            contributions=top_contributions(
                episode.peak_window.contributions, self.settings.top_channels
            ),
            raise_id=raised.id,
            reason="scores_normal",
        )
        self._episode = None
        self._buffer.clear()
        self._clears += 1
        return event
