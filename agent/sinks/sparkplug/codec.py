"""Sparkplug B protobuf encoding, from a descriptor built here instead of generated code.

The wire format is the ``org.eclipse.tahu.protobuf.Payload`` message of the Eclipse Tahu
``sparkplug_b.proto`` (proto2). The edge node only sends scalar metrics, so the descriptor
declares the payload's own fields and the metric's header and scalar ``value`` oneof, with
the specification's names, numbers and types; the rest of that file (metadata, properties,
data sets, templates, extensions) is left out — protobuf readers skip fields they do not
know, so what a full decoder (Ignition, Tahu) reads is unaffected. Building the descriptor
at run time avoids generated ``*_pb2`` modules, which are tied to the protobuf release that
generated them; the message class lives in a pool of its own, so an application that also
loads the full schema into the default pool does not collide with it.

Usage::

    codec = SparkplugCodec.load()          # raises SparkplugUnavailableError without protobuf
    data = codec.encode(node_death(bdseq=3, now_ms=...))
    payload = codec.decode(data)
"""

from __future__ import annotations

from typing import Any

from agent.sinks.sparkplug.errors import SparkplugPayloadError, SparkplugUnavailableError
from agent.sinks.sparkplug.metrics import DataType, Metric, SparkplugPayload, Value

PACKAGE = "org.eclipse.tahu.protobuf"
PAYLOAD = f"{PACKAGE}.Payload"
INSTALL_HINT = "pip install 'rapp-edge[sparkplug]' (the protobuf runtime)"

# (name, number, protobuf type name, in the value oneof)
PAYLOAD_FIELDS = (
    ("timestamp", 1, "uint64"),
    ("metrics", 2, "Metric"),
    ("seq", 3, "uint64"),
    ("uuid", 4, "string"),
    ("body", 5, "bytes"),
)
METRIC_FIELDS = (
    ("name", 1, "string", False),
    ("alias", 2, "uint64", False),
    ("timestamp", 3, "uint64", False),
    ("datatype", 4, "uint32", False),
    ("is_historical", 5, "bool", False),
    ("is_transient", 6, "bool", False),
    ("is_null", 7, "bool", False),
    ("int_value", 10, "uint32", True),
    ("long_value", 11, "uint64", True),
    ("float_value", 12, "float", True),
    ("double_value", 13, "double", True),
    ("boolean_value", 14, "bool", True),
    ("string_value", 15, "string", True),
    ("bytes_value", 16, "bytes", True),
)
# Sparkplug data type -> the oneof field that carries it (all types of the specification, so
# commands from a host decode whatever they carry)
VALUE_FIELDS = {
    **dict.fromkeys((1, 2, 3, 5, 6, 7), "int_value"),
    **dict.fromkeys((4, 8, 13), "long_value"),
    9: "float_value",
    10: "double_value",
    11: "boolean_value",
    **dict.fromkeys((12, 14, 15), "string_value"),
    **dict.fromkeys((17, 18), "bytes_value"),
}
_SIGNED_BITS = {1: 32, 2: 32, 3: 32, 4: 64}  # signed types travel as two's complement


def file_descriptor() -> Any:
    """The ``FileDescriptorProto`` of the subset described in the module docstring."""
    from google.protobuf import descriptor_pb2

    field = descriptor_pb2.FieldDescriptorProto
    scalar = {
        "uint64": field.TYPE_UINT64,
        "uint32": field.TYPE_UINT32,
        "string": field.TYPE_STRING,
        "bytes": field.TYPE_BYTES,
        "bool": field.TYPE_BOOL,
        "float": field.TYPE_FLOAT,
        "double": field.TYPE_DOUBLE,
    }
    proto = descriptor_pb2.FileDescriptorProto(
        name="rapp/sparkplug_b_subset.proto", package=PACKAGE, syntax="proto2"
    )
    payload = proto.message_type.add(name="Payload")
    payload.extension_range.add(start=6, end=536870912)  # "extensions 6 to max"
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind, in_oneof in METRIC_FIELDS:
        entry = metric.field.add(
            name=name, number=number, type=scalar[kind], label=field.LABEL_OPTIONAL
        )
        if in_oneof:
            entry.oneof_index = 0
    for name, number, kind in PAYLOAD_FIELDS:
        if kind == "Metric":
            payload.field.add(
                name=name,
                number=number,
                type=field.TYPE_MESSAGE,
                label=field.LABEL_REPEATED,
                type_name=f".{PAYLOAD}.Metric",
            )
        else:
            payload.field.add(
                name=name, number=number, type=scalar[kind], label=field.LABEL_OPTIONAL
            )
    return proto


class SparkplugCodec:
    """Encodes :class:`SparkplugPayload` to protobuf bytes and back. Build with :meth:`load`."""

    def __init__(self, message_class: type) -> None:
        self._message = message_class

    @classmethod
    def load(cls) -> SparkplugCodec:
        try:
            from google.protobuf import descriptor_pool, message_factory
        except ImportError as err:
            raise SparkplugUnavailableError(
                f"sparkplug.enabled = true needs the protobuf package: {INSTALL_HINT}"
            ) from err
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_descriptor())
        return cls(message_factory.GetMessageClass(pool.FindMessageTypeByName(PAYLOAD)))

    @property
    def message_class(self) -> type:
        """The protobuf ``Payload`` class (for tests and tools that want the raw message)."""
        return self._message

    def encode(self, payload: SparkplugPayload) -> bytes:
        message = self._message(timestamp=payload.timestamp_ms)
        if payload.seq is not None:
            message.seq = payload.seq
        for m in payload.metrics:
            entry = message.metrics.add(name=m.name, timestamp=m.timestamp_ms, datatype=m.datatype)
            if m.value is None:
                entry.is_null = True
            else:
                setattr(entry, VALUE_FIELDS[m.datatype], _wire_value(m.datatype, m.value))
        return message.SerializeToString()

    def decode(self, data: bytes) -> SparkplugPayload:
        """Raises :class:`SparkplugPayloadError` for bytes that are not a payload."""
        message = self._message()
        try:
            message.ParseFromString(data)
        except Exception as err:  # protobuf's DecodeError, also from the C implementation
            raise SparkplugPayloadError(f"not a Sparkplug B payload: {err}") from err
        metrics = tuple(_metric(m) for m in message.metrics)
        seq = message.seq if message.HasField("seq") else None
        return SparkplugPayload(message.timestamp, metrics, seq)


def _wire_value(datatype: int, value: Value) -> Value:
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and isinstance(value, int) and value < 0:
        return value + (1 << bits)
    return value


def _metric(m: Any) -> Metric:
    datatype = m.datatype
    value: Value = None
    field = m.WhichOneof("value")
    if not m.is_null and field is not None:
        value = getattr(m, field)
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None and isinstance(value, int) and value >= 1 << (bits - 1):
            value -= 1 << bits
    try:
        kind: Any = DataType(datatype)
    except ValueError:
        kind = datatype  # a type the edge node never sends; kept as its number
    return Metric(m.name, kind, value, m.timestamp)
