"""The Sparkplug B protobuf encoding: round trips, and the bytes checked field by field with
a wire-format reader written from the specification's numbering (independent of the
descriptor the codec builds)."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from agent.sinks.sparkplug.codec import SparkplugCodec
from agent.sinks.sparkplug.errors import SparkplugPayloadError
from agent.sinks.sparkplug.metrics import DataType, Metric, SparkplugPayload
from agent.sinks.sparkplug.payloads import node_birth, node_death

CODEC = SparkplugCodec.load()
NOW = 1_700_000_000_123
# Payload and Payload.Metric fields of sparkplug_b.proto (Eclipse Tahu)
P_TIMESTAMP, P_METRICS, P_SEQ, P_BODY = 1, 2, 3, 5
M_NAME, M_TIMESTAMP, M_DATATYPE, M_IS_NULL, M_PROPERTIES = 1, 3, 4, 7, 9
M_LONG, M_DOUBLE, M_BOOLEAN, M_STRING = 11, 13, 14, 15


def varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) in wire order: varints as int, fixed64 as 8 bytes, LEN as bytes."""
    out, i = [], 0
    while i < len(data):
        key, i = varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            size, i = varint(data, i)
            value, i = data[i : i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, value))
    return out


def tag(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def test_a_birth_on_the_wire_has_the_specifications_field_numbers() -> None:
    data = CODEC.encode(node_birth(bdseq=7, agent_version="0.1.0", now_ms=NOW))
    top = fields(data)
    assert (P_TIMESTAMP, NOW) in top and (P_SEQ, 0) in top
    metrics = [dict(fields(v)) for n, v in top if n == P_METRICS]
    by_name = {m[M_NAME].decode(): m for m in metrics}
    bdseq = by_name["bdSeq"]
    assert bdseq[M_DATATYPE] == 4 and bdseq[M_LONG] == 7 and bdseq[M_TIMESTAMP] == NOW
    rebirth = by_name["Node Control/Rebirth"]
    assert rebirth[M_DATATYPE] == 11 and rebirth[M_BOOLEAN] == 0
    assert by_name["agent/version"][M_STRING] == b"0.1.0"


def test_a_death_carries_bdseq_and_no_seq() -> None:
    top = fields(CODEC.encode(node_death(bdseq=255, now_ms=NOW)))
    assert P_SEQ not in [n for n, _ in top]
    (metric,) = [dict(fields(v)) for n, v in top if n == P_METRICS]
    assert metric[M_NAME] == b"bdSeq" and metric[M_LONG] == 255


def test_doubles_nulls_and_signed_values_on_the_wire() -> None:
    payload = SparkplugPayload(
        NOW,
        (
            Metric("d", DataType.DOUBLE, 0.25, NOW),
            Metric("n", DataType.DOUBLE, None, NOW),
            Metric("i", DataType.INT64, -2, NOW),
        ),
        seq=9,
    )
    d, n, i = (dict(fields(v)) for k, v in fields(CODEC.encode(payload)) if k == P_METRICS)
    assert struct.unpack("<d", d[M_DOUBLE]) == (0.25,)
    assert n[M_IS_NULL] == 1 and M_DOUBLE not in n and n[M_DATATYPE] == 10
    assert i[M_LONG] == (1 << 64) - 2, "Int64 travels as two's complement in the uint64 field"


def test_round_trip_of_every_type_the_edge_node_sends() -> None:
    metrics = (
        Metric("a", DataType.INT64, -(1 << 62), NOW),
        Metric("b", DataType.UINT64, (1 << 64) - 1, NOW),
        Metric("c", DataType.DOUBLE, 1e-9, NOW + 1),
        Metric("d", DataType.BOOLEAN, True, NOW),
        Metric("e", DataType.STRING, "kr16 ✓", NOW),
        Metric("f", DataType.STRING, None, NOW),
    )
    payload = SparkplugPayload(NOW, metrics, seq=255)
    assert CODEC.decode(CODEC.encode(payload)) == payload


def test_a_full_decoders_extra_fields_are_skipped() -> None:
    """What a host may send (metric properties, a body) does not stop a rebirth request."""
    properties = b"\x0a\x07Quality"  # PropertySet.keys = ["Quality"]
    metric = (
        tag(M_NAME, 2) + b"\x14Node Control/Rebirth"
        + tag(M_DATATYPE, 0) + b"\x0b"
        + tag(M_PROPERTIES, 2) + bytes([len(properties)]) + properties
        + tag(M_BOOLEAN, 0) + b"\x01"
    )  # fmt: skip
    data = tag(P_TIMESTAMP, 0) + b"\x01" + tag(P_METRICS, 2) + bytes([len(metric)]) + metric
    data += tag(P_BODY, 2) + b"\x02hi"
    decoded = CODEC.decode(data)
    assert decoded.metric("Node Control/Rebirth").value is True
    assert decoded.seq is None


def test_garbage_is_a_payload_error() -> None:
    with pytest.raises(SparkplugPayloadError, match="not a Sparkplug B payload"):
        CODEC.decode(b"\xff\xff\xff")


def test_a_non_finite_double_is_sent_as_null() -> None:
    from agent.sinks.sparkplug.metrics import checked_value

    assert checked_value("x", DataType.DOUBLE, math.nan) is None
    assert checked_value("x", DataType.DOUBLE, math.inf) is None


def test_the_message_class_is_the_tahu_payload() -> None:
    descriptor = CODEC.message_class.DESCRIPTOR
    assert descriptor.full_name == "org.eclipse.tahu.protobuf.Payload"
    metric = descriptor.nested_types_by_name["Metric"]
    assert metric.oneofs_by_name["value"].fields[0].name == "int_value"
    assert {f.name: f.number for f in descriptor.fields} == {
        "timestamp": 1, "metrics": 2, "seq": 3, "uuid": 4, "body": 5,
    }  # fmt: skip
