"""Just enough of the protobuf wire format to write ONNX graph fragments, without onnx.

The agent must not import onnx (or protobuf: onnxruntime does not need it), yet it builds a
small graph at load time (:mod:`agent.core.backends.onnx_step`). Protobuf merges a message
that appears twice: repeated fields are concatenated and singular sub-messages merged. So
``model_bytes + graph_extension(...)`` is the same model with the extension's nodes,
initializers and outputs appended to its graph — no parsing of the exported model needed.

Field numbers are those of onnx/onnx.proto (stable since IR version 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FLOAT = 1  # TensorProto.DataType.FLOAT
_ATTRIBUTE_INT = 2  # AttributeProto.AttributeType.INT


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are written as 10-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int_field(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str_field(field: int, text: str) -> bytes:
    return _bytes_field(field, text.encode("utf-8"))


def tensor(name: str, array: np.ndarray) -> bytes:
    """A float32 TensorProto (dims 1, data_type 2, name 8, raw_data 9), little-endian."""
    data = np.ascontiguousarray(array, dtype="<f4")
    dims = b"".join(_int_field(1, int(d)) for d in data.shape)
    return dims + _int_field(2, FLOAT) + _str_field(8, name) + _bytes_field(9, data.tobytes())


def int_attribute(name: str, value: int) -> bytes:
    """An AttributeProto of type INT (name 1, i 3, type 20)."""
    return _str_field(1, name) + _int_field(20, _ATTRIBUTE_INT) + _int_field(3, value)


def node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    name: str,
    attributes: Sequence[bytes] = (),
) -> bytes:
    """A NodeProto of the default domain (input 1, output 2, name 3, op_type 4, attribute 5)."""
    out = b"".join(_str_field(1, i) for i in inputs)
    out += b"".join(_str_field(2, o) for o in outputs)
    out += _str_field(3, name) + _str_field(4, op_type)
    return out + b"".join(_bytes_field(5, a) for a in attributes)


def float_output(name: str, dims: Sequence[int | None]) -> bytes:
    """A ValueInfoProto for a float tensor; a None dimension is left unknown (an empty
    TensorShapeProto.Dimension), as for the batch."""
    shape = b"".join(_bytes_field(1, b"" if d is None else _int_field(1, d)) for d in dims)
    tensor_type = _int_field(1, FLOAT) + _bytes_field(2, shape)  # elem_type 1, shape 2
    return _str_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def graph_extension(
    nodes: Sequence[bytes], initializers: Sequence[bytes], outputs: Sequence[bytes]
) -> bytes:
    """ModelProto bytes holding only a graph (field 7) with these nodes (1), initializers (5)
    and outputs (12); append them to a serialized model to extend its graph."""
    graph = b"".join(_bytes_field(1, n) for n in nodes)
    graph += b"".join(_bytes_field(5, t) for t in initializers)
    graph += b"".join(_bytes_field(12, o) for o in outputs)
    return _bytes_field(7, graph)
