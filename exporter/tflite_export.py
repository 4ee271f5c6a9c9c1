"""TFLite export of the projection pathway: fp32 and full-integer int8.

Route: rebuild the pathway in TensorFlow from the *folded* PyTorch weights and convert it with
``tf.lite.TFLiteConverter`` and a representative dataset of normal feature vectors. Why this
route and not a model-to-model translation:

- :class:`~exporter.model.PathwayModule` already folds BatchNorm into Linear, so the MLP's
  graph is nothing but MatMul + bias + LeakyReLU(0.2) — a dozen lines of ``tf.function``
  reproduce it exactly (parity ~1e-6 relative), and the converter lowers it to
  FULLY_CONNECTED and LEAKY_RELU, both with int8 kernels in every LiteRT / tflite-runtime
  build. The conv1d family is rebuilt the same way (:mod:`exporter.families_tf`) and lowers
  to CONV_2D, PAD, TRANSPOSE, RESHAPE, PACK, STRIDED_SLICE (and MEAN when pooled) besides
  those, all of which convert to 16x8 full-integer; the lstm family has no rebuild, and
  ``--tflite`` on it fails with an error naming the family.
- The input signature is ``[None, F]``, so the batch dimension stays dynamic in the TFLite
  file (``shape_signature`` −1) *and* survives full-integer quantization. ONNX→TF translators
  (onnx2tf, onnx-tf) and PyTorch→LiteRT converters either freeze the batch, transpose, pull in
  another large toolchain, or quantize through a second path we would have to validate anew.
- The pathway returns a dict, so every output gets a **signature name** (``h_1``, ``x_hat``,
  ``h_hat_1`` …). Raw output tensor order in a TFLite flatbuffer is an implementation detail
  of the converter (it is alphabetical today, not pathway order); the agent maps outputs by
  these names through ``get_signature_runner``.
- Both encoder passes close over the same constant, so the flatbuffer stores one weight
  buffer per layer (checked: fp32 and int8 sizes are ~1× the weights, not 2×). The
  converter's constant folding may move a bias-add across the next linear layer; the outputs
  are mathematically unchanged (see the parity check below).

Full-integer int8: ``Optimize.DEFAULT`` + representative dataset + ``TFLITE_BUILTINS_INT8``
only, so every FULLY_CONNECTED and LEAKY_RELU runs on int8 tensors (int32 biases,
per-channel int8 weights by default). The model **interface stays float32** — the converter
adds one QUANTIZE at the input and a DEQUANTIZE per output — because the agent's scoring
contract is "float feature vectors in, float pathway out" for every backend; an int8
interface would push quantization parameters into the agent and the bundle for a cost of a
few hundred nanoseconds per window.

Activation width: like the ONNX int8 artifact (see :mod:`exporter.onnx_export`), the default
is 16-bit activations with int8 weights — the converter's 16x8 mode
(``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``), still full-integer (int16
activations, int8 weights, int64 biases). 8-bit activations (``activations=8``) gave NAP
Spearman 0.94–0.97 vs fp32 on CNC MI-V, 16x8 0.995 on average (min 0.987). The 16x8
kernels are LiteRT's reference ones: several times slower than fp32 on x86
(``benchmarks/results/int8_fidelity.md``).

TensorFlow is imported lazily here and nowhere else; the agent never imports it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from agent.core.backends import BackendError, backend_class
from agent.core.bundle.manifest import ArtifactSpec, PathwayIO
from exporter.build import ArtifactCandidate, ExtraArtifacts
from exporter.errors import ExportError
from exporter.families_tf import check_tflite_support, tf_layers
from exporter.model import Autoencoder, PathwayModule, TrainedModel
from exporter.onnx_export import HEADROOM, pathway_io, with_headroom

EXTRA = "tflite-export"
SIGNATURE_KEY = "serving_default"
CALIBRATION_BATCH = 32
MAX_CALIBRATION_WINDOWS = 4096
MIN_CALIBRATION_WINDOWS = 16
MAX_PARITY_ERROR = 1e-4


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Swallow TensorFlow's C++ log lines (fd 2) but keep them for an error message."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.flush()
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _tensorflow() -> Any:
    """Import TensorFlow on demand; its absence is an install problem, not a crash."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _captured_stderr():
            import tensorflow as tf
    except ImportError as err:
        raise ExportError(
            f"TFLite export needs TensorFlow: `pip install 'rapp-edge[{EXTRA}]'` "
            f"(tensorflow==2.21.*); import failed: {err}"
        ) from err
    return tf


