"""``[robots.source]``: one frozen settings class per source kind, chosen by ``kind``.

:data:`SOURCE_KINDS` maps each ``kind`` to its class; :func:`parse_source` reads the table
with the class's ``from_table`` (paths made absolute against the config file's directory at
parse time). Parsing never touches the machine; ``check_environment`` does (files readable,
serial port present).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self, TypeVar

from agent.core.errors import ConfigError
from agent.core.tables import Table, in_range, one_of, str_list

DEFAULT_QUEUE_CHUNKS = 1000
DEFAULT_BAUDRATE = 921_600


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    """What every kind has: its ``kind``, the queue bound and the channel map file (if any)."""

    kind: ClassVar[str] = ""
    KEYS: ClassVar[tuple[str, ...]] = ()  # the table keys this kind reads, besides kind
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # keys that must be given
    BUILTIN_MAP_DEFAULT: ClassVar[bool] = False  # without channel_map: the shipped map

    queue_chunks: int = DEFAULT_QUEUE_CHUNKS
    channel_map: Path | None = None

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> Self:
        raise NotImplementedError

    def check_environment(self, where: str) -> None:
        """The checks that need the machine; ``where`` is the table, e.g. robots[0].source."""
        if self.channel_map is not None:
            _check_readable(f"{where}.channel_map", self.channel_map)


@dataclass(frozen=True, kw_only=True)
class SerialSourceSettings(SourceSettings):
    kind: ClassVar[str] = "serial"
    KEYS: ClassVar[tuple[str, ...]] = ("port", "baudrate", "channel_map", "queue_chunks")
    REQUIRED: ClassVar[tuple[str, ...]] = ("port", "channel_map")

    port: str
    baudrate: int = DEFAULT_BAUDRATE

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> Self:
        return _finished(
            t,
            cls(
                port=t.get("port", str, "", fix='e.g. port = "/dev/ttyUSB0"'),
                baudrate=t.get("baudrate", int, DEFAULT_BAUDRATE, check=in_range(1200, 16_000_000)),
                channel_map=t.path("channel_map", base_dir),
                queue_chunks=_queue_chunks(t),
            ),
        )

    def check_environment(self, where: str) -> None:
        super().check_environment(where)
        port = Path(self.port)
        if not port.exists():
            raise ConfigError(
                f"{where}.port = {self.port!r}: no such device; check the cable "
                "and `ls /dev/serial/by-id/` (the agent will retry once it runs, but it "
                "must exist at start)"
            )
        if not os.access(port, os.R_OK | os.W_OK):
            raise ConfigError(
                f"{where}.port = {self.port!r}: permission denied; add the agent "
                "user to the dialout group (SupplementaryGroups=dialout in the unit)"
            )


@dataclass(frozen=True, kw_only=True)
class MqttSourceSettings(SourceSettings):
    kind: ClassVar[str] = "mqtt"
    KEYS: ClassVar[tuple[str, ...]] = ("topic", "payload", "channel_map", "queue_chunks")
    REQUIRED: ClassVar[tuple[str, ...]] = ("topic", "channel_map")

    topic: str
    payload: str = "frames"  # or "json" (agent/sources/json_samples.py)

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> Self:
        return _finished(
            t,
            cls(
                channel_map=t.path("channel_map", base_dir),
                topic=t.get("topic", str, ""),
                payload=t.get("payload", str, "frames", check=one_of(("frames", "json"))),
                queue_chunks=_queue_chunks(t),
            ),
        )


@dataclass(frozen=True, kw_only=True)
class ReplaySourceSettings(SourceSettings):
    kind: ClassVar[str] = "replay"
    KEYS: ClassVar[tuple[str, ...]] = ("file", "speed", "loop", "queue_chunks")
    REQUIRED: ClassVar[tuple[str, ...]] = ("file",)

    file: Path | None
    speed: float = 1.0
    loop: bool = False

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> Self:
        return _finished(
            t,
            cls(
                file=t.path("file", base_dir),
                speed=_speed(t),
                loop=t.get("loop", bool, False),
                queue_chunks=_queue_chunks(t),
            ),
        )

    def check_environment(self, where: str) -> None:
        super().check_environment(where)
        if self.file is not None:
            _check_readable(f"{where}.file", self.file)


@dataclass(frozen=True, kw_only=True)
class SimulatorSourceSettings(SourceSettings):
    kind: ClassVar[str] = "simulator"
    KEYS: ClassVar[tuple[str, ...]] = (
        "channel_map",
        "speed",
        "seed",
        "program",
        "faults",
        "queue_chunks",
    )
    BUILTIN_MAP_DEFAULT: ClassVar[bool] = True

    speed: float = 1.0
    seed: int = 0
    program: int = 1
    faults: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> Self:
        return _finished(
            t,
            cls(
                channel_map=t.path("channel_map", base_dir),
                speed=_speed(t),
                seed=t.get("seed", int, 0),
                program=t.get("program", int, 1, check=in_range(0, 255)),
                faults=str_list(t, "faults", 'e.g. faults = ["friction:J2:onset=60"]'),
                queue_chunks=_queue_chunks(t),
            ),
        )


S = TypeVar("S", bound=SourceSettings)

SOURCE_KINDS: dict[str, type[SourceSettings]] = {
    cls.kind: cls
    for cls in (
        SerialSourceSettings,
        MqttSourceSettings,
        ReplaySourceSettings,
        SimulatorSourceSettings,
    )
}


def parse_source(t: Table, base_dir: Path | None) -> SourceSettings:
    """The ``[robots.source]`` table as the settings of its kind."""
    kind = t.get("kind", str, check=one_of(tuple(SOURCE_KINDS)), fix='e.g. kind = "serial"')
    cls = SOURCE_KINDS[kind]
    known = {key for other in SOURCE_KINDS.values() for key in other.KEYS}
    for key in t.data:
        if key != "kind" and key not in cls.KEYS and key in known:
            raise ConfigError(
                f"{t.key(key)}: not used by a {kind} source; allowed: {', '.join(cls.KEYS)}"
            )
    return cls.from_table(t, base_dir)


def _finished(t: Table, settings: S) -> S:
    """Reject unknown keys, then keys the kind cannot do without."""
    t.done()
    for key in settings.REQUIRED:
        if not getattr(settings, key):
            raise ConfigError(f"{t.key(key)} is missing; a {settings.kind} source needs it")
    return settings


def _queue_chunks(t: Table) -> int:
    return t.get("queue_chunks", int, DEFAULT_QUEUE_CHUNKS, check=in_range(10, 1_000_000))


def _speed(t: Table) -> float:
    return t.get("speed", float, 1.0, check=in_range(0.0, 1000.0, "0 = as fast as possible"))


def _check_readable(key: str, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{key} = {str(path)!r}: no such file; fix the path")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{key} = {str(path)!r}: not readable by this user; check permissions")
