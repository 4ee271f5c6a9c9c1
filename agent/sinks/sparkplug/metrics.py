"""Sparkplug B payloads as plain values, and the table of a device's current metric values.

:class:`SparkplugPayload` and :class:`Metric` mirror the protobuf ``Payload`` / ``Metric``
messages as far as the edge node uses them (see :mod:`agent.sinks.sparkplug.codec`); a metric
whose value is ``None`` is sent with ``is_null``. :class:`MetricTable` holds one device's
declared metrics: a BIRTH carries all of them, a DATA only those whose value changed since
they were last sent (Sparkplug's report by exception).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from agent.sinks.sparkplug.errors import SparkplugPayloadError

Value = int | float | bool | str | None


class DataType(IntEnum):
    """The Sparkplug B data types the edge node sends (numbering of the specification)."""

    INT64 = 4
    UINT64 = 8
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    datatype: DataType
    value: Value
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class SparkplugPayload:
    """``seq`` is None only in NDEATH (and in commands), which carry none."""

    timestamp_ms: int
    metrics: tuple[Metric, ...]
    seq: int | None = None

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def values(self) -> dict[str, Value]:
        return {m.name: m.value for m in self.metrics}


def checked_value(name: str, datatype: DataType, value: Value) -> Value:
    """``value`` as the Python type of ``datatype``; non-finite doubles become null."""
    if value is None:
        return None
    if datatype is DataType.BOOLEAN:
        return bool(value)
    if datatype is DataType.STRING:
        return str(value)
    if datatype is DataType.DOUBLE:
        number = float(value)
        return number if math.isfinite(number) else None
    number = int(value)
    if datatype is DataType.UINT64 and not 0 <= number < 1 << 64:
        raise SparkplugPayloadError(f"metric {name!r} = {value!r}: not a UInt64")
    if datatype is DataType.INT64 and not -(1 << 63) <= number < 1 << 63:
        raise SparkplugPayloadError(f"metric {name!r} = {value!r}: not an Int64")
    return number


class MetricTable:
    """One device's metrics (declared once, in BIRTH order) with their current values.

    Not thread-safe: the edge node guards it with its own lock.
    """

    def __init__(self, declared: Sequence[tuple[str, DataType]]) -> None:
        self._types = dict(declared)
        self._values: dict[str, Value] = dict.fromkeys(self._types)
        self._stamps: dict[str, int] = dict.fromkeys(self._types, 0)
        self._sent: dict[str, Value] = {}
        self._changed: set[str] = set()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._types)

    def update(self, values: Mapping[str, Value], now_ms: int) -> None:
        """Set current values; a value that differs from the one last sent is due in DATA."""
        for name, raw in values.items():
            datatype = self._types.get(name)
            if datatype is None:
                raise SparkplugPayloadError(f"metric {name!r}: not declared in the birth")
            value = checked_value(name, datatype, raw)
            if value != self._values[name] or self._stamps[name] == 0:
                self._stamps[name] = now_ms
            self._values[name] = value
            if name not in self._sent or self._sent[name] != value:
                self._changed.add(name)
            else:
                self._changed.discard(name)

    @property
    def has_changes(self) -> bool:
        return bool(self._changed)

    def birth(self, now_ms: int) -> tuple[Metric, ...]:
        """Every metric with its current value; afterwards nothing is due."""
        return self._take(self._types, now_ms)

    def changes(self, now_ms: int) -> tuple[Metric, ...]:
        """The metrics whose value changed since last sent, in declaration order."""
        return self._take([n for n in self._types if n in self._changed], now_ms)

    def _take(self, names: Iterable[str], now_ms: int) -> tuple[Metric, ...]:
        metrics = tuple(
            Metric(n, self._types[n], self._values[n], self._stamps[n] or now_ms) for n in names
        )
        for m in metrics:
            self._sent[m.name] = m.value
            self._changed.discard(m.name)
        return metrics
