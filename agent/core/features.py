"""Features and windows, the one implementation both the exporter and the agent run.

A recording or a live stream is a (T × C) array of samples in physical units. It is
normalized per channel (mean/std fitted on training data), cut into segments — fixed windows
(length, hop) or robot cycles resampled to a fixed length — and each segment becomes one
feature vector: the raw normalized samples (channel-major) and/or per-channel statistics.

The live agent feeds frames through :class:`StreamSegmenter`; the offline scorer and the
exporter feed recordings through the same class (see :func:`segment_recording`), so there is
no second windowing implementation to drift.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.core.errors import AgentInputError

FEATURE_KINDS = ("raw", "stats")
STATS_PER_CHANNEL = ("mean", "std", "min", "max")
SEGMENTATION_KINDS = ("window", "cycle")


class FeatureError(AgentInputError, ValueError):
    """A feature specification or input that cannot be turned into windows."""


@dataclass(frozen=True)
class Segmentation:
    """How the stream is cut: ``window`` (length, hop samples) or ``cycle`` (resampled).

    For cycles, ``length`` is the resampled length and cycles shorter than ``min_samples`` or
    longer than ``max_samples`` raw samples are skipped (a stopped robot, a missed marker).
    """

    kind: str = "window"
    length: int = 64
    hop: int = 32
    min_samples: int = 0
    max_samples: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SEGMENTATION_KINDS:
            raise FeatureError(
                f"segmentation.kind = {self.kind!r}: must be one of {', '.join(SEGMENTATION_KINDS)}"
            )
        if self.length < 1:
            raise FeatureError(f"segmentation.length = {self.length}: must be ≥ 1 sample")
        if self.kind == "window" and not self.hop >= 1:
            raise FeatureError(f"segmentation.hop = {self.hop}: must be ≥ 1 sample")
        if self.kind == "cycle" and self.max_samples and self.max_samples < self.min_samples:
            raise FeatureError(
                f"segmentation.max_samples = {self.max_samples} is below min_samples = "
                f"{self.min_samples}; raise max_samples or set it to 0 (no limit)"
            )

    def to_json(self) -> dict[str, Any]:
        if self.kind == "window":
            return {"kind": "window", "length": self.length, "hop": self.hop}
        return {
            "kind": "cycle",
            "length": self.length,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
        }


@dataclass(frozen=True)
class FeatureSpec:
    """Which channels, how they are segmented and which features are computed."""

    channels: tuple[str, ...]
    units: tuple[str, ...]
    sample_rate_hz: float
    segmentation: Segmentation = field(default_factory=Segmentation)
    features: tuple[str, ...] = ("raw",)

    def __post_init__(self) -> None:
        if not self.channels:
            raise FeatureError("channels is empty: name at least one input column, e.g. J1")
        if len(set(self.channels)) != len(self.channels):
            raise FeatureError(f"channels {list(self.channels)} contain duplicates")
        if len(self.units) != len(self.channels):
            raise FeatureError(
                f"{len(self.units)} units for {len(self.channels)} channels: give one per channel"
            )
        if not self.sample_rate_hz > 0:
            raise FeatureError(f"sample_rate_hz = {self.sample_rate_hz}: must be > 0")
        unknown = [kind for kind in self.features if kind not in FEATURE_KINDS]
        if unknown or not self.features:
            raise FeatureError(
                f"features = {list(self.features)}: choose one or more of {list(FEATURE_KINDS)}"
            )

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def feature_dim(self) -> int:
        return int(self.feature_channel().shape[0])

    def feature_channel(self) -> np.ndarray:
        """Input channel index of every feature, in feature order (for attribution)."""
        parts = []
        for kind in self.features:
            repeat = self.segmentation.length if kind == "raw" else len(STATS_PER_CHANNEL)
            parts.append(np.repeat(np.arange(self.n_channels), repeat))
        return np.concatenate(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": [
                {"name": name, "unit": unit}
                for name, unit in zip(self.channels, self.units, strict=True)
            ],
            "sample_rate_hz": self.sample_rate_hz,
            "segmentation": self.segmentation.to_json(),
            "features": list(self.features),
            "feature_dim": self.feature_dim,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        try:
            channels = data["channels"]
            spec = cls(
                channels=tuple(str(c["name"]) for c in channels),
                units=tuple(str(c.get("unit", "")) for c in channels),
                sample_rate_hz=float(data["sample_rate_hz"]),
                segmentation=Segmentation(**data["segmentation"]),
                features=tuple(data["features"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, FeatureError):
                raise
            raise FeatureError(f"input spec is malformed: {err!r}") from err
        declared = data.get("feature_dim")
        if declared is not None and int(declared) != spec.feature_dim:
            raise FeatureError(
                f"input.feature_dim = {declared} but the spec yields {spec.feature_dim} features"
            )
        return spec


@dataclass(frozen=True)
class Normalization:
    """Per-channel standardization fitted on training data."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, samples: np.ndarray) -> Normalization:
        data = np.asarray(samples, dtype=np.float64)
        mean = np.nanmean(data, axis=0)
        std = np.nanstd(data, axis=0)
        # A constant channel (a dead sensor in training) must not divide by zero; leaving it
        # at unit scale makes any later movement on it visible instead of infinite.
        std = np.where(std > 1e-9 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    def apply(self, samples: np.ndarray) -> np.ndarray:
        return ((np.asarray(samples, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


def segment_features(segments: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """Feature vectors (N × F, float32) from normalized segments (N × L × C)."""
    segs = np.asarray(segments, dtype=np.float32)
    n = segs.shape[0]
    parts = []
    for kind in kinds:
        if kind == "raw":
            # channel-major: all samples of channel 0, then channel 1, …
            # An explicit width: reshape(0, -1) is ambiguous when there are no segments.
            parts.append(segs.transpose(0, 2, 1).reshape(n, segs.shape[1] * segs.shape[2]))
        elif kind == "stats":
            stats = np.stack(
                [segs.mean(axis=1), segs.std(axis=1), segs.min(axis=1), segs.max(axis=1)], axis=2
            )
            parts.append(stats.reshape(n, -1))
        else:
            raise FeatureError(f"unknown feature kind {kind!r}; use one of {list(FEATURE_KINDS)}")
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def resample(segment: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample a (n × C) segment to (length × C) over the same span."""
    seg = np.asarray(segment, dtype=np.float32)
    if seg.shape[0] == length:
        return seg
    src = np.linspace(0.0, 1.0, seg.shape[0])
    dst = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(dst, src, seg[:, c]) for c in range(seg.shape[1])], axis=1).astype(
        np.float32
    )


@dataclass(frozen=True)
class Segment:
    """One segment ready to score: normalized samples and where it came from."""

    samples: np.ndarray  # (length × C) normalized
    start: int  # index of the first raw sample in the stream
    stop: int  # one past the last raw sample
    program: int = -1


@dataclass
class SegmenterStats:
    segments: int = 0
    gaps: int = 0  # gap markers seen (lost data before a chunk)
    skipped_gap: int = 0  # segments not scored because they would span a gap
    skipped_nan: int = 0
    skipped_cycle_length: int = 0
    interpolated: int = 0  # segments scored with samples interpolated across a short gap


# A gap of at most this much signal, whose size the source knows, is filled by linear
# interpolation instead of ending the window or cycle: at 1 kHz that is 30 samples, three
# 10-sample frames of the reference arm. With 1 % of the frames lost at random, nearly every
# 4.4 s robot cycle held a gap and none was scored; filled, ≥ 95 % are (docs/architecture.md).
MAX_FILL_S = 0.03
# … and a segment is still skipped when more than this share of its samples is filled.
MAX_FILLED_SHARE = 0.25


def default_max_fill(sample_rate_hz: float) -> int:
    """Samples of :data:`MAX_FILL_S` at ``sample_rate_hz`` (at least one)."""
    return max(1, round(MAX_FILL_S * sample_rate_hz))


def interpolate_gap(before: np.ndarray, after: np.ndarray, missing: int) -> np.ndarray:
    """``missing`` rows on the straight line from row ``before`` to row ``after``, per channel
    (the end points themselves excluded)."""
    weights = np.arange(1, missing + 1, dtype=np.float64)[:, None] / (missing + 1)
    start = before.astype(np.float64)[None, :]
    return (start + weights * (after.astype(np.float64) - start)).astype(np.float32)


class StreamSegmenter:
    """Cuts a stream of sample chunks into segments, the same way live and offline.

    ``push`` takes a chunk (n × C, physical units), optional per-sample cycle-start flags and
    program ids, whether a sequence gap precedes the chunk and, if the source knows it, how
    many samples went missing in it. A gap of 1 … ``max_fill`` known missing samples (default
    :func:`default_max_fill`, 0 disables) is bridged by linear interpolation per channel; a
    segment holding more than :data:`MAX_FILLED_SHARE` filled samples, or spanning any other
    gap, or holding NaN, is not scored; all of it is counted in :attr:`stats`.

    Segment ``start``/``stop`` index the samples actually received (filled ones are not
    counted), so they line up with the source's own sample and frame bookkeeping. Memory is
    bounded by one segment (windows) or ``max_samples`` (cycles).
    """

    def __init__(
        self, spec: FeatureSpec, normalization: Normalization, *, max_fill: int | None = None
    ) -> None:
        self._spec = spec
        self._norm = normalization
        self._seg = spec.segmentation
        self._max_fill = default_max_fill(spec.sample_rate_hz) if max_fill is None else max_fill
        if self._max_fill < 0:
            raise FeatureError(f"max_fill = {self._max_fill}: must be ≥ 0 samples")
        self.stats = SegmenterStats()
        self._buffer = np.empty((0, spec.n_channels), dtype=np.float32)
        self._programs = np.empty(0, dtype=np.int64)
        self._origin = np.empty(0, dtype=np.int64)  # received-sample index per row, -1 = filled
        self._last: tuple[np.ndarray, int] | None = None  # newest sample and its program
        self._buffer_start = 0  # stream index of _buffer[0] (filled samples included)
        self._position = 0  # stream index of the next sample pushed
        self._received = 0  # samples received so far (filled ones not counted)
        self._next_window = 0  # stream index where the next fixed window starts
        self._cycle_open = False
        self._cycle_limit = self._seg.max_samples or 1_000_000

    def push(
        self,
        chunk: np.ndarray,
        cycle_start: np.ndarray | None = None,
        program: np.ndarray | None = None,
        gap_before: bool = False,
        missing_samples: int = 0,
    ) -> list[Segment]:
        data = np.asarray(chunk, dtype=np.float32)
        gap = bool(gap_before) or missing_samples > 0
        self.stats.gaps += int(gap)
        if data.ndim != 2 or data.shape[1] != self._spec.n_channels:
            raise FeatureError(
                f"chunk has shape {data.shape}; expected (n, {self._spec.n_channels}) for "
                f"channels {list(self._spec.channels)}"
            )
        progs = (
            np.full(data.shape[0], -1, dtype=np.int64)
            if program is None
            else np.asarray(program, dtype=np.int64)
        )
        if gap and data.shape[0] and self._fill(data[0], missing_samples):
            gap = False
        if self._seg.kind == "window":
            return self._push_windows(data, progs, gap)
        starts = (
            np.zeros(data.shape[0], dtype=bool)
            if cycle_start is None
            else np.asarray(cycle_start, dtype=bool)
        )
        return self._push_cycles(data, starts, progs, gap)

    def _fill(self, first: np.ndarray, missing: int) -> bool:
        """Bridge a gap of ``missing`` known samples before ``first``; False if it cannot be."""
        if self._last is None or not 0 < missing <= self._max_fill:
            return False
        last, program = self._last
        filled = interpolate_gap(last, first, missing)
        self._append(filled, np.full(missing, program, dtype=np.int64), received=False)
        return True

    def _append(self, data: np.ndarray, progs: np.ndarray, *, received: bool = True) -> None:
        n = data.shape[0]
        if received:
            origin = np.arange(self._received, self._received + n, dtype=np.int64)
            self._received += n
        else:
            origin = np.full(n, -1, dtype=np.int64)
        self._buffer = np.concatenate([self._buffer, data])
        self._programs = np.concatenate([self._programs, progs])
        self._origin = np.concatenate([self._origin, origin])
        self._position += n
        if n:
            self._last = (data[-1].copy(), int(progs[-1]))

    def _drop_before(self, index: int) -> None:
        cut = min(max(0, index - self._buffer_start), self._buffer.shape[0])
        if cut:
            self._buffer = self._buffer[cut:]
            self._programs = self._programs[cut:]
            self._origin = self._origin[cut:]
            self._buffer_start += cut

    def _restart(self) -> None:
        """Forget the buffer after a gap: nothing before it joins anything after it."""
        self._buffer = self._buffer[:0]
        self._programs = self._programs[:0]
        self._origin = self._origin[:0]
        self._buffer_start = self._position
        self._last = None

    def _make(self, lo: int, hi: int, program: int, length: int) -> Segment | None:
        """The segment of buffer rows [lo, hi) resampled to ``length``, or None if skipped."""
        raw = self._buffer[lo:hi]
        origin = self._origin[lo:hi]
        real = origin[origin >= 0]
        filled = raw.shape[0] - real.shape[0]
        if filled > MAX_FILLED_SHARE * raw.shape[0]:
            self.stats.skipped_gap += 1
            return None
        if not np.isfinite(raw).all():
            self.stats.skipped_nan += 1
            return None
        self.stats.segments += 1
        self.stats.interpolated += int(filled > 0)
        return Segment(
            samples=resample(self._norm.apply(raw), length),
            start=int(real[0]),
            stop=int(real[-1]) + 1,
            program=program,
        )

    def _push_windows(self, data: np.ndarray, progs: np.ndarray, gap: bool) -> list[Segment]:
        length, hop = self._seg.length, self._seg.hop
        if gap and self._buffer.shape[0]:
            # Windows that would straddle the gap are skipped: count every window start
            # whose span includes samples on both sides, then restart after the gap.
            straddling = max(0, (self._position - self._next_window + hop - 1) // hop)
            self.stats.skipped_gap += straddling
        if gap:
            self._restart()
            self._next_window = self._position
        self._append(data, progs)
        out: list[Segment] = []
        while self._next_window + length <= self._position:
            lo = self._next_window - self._buffer_start
            self._next_window += hop
            segment = self._make(lo, lo + length, int(self._programs[lo + length - 1]), length)
            if segment is not None:
                out.append(segment)
        self._drop_before(self._next_window)
        return out

    def _push_cycles(
        self, data: np.ndarray, starts: np.ndarray, progs: np.ndarray, gap: bool
    ) -> list[Segment]:
        if gap and self._cycle_open:
            self.stats.skipped_gap += 1
            self._cycle_open = False
        out: list[Segment] = []
        base = self._position
        self._append(data, progs)
        if not self._cycle_open:
            self._drop_before(base)
        for idx in np.flatnonzero(starts):
            marker = base + int(idx)
            if self._cycle_open:
                segment = self._close_cycle(marker)
                if segment is not None:
                    out.append(segment)
            self._drop_before(marker)
            self._cycle_open = True
        if self._cycle_open and self._position - self._buffer_start > self._cycle_limit:
            # A missing cycle marker must not make the buffer grow without bound.
            self.stats.skipped_cycle_length += 1
            self._cycle_open = False
            self._drop_before(self._position)
        return out

    def _close_cycle(self, stop: int) -> Segment | None:
        n = stop - self._buffer_start
        if n < max(2, self._seg.min_samples) or (
            self._seg.max_samples and n > self._seg.max_samples
        ):
            self.stats.skipped_cycle_length += 1
            return None
        return self._make(0, n, int(self._programs[0]), self._seg.length)


@dataclass(frozen=True)
class SegmentedRecording:
    """All segments of a recording as arrays, plus what was skipped."""

    segments: np.ndarray  # (N × length × C) normalized samples
    features: np.ndarray  # (N × F) float32
    start: np.ndarray  # (N,) first sample index
    stop: np.ndarray  # (N,) one past the last sample index
    program: np.ndarray  # (N,)
    stats: SegmenterStats


def iter_chunks(n_samples: int, chunk: int) -> Iterator[slice]:
    for lo in range(0, n_samples, chunk):
        yield slice(lo, min(n_samples, lo + chunk))


def segment_recording(
    spec: FeatureSpec,
    normalization: Normalization,
    samples: np.ndarray,
    cycle_start: np.ndarray | None = None,
    program: np.ndarray | None = None,
    gap_before: np.ndarray | None = None,
    chunk: int = 4096,
) -> SegmentedRecording:
    """Run a whole recording through :class:`StreamSegmenter`, as the live agent would.

    ``gap_before[t]`` marks a discontinuity between samples t−1 and t (e.g. a sequence gap or
    the boundary between two concatenated recordings); chunks are split at gaps.
    """
    data = np.asarray(samples, dtype=np.float32)
    segmenter = StreamSegmenter(spec, normalization)
    boundaries = [0, data.shape[0]]
    if gap_before is not None:
        boundaries = sorted({0, data.shape[0], *np.flatnonzero(gap_before).tolist()})
    segments: list[Segment] = []
    for lo, hi in itertools.pairwise(boundaries):
        first = True
        for part in iter_chunks(hi - lo, chunk):
            sl = slice(lo + part.start, lo + part.stop)
            segments += segmenter.push(
                data[sl],
                None if cycle_start is None else cycle_start[sl],
                None if program is None else program[sl],
                gap_before=first and lo > 0,
            )
            first = False
    if segments:
        stacked = np.stack([s.samples for s in segments])
    else:
        stacked = np.empty((0, spec.segmentation.length, spec.n_channels), dtype=np.float32)
    return SegmentedRecording(
        segments=stacked,
        features=segment_features(stacked, spec.features),
        start=np.array([s.start for s in segments], dtype=np.int64),
        stop=np.array([s.stop for s in segments], dtype=np.int64),
        program=np.array([s.program for s in segments], dtype=np.int64),
        stats=segmenter.stats,
    )
