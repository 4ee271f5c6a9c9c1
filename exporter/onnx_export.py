"""ONNX export of the projection pathway (fp32) and static int8 quantization (QDQ).

The pathway graph runs the encoder twice with shared weights. onnxruntime's *dynamic*
quantization corrupts shared initializers, so we use *static* QDQ quantization calibrated on
normal data and then verify every int8 artifact against fp32 (see exporter.build).

The "int8" artifact always has int8 weights (per-channel S8); its activations are 16-bit by
default (``activations=16``, W8A16) and 8-bit on request (``activations=8``, W8A8). Why 16:
RaPP scores *differences* h_i − ĥ_i between two passes that agree closely on normal data, and
8-bit activations resolve 1/256 of a tensor's calibrated range. On CNC MI-V that rounding
lifted the whole tail of NAP's singular spectrum about 3× (every direction, not a few), so no
calibration method (minmax, percentile, entropy), cut-off or float output rescued it: W8A8
reached Spearman 0.93–0.97 vs fp32 and lost 0.01–0.03 NAP AUROC, W8A16 reaches mean 0.997
(min 0.990) and |ΔAUROC| ≤ 0.004 over 15 runs (``benchmarks/results/int8_fidelity.md``).
The price is speed: onnxruntime's CPU provider has no 16-bit integer Gemm, so W8A16 runs
dequantize → float Gemm → quantize and is *slower* than fp32 (its gain is a 3–4× smaller
file); W8A8 keeps the U8S8 kernels.

Families: every family exports through :class:`~exporter.model.PathwayModule`; the conv1d
graph (Conv, Gemm, LeakyRelu and reshapes) quantizes like the MLP's, per channel along the
Conv output axis (its default). The lstm graph holds ONNX LSTM ops, which the static QDQ
quantizer cannot quantize, so it gets no int8 artifact (:func:`int8_unsupported_reason`).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import torch

from agent.core.bundle.manifest import PathwayIO
from exporter.errors import ExportError, ExportInputError
from exporter.model import Autoencoder, PathwayModule, pathway_names

OPSET = 18


def pathway_io(n_layers: int) -> PathwayIO:
    hidden, x_hat, hidden_hat = pathway_names(n_layers)
    return PathwayIO(input="x", hidden=tuple(hidden), x_hat=x_hat, hidden_hat=tuple(hidden_hat))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx prints progress lines to stdout, and its tracer warns about internals
    (e.g. LSTM's flat weights, deprecated pytree helpers); keep the CLI's output readable."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_pathway_onnx(model: Autoencoder, feature_dim: int) -> bytes:
    """fp32 ONNX bytes with input ``x`` (dynamic batch) and every pathway output named."""
    model.eval()
    n_layers = len(model.sizes) - 1
    io_names = pathway_io(n_layers)
    example = torch.zeros(2, feature_dim)
    buffer = io.BytesIO()
    try:
        with _quiet():
            torch.onnx.export(
                PathwayModule(model).eval(),
                (example,),
                buffer,
                input_names=[io_names.input],
                output_names=[*io_names.hidden, io_names.x_hat, *io_names.hidden_hat],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                dynamo=True,
                opset_version=OPSET,
            )
    except Exception as err:  # torch.onnx raises many unrelated types
        raise ExportError(f"ONNX export of the pathway failed: {err}") from err
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    # Clear producer noise so equal weights give equal bytes (reproducible bundles).
    proto.doc_string = ""
    return proto.SerializeToString()


# Graph ops that onnxruntime's static QDQ quantizer has no QDQ form for: it would leave them
# float next to quantized neighbours, and the artifact would be called int8 without being it.
# (LSTM is only in its dynamic-quantization registry, whose shared-initializer bug rules it
# out for the pathway: see the module docstring.)
NO_QDQ_OPS = frozenset({"LSTM", "GRU", "RNN"})


def int8_unsupported_reason(fp32_model: bytes) -> str | None:
    """Why this fp32 pathway gets no int8 artifact, or None when it can be quantized."""
    ops = {node.op_type for node in onnx.load_from_string(fp32_model).graph.node}
    blocked = sorted(op for op in ops if op in NO_QDQ_OPS)
    if not blocked:
        return None
    return (
        f"no int8 artifact: onnxruntime's static QDQ quantization cannot quantize "
        f"{'/'.join(blocked)} ops (the recurrent layers would stay float)"
    )


class _FeatureReader:
    """onnxruntime CalibrationDataReader over normal feature vectors."""

    def __init__(self, features: np.ndarray, batch: int = 64) -> None:
        # Equal batch sizes: the histogram calibrators stack per-batch outputs.
        usable = len(features) - len(features) % batch if len(features) >= batch else 0
        data = np.ascontiguousarray(features[: usable or len(features)], dtype=np.float32)
        step = batch if usable else len(data)
        self._batches = [{"x": data[i : i + step]} for i in range(0, len(data), step)]
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._batches):
            return None
        self._pos += 1
        return self._batches[self._pos - 1]

    def rewind(self) -> None:
        self._pos = 0


ACTIVATION_BITS = (16, 8)
# Calibration headroom per activation width: the calibration windows plus the same windows
# scaled by this factor (features are normalized around 0), so activation ranges cover more
# than normal data. Calibrated on normal windows alone, 16-bit ranges clipped anomalies: their
# ranks reshuffled among themselves (build-gate ρ 0.969 on the test model, normal-only 0.998).
# ×2 gave ρ 0.9993 (×4: 0.9999) with normal-only ρ unchanged; but every doubling halves the
# resolution left for normal windows, and on CNC MI-V ×4 cost test-window ρ (0.9987 → 0.988
# on one fold). 8 bits have no resolution to spare, so they keep ×1.
HEADROOM = {16: 2.0, 8: 1.0}


def with_headroom(calibration: np.ndarray, factor: float) -> np.ndarray:
    """Calibration windows plus the same windows scaled by ``factor`` (none when it is 1)."""
    x = np.ascontiguousarray(calibration, dtype=np.float32)
    return x if factor == 1.0 else np.concatenate([x, x * np.float32(factor)])


# 16-bit QDQ needs opset ≥ 21; onnxruntime would otherwise upgrade the model with a warning.
OPSET_16BIT = 21


def quantize_int8(
    fp32_model: bytes, calibration: np.ndarray, method: str = "minmax", activations: int = 16
) -> bytes:
    """Static QDQ quantization via onnxruntime: S8 per-channel weights, ``activations``-bit
    (16: QUInt16, the default; 8: QUInt8) activations calibrated on normal windows.

    Activation ranges are calibrated with :data:`HEADROOM` (×2 for 16-bit).
    16-bit activations run as float kernels, so the 7-bit weights below are not needed there
    and full-range S8 weights are used. For 8-bit activations ``reduce_range`` (7-bit
    weights) is not optional: on x86 with AVX2 but no VNNI,
    onnxruntime's U8S8 kernels use VPMADDUBSW, whose int16 intermediate saturates. Measured on
    the pathway, full-range S8 weights added ~40× more noise to d_i than 7-bit ones and
    dropped NAP's rank agreement with fp32 from 0.95 to 0.78. Per-channel scales run along
    the Gemm output axis (0, as the weights are stored transposed).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ExportError(f"calibration method {method!r}: choose one of {', '.join(methods)}")
    if activations not in ACTIVATION_BITS:
        raise ExportError(f"int8 activations of {activations} bits: choose 16 or 8")
    if len(calibration) < 16:
        raise ExportError(
            f"only {len(calibration)} calibration windows for int8 quantization; need ≥ 16"
        )
    reason = int8_unsupported_reason(fp32_model)
    if reason is not None:
        raise ExportInputError(f"{reason}: build this model with --no-int8")
    with tempfile.TemporaryDirectory(prefix="rapp-quant-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(fp32_model)
        wide = activations == 16
        try:
            if wide:
                proto = onnx.version_converter.convert_version(
                    onnx.load_from_string(fp32_model), OPSET_16BIT
                )
                onnx.save(proto, src)
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            quantize_static(
                pre,
                dst,
                _FeatureReader(with_headroom(calibration, HEADROOM[activations])),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt16 if wide else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=not wide,
                calibrate_method=methods[method],
                extra_options={
                    "CalibMovingAverage": False,
                    "QDQOpTypePerChannelSupportToAxis": {"Gemm": 0},
                },
            )
        except Exception as err:
            raise ExportError(f"onnxruntime static quantization failed: {err}") from err
        proto = onnx.load(dst)
    proto.doc_string = ""
    return proto.SerializeToString()
