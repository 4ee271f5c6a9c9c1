"""Backlash in a joint's reducer: what lost motion between motor and link does to the current.

Physics. A worn reducer has a gap between the teeth of its motor side and its link side. The
teeth touch on the flank the *transmitted torque* pushes on (the joint torque of the dynamics:
gravity + inertia × acceleration + friction), so the gap is crossed where that torque changes
sign — not where the velocity does:

- on a gravity-loaded axis (in the simulated programs J2, J3 and the wrist pitch J5, always
  pushed against one flank by the arm's weight) the torque never changes sign, and backlash
  is invisible in the current: it costs only tool position accuracy;
- on the base axis J1 (no gravity) the torque changes sign between acceleration and
  deceleration, mid-move, and again when a move starts after a braked stop; on the light
  wrist axes J4/J6 friction dominates and the torque follows the sign of the velocity.

At each torque reversal (both effects add to the motor current of the axis):

1. **Dead zone** — the motor crosses the gap carrying only its own rotor, so the link's torque
   is missing from the current (modelled as the current falling to zero). The link, left
   without the torque it needs, drifts relative to the motor by the double integral of that
   torque over its inertia; the gap is closed when the drift reaches it — quickly where the
   torque ramps up fast (move starts: 25–40 ms), slowly where it creeps through zero (mid-move
   on J1: 35–80 ms). Where the torque only grazes the other flank and falls back (a move
   ending with friction and braking nearly balanced), the gap stays open through the dwell
   and closes when the next move loads it; a gap still open after
   :data:`BACKLASH_MAX_DEAD_S` (an axis at rest) closes without an impact.
2. **Impact** — the far flank is hit and the blow excites the drive train's first elastic mode
   (reducer stiffness against link inertia: 10–30 Hz for a 10-kg arm, damping ratio ~0.1), a
   decaying oscillation of the transmitted torque that the current loop follows:
   ``A · flank · sin(ω_d u) · exp(−ζ ω_n u)``, ``u`` the time since the impact, ``flank`` (±1)
   the sign of the new torque, rings of successive impacts adding up.

Severity. ``A = 0.3 × severity × rated current`` of the axis; the gap (as "relative travel ×
link inertia") is ``8e-5 s² × severity^1.5 × rated torque``, so at severity 1 on J1 (link
inertia ≈ 9 kg m²) a lost motion of ≈ 2.4 arcmin: a reducer near the end of its service life,
not a broken one. The two go together: crossing a gap ``g`` under a torque that grows
linearly takes ``∝ g^(1/3)`` and ends at a relative speed ``∝ g^(2/3)``, so with the gap
``∝ severity^1.5`` the blow grows linearly with severity. The amplitude is the momentum
estimate on J1: the torque impulse the link misses in the dead zone, given back through the
mode, peaks at ω_n × impulse = 0.28–0.40 × rated (median per program, 1–2 reversals per
second). On the wrists the same estimate exceeds the rated current, because friction steps
dominate there and a link held by static friction misses no momentum; the J1 fraction is
used for every axis.

Why not the former model (a 40 Hz kick 30 ms after each move that reverses the velocity,
12 ms decay, i.e. damping ratio 0.33): it fired on gravity-loaded axes where the teeth never
separate, missed J1's mid-move reversals, had no dead zone, and was over after ~25 ms — less
than the 69 ms between grid points of a 4.4 s cycle resampled to 64 samples, so it changed
the features by 0.13× their normal cycle-to-cycle spread (warm-up drift, payload ±5 %, speed
±5 %). The dead zone and a ring with a realistic damping span several grid points: 1.9–2.9×
that spread on J1 at severity 1.

Exact in any chunking: a reversal at sample ``n`` is a sample whose torque leaves the preload
band (:data:`BACKLASH_PRELOAD`) with the opposite sign of the last such sample, at most
:data:`BACKLASH_MEMORY_S` before (a flank unloaded longer is forgotten: no reversal). Reversals
are found per fixed block of samples from the torque over the block plus that memory, so they
are a pure function of the sample index; :class:`GapCrossings` caches the blocks so that
streaming in small chunks does not recompute the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from firmware_config.simulator.config import FaultSpec
from firmware_config.simulator.faults import active

BACKLASH_GAIN = 0.3  # impact amplitude at severity 1, fraction of the axis' rated current
# Gap as "relative travel × link inertia" [N m s²] at severity 1, per N m of rated torque:
# on J1 (≈ 9 kg m²) ≈ 2.4 arcmin of lost motion, crossed in 35–55 ms at mid-move reversals.
BACKLASH_GAP_S2 = 8e-5
BACKLASH_MAX_DEAD_S = 2.0  # a gap still open after this long (axis at rest) makes no impact
BACKLASH_PRELOAD = 0.02  # |torque| above this share of rated torque presses one flank
BACKLASH_RESONANCE_HZ = (12.0, 14.0, 16.0, 25.0, 25.0, 30.0)  # first drive-train mode, J1..J6
BACKLASH_DAMPING = 0.1  # damping ratio of that mode
BACKLASH_RING_DECAYS = 5.0  # the ring is simulated for this many decay times (e^-5 ≈ 0.7 %)
BACKLASH_MEMORY_S = 3.0  # a flank unloaded longer than this is forgotten
BLOCK_SAMPLES = 8192  # reversals are found (and cached) per block of this many samples
CACHE_BLOCKS = 32

TorqueFunction = Callable[[np.ndarray, tuple[FaultSpec, ...]], np.ndarray]


def backlash_faults(faults: Sequence[FaultSpec]) -> tuple[FaultSpec, ...]:
    return tuple(f for f in faults if f.kind == "backlash")


def _omega(axis: int) -> float:
    return 2.0 * math.pi * BACKLASH_RESONANCE_HZ[axis - 1]


def ring_samples(axis: int, sample_rate_hz: int) -> int:
    decay_s = 1.0 / (BACKLASH_DAMPING * _omega(axis))
    return math.ceil(BACKLASH_RING_DECAYS * decay_s * sample_rate_hz)


@dataclass(frozen=True)
class Reversals:
    """Torque reversals of one axis: sample index, new flank (±1), samples until the gap closes."""

    index: np.ndarray  # int64, ascending
    flank: np.ndarray  # float64, ±1
    dead: np.ndarray  # int64, ≥ 1: samples until the gap closes (or the longest dead zone)
    closed: np.ndarray  # bool: the gap closed (an impact) within the longest dead zone

    def select(self, keep: np.ndarray) -> Reversals:
        return Reversals(
            index=self.index[keep],
            flank=self.flank[keep],
            dead=self.dead[keep],
            closed=self.closed[keep],
        )


def flank_changes(torque: np.ndarray, preload: float, memory: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``torque`` (one axis) where the loaded flank changes, and the new flank.

    A change needs its predecessor inside the array, so the first ``memory`` samples can miss
    one; callers pass that much history.
    """
    loaded = np.flatnonzero(np.abs(torque) > preload)
    flank = np.sign(torque[loaded])
    change = (flank[1:] != flank[:-1]) & (np.diff(loaded) <= memory)
    return loaded[1:][change], flank[1:][change]


