"""Channel maps: which ADC channel carries which joint current, and how to turn counts into amps.

A channel map is a small versioned TOML file shared by the firmware (through the generated C
header) and the agent. It is the single source of truth for channel order, names and scaling;
its *schema hash* travels in every frame so that the agent refuses data produced with a
different map instead of silently mis-scaling it.

File format (``format_version = 1``)::

    format_version = 1
    robot = "six_axis_arm"            # [A-Za-z0-9][A-Za-z0-9_.-]*, ≤ 64 chars
    description = "..."               # optional, free text, not hashed
    sample_rate_hz = 1000             # integer samples per second per channel
    samples_per_frame = 10            # samples of every channel in one frame (1–128)

    [[channels]]                      # in frame order; 1–255 channels
    name = "J1"                       # C identifier, ≤ 32 chars, unique
    axis = 1                          # robot axis the channel belongs to (1–255)
    adc_channel = 0                   # ADC input (0–255), unique
    scale = 0.001                     # physical units per LSB, > 0
    offset = 0.0                      # optional, physical = raw * scale + offset
    unit = "A"

Schema hash: CRC-16/CCITT-FALSE (see :mod:`firmware_config.crc`) of the ASCII bytes of
:meth:`ChannelMap.canonical_json` — the validated fields except ``description``, as JSON with
sorted keys, no whitespace, integers as integers and ``scale``/``offset`` as floats in Python's
shortest round-trip form (so ``scale = 1e-3`` and ``scale = 0.001`` hash the same). Channel
order is part of the hash because it is the frame layout. A 16-bit hash only guards against
honest mistakes (wrong map deployed), not against an adversary.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from firmware_config.crc import crc16
from firmware_config.errors import FirmwareInputError
from firmware_config.limits import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MAX_SAMPLES_PER_FRAME,
    MAX_VALUES_PER_FRAME,
)

FORMAT_VERSION = 1
DEFAULT_MAP = "six_axis_arm"
INT16_MIN = -32768
INT16_MAX = 32767
MAX_AXIS = 255
MAX_ADC_CHANNEL = 255
MAX_UNIT_LENGTH = 16
MAX_DESCRIPTION_LENGTH = 200

ROBOT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
UNIT_PATTERN = re.compile(r"[\x21-\x7e]{1,16}")

TOP_KEYS = (
    "format_version",
    "robot",
    "description",
    "sample_rate_hz",
    "samples_per_frame",
    "channels",
)
TOP_REQUIRED = ("format_version", "robot", "sample_rate_hz", "samples_per_frame", "channels")
CHANNEL_KEYS = ("name", "axis", "adc_channel", "scale", "offset", "unit")
CHANNEL_REQUIRED = ("name", "axis", "adc_channel", "scale", "unit")

_EXAMPLES = {
    "format_version": f"format_version = {FORMAT_VERSION}",
    "robot": 'robot = "six_axis_arm"',
    "sample_rate_hz": "sample_rate_hz = 1000",
    "samples_per_frame": "samples_per_frame = 10",
    "channels": '[[channels]] tables, e.g. name = "J1", axis = 1, adc_channel = 0, …',
    "name": 'name = "J1"',
    "axis": "axis = 1",
    "adc_channel": "adc_channel = 0",
    "scale": "scale = 0.001 (amps per LSB)",
    "unit": 'unit = "A"',
}


class ChannelMapError(FirmwareInputError):
    """A channel map that cannot be used; the message names the key, the value and the fix."""


@dataclass(frozen=True)
class ChannelSpec:
    """One ADC channel: ``physical = raw * scale + offset`` in ``unit``."""

    name: str
    axis: int
    adc_channel: int
    scale: float
    offset: float
    unit: str

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "axis": self.axis,
            "adc_channel": self.adc_channel,
            "scale": float(self.scale),
            "offset": float(self.offset),
            "unit": self.unit,
        }


@dataclass(frozen=True)
class ChannelMap:
    """A validated channel map; build it with :func:`load_channel_map` or :meth:`from_mapping`."""

    format_version: int
    robot: str
    sample_rate_hz: int
    samples_per_frame: int
    channels: tuple[ChannelSpec, ...]
    description: str = ""

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], source: str = "") -> ChannelMap:
        """Validate a parsed TOML document; ``source`` prefixes error messages (e.g. a path)."""
        try:
            return _validate(document)
        except ChannelMapError as err:
            if source:
                raise ChannelMapError(f"{source}: {err}") from None
            raise

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(channel.name for channel in self.channels)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @cached_property
    def scales(self) -> np.ndarray:
        """Per-channel scale, float64 (C,), read-only."""
        return _frozen_array([c.scale for c in self.channels])

    @cached_property
    def offsets(self) -> np.ndarray:
        """Per-channel offset, float64 (C,), read-only."""
        return _frozen_array([c.offset for c in self.channels])

    def canonical_json(self) -> str:
        """The byte-stable serialization the schema hash is computed from (module docstring)."""
        document = {
            "format_version": self.format_version,
            "robot": self.robot,
            "sample_rate_hz": self.sample_rate_hz,
            "samples_per_frame": self.samples_per_frame,
            "channels": [channel.canonical() for channel in self.channels],
        }
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )

    @cached_property
    def schema_hash(self) -> int:
        """u16 carried in every frame header: CRC-16/CCITT-FALSE of :meth:`canonical_json`."""
        return crc16(self.canonical_json().encode("ascii"))

    def index_of(self, name: str) -> int:
        """Column index of channel ``name``; raises :class:`ChannelMapError` if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ChannelMapError(
                f"no channel named {name!r}; the map has {', '.join(self.names)}"
            ) from None

    def index_of_axis(self, axis: int) -> int:
        """Column index of the first channel on ``axis``."""
        for index, channel in enumerate(self.channels):
            if channel.axis == axis:
                return index
        axes = sorted({c.axis for c in self.channels})
        raise ChannelMapError(f"no channel on axis {axis}; the map covers axes {axes}")

    def to_physical(self, raw: np.ndarray) -> np.ndarray:
        """int16 counts (..., C) → physical units float32, ``raw * scale + offset``.

        Computed in float64 and rounded once, so every consumer (CSV, serial stream, replay)
        gets bit-identical float32 values for the same counts.
        """
        counts = np.asarray(raw)
        self._check_width(counts)
        return (counts.astype(np.float64) * self.scales + self.offsets).astype(np.float32)

    def to_raw(self, values: np.ndarray) -> np.ndarray:
        """Physical values (..., C) → int16 counts, rounded to nearest and saturated like an ADC.

        NaN reads as 0 counts (an ADC cannot report "no value").
        """
        data = np.asarray(values, dtype=np.float64)
        self._check_width(data)
        counts = np.rint((data - self.offsets) / self.scales)
        counts = np.nan_to_num(counts, nan=0.0, posinf=INT16_MAX, neginf=INT16_MIN)
        return np.clip(counts, INT16_MIN, INT16_MAX).astype(np.int16)

    def _check_width(self, data: np.ndarray) -> None:
        if data.ndim < 1 or data.shape[-1] != self.n_channels:
            raise ChannelMapError(
                f"array of shape {data.shape} does not end in {self.n_channels} channels "
                f"({', '.join(self.names)})"
            )


