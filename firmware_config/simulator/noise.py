"""Counter-based random numbers: value = hash(seed, stream, index).

The simulator must give identical samples whether a run is produced in one call or streamed
in chunks of any size (the emulator streams endlessly). A sequential RNG cannot do that
cheaply; hashing the sample index can, fully vectorized. SplitMix64 is the finalizer of
Java's SplittableRandom; its statistical quality is ample for sensor noise.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U24_SCALE = 1.0 / 16777216.0  # 2**-24
_U24_MASK = 0xFFFFFF
_U53_SCALE = 1.0 / 9007199254740992.0  # 2**-53

# Stream ids: independent sequences derived from one seed.
STREAM_NOISE = 1
STREAM_SPEED = 2
STREAM_PAYLOAD = 3


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer of uint64 ``values`` (wrapping arithmetic)."""
    z = values.astype(np.uint64, copy=True)
    z += _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def _keyed(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    key = splitmix64(np.array([seed * 1_000_003 + stream], dtype=np.uint64))[0]
    return splitmix64(np.asarray(index, dtype=np.uint64) ^ key)


def uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64, one per element of ``index`` (non-negative integers)."""
    return (_keyed(seed, stream, index) >> np.uint64(11)).astype(np.float64) * _U53_SCALE


def normal(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Standard normal float32 per index (Box–Muller on two 24-bit parts of one hash).

    float32 halves the cost of log/cos; 24-bit uniforms bound the tail at about 5.8 σ,
    which is plenty for sensor noise.
    """
    bits = _keyed(seed, stream, index)
    high = (bits >> np.uint64(40)).astype(np.float32)
    low = (bits & np.uint64(_U24_MASK)).astype(np.float32)
    u1 = (high + np.float32(1.0)) * np.float32(_U24_SCALE)  # (0, 1]: log is finite
    u2 = low * np.float32(_U24_SCALE * 2.0 * np.pi)
    return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(u2)