def _pathway_function(tf: Any, model: Autoencoder, feature_dim: int, io: PathwayIO) -> Any:
    """A tf.Module whose ``pathway`` returns {h_i, x_hat, h_hat_i} for an (N × F) input."""

    class Pathway(tf.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__(name="rapp_pathway")
            # One constant per layer, closed over by both encoder passes → one buffer.
            self.encode, self.decode = tf_layers(tf, model)

        @tf.function(
            input_signature=[tf.TensorSpec([None, feature_dim], tf.float32, name=io.input)]
        )
        def pathway(self, x: Any) -> dict[str, Any]:
            hidden = self.encode(x)
            y = self.decode(hidden[-1])
            hidden_hat = self.encode(y)
            out = dict(zip(io.hidden, hidden, strict=True))
            out[io.x_hat] = y
            out.update(zip(io.hidden_hat, hidden_hat, strict=True))
            return out

    return Pathway()


def _calibration_batches(features: np.ndarray) -> list[np.ndarray]:
    """Normal windows for the representative dataset: evenly spaced, at most a few thousand."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < MIN_CALIBRATION_WINDOWS:
        raise ExportError(
            f"TFLite int8 needs ≥ {MIN_CALIBRATION_WINDOWS} calibration windows (N × F), "
            f"got shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ExportError("TFLite int8 calibration features hold NaN or inf")
    if len(x) > MAX_CALIBRATION_WINDOWS:
        x = x[np.linspace(0, len(x) - 1, MAX_CALIBRATION_WINDOWS).astype(int)]
    return [x[i : i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)]


def export_pathway_tflite(
    model: Autoencoder,
    feature_dim: int,
    calibration: np.ndarray | None = None,
    per_channel: bool = True,
    activations: int = 16,
) -> bytes:
    """TFLite flatbuffer of the pathway: fp32 when ``calibration`` is None, else full-integer
    with int8 weights and ``activations``-bit (16 or 8) activations.

    ``per_channel=False`` asks the converter for per-tensor int8 weights (what the ONNX
    exporter uses). Per-channel is the TFLite default; on the default-size model both gave
    the same NAP fidelity (Spearman vs fp32 0.899 vs 0.896) and the same speed.
    """
    if activations not in (16, 8):
        raise ExportError(f"int8 activations of {activations} bits: choose 16 or 8")
    check_tflite_support(model)
    tf = _tensorflow()
    io = pathway_io(len(model.sizes) - 1)
    module = _pathway_function(tf, model, feature_dim, io)
    with _captured_stderr() as log:
        try:
            concrete = module.pathway.get_concrete_function()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
            if calibration is not None:
                batches = _calibration_batches(calibration)
                # Headroom as for ONNX (exporter.onnx_export.HEADROOM), after subsampling.
                factor = HEADROOM[activations]
                batches = [with_headroom(b, factor) for b in batches]
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([b] for b in batches)
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                    if activations == 16
                    else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                ]
                # Float interface, int8 inside (see module docstring).
                converter.inference_input_type = tf.float32
                converter.inference_output_type = tf.float32
                # Private switch of the converter; per-channel is its public default.
                converter._experimental_disable_per_channel_quantization_for_dense_layers = (
                    not per_channel
                )
            flatbuffer = converter.convert()
        except ExportError:
            raise
        except Exception as err:  # the converter raises many unrelated types
            tail = log()[-2000:]
            raise ExportError(f"TFLite conversion of the pathway failed: {err}\n{tail}") from err
    return bytes(flatbuffer)


def _provisional_spec(candidate: ArtifactCandidate) -> ArtifactSpec:
    return ArtifactSpec(
        id=candidate.id,
        path=candidate.path,
        format=candidate.format,
        precision=candidate.precision,
        sha256="0" * 64,
        io=candidate.io,
        thresholds={},
        nap_k=1,
        canary_expected={},
        canary_rtol=1.0,
        calibration={},
    )


def tflite_parity(trained: TrainedModel, candidate: ArtifactCandidate, x: np.ndarray) -> float:
    """Max relative error (per output, vs its max |value|) of a TFLite artifact vs PyTorch.

    Runs through the agent's own LiteRT backend, so a missing runtime fails here, at export.
    """
    try:
        backend = backend_class("litert")(
            _provisional_spec(candidate), candidate.model, trained.spec.feature_dim
        )
        pathway = backend.run(x)
    except BackendError as err:
        raise ExportError(f"{candidate.id}: cannot run the TFLite artifact: {err}") from err
    with torch.no_grad():
        module = PathwayModule(trained.model.eval()).eval()
        ref = [t.numpy() for t in module(torch.from_numpy(np.ascontiguousarray(x)))]
    got = [*pathway.hidden[1:], *pathway.hidden_hat]
    return max(
        float(np.abs(g - r).max() / max(float(np.abs(r).max()), 1e-12))
        for g, r in zip(got, ref, strict=True)
    )


def tflite_artifacts(
    int8: bool = True, per_channel: bool = True, activations: int = 16
) -> ExtraArtifacts:
    """An ``extra_artifacts`` callable for :func:`exporter.build.build_bundle`.

    The CLI uses it as ``tflite_artifacts(int8=not args.no_int8, activations=…)``; the fp32
    artifact is checked against PyTorch here (build_bundle only parity-checks the ONNX fp32
    one), the int8 one by build_bundle's fidelity gate against ``tflite-fp32``.
    """

    def make(trained: TrainedModel, calibration: np.ndarray) -> list[ArtifactCandidate]:
        check_tflite_support(trained.model)
        io = pathway_io(trained.n_layers)
        dim = trained.spec.feature_dim
        fp32 = ArtifactCandidate(
            "tflite-fp32",
            "tflite",
            "fp32",
            "model.fp32.tflite",
            export_pathway_tflite(trained.model, dim),
            io,
        )
        probe = np.ascontiguousarray(calibration[:256], dtype=np.float32)
        parity = tflite_parity(trained, fp32, probe)
        if parity > MAX_PARITY_ERROR:
            raise ExportError(
                f"TFLite fp32 outputs differ from PyTorch by {parity:.2e} (relative), above "
                f"{MAX_PARITY_ERROR:g}; the TFLite export is wrong"
            )
        out = [fp32]
        if int8:
            model = export_pathway_tflite(trained.model, dim, calibration, per_channel, activations)
            out.append(
                ArtifactCandidate("tflite-int8", "tflite", "int8", "model.int8.tflite", model, io)
            )
        return out

    return make


def tflite_candidates(trained: TrainedModel, calibration: np.ndarray) -> list[ArtifactCandidate]:
    """fp32 and int8 TFLite candidates (ids tflite-fp32/-int8): ``extra_artifacts=`` this."""
    return list(tflite_artifacts()(trained, calibration))