def load_channel_map(path: Path | str) -> ChannelMap:
    """Read and validate a channel-map TOML file; errors start with the file path."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ChannelMapError(f"{file}: cannot read channel map ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ChannelMapError(f"{file}: not UTF-8 text ({err.reason})") from err
    return parse_channel_map(text, source=str(file))


def parse_channel_map(text: str, source: str = "<string>") -> ChannelMap:
    """Parse and validate channel-map TOML text."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ChannelMapError(f"{source}: not valid TOML ({err})") from err
    return ChannelMap.from_mapping(document, source=source)


def builtin_map_path(name: str = DEFAULT_MAP) -> Path:
    """Path of a channel map shipped in ``firmware_config/maps``."""
    candidate = resources.files("firmware_config").joinpath("maps", f"{name}.toml")
    path = Path(str(candidate))
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise ChannelMapError(f"no built-in channel map {name!r}; shipped maps: {shipped}")
    return path


def load_builtin_map(name: str = DEFAULT_MAP) -> ChannelMap:
    """The channel map ``name`` shipped with the package (default: the 6-axis arm)."""
    return load_channel_map(builtin_map_path(name))


def _frozen_array(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def _unknown_keys(where: str, document: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in document:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ChannelMapError(
                f"{where}{key}: unknown key{hint}; allowed keys: {', '.join(sorted(allowed))}"
            )


def _missing_keys(where: str, document: Mapping[str, Any], required: Sequence[str]) -> None:
    for key in required:
        if key not in document:
            raise ChannelMapError(f"{where}{key}: missing; add {_EXAMPLES[key]}")


def _integer(key: str, value: Any, low: int, high: int, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChannelMapError(f"{key} = {value!r}: must be an integer ({meaning})")
    if not low <= value <= high:
        raise ChannelMapError(f"{key} = {value}: must be between {low} and {high} ({meaning})")
    return value


def _number(key: str, value: Any, meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChannelMapError(f"{key} = {value!r}: must be a number ({meaning})")
    number = float(value)
    if not math.isfinite(number):
        raise ChannelMapError(f"{key} = {value}: must be a finite number ({meaning})")
    return number


def _text(key: str, value: Any, pattern: re.Pattern[str], meaning: str) -> str:
    if not isinstance(value, str):
        raise ChannelMapError(f"{key} = {value!r}: must be a string ({meaning})")
    if not pattern.fullmatch(value):
        raise ChannelMapError(f"{key} = {value!r}: invalid; {meaning}")
    return value


def _validate_channel(index: int, entry: Any) -> ChannelSpec:
    where = f"channels[{index}]"
    if not isinstance(entry, Mapping):
        raise ChannelMapError(
            f"{where} = {entry!r}: must be a table; write it as a [[channels]] section"
        )
    _unknown_keys(f"{where}.", entry, CHANNEL_KEYS)
    _missing_keys(f"{where}.", entry, CHANNEL_REQUIRED)
    name = _text(
        f"{where}.name",
        entry["name"],
        NAME_PATTERN,
        "use a C identifier of at most 32 characters, e.g. J1",
    )
    axis = _integer(f"{where}.axis", entry["axis"], 1, MAX_AXIS, "robot axis number, e.g. 1")
    adc = _integer(
        f"{where}.adc_channel", entry["adc_channel"], 0, MAX_ADC_CHANNEL, "ADC input, e.g. 0"
    )
    scale = _number(f"{where}.scale", entry["scale"], "amps per LSB, e.g. 0.001")
    if scale <= 0:
        raise ChannelMapError(
            f"{where}.scale = {entry['scale']}: must be > 0 (amps per LSB, e.g. 0.001)"
        )
    offset = _number(f"{where}.offset", entry.get("offset", 0.0), "physical units, e.g. 0.0")
    unit = _text(
        f"{where}.unit",
        entry["unit"],
        UNIT_PATTERN,
        f"use 1–{MAX_UNIT_LENGTH} printable characters without spaces, e.g. A",
    )
    return ChannelSpec(name=name, axis=axis, adc_channel=adc, scale=scale, offset=offset, unit=unit)


def _check_unique(channels: Sequence[ChannelSpec], attribute: str) -> None:
    seen: dict[Any, int] = {}
    for index, channel in enumerate(channels):
        value = getattr(channel, attribute)
        if value in seen:
            raise ChannelMapError(
                f"channels[{index}].{attribute} = {value!r}: duplicate of "
                f"channels[{seen[value]}].{attribute}; every channel needs its own {attribute}"
            )
        seen[value] = index


def _validate(document: Mapping[str, Any]) -> ChannelMap:
    _unknown_keys("", document, TOP_KEYS)
    _missing_keys("", document, TOP_REQUIRED)
    version = document["format_version"]
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ChannelMapError(
            f"format_version = {version!r}: unsupported; this rapp-edge reads "
            f"format_version = {FORMAT_VERSION}"
        )
    robot = _text(
        "robot",
        document["robot"],
        ROBOT_PATTERN,
        "use letters, digits, '_', '.', '-' (≤ 64 characters, starting with a letter or "
        'digit), e.g. "six_axis_arm"',
    )
    description = document.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise ChannelMapError(
            f"description = {description!r}: must be a string of at most "
            f"{MAX_DESCRIPTION_LENGTH} characters"
        )
    rate = _integer(
        "sample_rate_hz",
        document["sample_rate_hz"],
        1,
        MAX_SAMPLE_RATE_HZ,
        "samples per second per channel, e.g. 1000",
    )
    per_frame = _integer(
        "samples_per_frame",
        document["samples_per_frame"],
        1,
        MAX_SAMPLES_PER_FRAME,
        "samples of each channel in one frame, e.g. 10",
    )
    entries = document["channels"]
    if not isinstance(entries, list) or not entries:
        raise ChannelMapError(
            f"channels = {entries!r}: must be a non-empty list of [[channels]] tables"
        )
    if len(entries) > MAX_CHANNELS:
        raise ChannelMapError(
            f"channels: {len(entries)} entries; at most {MAX_CHANNELS} fit the frame header"
        )
    channels = tuple(_validate_channel(i, entry) for i, entry in enumerate(entries))
    _check_unique(channels, "name")
    _check_unique(channels, "adc_channel")
    values = len(channels) * per_frame
    if values > MAX_VALUES_PER_FRAME:
        raise ChannelMapError(
            f"samples_per_frame = {per_frame}: {len(channels)} channels × {per_frame} samples "
            f"= {values} values per frame exceeds {MAX_VALUES_PER_FRAME}; lower "
            f"samples_per_frame to at most {MAX_VALUES_PER_FRAME // len(channels)}"
        )
    return ChannelMap(
        format_version=FORMAT_VERSION,
        robot=robot,
        sample_rate_hz=rate,
        samples_per_frame=per_frame,
        channels=channels,
        description=description,
    )