def gap_closing(torque: np.ndarray, flank: float, gap: float, sample_rate_hz: int) -> int:
    """Samples until the link, left without the torque it needs, has drifted across ``gap``
    (0: not within ``torque``, which starts at the reversal and spans the longest dead zone).

    Relative travel × link inertia is the double integral of the missing torque.
    """
    travel = np.cumsum(np.cumsum(flank * torque)) / float(sample_rate_hz) ** 2
    closed = np.flatnonzero(travel >= gap)
    return int(closed[0]) + 1 if closed.size else 0


class GapCrossings:
    """Torque reversals of the backlash faults' axes, found per fixed block and cached.

    ``torques(t, faults)`` gives the joint torques (n, 6) at sample times ``t``; the reversals
    of a block depend only on the block number, so any chunking sees the same ones.
    """

    def __init__(self, torques: TorqueFunction, sample_rate_hz: int, rated_torque: np.ndarray):
        self._torques = torques
        self._rate = sample_rate_hz
        self._rated_torque = np.asarray(rated_torque, dtype=np.float64)
        self._memory = round(BACKLASH_MEMORY_S * sample_rate_hz)
        self.max_dead = round(BACKLASH_MAX_DEAD_S * sample_rate_hz)
        self._cache: dict[tuple[tuple[FaultSpec, ...], int], dict[FaultSpec, Reversals]] = {}

    def between(
        self, lo: int, hi: int, faults: tuple[FaultSpec, ...]
    ) -> dict[FaultSpec, Reversals]:
        """Reversals with index in [lo, hi) for each backlash fault of ``faults``."""
        lo = max(lo, 0)
        numbers = range(lo // BLOCK_SAMPLES, (hi - 1) // BLOCK_SAMPLES + 1)
        blocks = [self._block(number, faults) for number in numbers]
        out: dict[FaultSpec, Reversals] = {}
        for fault in blocks[0]:
            joined = Reversals(
                index=np.concatenate([b[fault].index for b in blocks]),
                flank=np.concatenate([b[fault].flank for b in blocks]),
                dead=np.concatenate([b[fault].dead for b in blocks]),
                closed=np.concatenate([b[fault].closed for b in blocks]),
            )
            out[fault] = joined.select((joined.index >= lo) & (joined.index < hi))
        return out

    def _block(self, block: int, faults: tuple[FaultSpec, ...]) -> dict[FaultSpec, Reversals]:
        key = (faults, block)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        start = block * BLOCK_SAMPLES
        first = max(0, start - self._memory)
        stop = start + BLOCK_SAMPLES
        t = np.arange(first, stop + self.max_dead, dtype=np.int64) / self._rate
        torque = self._torques(t, faults)
        found: dict[FaultSpec, Reversals] = {}
        for fault in backlash_faults(faults):
            axis = fault.axis - 1
            preload = BACKLASH_PRELOAD * self._rated_torque[axis]
            at, flank = flank_changes(torque[: stop - first, axis], preload, self._memory)
            keep = at >= start - first
            at, flank = at[keep], flank[keep]
            gap = BACKLASH_GAP_S2 * fault.severity**1.5 * self._rated_torque[axis]
            closing = np.asarray(
                [
                    gap_closing(torque[n : n + self.max_dead, axis], f, gap, self._rate)
                    for n, f in zip(at.tolist(), flank.tolist(), strict=True)
                ],
                dtype=np.int64,
            )
            found[fault] = Reversals(
                index=at.astype(np.int64) + first,
                flank=flank,
                dead=np.where(closing > 0, closing, self.max_dead),
                closed=closing > 0,
            )
        if len(self._cache) >= CACHE_BLOCKS:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = found
        return found


def backlash_currents(
    index: np.ndarray,
    torques: np.ndarray,
    faults: tuple[FaultSpec, ...],
    crossings: GapCrossings,
    torque_constant: np.ndarray,
    rated: np.ndarray,
    sample_rate_hz: int,
) -> np.ndarray:
    """Motor current (n, 6) [A] added by the backlash faults at consecutive sample ``index``."""
    extra = np.zeros_like(torques)
    lo, hi = int(index[0]), int(index[-1]) + 1
    for fault in backlash_faults(faults):
        axis = fault.axis - 1
        ring = ring_samples(fault.axis, sample_rate_hz)
        found = crossings.between(lo - crossings.max_dead - ring, hi, faults)[fault]
        rev = found.select(active(found.index / sample_rate_hz, fault))
        if rev.index.size == 0:
            continue
        # dead zone, cut short by the next reversal: the link's torque is missing
        latest = np.searchsorted(rev.index, index, side="right") - 1
        since = index - rev.index[np.maximum(latest, 0)]
        unloaded = (latest >= 0) & (since < rev.dead[np.maximum(latest, 0)])
        extra[:, axis] -= np.where(unloaded, torques[:, axis] / torque_constant[axis], 0.0)
        # each closed gap rings on; rings add up (one linear mode)
        amplitude = BACKLASH_GAIN * fault.severity * rated[axis]
        omega = _omega(fault.axis)
        damped = omega * math.sqrt(1.0 - BACKLASH_DAMPING**2)
        impact = rev.index + rev.dead
        closed = rev.closed.copy()
        closed[:-1] &= impact[:-1] <= rev.index[1:]
        for hit, sign in zip(impact[closed].tolist(), rev.flank[closed].tolist(), strict=True):
            a, b = max(hit, lo) - lo, min(hit + ring, hi) - lo
            if a >= b:
                continue
            u = (index[a:b] - hit) / sample_rate_hz
            wave = np.sin(damped * u) * np.exp(-BACKLASH_DAMPING * omega * u)
            extra[a:b, axis] += amplitude * sign * wave
    return extra
